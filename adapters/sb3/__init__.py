"""Stable-Baselines3 adapter: PF-PPO's filtration as a drop-in rollout buffer.

::

    from stable_baselines3 import PPO
    from rewardfilter.adapters.sb3 import FilteredRolloutBuffer, FilterStatsCallback, make_grouped_vec_env

    venv = make_grouped_vec_env("rewardfilter/Pendulum-v1", n_groups=4, group_size=4,
                                env_kwargs={"noise": "heteroscedastic"})
    model = PPO("MlpPolicy", venv, rollout_buffer_class=FilteredRolloutBuffer,
                rollout_buffer_kwargs={"filter": "br"})
    model.learn(20_000, callback=FilterStatsCallback())  # hands each step's infos to the buffer

Baselines with the same buffer: the oracle (``noise="none"``), PPO-S
(``group_size=1``, filter ``none``), PPO-M (group size N, filter ``none``),
``random:2`` (as many samples as BR/BW, chosen blindly) and every core filter.
"""

from rewardfilter.extras import check_modules

check_modules(("gymnasium", "torch", "stable_baselines3"), "sb3", "rewardfilter.adapters.sb3")

from rewardfilter.adapters.sb3.buffers import (
    STAT_KEYS,
    FilteredDictRolloutBuffer,
    FilteredRolloutBuffer,
    FilterMixin,
)
from rewardfilter.adapters.sb3.callbacks import FilterStatsCallback
from rewardfilter.adapters.sb3.grouping import (
    GROUP_ID_KEY,
    OBSERVED_REWARD_KEY,
    GroupMember,
    check_grouping,
    make_grouped_vec_env,
)

__all__ = [
    "GROUP_ID_KEY",
    "OBSERVED_REWARD_KEY",
    "STAT_KEYS",
    "FilterMixin",
    "FilterStatsCallback",
    "FilteredDictRolloutBuffer",
    "FilteredRolloutBuffer",
    "GroupMember",
    "check_grouping",
    "make_grouped_vec_env",
]
