"""Noisy-reward Gymnasium tasks: registration, noise models, reproducibility, learned model cache."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rewardfilter.envs as rfe
from rewardfilter.envs import learned as learned_mod

# a learned model small enough to fit in well under a second
TINY = {"n_members": 3, "n_transitions": 200, "max_iter": 20, "hidden_sizes": (8,)}
# one good enough to track the true reward on its own data (about a second)
SMALL = {"n_members": 3, "n_transitions": 1000, "max_iter": 50, "hidden_sizes": (32,)}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder and an empty in-process memo."""
    monkeypatch.setenv(rfe.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(learned_mod, "_MEMO", {})


def _rollout(env, seed, n=60, action_seed=0):
    """Rewards, true rewards and infos of n steps of fixed random actions from reset(seed)."""
    env.reset(seed=seed)
    env.action_space.seed(action_seed)
    rewards, trues, infos = [], [], []
    for _ in range(n):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        rewards.append(float(r))
        trues.append(info["true_reward"])
        infos.append(info)
        if term or trunc:
            env.reset()
    return np.array(rewards), np.array(trues), infos


def test_every_task_is_registered():
    expected = {
        "rewardfilter/Pendulum-v1",
        "rewardfilter/CartPole-v1",
        "rewardfilter/Acrobot-v1",
        "rewardfilter/LunarLander-v3",
        "rewardfilter/Reacher-v5",
        "rewardfilter/HalfCheetah-v5",
        "rewardfilter/Hopper-v5",
    }
    assert expected <= set(rfe.TASKS)
    assert all(task in gym.registry for task in rfe.TASKS)
    assert rfe.TASKS["rewardfilter/Acrobot-v1"].episode_level
    assert not rfe.TASKS["rewardfilter/Pendulum-v1"].episode_level


@pytest.mark.parametrize("task", sorted(rfe.TASKS))
def test_check_env_every_task(task):
    env = gym.make(task, noise="heteroscedastic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's advice about wrappers and unbounded boxes
        check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("episode_level", [False, True])
def test_check_env_learned_model(episode_level):
    env = gym.make(
        "rewardfilter/Pendulum-v1", noise="learned", noise_kwargs=TINY, episode_level=episode_level
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("noise", ["gaussian", "heteroscedastic", "confusion", "learned"])
def test_same_seed_same_noisy_rewards(noise):
    kwargs = TINY if noise == "learned" else None
    env_a = gym.make("rewardfilter/Pendulum-v1", noise=noise, noise_kwargs=kwargs)
    env_b = gym.make("rewardfilter/Pendulum-v1", noise=noise, noise_kwargs=kwargs)
    r_a, t_a, _ = _rollout(env_a, seed=7)
    r_b, t_b, _ = _rollout(env_b, seed=7)
    np.testing.assert_array_equal(r_a, r_b)
    np.testing.assert_array_equal(t_a, t_b)
    assert not np.array_equal(r_a, t_a), "the reward must actually be corrupted"
    if noise != "learned":  # the learned model is deterministic given the transition
        r_c, _, _ = _rollout(env_a, seed=8)
        r_a2, _, _ = _rollout(env_a, seed=7)
        np.testing.assert_array_equal(r_a, r_a2)
        assert not np.array_equal(r_a, r_c)


def test_noise_none_is_the_true_reward():
    env = gym.make("rewardfilter/Pendulum-v1", noise="none")
    rewards, trues, _ = _rollout(env, seed=0)
    np.testing.assert_array_equal(rewards, trues)


def test_noise_stream_does_not_touch_the_task_dynamics():
    noisy = gym.make("rewardfilter/Pendulum-v1", noise="gaussian", noise_kwargs={"std": 0.5})
    clean = gym.make("Pendulum-v1")
    _, trues, _ = _rollout(noisy, seed=3)
    clean.reset(seed=3)
    clean.action_space.seed(0)
    expected = [clean.step(clean.action_space.sample())[1] for _ in range(60)]
    np.testing.assert_allclose(trues, expected)


def test_gaussian_scale_is_relative_to_reward_range():
    model = rfe.make_noise_model("gaussian", {"std": 0.1})
    rng = np.random.default_rng(0)
    draws = np.array([model.corrupt(5.0, rng, 0.0, 20.0) for _ in range(4000)])
    assert abs(draws.mean() - 5.0) < 0.15
    assert abs(draws.std() - 2.0) < 0.1


def test_heteroscedastic_is_reliable_where_configured():
    high = rfe.HeteroscedasticNoise(
        rfe.HeteroscedasticNoiseConfig(std=0.4, min_std=0.01, reliable="high")
    )
    low = rfe.HeteroscedasticNoise(
        rfe.HeteroscedasticNoiseConfig(std=0.4, min_std=0.01, reliable="low")
    )
    flat = rfe.HeteroscedasticNoise(
        rfe.HeteroscedasticNoiseConfig(std=0.4, min_std=0.01, reliable="none")
    )
    assert high.scale(10.0, 0.0, 10.0) == pytest.approx(0.1)  # min_std * range
    assert high.scale(5.0, 0.0, 10.0) == pytest.approx(4.0)  # large at moderate rewards
    assert high.scale(9.0, 0.0, 10.0) < high.scale(5.0, 0.0, 10.0)
    assert low.scale(0.0, 0.0, 10.0) == pytest.approx(0.1)
    assert low.scale(10.0, 0.0, 10.0) == pytest.approx(4.0)
    assert flat.scale(0.0, 0.0, 10.0) == flat.scale(10.0, 0.0, 10.0) == pytest.approx(4.0)
    rng = np.random.default_rng(1)
    top = np.array([high.corrupt(10.0, rng, 0.0, 10.0) for _ in range(2000)])
    mid = np.array([high.corrupt(5.0, rng, 0.0, 10.0) for _ in range(2000)])
    assert top.std() < 0.2 < 3.0 < mid.std()


def test_confusion_flips_levels_at_the_given_rate():
    model = rfe.make_noise_model("confusion", {"levels": 2, "error": 0.25})
    rng = np.random.default_rng(0)
    out = np.array([model.corrupt(0.9, rng, 0.0, 1.0) for _ in range(4000)])
    assert set(np.unique(out)) == {0.0, 1.0}  # the nearest level of 0.9 is 1, flipped to 0
    assert abs((out == 0.0).mean() - 0.25) < 0.03
    c = rfe.ConfusionNoiseConfig(levels=4, error=(0.0, 0.1, 0.2, 0.3), flip="adjacent").matrix()
    np.testing.assert_allclose(c.sum(axis=1), 1.0)
    assert c[0, 0] == 1.0 and c[1, 3] == 0.0 and c[3, 2] == pytest.approx(0.3)
    levels = rfe.make_noise_model("confusion", {"levels": 3, "error": 0.0})
    assert levels.corrupt(-4.0, rng, -10.0, 0.0) == -5.0  # values snap to the nearest level


def test_episode_level_pays_once_at_the_end():
    env = gym.make("rewardfilter/CartPole-v1", noise="none")  # episode-level by default
    env.reset(seed=0)
    env.action_space.seed(0)
    rewards, trues = [], []
    while True:
        _, r, term, trunc, info = env.step(env.action_space.sample())
        rewards.append(r)
        trues.append(info["true_reward"])
        if term or trunc:
            break
    assert all(r == 0.0 for r in rewards[:-1])
    assert rewards[-1] == pytest.approx(sum(trues)) == pytest.approx(info["true_episode_return"])
    noisy = gym.make("rewardfilter/CartPole-v1", noise="gaussian", noise_kwargs={"std": 0.05})
    step_level = gym.make("rewardfilter/CartPole-v1", noise="gaussian", episode_level=False)
    r_ep, _, _ = _rollout(noisy, seed=0, n=30)
    r_step, _, _ = _rollout(step_level, seed=0, n=30)
    assert (r_ep == 0).sum() > 20 and (r_step == 0).sum() == 0


def _goal_episode(env, seed, scale):
    """Rewards and infos of one episode of seeded random actions (scaled) from reset(seed)."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rewards, infos = [], []
    while True:
        action = np.clip(scale * rng.normal(size=2), -1, 1)
        _, r, term, trunc, info = env.step(action)
        rewards.append(r)
        infos.append(info)
        if term or trunc:
            return np.array(rewards), infos


def test_goal_score_is_success_at_the_last_step():
    env = gym.make("rewardfilter/Reacher-v5", noise="none", goal_radius=0.1)
    outcomes = []
    for seed in range(40):
        rewards, infos = _goal_episode(env, seed, scale=0.37)
        last = infos[-1]
        success = float(last["goal_distance"] < 0.1)
        # scored once, at the end, by the final distance only; the true return is that success
        assert len(rewards) == 50 and not rewards[:-1].any()
        assert rewards[-1] == success == last["true_episode_return"]
        assert sum(i["true_reward"] for i in infos) == success
        outcomes.append(success)
    assert 0 < np.mean(outcomes) < 1  # both outcomes occur: a random arm sometimes ends near


def test_goal_score_binary_confusion_flips_at_the_given_rates():
    # return range (0, 1): success is the top level, so error = [false success, missed success]
    env = gym.make(
        "rewardfilter/Reacher-v5",
        noise="confusion",
        noise_kwargs={"error": [0.0, 1.0 - 1e-9]},
        goal_radius=0.5,  # every episode ends within 0.5 of its target: all true successes
    )
    rewards, infos = _goal_episode(env, 0, scale=0.37)
    assert infos[-1]["true_episode_return"] == 1.0 and rewards[-1] == 0.0  # every success missed


def test_goal_radius_is_checked():
    with pytest.raises(ValueError, match="'goal_radius'.*Pendulum"):
        gym.make("rewardfilter/Pendulum-v1", goal_radius=0.1)
    with pytest.raises(ValueError, match="'goal_radius'"):
        gym.make("rewardfilter/Reacher-v5", goal_radius=0.0)


def test_learned_model_reports_its_ensemble_and_caches(tmp_path):
    env = gym.make("rewardfilter/Pendulum-v1", noise="learned", noise_kwargs=SMALL)
    model = env.get_wrapper_attr("noise_model")
    assert not model.loaded_from_cache and model.path.exists()
    assert model.path.parent == tmp_path / "cache"
    rewards, trues, infos = _rollout(env, seed=0, n=100)
    ens = np.array([i["reward_ensemble"] for i in infos])
    assert ens.shape == (100, 3)
    np.testing.assert_allclose(rewards, ens.mean(axis=1))
    assert (ens.std(axis=1) > 0).all(), "bootstrap members must disagree"
    # in-distribution the proxy tracks the true reward
    assert np.corrcoef(rewards, trues)[0, 1] > 0.5

    learned_mod._MEMO.clear()
    again = gym.make(
        "rewardfilter/Pendulum-v1", noise="learned", noise_kwargs=SMALL
    ).get_wrapper_attr("noise_model")
    assert again.loaded_from_cache and again.path == model.path
    r_again, _, _ = _rollout(
        gym.make("rewardfilter/Pendulum-v1", noise="learned", noise_kwargs=SMALL), seed=0, n=100
    )
    np.testing.assert_allclose(r_again, rewards)

    # other parameters -> another file; a stale or corrupt file is refitted
    other = gym.make("rewardfilter/Pendulum-v1", noise="learned", noise_kwargs={**SMALL, "seed": 1})
    assert other.get_wrapper_attr("noise_model").path != model.path
    learned_mod._MEMO.clear()
    model.path.write_bytes(b"not an npz")
    refit = gym.make(
        "rewardfilter/Pendulum-v1", noise="learned", noise_kwargs=SMALL
    ).get_wrapper_attr("noise_model")
    assert not refit.loaded_from_cache
    learned_mod._MEMO.clear()
    np.savez(model.path, key=np.asarray("stale"))
    refit = gym.make(
        "rewardfilter/Pendulum-v1", noise="learned", noise_kwargs=SMALL
    ).get_wrapper_attr("noise_model")
    assert not refit.loaded_from_cache


def test_learned_cache_dir_argument(tmp_path):
    where = tmp_path / "elsewhere"
    env = gym.make(
        "rewardfilter/CartPole-v1", noise="learned", noise_kwargs={**TINY, "cache_dir": str(where)}
    )
    assert env.get_wrapper_attr("noise_model").path.parent == where
    assert list(where.glob("learned-CartPole-v1-*.npz"))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(rfe.CACHE_ENV_VAR, raising=False)
    assert rfe.default_cache_dir() == rfe.default_cache_dir().home() / ".cache" / "rewardfilter"
    monkeypatch.setenv(rfe.CACHE_ENV_VAR, str(tmp_path))
    assert rfe.default_cache_dir() == tmp_path


def test_noisy_reward_wraps_any_env():
    env = rfe.NoisyReward(gym.make("MountainCar-v0"), noise="gaussian", noise_kwargs={"std": 1.0})
    rewards, trues, _ = _rollout(env, seed=0, n=10)
    assert np.all(trues == -1.0) and not np.all(rewards == -1.0)


@pytest.mark.parametrize(
    ("noise", "kwargs", "match"),
    [
        ("laplace", None, "Unknown noise model"),
        ("gaussian", {"sigma": 1.0}, "Unknown parameter"),
        ("gaussian", {"std": -1.0}, "'std' parameter of gaussian noise"),
        ("gaussian", {"std": float("nan")}, "'std'"),
        ("heteroscedastic", {"reliable": "middle"}, "'reliable'"),
        ("heteroscedastic", {"std": 0.1, "min_std": 0.5}, "'min_std'"),
        ("confusion", {"levels": 1}, "'levels'"),
        ("confusion", {"error": 1.0}, "'error'"),
        ("confusion", {"levels": 3, "error": (0.1, 0.2)}, "'error'"),
        ("confusion", {"flip": "sideways"}, "'flip'"),
        ("learned", {"n_members": 1}, "'n_members'"),
        ("learned", {"hidden_sizes": ()}, "'hidden_sizes'"),
    ],
)
def test_bad_noise_parameters_raise_value_error(noise, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("rewardfilter/Pendulum-v1", noise=noise, noise_kwargs=kwargs)


def test_bad_task_and_ranges_raise_value_error():
    with pytest.raises(ValueError, match="Unknown task"):
        rfe.make_task("Pong-v5")
    with pytest.raises(ValueError, match="reward_range"):
        rfe.NoisyReward(gym.make("Pendulum-v1"), reward_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="env_id"):
        rfe.make_noise_model(
            "learned",
            observation_space=gym.spaces.Box(-1, 1, (2,)),
            action_space=gym.spaces.Discrete(2),
        )
    with pytest.raises(ValueError, match="episode_level"):
        rfe.NoisyReward(gym.make("Pendulum-v1"), episode_level="yes")
