"""Wang, Liu & Li's surrogate reward for confusion noise: hand values, unbiasedness, wiring."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")

import gymnasium as gym  # noqa: E402

import rewardfilter.envs as rfe  # noqa: E402
from rewardfilter.envs.surrogate import surrogate_values  # noqa: E402
from rewardfilter.experiments.config import parse_config  # noqa: E402


def test_binary_surrogate_by_hand():
    # error[0] = P(observe success | failure) = e- = 0.02; error[1] = P(miss | success) = e+ = 0.5
    model = rfe.make_noise_model("confusion_surrogate", {"levels": 2, "error": [0.02, 0.5]})
    e_minus, e_plus = 0.02, 0.5
    high = (1 - e_minus) * 1.0 / (1 - e_plus - e_minus)
    low = (0 - e_minus * 1.0) / (1 - e_plus - e_minus)
    np.testing.assert_allclose(model.unit_values, [low, high])
    # in reward units: a range (-50, 0) maps level values affinely
    rng = np.random.default_rng(0)
    seen = np.array([model.corrupt(-1.0, rng, -50.0, 0.0) for _ in range(200)])
    is_low, is_high = np.isclose(seen, -50 + 50 * low), np.isclose(seen, -50 + 50 * high)
    assert (is_low | is_high).all() and is_low.any() and is_high.any()


def test_the_surrogate_is_unbiased_at_every_true_level():
    cfg = {"levels": 3, "error": [0.1, 0.3, 0.2], "flip": "adjacent"}
    model = rfe.make_noise_model("confusion_surrogate", cfg)
    matrix = rfe.ConfusionNoiseConfig(**cfg).matrix()
    np.testing.assert_allclose(matrix @ model.unit_values, [0.0, 0.5, 1.0], atol=1e-12)
    rng = np.random.default_rng(1)
    for true in (0.0, 0.5, 1.0):
        draws = [model.corrupt(true, rng, 0.0, 1.0) for _ in range(20_000)]
        assert np.mean(draws) == pytest.approx(true, abs=0.02)
    # the plain confusion noise is biased towards the middle at the top
    plain = rfe.make_noise_model("confusion", cfg)
    assert np.mean([plain.corrupt(1.0, rng, 0.0, 1.0) for _ in range(5000)]) < 0.93


def test_a_singular_confusion_matrix_is_refused():
    with pytest.raises(ValueError, match="'error' parameter of confusion_surrogate noise"):
        rfe.make_noise_model("confusion_surrogate", {"levels": 2, "error": [0.5, 0.5]})
    with pytest.raises(ValueError, match="square"):
        surrogate_values(np.eye(2), [1.0, 2.0, 3.0])


def test_a_task_and_a_config_take_it_by_name():
    env = gym.make(
        "rewardfilter/Reacher-v5",
        noise="confusion_surrogate",
        noise_kwargs={"levels": 2, "error": [0.02, 0.5]},
        episode_level=True,
    )
    env.reset(seed=0)
    rewards = []
    for _ in range(50):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        rewards.append(reward)
        if terminated or truncated:
            break
    assert info["true_episode_return"] < 0 and rewards[:-1] == [0.0] * (len(rewards) - 1)
    assert rewards[-1] in (
        pytest.approx(-50 - 50 * 0.02 / 0.48),
        pytest.approx(-50 + 50 * 0.98 / 0.48),
    )
    config = parse_config(
        {
            "name": "s",
            "domain": "control",
            "tasks": ["rewardfilter/Reacher-v5"],
            "noise": [
                {"name": "c", "model": "confusion_surrogate", "kwargs": {"error": [0.02, 0.5]}}
            ],
            "methods": ["PPO-M"],
        }
    )
    assert config.noise[0].model == "confusion_surrogate"
