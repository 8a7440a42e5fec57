"""Former home of the PF-PPO trainer; it now lives in :mod:`rewardfilter.adapters.code.ppo`.

Kept so that ``from rewardfilter.adapters.code.trainer import PFPPOTrainer``
keeps working.
"""

from .config import PFPPOConfig
from .ppo.experience import Experience, Rollout, sandbox_true_score
from .ppo.trainer import PFPPOTrainer

__all__ = ["Experience", "PFPPOConfig", "PFPPOTrainer", "Rollout", "sandbox_true_score"]
