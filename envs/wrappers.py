"""The noisy-reward wrapper: replace a task's reward by a corrupted one.

The agent sees only the noisy reward; the true reward travels beside it in
``info["true_reward"]`` so that experiments can measure how well the noisy
reward (and a filter's kept subset of it) tracks the truth, without ever
training on it.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rewardfilter.envs.learned import LearnedRewardConfig, LearnedRewardModel
from rewardfilter.envs.proxy import ProxyRewardConfig, ProxyRewardModel
from rewardfilter.envs.surrogate import SurrogateConfusionNoise
from rewardfilter.noise import (
    NUMPY_NOISE_MODELS,
    ConfusionNoiseConfig,
    NoiseModel,
    config_from_kwargs,
)
from rewardfilter.validation import check_bool, param_error

#: name -> (model class, config dataclass)
NOISE_MODELS: dict[str, tuple[type[NoiseModel], type]] = {
    **NUMPY_NOISE_MODELS,
    # Wang, Liu & Li's unbiased surrogate of the confusion noise (a literature baseline)
    "confusion_surrogate": (SurrogateConfusionNoise, ConfusionNoiseConfig),
    "learned": (LearnedRewardModel, LearnedRewardConfig),
    # the learned ensemble on random + expert data, with a scoring rule (mean/member/uwo/wco)
    "proxy": (ProxyRewardModel, ProxyRewardConfig),
}

#: reset option a caller (the grouped vec env) may pass to decorrelate the noise
#: of episodes that share a reset seed; it is removed before the inner reset.
NOISE_SEED_OPTION = "noise_seed"


def make_noise_model(
    noise: str | NoiseModel,
    noise_kwargs: dict[str, Any] | None = None,
    *,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> NoiseModel:
    """Build a noise model by name, validating its parameters.

    Parameters
    ----------
    noise : str or NoiseModel
        One of ``NOISE_MODELS`` (``none``, ``gaussian``, ``heteroscedastic``,
        ``confusion``, ``learned``), or a model, returned as it is.
    noise_kwargs : dict, optional
        Fields of the model's config dataclass (e.g. ``{"std": 0.2}``); an
        unknown field or a bad value raises ``ValueError``.
    observation_space, action_space : gymnasium spaces, optional
        Needed by ``learned`` only, to lay out its inputs.
    """
    if isinstance(noise, NoiseModel):
        if noise_kwargs:
            raise ValueError(
                "noise_kwargs cannot be combined with a NoiseModel instance; configure the instance."
            )
        return noise
    if not isinstance(noise, str) or noise not in NOISE_MODELS:
        raise ValueError(f"Unknown noise model {noise!r}; accepted: {sorted(NOISE_MODELS)}.")
    model_cls, config_cls = NOISE_MODELS[noise]
    config = config_from_kwargs(config_cls, noise_kwargs, f"{noise} noise")
    if issubclass(model_cls, LearnedRewardModel):
        if observation_space is None or action_space is None:
            raise ValueError(
                "The learned noise model needs the task's observation_space and action_space."
            )
        return model_cls(config, observation_space, action_space)
    return model_cls(config)


class NoisyReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace the reward by a noisy one from a named noise model.

    Parameters
    ----------
    env : gymnasium.Env
        The task; its reward is the true reward.
    noise : str or NoiseModel
        The noise model (see :func:`make_noise_model`).
    noise_kwargs : dict, optional
        Parameters of the noise model's config dataclass.
    episode_level : bool
        If True the agent gets 0 at every step and, at the episode's last step
        (terminated or truncated), one noisy score of the whole episode: the
        RLHF analogue of a reward model that scores a complete response. The
        score corrupts the true episode return (``learned``: the sum of the
        model's per-step predictions).
    reward_range : (float, float)
        Range of the true step reward, which gives relative noise scales and
        confusion levels their meaning; (0, 1) makes scales absolute.
    return_range : (float, float), optional
        The same for episode returns (used in episode-level mode); defaults to
        ``reward_range``.

    Notes
    -----
    Every step's info carries ``true_reward`` (the true *step* reward, also in
    episode-level mode, so that it sums to the true return) and, for models
    with an ensemble, ``reward_ensemble`` of shape ``(K,)`` (the member values
    whose aggregate is the reward -- their mean, or the ``proxy`` model's
    choice: per step, or the episode sums at the last step of an episode-level
    task and zeros before). The noise has its own random
    stream, seeded from ``reset(seed=...)`` (and the ``noise_seed`` reset
    option when given), so the same seed gives the same noisy rewards without
    touching the task's own randomness.
    """

    def __init__(
        self,
        env: gym.Env,
        noise: str | NoiseModel = "gaussian",
        noise_kwargs: dict[str, Any] | None = None,
        episode_level: bool = False,
        reward_range: tuple[float, float] = (0.0, 1.0),
        return_range: tuple[float, float] | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            noise=noise,
            noise_kwargs=noise_kwargs,
            episode_level=episode_level,
            reward_range=reward_range,
            return_range=return_range,
        )
        gym.Wrapper.__init__(self, env)
        check_bool(episode_level, "episode_level", "NoisyReward")
        self.reward_bounds = _check_range(reward_range, "reward_range")
        self.return_bounds = _check_range(
            return_range if return_range is not None else reward_range, "return_range"
        )
        learned = isinstance(noise, str) and issubclass(
            NOISE_MODELS.get(noise, (NoiseModel,))[0], LearnedRewardModel
        )
        if learned and "env_id" not in (noise_kwargs or {}) and env.spec is not None:
            noise_kwargs = {**(noise_kwargs or {}), "env_id": env.spec.id}
        self.noise_model = make_noise_model(
            noise,
            noise_kwargs,
            observation_space=env.observation_space,
            action_space=env.action_space,
        )
        self.episode_level = episode_level
        self._rng = np.random.default_rng()
        self._obs: Any = None
        self._true_return = 0.0
        self._ensemble_sum: np.ndarray | None = None

    @property
    def n_members(self) -> int | None:
        """Ensemble size K of the noise model, or None for models without an ensemble."""
        return getattr(self.noise_model, "n_members", None)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options) if options else {}
        noise_seed = options.pop(NOISE_SEED_OPTION, None)
        if seed is not None:
            entropy = [seed] if noise_seed is None else [seed, noise_seed]
            self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
        elif noise_seed is not None:
            self._rng = np.random.default_rng(noise_seed)
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._obs = obs
        self._true_return = 0.0
        self._ensemble_sum = None
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, true_reward, terminated, truncated, info = self.env.step(action)
        true_reward = float(true_reward)
        info = dict(info)
        info["true_reward"] = true_reward
        model = self.noise_model
        ensemble = None
        if model.uses_transitions:
            ensemble = model.predict(self._obs, action, obs)
        self._obs = obs
        done = terminated or truncated
        if not self.episode_level:
            reward = (
                model.aggregate(ensemble, self._rng)
                if ensemble is not None
                else model.corrupt(true_reward, self._rng, *self.reward_bounds)
            )
        else:
            self._true_return += true_reward
            if ensemble is not None:
                self._ensemble_sum = (
                    ensemble if self._ensemble_sum is None else self._ensemble_sum + ensemble
                )
            reward = 0.0
            if done:
                if ensemble is not None:
                    reward = model.aggregate(self._ensemble_sum, self._rng)
                else:
                    reward = model.corrupt(self._true_return, self._rng, *self.return_bounds)
                info["true_episode_return"] = self._true_return
            if ensemble is not None:
                ensemble = self._ensemble_sum.copy() if done else np.zeros_like(ensemble)
        if ensemble is not None:
            info["reward_ensemble"] = ensemble.astype(np.float64)
        return obs, reward, terminated, truncated, info


def _check_range(bounds: Any, name: str) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise param_error(
            name, "NoisyReward", "a pair (low, high) of floats with low < high", bounds
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise param_error(
            name, "NoisyReward", "a pair (low, high) of finite floats with low < high", bounds
        )
    return low, high
