"""FilteredRolloutBuffer's rules on synthetic rollouts (no env, no policy): what is ranked, held, yielded."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

import rewardfilter as rf
from rewardfilter.adapters.sb3 import FilteredRolloutBuffer

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = spaces.Discrete(2)


def fill(buf, rewards, starts, groups, last_dones, ensembles=None, true=None, rollout=0):
    """Add T steps; the observation of (step t, env e) is [rollout, t, e] so yields can be traced."""
    T, E = rewards.shape
    for t in range(T):
        obs = np.array([[rollout, t, e] for e in range(E)], dtype=np.float32)
        infos = []
        for e in range(E):
            info = {
                "group_id": int(groups[t, e]),
                "observed_reward": float(rewards[t, e]),
                "true_reward": float(rewards[t, e] if true is None else true[t, e]),
            }
            if ensembles is not None:
                info["reward_ensemble"] = ensembles[t, e]
            infos.append(info)
        buf.add(
            obs,
            np.zeros((E, 1)),
            rewards[t].astype(np.float32),
            starts[t].astype(np.float32),
            th.zeros(E),
            th.zeros(E),
            infos=infos,
        )
    buf.compute_returns_and_advantage(th.zeros(E), np.asarray(last_dones))


def yielded(buf, batch_size):
    ids = []
    for batch in buf.get(batch_size):
        assert len(batch.observations) > 0, "get() must never yield an empty batch"
        ids += [tuple(int(v) for v in o) for o in batch.observations.numpy()]
    return ids


def scenario():
    """T=6 steps, 4 envs, two groups of two (envs 0-1 group 0, envs 2-3 group 1).

    env0: episode [0,3) return 3 (gid 0), episode [3,6) return 3 ends at the buffer end (gid 2)
    env1: episode [0,4) return 8 (gid 0), episode [4,6) cut by the buffer end (gid 2)
    env2: episode [0,6) return 3 ends at the buffer end (gid 1)
    env3: episode [0,2) return 10 (gid 1), episode [2,6) cut (gid 3)
    """
    T, E = 6, 4
    rewards = np.zeros((T, E))
    starts = np.zeros((T, E))
    groups = np.zeros((T, E), dtype=int)
    starts[0] = 1
    rewards[:, 0] = 1.0
    starts[3, 0] = 1
    groups[:, 0] = [0, 0, 0, 2, 2, 2]
    rewards[:, 1] = 2.0
    starts[4, 1] = 1
    groups[:, 1] = [0, 0, 0, 0, 2, 2]
    rewards[:, 2] = 0.5
    groups[:, 2] = 1
    rewards[:, 3] = 5.0
    starts[2, 3] = 1
    groups[:, 3] = [1, 1, 3, 3, 3, 3]
    return rewards, starts, groups, [True, False, True, False]


def steps(env, a, b, rollout=0):
    return {(rollout, t, env) for t in range(a, b)}


def buffer(spec, **kwargs):
    return FilteredRolloutBuffer(6, OBS, ACT, device="cpu", n_envs=4, filter=spec, seed=0, **kwargs)


# -- contexts are ranked when all N episodes have ended ----------------------------


def test_only_complete_contexts_are_ranked_and_the_rest_is_held():
    buf = buffer("bon")
    fill(buf, *scenario())
    # gid 0 (env0 3 vs env1 8) and gid 1 (env2 3 vs env3 10) are complete: bon keeps 8 and 10;
    # env0's second episode (gid 2) waits for env1's, still running; env3's (gid 3) runs on
    assert set(yielded(buf, 4)) == steps(1, 0, 4) | steps(3, 0, 2)
    stats = buf.last_stats
    assert stats["n_samples"] == 4 and stats["group_size_mean"] == 2
    assert stats["kept_fraction"] == 0.5
    assert stats["n_kept_transitions"] == 6
    assert stats["n_held_transitions"] == 3 + 2 + 4
    np.testing.assert_array_equal(sorted(buf.last_episode_weights), [0, 0, 1, 1])


def test_held_episodes_are_ranked_by_their_full_return_and_trained_once():
    buf = buffer("bon")
    fill(buf, *scenario())
    buf.reset()
    # rollout 1: env1 ends gid 2 at step 0 (2 + 2 + 5 = 9 > env0's 3, held since rollout 0);
    # env3 ends gid 3 at step 0 (20 + 1 > 6 of env2, whose round-1 episode is gid 3 too);
    # gid 4: env0's 6 steps (6) beat env1's 5; gid 5 (env3) stays open
    T, E = 6, 4
    rewards = np.ones((T, E))
    rewards[0, 1] = 5.0
    starts = np.zeros((T, E))
    starts[0, [0, 2]] = 1
    starts[1, [1, 3]] = 1
    groups = np.array([[4, 2, 3, 3]] + [[4, 4, 3, 5]] * 5)
    fill(buf, rewards, starts, groups, [True] * 4, rollout=1)
    got = yielded(buf, 4)
    assert len(got) == len(set(got))
    assert set(got) == (
        steps(1, 4, 6, 0)
        | steps(1, 0, 1, 1)
        | steps(3, 2, 6, 0)
        | steps(3, 0, 1, 1)
        | steps(0, 0, 6, 1)
    )
    stats = buf.last_stats
    assert stats["n_samples"] == 6 and stats["kept_fraction"] == 0.5
    assert stats["reward_mean"] == pytest.approx((3 + 9 + 21 + 6 + 6 + 5) / 6)
    assert stats["n_held_transitions"] == 5


def _synthetic_run(spec, n_groups=2, size=4, T=64, rollouts=30, seed=0):
    """CartPole-like: episodes of random lengths (3 to 60 steps), members at their own pace."""
    rng = np.random.default_rng(seed)
    E = n_groups * size
    buf = FilteredRolloutBuffer(
        T, OBS, ACT, device="cpu", n_envs=E, filter=spec, seed=seed, group_size=size
    )
    left = rng.integers(3, 60, size=E)  # steps left in each env's current episode
    rounds = np.zeros(E, dtype=int)
    start_next = np.ones(E, dtype=bool)
    ranked, kept, trained, sizes = 0, 0, [], []
    for r in range(rollouts):
        buf.reset()
        rewards = rng.normal(size=(T, E))
        starts = np.zeros((T, E))
        groups = np.zeros((T, E), dtype=int)
        for t in range(T):
            starts[t] = start_next
            groups[t] = rounds * n_groups + np.arange(E) // size
            left -= 1
            done = left == 0
            rounds[done] += 1
            left[done] = rng.integers(3, 60, size=int(done.sum()))
            start_next = done
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fill(buf, rewards, starts, groups, start_next, rollout=r)
        stats = buf.last_stats
        ranked += stats["n_samples"]
        kept += int((buf.last_episode_weights > 0).sum())
        if stats["n_samples"]:
            sizes.append(stats["group_size_mean"])
        trained += yielded(buf, 32)
    return ranked, kept, trained, sizes


@pytest.mark.parametrize(("spec", "k"), [("bon", 1), ("br", 2), ("bw", 2), ("random:2", 2)])
def test_kept_fractions_are_k_over_n_with_episodes_of_varied_length(spec, k):
    ranked, kept, trained, sizes = _synthetic_run(spec)
    assert ranked > 100
    assert kept / ranked == pytest.approx(k / 4)  # exactly: every ranked context has N = 4
    assert set(sizes) == {4.0}
    assert len(trained) == len(set(trained)), "a step was trained twice"


def test_filter_none_trains_every_step_of_every_rollout_once():
    ranked, kept, trained, _ = _synthetic_run("none", rollouts=5)
    assert kept == ranked and len(trained) == len(set(trained)) == 5 * 64 * 8


# -- reweight -------------------------------------------------------------------------


def test_reweight_normalises_per_context_and_draws_in_proportion():
    rewards, starts, groups, dones = scenario()
    buf = buffer("rank:3,1")
    fill(buf, rewards, starts, groups, dones)
    w = buf.last_episodes["weights"]
    for g in np.unique(buf.last_episodes["groups"]):
        assert w[buf.last_episodes["groups"] == g].sum() == pytest.approx(2.0)  # mean 1 per context
    np.random.seed(0)  # noqa: NPY002  (SB3 shuffles with the global RNG)
    counts: dict[tuple, int] = {}
    for _ in range(400):
        got = yielded(buf, batch_size=5)
        assert len(got) == 4 + 3 + 6 + 2  # as many as the ranked episodes hold
        for s in got:
            counts[s] = counts.get(s, 0) + 1
    assert set(counts) == steps(0, 0, 3) | steps(1, 0, 4) | steps(2, 0, 6) | steps(3, 0, 2)
    best = np.mean([counts[s] for s in steps(1, 0, 4)])
    second = np.mean([counts[s] for s in steps(0, 0, 3)])
    assert 2.5 < best / second < 3.5
    # no held (unranked) step is drawn: the cut and waiting episodes wait for their ranking
    assert not (steps(0, 3, 6) | steps(1, 4, 6) | steps(3, 2, 6)) & set(counts)


def test_unranked_rollout_is_used_once_with_equal_weights():
    buf = FilteredRolloutBuffer(4, OBS, ACT, device="cpu", n_envs=2, filter="rank:3,1", seed=0)
    starts = np.zeros((4, 2))
    starts[0] = 1
    with pytest.warns(UserWarning, match="No context completed"):
        fill(buf, np.ones((4, 2)), starts, np.zeros((4, 2), dtype=int), [False, False])
    got = yielded(buf, 3)
    assert sorted(got) == sorted(steps(0, 0, 4) | steps(1, 0, 4))
    assert buf.last_stats["fallback"] == 1 and buf.last_stats["n_unranked_transitions"] == 8


def test_nothing_kept_falls_back_to_the_ranked_episodes():
    buf = FilteredRolloutBuffer(3, OBS, ACT, device="cpu", n_envs=2, filter="threshold:100", seed=0)
    starts = np.zeros((3, 2))
    starts[0] = 1
    with pytest.warns(UserWarning, match="kept no episode"):
        fill(buf, np.ones((3, 2)), starts, np.zeros((3, 2), dtype=int), [True, True])
    assert len(yielded(buf, 4)) == 6
    assert buf.last_stats["fallback"] == 1


# -- minibatches ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kept", "batch", "sizes"),
    [(15, 4, [4, 4, 4, 3]), (5, 4, [5]), (14, 4, [4, 4, 3, 3]), (6, 4, [3, 3])],
)
def test_minibatches_have_equal_sizes(kept, batch, sizes):
    buf = FilteredRolloutBuffer(kept, OBS, ACT, device="cpu", n_envs=1, filter="none")
    starts = np.zeros((kept, 1))
    starts[0] = 1
    fill(buf, np.ones((kept, 1)), starts, np.zeros((kept, 1), dtype=int), [True])
    assert [len(b.observations) for b in buf.get(batch)] == sizes


def test_filter_none_yields_what_sb3_yields():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(8, 3))
    starts = (rng.random((8, 3)) < 0.2).astype(float)
    starts[0] = 1
    ours = FilteredRolloutBuffer(8, OBS, ACT, device="cpu", n_envs=3, filter="none")
    fill(ours, rewards, starts, np.zeros((8, 3), dtype=int), [False, True, False])
    theirs = RolloutBuffer(8, OBS, ACT, device="cpu", n_envs=3)
    for t in range(8):
        obs = np.array([[0, t, e] for e in range(3)], dtype=np.float32)
        theirs.add(
            obs,
            np.zeros((3, 1)),
            rewards[t].astype(np.float32),
            starts[t].astype(np.float32),
            th.zeros(3),
            th.zeros(3),
        )
    theirs.compute_returns_and_advantage(th.zeros(3), np.array([False, True, False]))
    for batch_size in (6, 8, None):  # sizes that divide 24: SB3's split is equal-sized too
        np.random.seed(1)  # noqa: NPY002  (SB3 shuffles with the global RNG)
        a = list(ours.get(batch_size))
        np.random.seed(1)  # noqa: NPY002
        b = list(theirs.get(batch_size))
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            for field in x._fields:
                assert th.equal(getattr(x, field), getattr(y, field)), field


# -- infos and bad rewards ---------------------------------------------------------------


def _add(buf, infos=None, reward=0.0):
    buf.add(
        np.zeros((1, 3)),
        np.zeros((1, 1)),
        np.array([reward], dtype=np.float32),
        np.ones(1),
        th.zeros(1),
        th.zeros(1),
        infos=infos,
    )


@pytest.mark.parametrize("spec", ["none", "br"])
def test_add_without_infos_is_an_error_whatever_the_filter(spec):
    buf = FilteredRolloutBuffer(2, OBS, ACT, device="cpu", n_envs=1, filter=spec)
    with pytest.raises(ValueError, match="FilterStatsCallback"):
        _add(buf)


def test_filters_need_group_ids_and_filter_none_does_not():
    with pytest.raises(ValueError, match="group_id"):
        _add(FilteredRolloutBuffer(2, OBS, ACT, device="cpu", n_envs=1, filter="br"), infos=[{}])
    _add(FilteredRolloutBuffer(2, OBS, ACT, device="cpu", n_envs=1, filter="none"), infos=[{}])


def test_infos_of_the_wrong_length_are_refused():
    buf = FilteredRolloutBuffer(2, OBS, ACT, device="cpu", n_envs=2, filter="none")
    with pytest.raises(ValueError, match="'infos' parameter"):
        buf.record_infos([{}])


def test_nan_observed_reward_is_reported_at_add_with_env_and_step():
    buf = FilteredRolloutBuffer(4, OBS, ACT, device="cpu", n_envs=2, filter="none")
    buf.add(
        np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), np.ones(2), th.zeros(2), th.zeros(2),
        infos=[{"observed_reward": 1.0}, {"observed_reward": 2.0}],
    )  # fmt: skip
    with pytest.raises(ValueError, match="env 1 at step 1 .* nan"):
        buf.add(
            np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), np.zeros(2), th.zeros(2), th.zeros(2),
            infos=[{"observed_reward": 1.0}, {"observed_reward": float("nan")}],
        )  # fmt: skip
    plain = FilteredRolloutBuffer(4, OBS, ACT, device="cpu", n_envs=2, filter="none")
    with pytest.raises(ValueError, match="env 0 at step 0 .* inf"):  # no observed_reward info
        plain.add(
            np.zeros((2, 3)), np.zeros((2, 1)), np.array([np.inf, 0.0]), np.ones(2), th.zeros(2),
            th.zeros(2), infos=[{}, {}],
        )  # fmt: skip


def test_nan_true_reward_warns_and_is_left_out_of_the_statistics():
    rewards, starts, groups, dones = scenario()
    true = rewards.copy()
    true[1, 2] = np.nan  # env2's episode (gid 1) has no true score
    buf = buffer("none")
    with pytest.warns(UserWarning, match="true reward of env 2 at step 1"):
        fill(buf, rewards, starts, groups, dones, true=true)
    stats = buf.last_stats
    assert stats["scores_skipped"] == 1 and stats["n_samples"] == 5
    assert stats["score_mean"] == pytest.approx((3 + 8 + 10 + 3) / 4)
    assert np.isfinite(stats["r2"])
    assert len(yielded(buf, 8)) == 24  # training goes on


def test_ranking_uses_observed_rewards_not_bootstrapped_ones():
    rewards, starts, groups, dones = scenario()
    buf = buffer("bon")
    T, E = rewards.shape
    for t in range(T):
        infos = [
            {"group_id": int(groups[t, e]), "observed_reward": float(rewards[t, e])}
            for e in range(E)
        ]
        sb3_rewards = rewards[t] + (100.0 if t == 2 else 0.0)  # as if SB3 had added a bootstrap
        buf.add(
            np.array([[0, t, e] for e in range(E)], dtype=np.float32),
            np.zeros((E, 1)),
            sb3_rewards.astype(np.float32),
            starts[t].astype(np.float32),
            th.zeros(E),
            th.zeros(E),
            infos=infos,
        )
    buf.compute_returns_and_advantage(th.zeros(E), np.asarray(dones))
    assert set(yielded(buf, 8)) == steps(1, 0, 4) | steps(3, 0, 2)


def test_rank_by_true_return_ranks_by_the_score():
    rewards, starts, groups, dones = scenario()
    true = -rewards  # the true score reverses every ranking
    buf = buffer("bon", rank_by="true")
    fill(buf, rewards, starts, groups, dones, true=true)
    assert set(yielded(buf, 8)) == steps(0, 0, 3) | steps(2, 0, 6)
    with pytest.raises(ValueError, match="'rank_by' parameter"):
        buffer("bon", rank_by="noisy")


def test_uncertainty_needs_an_ensemble_and_uses_it():
    rewards, starts, groups, dones = scenario()
    with pytest.raises(ValueError, match="ensemble"):
        fill(buffer("uncertainty:0.5"), rewards, starts, groups, dones)
    ens = np.zeros((6, 4, 2))
    ens[:, 1] = [[0.0, 4.0]] * 6  # env1's first episode: high disagreement -> dropped within gid 0
    ens[:, 0] = [[1.0, 1.0]] * 6
    ens[:, 2] = [[0.0, 1.0]] * 6
    ens[:, 3] = [[5.0, 5.0]] * 6
    buf = buffer("uncertainty:0.5")
    fill(buf, rewards, starts, groups, dones, ensembles=ens)
    got = set(yielded(buf, 6))
    assert got == steps(0, 0, 3) | steps(3, 0, 2)  # env2 disagrees more than env3 in gid 1
    assert buf.last_stats["ensemble_std_mean"] > 0


def test_adaptive_is_refitted_on_the_episodes_of_the_last_rollouts(monkeypatch):
    """One rollout is too little to choose a filter by R²: it pools a window of rollouts."""
    buf = buffer("adaptive", adaptive_window=2)
    seen = []
    real_fit = buf.filter.fit

    def spy(rewards, scores, groups, **kwargs):
        seen.append((np.asarray(rewards).copy(), np.asarray(groups).copy()))
        return real_fit(rewards, scores, groups, **kwargs)

    monkeypatch.setattr(buf.filter, "fit", spy)
    rewards, starts, groups, dones = scenario()
    for r in range(3):
        buf.reset()
        # every rollout: gids 0, 1 and 2 complete (renamed per rollout so that none repeats)
        fill(buf, rewards, starts, groups + 10 * r, [True] * 4, rollout=r)
    assert [len(x) for x, _ in seen] == [6, 12, 12]
    rewards_seen, groups_seen = seen[-1]
    np.testing.assert_array_equal(rewards_seen[:6], rewards_seen[6:])  # the same scenario twice
    assert set(groups_seen[:6]).isdisjoint(groups_seen[6:])  # ... its contexts kept apart
    assert buf.last_episodes["weights"].shape == (buf.last_stats["n_samples"],)


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_adaptive_window_must_be_a_positive_int(window):
    with pytest.raises(ValueError, match="adaptive_window"):
        buffer("none", adaptive_window=window)


def test_filter_module_keeps_the_core_contract():
    assert rf.make_filter("bon").is_binary and not rf.make_filter("rank:3,1").is_binary


def test_top1_correct_is_the_core_metric_over_fully_scored_contexts():
    from rewardfilter.adapters.sb3 import stats
    from rewardfilter.adapters.sb3.episodes import Episode

    # one definition of the metric: the core's (noisy ties counted in expectation, contexts
    # of equal true returns left out); a context with an unscored episode is left out too
    assert not hasattr(stats, "top1_correct")
    noisy = [1.0, 1.0, 2.0, 1.0, 5.0, 0.0, 0.0, 4.0, 7.0]
    true = [0.0, 1.0, 3.0, 3.0, 1.0, np.nan, 0.0, 2.0, 1.0]
    context = [0, 0, 1, 1, 2, 2, 3, 3, 4]  # context 4 has one episode: not counted
    eps = [
        Episode(uid=i, context=c, env=i, noisy=n, true=t, done=True, length=1)
        for i, (n, t, c) in enumerate(zip(noisy, true, context, strict=True))
    ]
    record = stats.episode_stats(eps, 0)
    assert record["top1_correct"] == (0.5 + 1.0) / 2
    scored = [0, 1, 2, 3, 6, 7, 8]
    expect = rf.top1_correct(*(np.take(a, scored) for a in (noisy, true, context)))
    assert record["top1_correct"] == expect
    assert math.isnan(stats.episode_stats(eps[4:6], 0)["top1_correct"])
    rewards, starts, groups, dones = scenario()
    buf = buffer("none")
    fill(buf, rewards, starts, groups, dones, true=-rewards)
    assert buf.last_stats["top1_correct"] == 0.0
