"""Noise model ``proxy``: random + expert data, and the scoring rules mean / member / UWO / WCO."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")

import gymnasium as gym  # noqa: E402

import rewardfilter.envs as rfe  # noqa: E402
from rewardfilter.envs import CACHE_ENV_VAR, proxy  # noqa: E402
from rewardfilter.envs.proxy import ProxyRewardConfig, aggregate_members  # noqa: E402

SMALL = {"n_members": 3, "n_transitions": 200, "max_iter": 5, "hidden_sizes": (8,)}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))


def test_scoring_rules_by_hand():
    values = np.array([1.0, 2.0, 3.0, 6.0])  # mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5
    rng = np.random.default_rng(0)
    assert aggregate_members(values, "mean", rng) == 3.0
    assert aggregate_members(values, "wco", rng) == 1.0
    assert aggregate_members(values, "uwo", rng, uwo_lambda=0.5) == pytest.approx(3 - 0.5 * 3.5)
    drawn = [aggregate_members(values, "member", rng) for _ in range(400)]
    assert set(drawn) == set(values.tolist())


def test_an_episode_is_scored_by_its_rule_from_all_members():
    for score in ("member", "uwo", "wco"):
        env = gym.make(
            "rewardfilter/Pendulum-v1",
            noise="proxy",
            noise_kwargs={**SMALL, "score": score, "uwo_lambda": 0.1},
            episode_level=True,
        )
        env.reset(seed=3)
        done = False
        while not done:
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
        members = info["reward_ensemble"]
        if score == "member":
            assert np.isclose(members, reward).any()
        elif score == "uwo":
            assert reward == pytest.approx(members.mean() - 0.1 * members.var())
        else:
            assert reward == pytest.approx(members.min())


def test_expert_data_is_collected_by_the_expert(tmp_path, monkeypatch):
    expert = tmp_path / "expert.zip"
    expert.write_bytes(b"a saved policy")
    monkeypatch.setattr(proxy, "load_expert", lambda path: lambda obs: np.array([0.7]))
    env = gym.make("Pendulum-v1")
    cfg = ProxyRewardConfig(**SMALL, env_id="Pendulum-v1", expert=str(expert), expert_fraction=0.25)
    model = proxy.ProxyRewardModel(cfg, env.observation_space, env.action_space)
    x, y = model.collect()
    actions = x[:, env.observation_space.shape[0]]  # features: obs, action, next obs
    assert x.shape[0] == y.shape[0] == 200
    assert (actions[150:] == 0.7).all() and not (actions[:150] == 0.7).any()
    # the expert file's content is in the cache key; the scoring rule is not
    spaces = (env.observation_space, env.action_space)
    key = cfg.cache_key(*spaces)
    assert ProxyRewardConfig(**{**cfg.__dict__, "score": "wco"}).cache_key(*spaces) == key
    expert.write_bytes(b"another policy")
    assert cfg.cache_key(*spaces) != key


def test_an_sb3_policy_file_loads_as_the_expert(tmp_path):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, device="cpu").save(tmp_path / "e.zip")
    act = proxy.load_expert(str(tmp_path / "e.zip"))
    assert gym.make("Pendulum-v1").action_space.contains(
        act(np.zeros(3, dtype=np.float32)).astype(np.float32)
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"score": "median"}, "'score'"),
        ({"uwo_lambda": -1.0}, "'uwo_lambda'"),
        ({"expert_fraction": 1.5}, "'expert_fraction'"),
        ({"expert": "/no/such/policy.zip"}, "'expert'"),
    ],
)
def test_bad_parameters_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} parameter of proxy noise"):
        rfe.make_noise_model(
            "proxy",
            {**kwargs, "env_id": "Pendulum-v1"},
            observation_space=gym.make("Pendulum-v1").observation_space,
            action_space=gym.make("Pendulum-v1").action_space,
        )


def test_a_config_takes_it_and_checks_its_parameters_up_front():
    from rewardfilter.experiments.config import ConfigError, parse_config

    def config(kwargs):
        return {
            "name": "p",
            "domain": "control",
            "tasks": ["rewardfilter/Reacher-v5"],
            "noise": [{"name": "uwo", "model": "proxy", "kwargs": kwargs}],
            "methods": ["PPO-M"],
        }

    assert parse_config(config({"score": "uwo", "uwo_lambda": 0.5})).noise[0].model == "proxy"
    with pytest.raises(ConfigError, match="'expert' parameter of proxy noise"):
        parse_config(config({"expert": "/no/such/policy.zip"}))


def test_ppo_trains_on_one_member_while_a_filter_ranks_by_uwo():
    """End to end: proxy noise scored by a random member, BR ranking by UWO of all members."""
    pytest.importorskip("stable_baselines3")
    from rewardfilter.experiments.domains import control

    run = {
        "task": "rewardfilter/Pendulum-v1",
        "noise": {"name": "p", "model": "proxy", "kwargs": {**SMALL, "score": "member"}},
        "method": {"name": "BR (UWO)", "reward": "noisy", "group_size": 4, "filter": "uwo:0.5,br"},
        "budget": {"steps": 800, "eval_every": 800, "eval_episodes": 1},
        "seed": 0,
        "hparams": {
            "n_envs": 4,
            "n_steps": 200,
            "batch_size": 200,
            "n_epochs": 1,
            "env_kwargs": {"episode_level": True},
        },
    }
    records = []
    control.run_control(run, records.append)
    assert records[-1]["kept_fraction"] == pytest.approx(0.5)  # BR keeps 2 of 4
    assert records[-1]["ensemble_std"] > 0  # the members reached the buffer
