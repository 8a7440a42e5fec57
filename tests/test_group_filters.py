"""Group-level filters (zero_std, std_top) and composition of specs with '+'."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rewardfilter as rf
from rewardfilter.grouping import group_spread


def per_group(weights, groups):
    return {g: weights[groups == g] for g in np.unique(groups)}


# ---------------------------------------------------------------- hand-computed cases


def test_group_spread_is_the_population_std_and_exactly_zero_for_equal_rewards():
    rewards = np.array([0.1, 0.1, 0.1, 1.0, 3.0, 1e8 + 0.1, 1e8 + 0.1])
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    spread, index = group_spread(rewards, groups)
    np.testing.assert_array_equal(index, [0, 0, 0, 1, 1, 2, 2])
    assert spread[0] == 0.0 and spread[2] == 0.0  # exactly, not 1e-17
    assert spread[1] == pytest.approx(1.0)  # std of [1, 3] with ddof = 0


def test_zero_std_drops_groups_without_spread_and_singletons():
    rewards = np.array([0.3, 0.3, 0.3, 1.0, 1.0, 2.0, 5.0, 0.0, 1.0])
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 3, 3])
    w = rf.make_filter("zero_std").weights(rewards, groups)
    np.testing.assert_array_equal(w, [0, 0, 0, 1, 1, 1, 0, 1, 1])


def test_zero_std_eps_is_inclusive():
    # spreads: [0, 1] -> 0.5, [0, 2] -> 1.0
    rewards = np.array([0.0, 1.0, 0.0, 2.0])
    groups = np.array(["a", "a", "b", "b"])
    np.testing.assert_array_equal(
        rf.make_filter("zero_std:0.5").weights(rewards, groups), [0, 0, 1, 1]
    )
    np.testing.assert_array_equal(
        rf.make_filter("zero_std:0.49").weights(rewards, groups), [1, 1, 1, 1]
    )


def test_std_top_keeps_the_groups_with_the_largest_spread():
    # spreads: g0 0.5, g1 2.0, g2 0.0, g3 1.0 (groups interleaved)
    rewards = np.array([0.0, 0.0, 5.0, 1.0, 4.0, 0.0, 5.0, 2.0])
    groups = np.array([0, 1, 2, 0, 1, 3, 2, 3])
    np.testing.assert_array_equal(
        rf.make_filter("std_top:0.5").weights(rewards, groups, rng=0), [0, 1, 0, 0, 1, 1, 0, 1]
    )
    # ceil(0.3 * 4) = 2 groups, ceil(0.01 * 4) = 1 group, P = 1 keeps all
    np.testing.assert_array_equal(
        rf.make_filter("std_top:0.3").weights(rewards, groups, rng=0), [0, 1, 0, 0, 1, 1, 0, 1]
    )
    np.testing.assert_array_equal(
        rf.make_filter("std_top:0.01").weights(rewards, groups, rng=0), [0, 1, 0, 0, 1, 0, 0, 0]
    )
    assert rf.make_filter("std_top:1").weights(rewards, groups).sum() == 8


def test_std_top_breaks_ties_in_spread_at_random():
    rewards = np.tile([0.0, 1.0], 4)
    groups = np.repeat(np.arange(4), 2)
    chosen = {
        int(np.flatnonzero(rf.make_filter("std_top:0.25").weights(rewards, groups, rng=s))[0])
        for s in range(60)
    }
    assert chosen == {0, 2, 4, 6}


def test_zero_std_plus_br_drops_flat_groups_then_filters_within_the_rest():
    rewards = np.array([1.0, 1.0, 1.0, 0.0, 9.0, 2.0, 1.0])
    groups = np.array([0, 0, 0, 1, 1, 1, 1])
    f = rf.make_filter("zero_std+br")
    assert isinstance(f, rf.Compose) and f.spec == "zero_std:0+br"
    for seed in range(20):
        w = f.weights(rewards, groups, rng=seed)
        assert w[:3].sum() == 0 and w[4] == 1 and w[3:].sum() == 2


def test_composition_filters_sequentially_and_weights_multiply():
    # threshold:0 keeps [3, 5] of group 0 and nothing of group 1; bon then sees only those
    rewards = np.array([-1.0, -2.0, 3.0, 5.0, -1.0, -2.0])
    groups = np.array([0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(
        rf.make_filter("threshold:0+bon").weights(rewards, groups), [0, 0, 0, 1, 0, 0]
    )
    # reweighting: the rank weights multiply the 0/1 weights of zero_std
    w = rf.make_filter("zero_std+rank:0.6,0.3,0.1").weights(
        [0.0, 2.0, 1.0, 4.0, 4.0, 4.0], [0, 0, 0, 1, 1, 1]
    )
    np.testing.assert_allclose(w, [0.1, 0.6, 0.3, 0, 0, 0])
    # the second part sees the kept samples' ensemble columns
    spread = np.array([9.0, 0.0, 0.1, 0.2, 0.0, 0.0])
    w = rf.make_filter("zero_std+uncertainty:0.34").weights(
        [1.0, 2.0, 3.0, 0.0, 7.0, 7.0], [0, 0, 0, 0, 1, 1], ensemble=np.stack([spread, -spread])
    )
    np.testing.assert_array_equal(w, [0, 1, 1, 1, 0, 0])


def test_composition_properties():
    f = rf.make_filter("zero_std:0.1+rank:0.4,0.1,0.1,0.1,0.1")
    assert not f.is_binary and rf.make_filter("zero_std+bw").is_binary
    assert rf.make_filter("std_top:0.5+uncertainty:0.2").needs_ensemble
    assert not rf.make_filter("zero_std+br").needs_ensemble
    assert rf.make_filter("zero_std+topk:3").min_group_size == 3
    with pytest.raises(ValueError, match="at least 2"):
        rf.make_filter("zero_std+bon").check_group_size(1)
    with pytest.raises(ValueError, match="one weight per sampled response"):
        rf.make_filter("zero_std+rank:0.5,0.5").check_group_size(3)
    # nested compositions flatten; the spec round-trips
    nested = rf.Compose((rf.make_filter("zero_std+threshold:0"), rf.BestOfN()))
    assert nested.spec == "zero_std:0+threshold:0+bon"
    assert rf.make_filter(nested.spec).spec == nested.spec
    assert rf.make_filter("threshold:1e+3").spec == "threshold:1000"  # '+' in a number


def test_composition_with_adaptive_fits_on_what_the_first_part_keeps():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), 4)
    rewards = rng.normal(size=groups.shape[0])
    scores = rewards + rng.normal(size=groups.shape[0])
    rewards[:40] = 1.0  # ten flat groups, dropped by zero_std
    f = rf.make_filter("zero_std+adaptive")
    f.fit(rewards, scores, groups, rng=0)
    w = f.weights(rewards, groups, rng=0)
    assert w[:40].sum() == 0 and f.parts[1].chosen_ is not None


@pytest.mark.parametrize(
    "spec, match",
    [
        ("zero_std:-1", r"'eps' parameter of zero_std must be a float in \[0, inf\); got -1.0"),
        ("zero_std:x", "'eps' parameter of zero_std must be a float"),
        ("zero_std:", r"expected the form zero_std\[:<value>\]"),
        ("std_top", "expected the form std_top:<value>"),
        ("std_top:0", r"'p' parameter of std_top must be a float in \(0, 1\]; got 0.0"),
        ("std_top:1.5", r"'p' parameter of std_top"),
        ("br+", "an empty part around '\\+'"),
        ("+br", "an empty part around '\\+'"),
        ("zero_std++br", "an empty part around '\\+'"),
        ("zero_std+bx", "Unknown filter spec 'zero_std\\+bx'"),
    ],
)
def test_bad_group_specs_name_the_spec_and_the_accepted_forms(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        rf.make_filter(spec)
    assert "Accepted forms" in str(info.value) and "zero_std" in str(info.value)


def test_compose_needs_two_filters():
    with pytest.raises(ValueError, match="'parts' parameter of compose"):
        rf.Compose((rf.BestOfN(),))
    with pytest.raises(ValueError, match="'parts' parameter of compose"):
        rf.Compose(("bon", "br"))


# ---------------------------------------------------------------- properties (hypothesis)


@st.composite
def batches(draw):
    sizes = draw(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=10))
    groups = np.repeat(np.arange(len(sizes)), sizes)
    n = groups.shape[0]
    rewards = np.array(
        draw(st.lists(st.sampled_from([-1.0, 0.0, 0.1, 2.0]), min_size=n, max_size=n))
    )
    perm = np.array(draw(st.permutations(range(n))))
    return rewards[perm], groups[perm], draw(st.integers(0, 2**16))


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from([0.0, 0.05, 0.5, 1.0]))
def test_zero_std_keeps_exactly_the_groups_with_spread_above_eps(batch, eps):
    rewards, groups, seed = batch
    w = rf.make_filter(f"zero_std:{eps}").weights(rewards, groups, rng=seed)
    for g, wg in per_group(w, groups).items():
        assert len(set(wg)) == 1  # whole groups only
        assert bool(wg[0]) == (np.std(rewards[groups == g]) > eps + 1e-12)


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from([0.1, 0.25, 0.5, 0.9, 1.0]))
def test_std_top_keeps_ceil_p_groups_and_no_dropped_group_spreads_more(batch, p):
    rewards, groups, seed = batch
    w = rf.make_filter(f"std_top:{p}").weights(rewards, groups, rng=seed)
    kept = {g: bool(wg[0]) for g, wg in per_group(w, groups).items()}
    assert all(len(set(wg)) == 1 for wg in per_group(w, groups).values())
    assert sum(kept.values()) == math.ceil(p * len(kept) - 1e-9)
    spread = {g: np.std(rewards[groups == g]) for g in kept}
    if not all(kept.values()):
        assert (
            min(spread[g] for g in kept if kept[g])
            >= max(spread[g] for g in kept if not kept[g]) - 1e-12
        )


@settings(max_examples=60, deadline=None)
@given(batches())
def test_zero_std_plus_br_is_br_on_the_groups_zero_std_keeps(batch):
    rewards, groups, seed = batch
    flat = rf.make_filter("zero_std").weights(rewards, groups)
    w = rf.make_filter("zero_std+br").weights(rewards, groups, rng=seed)
    assert ((w > 0) <= (flat > 0)).all()
    for g, wg in per_group(w, groups).items():
        rg = rewards[groups == g]
        if flat[groups == g][0] == 0:
            assert wg.sum() == 0
        else:
            assert wg.sum() == 2 and rg[wg > 0].max() == rg.max()
