"""uwo:LAMBDA,INNER and wco:INNER: filters that rank by a conservative ensemble aggregate."""

from __future__ import annotations

import numpy as np
import pytest

import rewardfilter as rf

# one group of three; members (rows) per sample: a = (1, 1), b = (0, 4), c = (1.5, 1.5)
ENS = np.array([[1.0, 0.0, 1.5], [1.0, 4.0, 1.5]])
REWARDS = np.array([0.0, 10.0, 0.0])  # the observed reward ranks b first
GROUPS = [0, 0, 0]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("bon", [0, 1, 0]),  # by the reward
        ("uwo:0,bon", [0, 1, 0]),  # by the mean: a 1, b 2, c 1.5
        ("uwo:0.5,bon", [0, 0, 1]),  # mean - 0.5 var: a 1, b 2 - 0.5 * 4 = 0, c 1.5
        ("wco:bon", [0, 0, 1]),  # smallest member: a 1, b 0, c 1.5
        ("uwo:0.5,bw", [0, 1, 1]),  # best c, worst b
        ("uwo:1,rank:0.5,0.3,0.2", [0.3, 0.2, 0.5]),
    ],
)
def test_ranking_keys_by_hand(spec, expected):
    f = rf.make_filter(spec)
    assert f.spec == spec
    np.testing.assert_allclose(f.weights(REWARDS, GROUPS, rng=0, ensemble=ENS), expected)


def test_it_composes_needs_the_ensemble_and_checks_the_group_size():
    f = rf.make_filter("zero_std+uwo:0.5,br")
    assert f.needs_ensemble and f.weights(REWARDS, GROUPS, rng=0, ensemble=ENS).sum() == 2
    with pytest.raises(ValueError, match="needs 'ensemble'"):
        rf.make_filter("wco:br").weights(REWARDS, GROUPS)
    with pytest.raises(ValueError):
        rf.make_filter("uwo:0.5,rank:0.5,0.5").check_group_size(3)


@pytest.mark.parametrize(
    "spec, name",
    [
        ("uwo:0.5", "'spec' parameter of uwo"),
        ("uwo:x,br", "'lambda' parameter of uwo"),
        ("uwo:-1,br", "'lambda' parameter of uwo"),
        ("uwo:0.5,adaptive", "'inner' parameter of uwo"),
        ("wco:nonsense", "'inner' parameter of wco"),
    ],
)
def test_bad_specs_name_the_part(spec, name):
    with pytest.raises(ValueError, match=name):
        rf.make_filter(spec)
