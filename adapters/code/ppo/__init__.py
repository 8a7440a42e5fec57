"""PPO for code generation: losses, experience, the PF-PPO trainer, checkpoints.

Modules: :mod:`.losses` (the pure math), :mod:`.experience` (rollouts, the
per-token tensors PPO trains on, expected filter weights), :mod:`.trainer`
(:class:`PFPPOTrainer`: the loop), :mod:`.filtering` (step 4, the filter),
:mod:`.update` (step 6, the clipped updates), :mod:`.build`
(``from_pretrained``), :mod:`.parallel` (Accelerate), :mod:`.stats` (reward
normalisation, pooled statistics, the log record), :mod:`.checkpoint`.

``rewardfilter.adapters.code.ppo`` also re-exports the pure math of
:mod:`.losses` (``ppo.gae``, ``ppo.policy_loss``, ...) so that code written
against the former ``ppo`` module keeps working.
"""

from ..config import PFPPOConfig
from . import losses
from .losses import *  # noqa: F403  (the pure math, re-exported under its former path)
from .trainer import PFPPOTrainer

__all__ = ["PFPPOConfig", "PFPPOTrainer", *losses.__all__]
