"""Building a PF-PPO trainer: input checks, the critic's starting point, the LR schedule."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

import rewardfilter as rf

from ..config import PFPPOConfig

__all__ = ["check_inputs", "first_scalar_member", "from_pretrained", "schedule"]


def from_pretrained(
    cls: type,
    model_path: str | os.PathLike,
    tasks: Sequence[Any],
    reward: Any,
    config: PFPPOConfig | None = None,
    *,
    critic_path: str | os.PathLike | None = None,
    lora: dict | None = None,
    critic_lora: dict | None = None,
    true_score: Callable[[Sequence[Any], Sequence[str]], Any] | None = None,
):
    """Build a trainer from a local causal-LM directory (what the CLI and the runner use).

    The policy and its tokenizer come from ``model_path`` (``lora``: train
    LoRA adapters of these :func:`~..models.apply_lora` arguments, the
    reference is then the base with the adapter disabled). The critic is,
    by ``config.critic_init``: a copy of the reward model's first member
    (backbone and head, as the PF-PPO authors), or a fresh value head on
    the policy's backbone (also the fallback when the reward is not a
    learned model); ``critic_path`` overrides both. ``critic_lora`` puts
    LoRA adapters on the critic's backbone. Config, tasks, reward and the
    paths are checked before any weights load.
    """
    from ..models import ValueModel, apply_lora, check_causal_lm_path, load_policy

    config = PFPPOConfig() if config is None else config
    check_inputs(config, tasks, reward)
    check_causal_lm_path(model_path, what="policy")
    if critic_path is not None:
        check_causal_lm_path(critic_path, what="critic")
    policy, tokenizer = load_policy(model_path, device="cpu", dtype="float32", lora=lora)
    member = first_scalar_member(reward)
    if critic_path is not None:
        critic = ValueModel.from_causal_lm(critic_path, device="cpu", dtype="float32")
    elif config.critic_init == "reward_model" and member is not None:
        critic = ValueModel.from_scalar_head(member).to("cpu", torch.float32)
    else:
        critic = ValueModel.from_causal_lm(model_path, device="cpu", dtype="float32")
    if critic_lora is not None:
        critic.backbone = apply_lora(critic.backbone, task_type="FEATURE_EXTRACTION", **critic_lora)
    reference = None if lora is not None else copy.deepcopy(policy)
    return cls(
        config,
        policy,
        tokenizer,
        critic,
        tasks,
        reward,
        reference=reference,
        true_score=true_score,
    )


# =====================================================================
# one iteration


def schedule(opt: torch.optim.Optimizer, cfg: PFPPOConfig, world: int):
    """Cosine with warm-up over the planned optimiser steps (transformers), or constant."""
    from transformers import get_constant_schedule, get_cosine_schedule_with_warmup

    if cfg.lr_schedule == "constant":
        return get_constant_schedule(opt)
    rows = cfg.prompts_per_iteration // world * cfg.samples_per_prompt  # one process's rollout
    per_iteration = cfg.ppo_epochs * math.ceil(rows / max(1, cfg.minibatch_size // world))
    total = max(1, cfg.iterations * per_iteration)
    return get_cosine_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * total), total)


def first_scalar_member(reward: Any) -> Any:
    """The reward model (or an ensemble's first member) a critic can start from, or None."""
    from ..models import ScalarHeadModel

    if isinstance(reward, ScalarHeadModel):
        return reward
    members = getattr(reward, "members", None)
    if members and isinstance(members[0], ScalarHeadModel):
        return members[0]
    return None


def check_inputs(config: Any, tasks: Any, reward: Any) -> tuple[list[Any], rf.Filter]:
    """Validate what a trainer is given, before any model is loaded or sampled."""
    if not isinstance(config, PFPPOConfig):
        raise TypeError(f"config must be a PFPPOConfig; got {type(config).__name__}.")
    config.validate()
    tasks = list(tasks) if tasks is not None else []
    if not tasks:
        raise ValueError("The task set is empty; PF-PPO needs at least one training task (prompt).")
    missing = [i for i, t in enumerate(tasks) if not isinstance(getattr(t, "prompt", None), str)]
    if missing:
        raise ValueError(f"Every task needs a string 'prompt'; task {missing[0]} has none.")
    from ..reward.model import has_reward_api

    if not (isinstance(reward, str) and reward == "true") and not has_reward_api(reward):
        raise ValueError(
            "reward must have predict_members(...) or predict(...), be a callable, or be 'true'."
        )
    filt = rf.make_filter(config.filter)
    if filt.needs_ensemble and not (
        hasattr(reward, "predict_members") or hasattr(reward, "score_members")
    ):
        raise ValueError(
            f"Filter {filt.spec!r} needs a reward-model ensemble: reward must have "
            "predict_members(prompts, completions)."
        )
    return tasks, filt
