"""Former home of the reward model; it now lives in :mod:`rewardfilter.adapters.code.reward`.

Kept so that ``from rewardfilter.adapters.code.reward_model import ...`` keeps working.
"""

from .reward import *  # noqa: F403
from .reward import __all__  # noqa: F401
