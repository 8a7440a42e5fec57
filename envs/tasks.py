"""The registered noisy-reward tasks (``rewardfilter/<Task>-v<N>``).

Each task is a standard Gymnasium task (with its own time limit) wrapped in
:class:`~rewardfilter.envs.NoisyReward`, plus the reward and return ranges that
give relative noise scales their meaning. The ranges are the values a policy
between random and good actually produces, not theoretical bounds, so that a
``std=0.1`` means "a tenth of the spread that matters" on every task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from rewardfilter.envs.wrappers import NoisyReward

NAMESPACE = "rewardfilter"


@dataclass(frozen=True)
class TaskSpec:
    """What a registered task wraps and how its rewards are scaled.

    Attributes
    ----------
    base_id : str
        The noise-free Gymnasium task.
    reward_range : (float, float)
        Typical range of the true step reward.
    return_range : (float, float)
        Typical range of the true episode return (episode-level mode).
    episode_level : bool
        Default reward mode: CartPole and Acrobot pay the same reward at every
        step (+1 / -1), so a noisy *step* reward says nothing about quality;
        they score whole episodes by default.
    max_episode_steps : int
        The base task's time limit (applied inside the wrapper).
    """

    base_id: str
    reward_range: tuple[float, float]
    return_range: tuple[float, float]
    episode_level: bool
    max_episode_steps: int

    @property
    def id(self) -> str:
        return f"{NAMESPACE}/{self.base_id}"


_SPECS = (
    TaskSpec("Pendulum-v1", (-16.3, 0.0), (-1600.0, 0.0), False, 200),
    TaskSpec("CartPole-v1", (0.0, 1.0), (0.0, 500.0), True, 500),
    TaskSpec("Acrobot-v1", (-1.0, 0.0), (-500.0, 0.0), True, 500),
    TaskSpec("LunarLander-v3", (-5.0, 5.0), (-300.0, 300.0), False, 1000),
    # MuJoCo's cheapest dense-reward task: 50-step episodes, reward -distance - control cost
    TaskSpec("Reacher-v5", (-2.0, 0.0), (-50.0, 0.0), False, 50),
    TaskSpec("HalfCheetah-v5", (-1.0, 10.0), (-500.0, 6000.0), False, 1000),
    TaskSpec("Hopper-v5", (0.0, 4.0), (0.0, 3500.0), False, 1000),
)

#: registered id -> its spec
TASKS: dict[str, TaskSpec] = {spec.id: spec for spec in _SPECS}


def make_task(
    base_id: str,
    noise: str = "gaussian",
    noise_kwargs: dict[str, Any] | None = None,
    episode_level: bool | None = None,
    render_mode: str | None = None,
    **base_kwargs: Any,
) -> gym.Env:
    """Build a registered task: the base task wrapped in :class:`NoisyReward`.

    Parameters
    ----------
    base_id : str
        A base id of ``TASKS`` (``"Pendulum-v1"``) or the registered id.
    noise, noise_kwargs
        The noise model and its parameters (see ``NOISE_MODELS``).
    episode_level : bool, optional
        Override the task's default reward mode.
    render_mode : str, optional
        Passed to the base task.
    **base_kwargs
        Passed to the base task's constructor (e.g. ``g=9.81`` for Pendulum).
    """
    full_id = base_id if base_id.startswith(f"{NAMESPACE}/") else f"{NAMESPACE}/{base_id}"
    if full_id not in TASKS:
        raise ValueError(f"Unknown task {base_id!r}; registered tasks: {sorted(TASKS)}.")
    spec = TASKS[full_id]
    env = gym.make(spec.base_id, render_mode=render_mode, **base_kwargs)
    return NoisyReward(
        env,
        noise=noise,
        noise_kwargs=noise_kwargs,
        episode_level=spec.episode_level if episode_level is None else episode_level,
        reward_range=spec.reward_range,
        return_range=spec.return_range,
    )


def register_tasks() -> None:
    """Register every task of ``TASKS`` with Gymnasium (idempotent)."""
    for spec in TASKS.values():
        if spec.id in gym.registry:
            continue
        gym.register(
            id=spec.id,
            entry_point="rewardfilter.envs.tasks:make_task",
            kwargs={"base_id": spec.base_id},
            # the base task applies its own time limit inside the noise wrapper,
            # which must see truncation to score episodes
        )
