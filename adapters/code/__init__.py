"""PF-PPO for code generation: task sets, a sandboxed executor, and the trainer.

This package's ``__init__`` stays light (standard library only: no torch or
transformers) so that loading tasks or executing programs does not pay for
the model stack. Import the heavy modules explicitly:
``rewardfilter.adapters.code.ppo`` (``PFPPOTrainer``, ``PFPPOConfig``),
``rewardfilter.adapters.code.reward`` (the reward model),
``rewardfilter.adapters.code.config`` (every config dataclass).
"""

from .curriculum import FAMILIES, make_curriculum
from .sandbox import ExecResult, build_program, execute, execute_many, score_completions
from .tasks import CodeTask, load_humaneval, load_jsonl, save_jsonl

__all__ = [
    "FAMILIES",
    "CodeTask",
    "ExecResult",
    "build_program",
    "execute",
    "execute_many",
    "load_humaneval",
    "load_jsonl",
    "make_curriculum",
    "save_jsonl",
    "score_completions",
]
