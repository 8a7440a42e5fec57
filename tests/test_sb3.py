"""SB3 adapter: grouped vec env, FilteredRolloutBuffer rules, PPO/A2C with every filter."""

from __future__ import annotations

import csv
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import rewardfilter as rf
from rewardfilter.adapters.sb3 import (
    FilteredDictRolloutBuffer,
    FilteredRolloutBuffer,
    FilterStatsCallback,
    GroupMember,
    make_grouped_vec_env,
)
from rewardfilter.envs import CACHE_ENV_VAR

th.set_num_threads(1)

TINY = {"n_members": 3, "n_transitions": 200, "max_iter": 20, "hidden_sizes": (8,)}
OBS = spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACT = spaces.Discrete(2)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path_factory.getbasetemp() / "rf-cache"))


# -- synthetic buffers ---------------------------------------------------------


def fill(buf, rewards, starts, groups, last_dones, ensembles=None):
    """Add T steps to ``buf``; the observation of (step t, env e) is [t, e] so yields can be traced."""
    T, E = rewards.shape
    for t in range(T):
        obs = np.array([[t, e] for e in range(E)], dtype=np.float32)
        infos = []
        for e in range(E):
            info = {
                "group_id": int(groups[t, e]),
                "observed_reward": float(rewards[t, e]),
                "true_reward": float(rewards[t, e]),
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

    env0: episode [0,3) return 3 (gid 0), episode [3,6) return 3 ends at the buffer end (gid 2, alone)
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


def steps(env, a, b):
    return {(t, env) for t in range(a, b)}


def test_buffer_yields_exactly_the_kept_episodes():
    buf = FilteredRolloutBuffer(6, OBS, ACT, device="cpu", n_envs=4, filter="bon", seed=0)
    fill(buf, *scenario())
    # bon keeps env1's first episode (8 > 3), env3's first (10 > 3), env0's second (alone in gid 2);
    # it drops env0's first and env2's; the cut episodes of env1 and env3 are kept unranked
    expected = steps(0, 3, 6) | steps(1, 0, 6) | steps(3, 0, 6)
    got = yielded(buf, batch_size=4)
    assert len(got) == len(set(got)) == 15
    assert set(got) == expected
    stats = buf.last_stats
    assert stats["n_episodes"] == 5
    assert stats["n_kept_transitions"] == 15
    assert stats["n_unranked_transitions"] == 6
    assert stats["kept_fraction"] == pytest.approx(15 / 24)
    assert stats["noisy_return_mean"] == pytest.approx((3 + 3 + 8 + 3 + 10) / 5)
    assert stats["group_size_mean"] == pytest.approx(5 / 3)  # gid 0 and 1: two episodes, gid 2: one
    np.testing.assert_array_equal(sorted(buf.last_episode_weights), [0, 0, 1, 1, 1])
    # another epoch: the same set, another order
    assert set(yielded(buf, batch_size=None)) == expected


@pytest.mark.parametrize("spec", ["none", "bw", "random:2", "topk:2"])
def test_filters_that_keep_every_episode_here_yield_everything_once(spec):
    buf = FilteredRolloutBuffer(6, OBS, ACT, device="cpu", n_envs=4, filter=spec, seed=0)
    fill(buf, *scenario())
    got = yielded(buf, batch_size=5)
    assert len(got) == len(set(got)) == 24


def test_ranking_uses_observed_rewards_not_bootstrapped_ones():
    rewards, starts, groups, dones = scenario()
    buf = FilteredRolloutBuffer(6, OBS, ACT, device="cpu", n_envs=4, filter="bon", seed=0)
    T, E = rewards.shape
    for t in range(T):
        obs = np.array([[t, e] for e in range(E)], dtype=np.float32)
        infos = [
            {"group_id": int(groups[t, e]), "observed_reward": float(rewards[t, e])}
            for e in range(E)
        ]
        sb3_rewards = rewards[t] + (
            100.0 if t == 2 else 0.0
        )  # as if SB3 had added a large bootstrap
        buf.add(
            obs,
            np.zeros((E, 1)),
            sb3_rewards.astype(np.float32),
            starts[t].astype(np.float32),
            th.zeros(E),
            th.zeros(E),
            infos=infos,
        )
    buf.compute_returns_and_advantage(th.zeros(E), np.asarray(dones))
    assert set(yielded(buf, 8)) == steps(0, 3, 6) | steps(1, 0, 6) | steps(3, 0, 6)


def test_cut_episodes_are_ranked_by_their_full_return_when_they_end():
    buf = FilteredRolloutBuffer(4, OBS, ACT, device="cpu", n_envs=2, filter="bon", seed=0)
    # rollout 1: both members of group 0 run the whole buffer: nothing can be ranked, all kept
    rewards = np.array([[2.5, 0.0]] * 4)
    starts = np.zeros((4, 2))
    starts[0] = 1
    fill(buf, rewards, starts, np.zeros((4, 2), dtype=int), [False, False])
    assert len(yielded(buf, 3)) == 8
    assert buf.last_stats["n_episodes"] == 0 and buf.last_stats["n_unranked_transitions"] == 8
    # rollout 2: both end at step 0; env1 earns more *in this rollout* (5 vs 0), env0 more in total (10 vs 5)
    buf.reset()
    rewards = np.array([[0.0, 5.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    starts = np.zeros((4, 2))
    starts[1] = 1
    groups = np.array([[0, 0], [1, 1], [1, 1], [1, 1]])
    fill(buf, rewards, starts, groups, [False, False])
    assert set(yielded(buf, 3)) == steps(0, 0, 4) | steps(1, 1, 4)
    assert buf.last_stats["noisy_return_mean"] == pytest.approx(7.5)
    assert buf.last_stats["n_episodes"] == 2


def test_nothing_kept_falls_back_to_the_whole_rollout():
    buf = FilteredRolloutBuffer(3, OBS, ACT, device="cpu", n_envs=2, filter="threshold:100", seed=0)
    starts = np.zeros((3, 2))
    starts[0] = 1
    with pytest.warns(UserWarning, match="kept no step"):
        fill(buf, np.ones((3, 2)), starts, np.zeros((3, 2), dtype=int), [True, True])
    assert len(yielded(buf, 4)) == 6
    assert buf.last_stats["fallback"] == 1


def test_rank_weights_draw_with_replacement_in_proportion():
    rewards, starts, groups, dones = scenario()
    buf = FilteredRolloutBuffer(6, OBS, ACT, device="cpu", n_envs=4, filter="rank:3,0", seed=0)
    fill(buf, rewards, starts, groups, dones)
    np.random.seed(0)  # noqa: NPY002  (SB3 shuffles with the global RNG)
    counts: dict[tuple[int, int], int] = {}
    epochs = 300
    for _ in range(epochs):
        got = yielded(buf, batch_size=10)
        assert len(got) == 24  # as many as the buffer holds
        for s in got:
            counts[s] = counts.get(s, 0) + 1
    # rank 1 of each two-episode group gets weight 0: never drawn
    dropped = steps(0, 0, 3) | steps(2, 0, 6)
    assert not dropped & set(counts)
    # weight 3 (best episodes) vs weight 1 (unranked cut episodes): about 3 times as often
    best = np.mean([counts[s] for s in steps(1, 0, 4)])
    unranked = np.mean([counts[s] for s in steps(3, 2, 6)])
    assert 2.4 < best / unranked < 3.6
    assert buf.last_stats["n_kept_transitions"] == 15


def test_filter_none_yields_what_sb3_yields():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(8, 3))
    starts = (rng.random((8, 3)) < 0.2).astype(float)
    starts[0] = 1
    ours = FilteredRolloutBuffer(8, OBS, ACT, device="cpu", n_envs=3, filter="none")
    fill(ours, rewards, starts, np.zeros((8, 3), dtype=int), [False, True, False])
    theirs = RolloutBuffer(8, OBS, ACT, device="cpu", n_envs=3)
    for t in range(8):
        obs = np.array([[t, e] for e in range(3)], dtype=np.float32)
        theirs.add(
            obs,
            np.zeros((3, 1)),
            rewards[t].astype(np.float32),
            starts[t].astype(np.float32),
            th.zeros(3),
            th.zeros(3),
        )
    theirs.compute_returns_and_advantage(th.zeros(3), np.array([False, True, False]))
    for batch_size in (5, None):
        np.random.seed(1)  # noqa: NPY002  (SB3 shuffles with the global RNG)
        a = list(ours.get(batch_size))
        np.random.seed(1)  # noqa: NPY002  (SB3 shuffles with the global RNG)
        b = list(theirs.get(batch_size))
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            for field in x._fields:
                assert th.equal(getattr(x, field), getattr(y, field)), field


def test_buffer_needs_group_infos_unless_unfiltered():
    buf = FilteredRolloutBuffer(2, OBS, ACT, device="cpu", n_envs=1, filter="br")
    with pytest.raises(ValueError, match="infos"):
        buf.add(
            np.zeros((1, 2)), np.zeros((1, 1)), np.zeros(1), np.ones(1), th.zeros(1), th.zeros(1)
        )
    with pytest.raises(ValueError, match="group_id"):
        buf.add(
            np.zeros((1, 2)),
            np.zeros((1, 1)),
            np.zeros(1),
            np.ones(1),
            th.zeros(1),
            th.zeros(1),
            infos=[{}],
        )
    plain = FilteredRolloutBuffer(2, OBS, ACT, device="cpu", n_envs=1, filter="none")
    plain.add(np.zeros((1, 2)), np.zeros((1, 1)), np.zeros(1), np.ones(1), th.zeros(1), th.zeros(1))


def test_uncertainty_needs_an_ensemble_and_uses_it():
    rewards, starts, groups, dones = scenario()
    buf = FilteredRolloutBuffer(
        6, OBS, ACT, device="cpu", n_envs=4, filter="uncertainty:0.5", seed=0
    )
    with pytest.raises(ValueError, match="ensemble"):
        fill(buf, rewards, starts, groups, dones)
    ens = np.zeros((6, 4, 2))
    ens[:, 1] = [[0.0, 4.0]] * 6  # env1's first episode: high disagreement -> dropped within gid 0
    ens[:, 0] = [[1.0, 1.0]] * 6
    ens[:, 2] = [[0.0, 1.0]] * 6
    ens[:, 3] = [[5.0, 5.0]] * 6
    buf = FilteredRolloutBuffer(
        6, OBS, ACT, device="cpu", n_envs=4, filter="uncertainty:0.5", seed=0
    )
    fill(buf, rewards, starts, groups, dones, ensembles=ens)
    got = set(yielded(buf, 6))
    assert not steps(1, 0, 4) & got and steps(0, 0, 3) <= got
    assert not steps(2, 0, 6) & got  # env2 disagrees more than env3 in gid 1
    assert buf.last_stats["ensemble_std_mean"] > 0


# -- grouped vec env -----------------------------------------------------------


def test_group_members_start_every_episode_from_the_same_state():
    venv = make_grouped_vec_env("rewardfilter/CartPole-v1", n_groups=3, group_size=2, seed=5)
    obs = venv.reset()
    np.testing.assert_array_equal(obs[0], obs[1])
    np.testing.assert_array_equal(obs[4], obs[5])
    assert not np.array_equal(obs[0], obs[2])
    starts: dict[int, list[np.ndarray]] = {}
    for i in range(6):
        starts.setdefault(i // 2, []).append(obs[i])
    rng = np.random.default_rng(0)
    for _ in range(150):
        obs, _, dones, infos = venv.step(rng.integers(0, 2, size=6))
        for i, done in enumerate(dones):
            if done:  # obs[i] is already the next episode's first observation
                starts.setdefault(infos[i]["group_id"] + 3, []).append(obs[i])
    full = [v for v in starts.values() if len(v) == 2]
    assert len(full) >= 10
    for pair in full:
        np.testing.assert_array_equal(pair[0], pair[1])
    firsts = [tuple(v[0]) for v in starts.values()]
    assert len(set(firsts)) == len(firsts)


def test_group_members_have_independent_reward_noise():
    venv = make_grouped_vec_env(
        "rewardfilter/Pendulum-v1", n_groups=1, group_size=2, env_kwargs={"noise": "gaussian"}
    )
    venv.reset()
    _, rewards, _, infos = venv.step(np.zeros((2, 1)))
    assert infos[0]["true_reward"] == infos[1]["true_reward"]
    assert rewards[0] != rewards[1]
    assert infos[0]["observed_reward"] == pytest.approx(rewards[0])
    assert (infos[0]["group_id"], infos[1]["group_id"]) == (0, 0)
    assert (infos[0]["member"], infos[1]["member"]) == (0, 1)


def test_grouped_env_is_reproducible():
    def first_rewards():
        venv = make_grouped_vec_env(
            "rewardfilter/Pendulum-v1",
            n_groups=2,
            group_size=2,
            seed=3,
            env_kwargs={"noise": "heteroscedastic"},
        )
        venv.reset()
        return np.array([venv.step(np.full((4, 1), 0.5))[1] for _ in range(5)])

    np.testing.assert_array_equal(first_rewards(), first_rewards())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env_id": "rewardfilter/Nope-v0", "n_groups": 2, "group_size": 2}, "Unknown task"),
        (
            {"env_id": "rewardfilter/CartPole-v1", "n_groups": None, "group_size": 3, "n_envs": 8},
            "does not divide",
        ),
        ({"env_id": "rewardfilter/CartPole-v1", "n_groups": 0, "group_size": 2}, "n_groups"),
        ({"env_id": "rewardfilter/CartPole-v1", "n_groups": 2, "group_size": 0}, "group_size"),
        (
            {
                "env_id": "rewardfilter/CartPole-v1",
                "n_groups": 2,
                "group_size": 2,
                "env_kwargs": {"noise": "bogus"},
            },
            "Unknown noise",
        ),
        (
            {
                "env_id": "rewardfilter/CartPole-v1",
                "n_groups": 2,
                "group_size": 2,
                "env_kwargs": {"noise": "gaussian", "noise_kwargs": {"std": -1}},
            },
            "'std'",
        ),
    ],
)
def test_grouped_env_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_grouped_vec_env(**kwargs)


def test_buffer_checks_group_size_against_envs_and_filter():
    with pytest.raises(ValueError, match="does not divide"):
        FilteredRolloutBuffer(4, OBS, ACT, n_envs=6, filter="br", group_size=4)
    with pytest.raises(ValueError, match="rank weights"):
        FilteredRolloutBuffer(4, OBS, ACT, n_envs=6, filter="rank:0.4,0.1,0.1", group_size=2)
    with pytest.raises(ValueError, match="Unknown filter spec"):
        FilteredRolloutBuffer(4, OBS, ACT, n_envs=2, filter="best-of-all")
    venv = make_grouped_vec_env("rewardfilter/CartPole-v1", n_groups=4, group_size=1)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=8,
        device="cpu",
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": "br"},
    )
    with pytest.raises(ValueError, match="at least 2"):  # learned from the infos at the first step
        model.learn(32)


# -- PPO / A2C end to end --------------------------------------------------------

SPECS = [
    "none",
    "random:2",
    "bon",
    "br",
    "bw",
    "topk:2",
    "threshold:15",
    "rank:0.4,0.2,0.2,0.2",
    "uncertainty:0.4",
    "adaptive",
]


def _params(model):
    return th.cat([p.detach().flatten() for p in model.policy.parameters()]).clone()


def _train(algo, spec, seed=0, rollouts=3, env_id="rewardfilter/CartPole-v1"):
    noise = "learned" if spec.startswith("uncertainty") else "gaussian"
    noise_kwargs = TINY if noise == "learned" else {"std": 0.2}
    venv = make_grouped_vec_env(
        env_id,
        n_groups=2,
        group_size=4,
        seed=seed,
        env_kwargs={"noise": noise, "noise_kwargs": noise_kwargs},
    )
    extra = {"batch_size": 64, "n_epochs": 2} if algo is PPO else {}
    model = algo(
        "MlpPolicy",
        venv,
        n_steps=32,
        seed=seed,
        device="cpu",
        policy_kwargs={"net_arch": [16]},
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": spec},
        **extra,
    )
    callback = FilterStatsCallback()
    before = _params(model)
    model.learn(32 * 8 * rollouts, callback=callback)
    return model, callback, before


@pytest.mark.parametrize("algo", [PPO, A2C], ids=["PPO", "A2C"])
@pytest.mark.parametrize("spec", SPECS)
def test_algorithms_train_with_every_filter(algo, spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # threshold may keep nothing in a rollout
        model, callback, before = _train(algo, spec)
    assert len(callback.history) == 3
    assert not th.equal(before, _params(model)), "the policy must have been updated"
    assert sum(h["n_episodes"] for h in callback.history) > 10
    fractions = [h["kept_fraction"] for h in callback.history]
    assert all(0 < f <= 1 for f in fractions)
    if spec in ("bon", "br", "random:2", "topk:2", "uncertainty:0.4"):
        assert min(fractions) < 1, "a ranked filter must drop some steps"
    if spec == "uncertainty:0.4":
        assert all(h["ensemble_std_mean"] > 0 for h in callback.history if h["n_episodes"])
    if spec == "adaptive":
        assert model.rollout_buffer.filter.chosen_ is not None


def test_full_ppo_run_with_filter_none_matches_sb3_buffer():
    def run(buffer_kwargs):
        venv = make_grouped_vec_env(
            "rewardfilter/CartPole-v1", n_groups=2, group_size=2, env_kwargs={"noise": "gaussian"}
        )
        model = PPO(
            "MlpPolicy",
            venv,
            n_steps=32,
            batch_size=32,
            n_epochs=2,
            seed=1,
            device="cpu",
            policy_kwargs={"net_arch": [16]},
            **buffer_kwargs,
        )
        model.learn(32 * 4 * 3)
        return _params(model)

    sb3 = run({})
    ours = run(
        {"rollout_buffer_class": FilteredRolloutBuffer, "rollout_buffer_kwargs": {"filter": "none"}}
    )
    filtered = run(
        {"rollout_buffer_class": FilteredRolloutBuffer, "rollout_buffer_kwargs": {"filter": "bon"}}
    )
    assert th.equal(sb3, ours)
    assert not th.equal(sb3, filtered)


@pytest.mark.parametrize(
    ("group_size", "noise", "spec"),
    [(1, "gaussian", "none"), (4, "none", "br"), (4, "gaussian", "none")],
    ids=["PPO-S", "oracle", "PPO-M"],
)
def test_baselines_with_the_same_buffer(group_size, noise, spec):
    venv = make_grouped_vec_env(
        "rewardfilter/CartPole-v1",
        n_groups=8 // group_size,
        group_size=group_size,
        env_kwargs={"noise": noise},
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        device="cpu",
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": spec},
    )
    model.learn(32 * 8 * 2)
    stats = model.rollout_buffer.last_stats
    assert stats["n_episodes"] > 0
    if noise == "none":  # the oracle: noisy and true returns coincide
        assert stats["noisy_return_mean"] == stats["true_return_mean"] and stats["r2"] == 1.0
    if spec == "none":
        assert stats["kept_fraction"] == 1.0


def test_infos_reach_the_buffer_through_vec_normalize():
    venv = VecNormalize(
        make_grouped_vec_env(
            "rewardfilter/CartPole-v1", n_groups=2, group_size=4, env_kwargs={"noise": "none"}
        )
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        seed=0,
        device="cpu",
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": "bon"},
    )
    model.learn(32 * 8 * 2)
    stats = model.rollout_buffer.last_stats
    # ranked by the env's own episode returns, not VecNormalize's scaled rewards
    assert stats["noisy_return_mean"] == stats["true_return_mean"] > 5
    assert stats["kept_fraction"] < 1


def test_filtered_runs_are_reproducible():
    a, _, _ = _train(PPO, "br", seed=4, rollouts=2)
    b, _, _ = _train(PPO, "br", seed=4, rollouts=2)
    assert th.equal(_params(a), _params(b))


def test_prefitted_adaptive_filter_is_kept():
    adaptive = rf.make_filter("adaptive")
    rng = np.random.default_rng(0)
    true = rng.normal(size=40)
    adaptive.fit(true + rng.normal(scale=0.1, size=40), true, np.repeat(np.arange(10), 4), rng=0)
    chosen = adaptive.chosen_.spec
    venv = make_grouped_vec_env("rewardfilter/CartPole-v1", n_groups=2, group_size=4)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        device="cpu",
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": adaptive, "refit_adaptive": False},
    )
    model.learn(32 * 8 * 2)
    assert model.rollout_buffer.filter.chosen_.spec == chosen


class _DictObs(gym.ObservationWrapper):
    def __init__(self, env):
        super().__init__(env)
        self.observation_space = spaces.Dict({"state": env.observation_space})

    def observation(self, observation):
        return {"state": observation}


def test_dict_observation_buffer_trains_with_ppo():
    n_groups, size = 2, 2

    def factory(i):
        return lambda: GroupMember(
            _DictObs(gym.make("rewardfilter/CartPole-v1")),
            group=i // size,
            member=i % size,
            n_groups=n_groups,
        )

    venv = DummyVecEnv([factory(i) for i in range(n_groups * size)])
    model = PPO(
        "MultiInputPolicy",
        venv,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        seed=0,
        device="cpu",
        rollout_buffer_class=FilteredDictRolloutBuffer,
        rollout_buffer_kwargs={"filter": "bon"},
    )
    before = _params(model)
    model.learn(64 * 4 * 2)
    stats = model.rollout_buffer.last_stats
    assert stats["n_episodes"] > 0 and stats["kept_fraction"] < 1
    assert not th.equal(before, _params(model))


def test_callback_logs_to_the_sb3_logger(tmp_path):
    venv = make_grouped_vec_env(
        "rewardfilter/CartPole-v1",
        n_groups=2,
        group_size=2,
        env_kwargs={"noise": "learned", "noise_kwargs": TINY},
    )
    model = A2C(
        "MlpPolicy",
        venv,
        n_steps=32,
        device="cpu",
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": "br"},
    )
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(32 * 4 * 2, callback=FilterStatsCallback(), log_interval=1)
    with open(tmp_path / "progress.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for key in (
        "kept_fraction",
        "filtered_r2",
        "noisy_return_mean",
        "true_return_mean",
        "ensemble_std_mean",
        "n_episodes",
        "n_kept_transitions",
    ):
        assert f"filter/{key}" in rows[0], key
    assert float(rows[-1]["filter/kept_fraction"]) <= 1.0


def test_callback_needs_a_filtered_buffer():
    venv = make_grouped_vec_env("rewardfilter/CartPole-v1", n_groups=1, group_size=2)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, device="cpu")
    with pytest.raises(ValueError, match="FilteredRolloutBuffer"):
        model.learn(16, callback=FilterStatsCallback())


@pytest.mark.slow
def test_ppo_with_the_true_reward_learns_cartpole():
    from stable_baselines3.common.evaluation import evaluate_policy

    venv = make_grouped_vec_env(
        "rewardfilter/CartPole-v1",
        n_groups=4,
        group_size=2,
        seed=0,
        env_kwargs={"noise": "none", "episode_level": False},
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=1e-3,
        ent_coef=0.0,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [64, 64]},
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": "none"},
    )
    model.learn(40_000)
    mean, _ = evaluate_policy(
        model, gym.make("CartPole-v1"), n_eval_episodes=10, deterministic=True
    )
    assert mean >= 300, f"PPO reached only {mean:.0f} on CartPole"


def test_adaptive_is_refitted_on_the_episodes_of_the_last_rollouts(monkeypatch):
    """One rollout is too little to choose a filter by R²: it pools a window of rollouts."""
    buf = FilteredRolloutBuffer(
        6, OBS, ACT, device="cpu", n_envs=4, filter="adaptive", seed=0, adaptive_window=2
    )
    seen = []
    real_fit = buf.filter.fit

    def spy(rewards, scores, groups, **kwargs):
        seen.append((np.asarray(rewards).copy(), np.asarray(groups).copy()))
        return real_fit(rewards, scores, groups, **kwargs)

    monkeypatch.setattr(buf.filter, "fit", spy)
    for _ in range(3):
        buf.reset()
        fill(buf, *scenario())
    # 5 finished episodes per rollout; the window holds at most 2 rollouts
    assert [len(r) for r, _ in seen] == [5, 10, 10]
    rewards, groups = seen[-1]
    np.testing.assert_array_equal(rewards[:5], rewards[5:])  # the same scenario twice ...
    assert set(groups[:5]).isdisjoint(groups[5:])  # ... but its groups kept apart per rollout
    np.testing.assert_array_equal(buf.last_episodes["noisy"], rewards[5:])
    assert buf.last_episodes["weights"].shape == (5,)


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_adaptive_window_must_be_a_positive_int(window):
    with pytest.raises(ValueError, match="adaptive_window"):
        FilteredRolloutBuffer(6, OBS, ACT, device="cpu", n_envs=4, adaptive_window=window)


def test_pooled_r2_counts_every_rollout_of_the_window():
    from rewardfilter.experiments.domains.control import pooled_r2

    rng = np.random.default_rng(0)
    true = rng.normal(size=(3, 8))
    noisy = true + rng.normal(scale=0.5, size=(3, 8))
    weights = (rng.random((3, 8)) < 0.5).astype(float)
    weights[:, 0] = 1.0
    episodes = [
        {"noisy": n, "true": t, "weights": w} for n, t, w in zip(noisy, true, weights, strict=True)
    ]
    filtered, everything = pooled_r2(episodes)
    kept = weights.ravel() > 0
    assert filtered == pytest.approx(rf.r2(noisy.ravel()[kept], true.ravel()[kept]))
    assert everything == pytest.approx(rf.r2(noisy.ravel(), true.ravel()))
    # two kept episodes alone give R² = 1 by construction: the reason to pool
    assert (
        pooled_r2([{"noisy": noisy[0, :2], "true": true[0, :2], "weights": np.ones(2)}])[0] == 1.0
    )
    assert all(np.isnan(pooled_r2([])))
