"""Groups of environments whose episodes start from the same state.

PF-PPO ranks several responses to *one prompt*. The control-task analogue is
several episodes from *one start state*: a group of ``group_size`` env copies
that, at every episode, reset with the same seed. Filtering then compares
trajectories that differ only by the policy's choices, not by their luck at
reset.

How the groups reach the buffer
-------------------------------
:class:`GroupMember` (one per env copy) decides its own reset seeds: the k-th
episode of group g starts from seed ``f(seed, g, k)``, whatever seed SB3's
vec env passes (SB3 gives every env a different seed, which would split the
groups). Every step's info then carries

* ``group_id``: ``k * n_groups + g``, one id per (group, episode round), i.e.
  per start state: the ranking context;
* ``group`` / ``member`` / ``episode_index``: g, the copy's index in its group, k;
* ``observed_reward``: the reward the env returned at this step, before SB3
  adds value bootstraps on truncation (what episodes are ranked by).

:class:`~rewardfilter.adapters.sb3.FilteredRolloutBuffer` reads these infos,
so no user wiring is needed.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from rewardfilter.envs import NOISE_SEED_OPTION, TASKS, NoisyReward
from rewardfilter.validation import check_scalar, param_error

#: info keys written by GroupMember
GROUP_ID_KEY = "group_id"
OBSERVED_REWARD_KEY = "observed_reward"


def _derive_seed(*entropy: int) -> int:
    """A well-mixed 32-bit seed from a tuple of ints (distinct tuples give unrelated seeds)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, dtype=np.uint32)[0])


def _has_noisy_reward(env: gym.Env) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, NoisyReward):
            return True
        env = env.env
    return False


class GroupMember(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Make an env copy a member of a group that shares start states.

    Parameters
    ----------
    env : gymnasium.Env
        One copy of the task.
    group : int
        Index g of the group, in ``[0, n_groups)``.
    member : int
        Index of this copy within its group, in ``[0, group_size)``.
    n_groups : int
        Number of groups (makes ``group_id`` unique across groups).
    seed : int
        Base seed: the k-th episode of group g resets with a seed derived from
        ``(seed, g, k)``; seeds passed to ``reset`` are ignored (see the module
        docstring). When the task is a :class:`~rewardfilter.envs.NoisyReward`,
        its noise stream also gets ``member``, so members' reward noise is
        independent even though their start states are equal.
    """

    def __init__(self, env: gym.Env, group: int, member: int, n_groups: int, seed: int = 0):
        gym.utils.RecordConstructorArgs.__init__(
            self, group=group, member=member, n_groups=n_groups, seed=seed
        )
        gym.Wrapper.__init__(self, env)
        for name, value, minimum in (
            ("n_groups", n_groups, 1),
            ("group", group, 0),
            ("member", member, 0),
            ("seed", seed, 0),
        ):
            check_scalar(value, name, "GroupMember", "int", min_val=minimum)
        if group >= n_groups:
            raise param_error("group", "GroupMember", f"an int in [0, {n_groups})", group)
        self.group = int(group)
        self.member = int(member)
        self.n_groups = int(n_groups)
        self.base_seed = int(seed)
        self.episode_index = -1  # incremented by each reset
        self._decorrelate_noise = _has_noisy_reward(env)
        self._ids: dict[str, int] = {}

    @property
    def group_id(self) -> int:
        """Id of the current episode's start state: ``episode_index * n_groups + group``."""
        return self.episode_index * self.n_groups + self.group

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        del seed  # start states are decided by (base seed, group, episode index); see the class doc
        self.episode_index += 1
        episode_seed = _derive_seed(self.base_seed, self.group, self.episode_index)
        if self._decorrelate_noise:
            options = {
                **(options or {}),
                NOISE_SEED_OPTION: _derive_seed(
                    self.base_seed, self.group, self.episode_index, self.member, 1
                ),
            }
        self._ids = {
            GROUP_ID_KEY: self.group_id,
            "group": self.group,
            "member": self.member,
            "episode_index": self.episode_index,
        }
        obs, info = self.env.reset(seed=episode_seed, options=options)
        return obs, {**info, **self._ids}

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, **self._ids, OBSERVED_REWARD_KEY: float(reward)}
        return obs, reward, terminated, truncated, info


def check_grouping(n_envs: int, group_size: int) -> int:
    """Return the number of groups, or raise ``ValueError`` if ``group_size`` does not divide ``n_envs``."""
    for name, value in (("group_size", group_size), ("n_envs", n_envs)):
        check_scalar(value, name, "grouped vec env", "int", min_val=1)
    if n_envs % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the number of envs n_envs={n_envs}; "
            f"every group needs exactly group_size copies (e.g. n_envs={group_size * max(1, n_envs // group_size)})."
        )
    return n_envs // group_size


def make_grouped_vec_env(
    env_id: str,
    n_groups: int | None,
    group_size: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    vec_env_cls: type[VecEnv] = DummyVecEnv,
    vec_env_kwargs: dict[str, Any] | None = None,
    n_envs: int | None = None,
    monitor: bool = True,
) -> VecEnv:
    """A vec env of ``n_groups x group_size`` copies; each group shares start states.

    Env ``i`` is member ``i % group_size`` of group ``i // group_size``.

    Parameters
    ----------
    env_id : str
        A registered Gymnasium id (e.g. ``"rewardfilter/Pendulum-v1"``); an
        unknown id raises ``ValueError``.
    n_groups : int or None
        Number of groups (contexts, "prompts") per step; None with ``n_envs``.
    group_size : int
        Copies per group ("responses per prompt"). 1 gives PPO-S.
    seed : int
        Base seed of every start state (see :class:`GroupMember`).
    env_kwargs : dict, optional
        Passed to ``gymnasium.make`` (e.g. ``noise``, ``noise_kwargs``,
        ``episode_level``).
    vec_env_cls : type
        ``DummyVecEnv`` (default) or ``SubprocVecEnv``.
    vec_env_kwargs : dict, optional
        Passed to ``vec_env_cls``.
    n_envs : int, optional
        Total env count instead of ``n_groups``; ``group_size`` must divide it.
    monitor : bool
        Wrap each copy in SB3's ``Monitor`` so that SB3 logs episode returns
        (of the reward the agent sees).
    """
    check_scalar(group_size, "group_size", "grouped vec env", "int", min_val=1)
    if n_envs is not None:
        derived = check_grouping(n_envs, group_size)
        if n_groups is not None and n_groups != derived:
            raise ValueError(
                f"n_groups={n_groups} and n_envs={n_envs} disagree for group_size={group_size}."
            )
        n_groups = derived
    if n_groups is None:
        raise ValueError("Give n_groups, or n_envs (a multiple of group_size).")
    check_scalar(n_groups, "n_groups", "grouped vec env", "int", min_val=1)
    check_scalar(seed, "seed", "grouped vec env", "int", min_val=0)
    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise ValueError(
            f"Unknown task {env_id!r}: not a registered Gymnasium id. rewardfilter tasks: {sorted(TASKS)}."
        )
    env_kwargs = dict(env_kwargs or {})

    def factory(index: int):
        def _init() -> gym.Env:
            import rewardfilter.envs  # noqa: F401  (registers the tasks in subprocesses)

            env = gym.make(env_id, **env_kwargs)
            env = GroupMember(
                env,
                group=index // group_size,
                member=index % group_size,
                n_groups=int(n_groups),
                seed=int(seed),
            )
            return Monitor(env) if monitor else env

        return _init

    if vec_env_cls is not DummyVecEnv:
        factory(
            0
        )().close()  # surface bad env_kwargs as the ValueError here, not as a dead subprocess
    return vec_env_cls(
        [factory(i) for i in range(int(n_groups) * group_size)], **(vec_env_kwargs or {})
    )
