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
from rewardfilter.validation import check_scalar, param_error

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
    goal_key : str or None
        The info key holding minus the distance to the task's goal (Reacher:
        ``reward_dist``), which makes the goal-reached score available
        (``make_task(goal_radius=...)``); None where the task has no goal.
    """

    base_id: str
    reward_range: tuple[float, float]
    return_range: tuple[float, float]
    episode_level: bool
    max_episode_steps: int
    goal_key: str | None = None

    @property
    def id(self) -> str:
        return f"{NAMESPACE}/{self.base_id}"


_SPECS = (
    TaskSpec("Pendulum-v1", (-16.3, 0.0), (-1600.0, 0.0), False, 200),
    TaskSpec("CartPole-v1", (0.0, 1.0), (0.0, 500.0), True, 500),
    TaskSpec("Acrobot-v1", (-1.0, 0.0), (-500.0, 0.0), True, 500),
    TaskSpec("LunarLander-v3", (-5.0, 5.0), (-300.0, 300.0), False, 1000),
    # MuJoCo's cheapest dense-reward task: 50-step episodes, reward -distance - control cost
    TaskSpec("Reacher-v5", (-2.0, 0.0), (-50.0, 0.0), False, 50, goal_key="reward_dist"),
    TaskSpec("HalfCheetah-v5", (-1.0, 10.0), (-500.0, 6000.0), False, 1000),
    TaskSpec("Hopper-v5", (0.0, 4.0), (0.0, 3500.0), False, 1000),
)

#: registered id -> its spec
TASKS: dict[str, TaskSpec] = {spec.id: spec for spec in _SPECS}


class GoalReached(gym.Wrapper):
    """Score an episode by whether it ends within ``radius`` of the goal: a success score.

    The step reward is 0 except at an episode's last step (terminated or
    truncated), where it is 1.0 if the distance to the goal, ``-info[key]``,
    is below ``radius``, else 0.0: the episode's true return is its success
    (the control analogue of "passes its unit tests"). The distance is kept in
    ``info["goal_distance"]``.
    """

    def __init__(self, env: gym.Env, radius: float, key: str):
        super().__init__(env)
        self.radius = check_scalar(
            radius, "goal_radius", "make_task", min_val=0.0, include_boundaries="neither"
        )
        self.key = key

    def step(self, action: Any):
        obs, _, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["goal_distance"] = distance = -float(info[self.key])
        reached = (terminated or truncated) and distance < self.radius
        return obs, float(reached), terminated, truncated, info


def make_task(
    base_id: str,
    noise: str = "gaussian",
    noise_kwargs: dict[str, Any] | None = None,
    episode_level: bool | None = None,
    render_mode: str | None = None,
    goal_radius: float | None = None,
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
    goal_radius : float, optional
        Replace the true reward by the goal-reached score (:class:`GoalReached`):
        1 if the episode ends within this distance of the goal, else 0, paid
        at the last step; the reward and return ranges become (0, 1) and the
        task scores whole episodes unless ``episode_level`` says otherwise.
        Only for tasks with a goal (``TaskSpec.goal_key``: Reacher-v5).
    **base_kwargs
        Passed to the base task's constructor (e.g. ``g=9.81`` for Pendulum).
    """
    full_id = base_id if base_id.startswith(f"{NAMESPACE}/") else f"{NAMESPACE}/{base_id}"
    if full_id not in TASKS:
        raise ValueError(f"Unknown task {base_id!r}; registered tasks: {sorted(TASKS)}.")
    spec = TASKS[full_id]
    env = gym.make(spec.base_id, render_mode=render_mode, **base_kwargs)
    reward_range, return_range, default_level = (
        spec.reward_range,
        spec.return_range,
        spec.episode_level,
    )
    if goal_radius is not None:
        if spec.goal_key is None:
            goals = sorted(s.id for s in TASKS.values() if s.goal_key)
            raise param_error(
                "goal_radius", "make_task", f"None for {full_id} (goals: {goals})", goal_radius
            )
        env = GoalReached(env, goal_radius, spec.goal_key)
        reward_range = return_range = (0.0, 1.0)
        default_level = True
    return NoisyReward(
        env,
        noise=noise,
        noise_kwargs=noise_kwargs,
        episode_level=default_level if episode_level is None else episode_level,
        reward_range=reward_range,
        return_range=return_range,
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
