"""The noise models of the tasks: they live in :mod:`rewardfilter.noise` (numpy only).

Re-exported here so that ``rewardfilter.envs.noise`` keeps its names; the
``learned`` model is in :mod:`rewardfilter.envs.learned`.
"""

from rewardfilter import noise as _core
from rewardfilter.noise import *  # noqa: F403  (the old path re-exports the core module)

__all__ = list(_core.__all__)
