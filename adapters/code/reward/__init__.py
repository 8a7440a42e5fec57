"""A learned reward model for code: data, model, training, metrics.

See :mod:`.train` for the recipe (sample, label by execution, train a
Bradley-Terry ensemble, measure it on held-out prompts).
"""

from ..config import RewardDataConfig, RewardModelConfig
from .data import RewardData, collect_reward_data, make_pairs
from .metrics import evaluate_reward_model, pairwise_accuracy
from .model import ENSEMBLE_FILE, RewardEnsemble, RewardModel
from .train import (
    bradley_terry_loss,
    build_reward_model,
    train_reward_ensemble,
    train_reward_model,
)

__all__ = [
    "ENSEMBLE_FILE",
    "RewardData",
    "RewardDataConfig",
    "RewardEnsemble",
    "RewardModel",
    "RewardModelConfig",
    "bradley_terry_loss",
    "build_reward_model",
    "collect_reward_data",
    "evaluate_reward_model",
    "make_pairs",
    "pairwise_accuracy",
    "train_reward_ensemble",
    "train_reward_model",
]
