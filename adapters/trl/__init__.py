"""PF-PPO's policy filtration inside TRL: ``PFGRPOConfig`` and ``PFGRPOTrainer``.

A thin extension of TRL's ``GRPOTrainer`` (subclass hooks, no copied code):
the rewardfilter filter weighs each prompt's ``num_generations`` completions
after TRL computes their rewards, and completions with weight 0 leave the
loss. Turning a GRPO script into PF-GRPO is one line::

    from rewardfilter.adapters.trl import PFGRPOConfig as GRPOConfig, PFGRPOTrainer as GRPOTrainer

then ``GRPOConfig(..., filter="br")``. Needs the ``[trl]`` extra.
"""

from rewardfilter.extras import MissingExtraError

try:
    import accelerate  # noqa: F401
    import trl  # noqa: F401
except ImportError as exc:  # exercised by a test that hides trl
    raise MissingExtraError(
        getattr(exc, "name", None) or "trl", "trl", "rewardfilter.adapters.trl"
    ) from exc

from .config import LOCAL_RUN, PFGRPOConfig
from .trainer import PFGRPOTrainer

__all__ = ["LOCAL_RUN", "PFGRPOConfig", "PFGRPOTrainer"]
