"""The report's statistics (issue 16.6): the normalised score's CI resamples its anchors too.

Before, the CI of (x - mean(PPO-M)) / (mean(oracle) - mean(PPO-M)) held both
anchors fixed at their means: a method with no spread over seeds got a CI of
zero width however uncertain the anchors were.
"""

from __future__ import annotations

import numpy as np
import pytest

from rewardfilter.experiments.statistics import normalised_ci

BASE = np.array([0.0, 0.2, -0.2, 0.1, -0.1])
ORACLE = np.array([1.0, 1.3, 0.7, 0.9, 1.1])


def test_anchor_spread_widens_the_interval_of_a_constant_method():
    x = np.full(5, 0.5)
    lo, hi = normalised_ci(x, BASE, ORACLE, np.random.default_rng(0), 4000)
    assert lo < 0.5 < hi and hi - lo > 0.1  # held-fixed anchors gave [0.5, 0.5]


def test_matches_a_hand_written_joint_bootstrap():
    rng = np.random.default_rng(1)
    x = np.array([0.3, 0.6, 0.4, 0.8, 0.5])
    lo, hi = normalised_ci(x, BASE, ORACLE, np.random.default_rng(2), 20000)
    draw = lambda v: v[rng.integers(v.size, size=(20000, v.size))].mean(axis=1)  # noqa: E731
    b = draw(BASE)
    ratio = (draw(x) - b) / (draw(ORACLE) - b)
    assert lo == pytest.approx(np.quantile(ratio, 0.025), abs=0.03)
    assert hi == pytest.approx(np.quantile(ratio, 0.975), abs=0.03)


def test_the_anchors_own_rows_are_exactly_zero_and_one():
    rng = np.random.default_rng(0)
    assert normalised_ci(BASE, BASE, ORACLE, rng, 500) == (0.0, 0.0)
    assert normalised_ci(ORACLE, BASE, ORACLE, rng, 500) == pytest.approx((1.0, 1.0))


def test_degenerate_inputs_give_nan_or_a_point():
    rng = np.random.default_rng(0)
    assert all(np.isnan(normalised_ci([], BASE, ORACLE, rng)))
    assert all(np.isnan(normalised_ci([1.0], [0.0], [0.0], rng)))  # anchors equal
    assert normalised_ci([0.5], [0.0], [1.0], rng) == (0.5, 0.5)  # one seed each: a point
