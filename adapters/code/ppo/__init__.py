"""PPO for code generation: losses, experience, the PF-PPO trainer, checkpoints.

``rewardfilter.adapters.code.ppo`` re-exports the pure math of
:mod:`.losses` (``ppo.gae``, ``ppo.policy_loss``, ...) so that code written
against the former ``ppo`` module keeps working.
"""

from .losses import (
    approx_kl,
    gae,
    kl_penalised_rewards,
    last_token_index,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)

__all__ = [
    "approx_kl",
    "gae",
    "kl_penalised_rewards",
    "last_token_index",
    "masked_mean",
    "masked_whiten",
    "policy_loss",
    "value_loss",
]
