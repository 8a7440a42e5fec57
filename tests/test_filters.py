"""Unit and property tests of the core filters (rf.make_filter / Filter.weights)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rewardfilter as rf

SPECS = [
    "none",
    "random:2",
    "bon",
    "br",
    "bw",
    "topk:2",
    "threshold:0",
    "rank:0.4,0.1,0.1,0.1,0.1",
    "uncertainty:0.4",
    "zero_std",
    "std_top:0.5",
    "zero_std:0.1+br",
    "std_top:0.7+uncertainty:0.4",
]


def per_group(weights, groups):
    return {g: weights[groups == g] for g in np.unique(groups)}


def grouped_batch(n_groups=6, size=5, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    perm = rng.permutation(groups.shape[0])  # groups interleaved, not contiguous
    return rng.normal(size=groups.shape[0]), groups[perm], rng.normal(size=(3, groups.shape[0]))


# ---------------------------------------------------------------- each spec


def test_none_keeps_everything():
    rewards, groups, _ = grouped_batch()
    np.testing.assert_array_equal(
        rf.make_filter("none").weights(rewards, groups), np.ones(rewards.shape[0])
    )


def test_bon_keeps_the_best_of_each_group():
    rewards = np.array([1.0, 3.0, 2.0, 10.0, -1.0, 0.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(
        rf.make_filter("bon").weights(rewards, groups), [0, 1, 0, 1, 0, 0]
    )


def test_bw_keeps_best_and_worst():
    rewards = np.array([1.0, 3.0, 2.0, 10.0, -1.0, 0.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(rf.make_filter("bw").weights(rewards, groups), [1, 1, 0, 1, 1, 0])


def test_br_keeps_best_and_a_uniformly_random_other():
    rewards = np.array([5.0, 1.0, 2.0, 3.0])
    groups = np.zeros(4, dtype=int)
    counts = np.zeros(4)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        w = rf.make_filter("br").weights(rewards, groups, rng=rng)
        assert w[0] == 1 and w.sum() == 2
        counts += w
    # each of the three others is chosen about a third of the time
    np.testing.assert_allclose(counts[1:] / 3000, 1 / 3, atol=0.04)


def test_random_k_ignores_rewards():
    rewards = np.arange(5.0)
    groups = np.zeros(5, dtype=int)
    rng = np.random.default_rng(1)
    counts = sum(rf.make_filter("random:2").weights(rewards, groups, rng=rng) for _ in range(3000))
    np.testing.assert_allclose(counts / 3000, 0.4, atol=0.04)


def test_topk_and_threshold():
    rewards = np.array([0.1, 0.5, 0.3, 0.9])
    groups = np.array([7, 7, 7, 7])
    np.testing.assert_array_equal(rf.make_filter("topk:2").weights(rewards, groups), [0, 1, 0, 1])
    np.testing.assert_array_equal(
        rf.make_filter("threshold:0.3").weights(rewards, groups), [0, 1, 1, 1]
    )


def test_rank_weights_follow_the_rank_within_group():
    rewards = np.array([0.2, 0.9, 0.5, 3.0, 1.0, 2.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    w = rf.make_filter("rank:0.6,0.3,0.1").weights(rewards, groups)
    np.testing.assert_allclose(w, [0.1, 0.6, 0.3, 0.6, 0.1, 0.3])
    assert not rf.make_filter("rank:0.6,0.3,0.1").is_binary
    assert rf.make_filter("rank:1,0,0,0,1").is_binary


def test_uncertainty_drops_the_most_disputed_fraction_of_each_group():
    rewards = np.zeros(10)
    groups = np.repeat([0, 1], 5)
    spread = np.array([0.1, 5.0, 0.2, 4.0, 0.3, 0.1, 0.2, 9.0, 0.3, 0.4])
    ensemble = np.stack([-spread, spread])
    w = rf.make_filter("uncertainty:0.4").weights(rewards, groups, ensemble=ensemble)
    np.testing.assert_array_equal(w, [1, 0, 1, 0, 1, 1, 1, 0, 1, 0])


def test_groups_may_be_strings():
    rewards = np.array([1.0, 2.0, 3.0, 0.0])
    w = rf.make_filter("bon").weights(rewards, ["a", "a", "b", "b"])
    np.testing.assert_array_equal(w, [0, 1, 1, 0])


def test_ties_are_broken_at_random_with_the_generator():
    rewards = np.ones(4)
    groups = np.zeros(4, dtype=int)
    winners = {
        int(np.argmax(rf.make_filter("bon").weights(rewards, groups, rng=s))) for s in range(40)
    }
    assert winners == {0, 1, 2, 3}
    a = rf.make_filter("br").weights(rewards, groups, rng=123)
    b = rf.make_filter("br").weights(rewards, groups, rng=123)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- the small-group rule


def test_singleton_groups_keep_their_sample_once():
    rewards = np.array([1.0, 2.0, 0.5])
    groups = np.array([0, 1, 1])
    for spec in ["br", "bw", "bon", "topk:3", "random:2"]:
        w = rf.make_filter(spec).weights(rewards, groups, rng=0)
        assert w[0] == 1.0, spec  # never 2: not double counted
        assert set(np.unique(w)) <= {0.0, 1.0}


def test_rank_on_small_group_uses_leading_weights_and_rejects_big_groups():
    w = rf.make_filter("rank:0.5,0.3,0.2").weights([1.0, 2.0], [0, 0])
    np.testing.assert_allclose(w, [0.3, 0.5])
    with pytest.raises(ValueError, match="3 rank weights but a group has 4"):
        rf.make_filter("rank:0.5,0.3,0.2").weights(np.arange(4.0), np.zeros(4))


def test_check_group_size():
    rf.make_filter("br").check_group_size(5)
    with pytest.raises(ValueError, match="at least 2"):
        rf.make_filter("br").check_group_size(1)
    with pytest.raises(ValueError, match="at least 3"):
        rf.make_filter("topk:3").check_group_size(2)
    with pytest.raises(ValueError, match="one weight per sampled response"):
        rf.make_filter("rank:0.4,0.1,0.1,0.1,0.1").check_group_size(4)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "spec, match",
    [
        ("bx", "Unknown filter spec 'bx'"),
        ("topk:0", "'k' parameter of topk must be an int >= 1; got 0"),
        ("topk", "expected the form topk:<value>"),
        ("bon:3", "expected the form bon"),
        ("random:two", "'k' parameter of random must be an int"),
        ("rank:0.5,-0.1", "'w' parameter of rank"),
        ("rank:0,0", "at least one > 0"),
        ("uncertainty:1.5", r"'q' parameter of uncertainty must be a float in \[0, 1\); got 1.5"),
        ("uncertainty:-0.1", "'q' parameter of uncertainty"),
        ("threshold:nan", "'t' parameter of threshold must be a finite float"),
        (3, "must be a string or a Filter"),
    ],
)
def test_bad_specs_name_the_spec_and_the_accepted_forms(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        rf.make_filter(spec)
    assert "Accepted forms" in str(info.value)


def test_bad_rewards_and_groups():
    f = rf.make_filter("br")
    with pytest.raises(ValueError, match="'rewards' must be finite.*index 1"):
        f.weights([1.0, np.nan], [0, 0])
    with pytest.raises(ValueError, match="'rewards' must be finite"):
        f.weights([1.0, np.inf], [0, 0])
    with pytest.raises(ValueError, match="'groups' has 3 entries but 'rewards' has 2"):
        f.weights([1.0, 2.0], [0, 0, 1])
    with pytest.raises(ValueError, match="'rewards' is empty"):
        f.weights([], [])
    with pytest.raises(ValueError, match="needs 'ensemble'"):
        rf.make_filter("uncertainty:0.2").weights([1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="'ensemble' has 3 columns"):
        rf.make_filter("uncertainty:0.2").weights([1.0, 2.0], [0, 0], ensemble=np.zeros((2, 3)))


def test_make_filter_returns_a_fresh_instance_every_call():
    f = rf.TopK(3)
    assert rf.make_filter(f) is not f and rf.make_filter(f) == f
    assert rf.make_filter("br") is not rf.make_filter("br")
    assert rf.make_filter(" TopK:3 ").spec == "topk:3"
    assert repr(rf.make_filter("rank:0.4,0.1")) == "make_filter('rank:0.4,0.1')"


# ---------------------------------------------------------------- properties (hypothesis)

group_sizes = st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=12)


@st.composite
def batches(draw):
    sizes = draw(group_sizes)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    n = groups.shape[0]
    # few distinct values so that ties happen
    rewards = np.array(
        draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0, 3.5]), min_size=n, max_size=n))
    )
    perm = np.array(draw(st.permutations(range(n))))
    seed = draw(st.integers(0, 2**16))
    return rewards[perm], groups[perm], seed


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(SPECS))
def test_weights_are_nonnegative_and_one_per_sample(batch, spec):
    rewards, groups, seed = batch
    ens = np.random.default_rng(seed).normal(size=(3, rewards.shape[0]))
    size = np.bincount(groups).max()
    if spec.startswith("rank:") and size > 5:
        return
    w = rf.make_filter(spec).weights(rewards, groups, rng=seed, ensemble=ens)
    assert w.shape == rewards.shape and w.dtype == float
    assert (w >= 0).all()


@settings(max_examples=80, deadline=None)
@given(batches())
def test_per_group_counts_and_best_is_kept(batch):
    rewards, groups, seed = batch
    for spec, expected in [
        ("bon", lambda m: 1),
        ("br", lambda m: min(2, m)),
        ("bw", lambda m: min(2, m)),
        ("topk:3", lambda m: min(3, m)),
        ("random:2", lambda m: min(2, m)),
    ]:
        w = rf.make_filter(spec).weights(rewards, groups, rng=seed)
        for g, wg in per_group(w, groups).items():
            rg = rewards[groups == g]
            assert wg.sum() == expected(rg.shape[0]), (spec, rg, wg)
            if spec != "random:2":
                assert rg[wg > 0].max() == rg.max(), (spec, rg, wg)  # a best sample is kept
    # bw: the kept pair spans the group's range
    w = rf.make_filter("bw").weights(rewards, groups, rng=seed)
    for g, wg in per_group(w, groups).items():
        rg = rewards[groups == g]
        assert rg[wg > 0].min() == rg.min()


@settings(max_examples=60, deadline=None)
@given(
    batches(),
    st.sampled_from(
        [
            "bon",
            "bw",
            "topk:2",
            "rank:0.5,0.3,0.1,0.05,0.05,0,0",
            "threshold:0.5",
            "zero_std:0.1",
            "zero_std+bw",
        ]
    ),
)
def test_permuting_samples_permutes_weights_of_deterministic_filters(batch, spec):
    rewards, groups, seed = batch
    # make rewards distinct so the filter is deterministic
    rewards = rewards + np.arange(rewards.shape[0]) * 1e-6
    perm = np.random.default_rng(seed).permutation(rewards.shape[0])
    w = rf.make_filter(spec).weights(rewards, groups, rng=0)
    w_perm = rf.make_filter(spec).weights(rewards[perm], groups[perm], rng=99)
    np.testing.assert_array_equal(w[perm], w_perm)


@settings(max_examples=40, deadline=None)
@given(batches())
def test_ranking_is_within_groups_not_across_the_batch(batch):
    rewards, groups, seed = batch
    # shifting one group's rewards by a constant must not change any weight
    shifted = rewards + np.where(groups == groups[0], 100.0, 0.0)
    for spec in ["bon", "bw", "topk:2"]:
        a = rf.make_filter(spec).weights(rewards + np.arange(rewards.size) * 1e-6, groups, rng=0)
        b = rf.make_filter(spec).weights(shifted + np.arange(rewards.size) * 1e-6, groups, rng=0)
        np.testing.assert_array_equal(a, b)


def test_one_member_ensemble_is_accepted_by_every_filter():
    """DESIGN: K = 1 is allowed (a reward model of one member); it used to raise for every filter."""
    rewards = np.array([0.1, 0.9, 0.5, 0.2, 0.3, 0.8])
    groups = np.array([0, 0, 0, 1, 1, 1])
    ens = rewards[None, :]
    for spec in ["none", "bon", "br", "bw", "topk:2", "rank:0.5,0.3,0.2", "zero_std+br"]:
        w = rf.make_filter(spec).weights(rewards, groups, rng=0, ensemble=ens)
        assert w.shape == (6,)
    with pytest.warns(UserWarning, match="one member"):
        w = rf.make_filter("uncertainty:0.5").weights(rewards, groups, rng=0, ensemble=ens)
    np.testing.assert_array_equal(w, np.ones(6))


def test_an_unknown_spec_lists_every_registered_spec():
    with pytest.raises(ValueError, match="Unknown filter spec 'nosuch'") as info:
        rf.make_filter("nosuch")
    accepted = str(info.value).split("Accepted forms: ")[1]
    listed = {re.match(r"[a-z_]+", form).group() for form in accepted.split(", ")}
    assert set(rf.filters._PARSERS) <= listed  # the registry: built-ins and register_spec's
    for form in ("uwo:LAMBDA,INNER", "wco:INNER", "zero_std[:EPS]", "std_top:P", "adaptive"):
        assert form in accepted


def test_a_registered_spec_joins_the_accepted_forms(monkeypatch):
    monkeypatch.setattr(rf.filters, "_PARSERS", dict(rf.filters._PARSERS))  # undone after the test
    rf.register_spec("first_test", "optional", lambda arg: rf.NoFilter())
    rf.register_spec("second_test", "required", lambda arg: rf.NoFilter(), form="second_test:N")
    assert "first_test[:<value>], second_test:N, and specs joined by '+'" in rf.accepted_specs()
