"""SB3 adapter: grouped vec env, PPO/A2C with every filter, the callback (buffer rules: test_sb3_buffer.py)."""

from __future__ import annotations

import csv
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
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
        model.learn(32, callback=FilterStatsCallback())


def filtered_ppo(venv, spec, *, buffer_kwargs=None, **kwargs):
    """A small PPO on ``venv`` with ``FilteredRolloutBuffer(filter=spec)``; ``kwargs`` add to PPO's."""
    return PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        device="cpu",
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": spec, **(buffer_kwargs or {})},
        **kwargs,
    )


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
    assert sum(h["n_samples"] for h in callback.history) > 10
    fractions = [h["kept_fraction"] for h in callback.history]
    assert all(0 < f <= 1 for f in fractions)
    if spec in ("bon", "br", "random:2", "topk:2", "uncertainty:0.4"):
        assert min(fractions) < 1, "a ranked filter must drop some steps"
    if spec == "uncertainty:0.4":
        assert all(h["ensemble_std_mean"] > 0 for h in callback.history if h["n_samples"])
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
        filtered = "rollout_buffer_class" in buffer_kwargs
        model.learn(32 * 4 * 3, callback=FilterStatsCallback() if filtered else None)
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
    model = filtered_ppo(venv, spec)
    model.learn(32 * 8 * 2, callback=FilterStatsCallback())
    stats = model.rollout_buffer.last_stats
    assert stats["n_samples"] > 0
    if noise == "none":  # the oracle: noisy and true returns coincide
        assert stats["reward_mean"] == stats["score_mean"] and stats["r2"] == 1.0
    if spec == "none":
        assert stats["kept_fraction"] == 1.0


def test_infos_reach_the_buffer_through_vec_normalize():
    venv = VecNormalize(
        make_grouped_vec_env(
            "rewardfilter/CartPole-v1", n_groups=2, group_size=4, env_kwargs={"noise": "none"}
        )
    )
    model = filtered_ppo(venv, "bon", seed=0)
    model.learn(32 * 8 * 2, callback=FilterStatsCallback())
    stats = model.rollout_buffer.last_stats
    # ranked by the env's own episode returns, not VecNormalize's scaled rewards
    assert stats["reward_mean"] == stats["score_mean"] > 5
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
    model = filtered_ppo(venv, adaptive, buffer_kwargs={"refit_adaptive": False})
    model.learn(32 * 8 * 2, callback=FilterStatsCallback())
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
    model.learn(64 * 4 * 2, callback=FilterStatsCallback())
    stats = model.rollout_buffer.last_stats
    assert stats["n_samples"] > 0 and stats["kept_fraction"] < 1
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
        "reward_mean",
        "score_mean",
        "ensemble_std_mean",
        "n_samples",
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
    model.learn(40_000, callback=FilterStatsCallback())
    mean, _ = evaluate_policy(
        model, gym.make("CartPole-v1"), n_eval_episodes=10, deterministic=True
    )
    assert mean >= 300, f"PPO reached only {mean:.0f} on CartPole"


def test_pooled_r2_counts_every_rollout_of_the_window():
    from rewardfilter.experiments.domains.control import pooled_r2

    rng = np.random.default_rng(0)
    true = rng.normal(size=(3, 8))
    noisy = true + rng.normal(scale=0.5, size=(3, 8))
    weights = (rng.random((3, 8)) < 0.5).astype(float)
    weights[:, 0] = 1.0
    episodes = [
        {"noisy": n, "true": t, "weights": w, "groups": np.arange(8) // 4 + 2 * i}
        for i, (n, t, w) in enumerate(zip(noisy, true, weights, strict=True))
    ]
    filtered, everything = pooled_r2(episodes)
    kept = weights.ravel() > 0
    assert filtered == pytest.approx(rf.r2(noisy.ravel()[kept], true.ravel()[kept]))
    assert everything == pytest.approx(rf.r2(noisy.ravel(), true.ravel()))
    # two kept episodes alone give R² = 1 by construction: the reason to pool
    assert (
        pooled_r2(
            [{"noisy": noisy[0, :2], "true": true[0, :2], "weights": np.ones(2), "groups": [0, 0]}]
        )[0]
        == 1.0
    )
    assert all(np.isnan(pooled_r2([])))


# -- how the infos reach the buffer ---------------------------------------------------


class _OwnAdd(FilteredRolloutBuffer):
    """A user's subclass that overrides add(): the stack-frame read lost the infos here."""

    def add(self, *args, **kwargs):
        super().add(*args, **kwargs)


def test_infos_reach_a_subclass_that_overrides_add_with_filter_none():
    venv = make_grouped_vec_env(
        "rewardfilter/CartPole-v1",
        n_groups=2,
        group_size=2,
        env_kwargs={"noise": "gaussian", "noise_kwargs": {"std": 1.0}, "episode_level": False},
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        seed=0,
        device="cpu",
        rollout_buffer_class=_OwnAdd,
        rollout_buffer_kwargs={"filter": "none"},
    )
    model.learn(64 * 4, callback=FilterStatsCallback())
    stats = model.rollout_buffer.last_stats
    # CartPole's true return is the episode length; the noisy one is not: R² < 1
    assert stats["n_samples"] > 0 and stats["r2"] < 0.99
    assert stats["reward_mean"] != stats["score_mean"]


def test_learning_without_the_callback_is_an_error_even_unfiltered():
    venv = make_grouped_vec_env(
        "rewardfilter/CartPole-v1", n_groups=1, group_size=2, env_kwargs={"noise": "gaussian"}
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=8,
        batch_size=16,
        device="cpu",
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": "none"},
    )
    with pytest.raises(ValueError, match="callback=FilterStatsCallback"):
        model.learn(16)


def test_the_callback_works_beside_other_callbacks():
    from stable_baselines3.common.callbacks import CheckpointCallback

    venv = make_grouped_vec_env("rewardfilter/CartPole-v1", n_groups=2, group_size=2)
    model = filtered_ppo(venv, "bon")
    stats = FilterStatsCallback()
    model.learn(32 * 4 * 2, callback=[CheckpointCallback(10**9, "/nonexistent"), stats])
    assert len(stats.history) == 2
