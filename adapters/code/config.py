"""Every config dataclass of the code domain, in one place (the TRL habit).

Each field carries its help text in ``metadata["help"]``; that text is also
the command line's ``--help`` (:mod:`rewardfilter.adapters.code.cli`), one
source of truth. Every config checks itself on construction.

* :class:`PFPPOConfig`: the PF-PPO trainer (``rewardfilter code train``);
* :class:`RewardModelConfig`: how a reward-model ensemble is trained;
* :class:`RewardDataConfig`: which responses it learns from and is judged on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import rewardfilter as rf
from rewardfilter.validation import check_bool, check_scalar, is_number, param_error

from .device import DTYPE_NAMES

__all__ = ["PFPPOConfig", "RewardDataConfig", "RewardModelConfig"]

_OWNER = "PFPPOConfig"


@dataclass
class PFPPOConfig:
    """Hyper-parameters of PF-PPO; each field's help text is also the CLI's help.

    Defaults follow the PF-PPO authors where they published a value (N = 5,
    gamma = 1, lambda = 0.95, clip 0.2, value clip 0.2, KL coefficient 0.01,
    temperature 1.0, top-p 0.9, filter BR; the ``resample`` realisation of a
    filter, per-sequence-then-batch loss mean, rewards normalised with the
    reward model's stored mean and std and clamped at +-10, Adam betas
    (0.9, 0.95), a cosine learning-rate schedule with 3% warm-up, the critic
    initialised from the reward model). Learning rates are those common for
    PPO-RLHF on billion-parameter models; a few-million-parameter model
    trained on CPU wants them 10-100x larger.
    """

    # --- sampling -----------------------------------------------------------
    samples_per_prompt: int = field(
        default=5,
        metadata={
            "help": "N: responses sampled per prompt (the group the filter ranks within). PF-PPO: 5."
        },
    )
    prompts_per_iteration: int = field(
        default=8,
        metadata={
            "help": "Prompts (tasks) per iteration; an iteration samples prompts_per_iteration * N responses."
        },
    )
    iterations: int = field(default=100, metadata={"help": "Training iterations run by train()."})
    temperature: float = field(
        default=1.0,
        metadata={
            "help": "Sampling temperature (also divides the logits when computing log-probabilities, so PPO's ratios refer to the sampling distribution)."
        },
    )
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling threshold in (0, 1]."})
    max_new_tokens: int = field(
        default=128,
        metadata={"help": "Longest response, in tokens; a truncated response is scored as it is."},
    )
    # --- filtration ---------------------------------------------------------
    filter: str = field(
        default="br",
        metadata={
            "help": "Core filter spec applied per prompt group: none (PPO-M), random:K, bon, br, bw, topk:K, rank:w1,...,wN, uncertainty:Q, adaptive."
        },
    )
    realisation: str = field(
        default="resample",
        metadata={
            "help": "How a filter enters training. 'resample' (the authors' main path): every response goes through the forward passes, advantages are whitened over all of them, and each epoch draws as many samples as the rollout holds, with replacement, with probability proportional to the filter's expected weight (BR with N=5: 0.5 best, 0.125 each other), so every filter takes the same number of gradient steps. 'drop' (the authors' openrlhf_filter): train only on the kept responses, whitening over them."
        },
    )
    adaptive_window: int = field(
        default=8,
        metadata={
            "help": "Iterations pooled for 'adaptive' (refitted every iteration on them) and for the logged filtered_r2; one iteration's few kept samples make R² meaningless."
        },
    )
    reweight: str = field(
        default="sample",
        metadata={
            "help": "With realisation 'drop', how a non-binary rank: filter enters training: 'sample' (weighted sampling with replacement, the authors' replay buffer) or 'loss' (per-sample loss weights)."
        },
    )
    # --- PPO ----------------------------------------------------------------
    gamma: float = field(
        default=1.0, metadata={"help": "Discount over response tokens. PF-PPO: 1."}
    )
    lam: float = field(default=0.95, metadata={"help": "GAE lambda. PF-PPO: 0.95."})
    clip: float = field(default=0.2, metadata={"help": "PPO ratio clip epsilon. PF-PPO: 0.2."})
    value_clip: float = field(
        default=0.2, metadata={"help": "Clip on the value change per update. PF-PPO: 0.2."}
    )
    kl_coef: float = field(
        default=0.01,
        metadata={
            "help": "Coefficient of the per-token KL penalty to the frozen reference. PF-PPO: 0.01."
        },
    )
    ppo_epochs: int = field(
        default=1, metadata={"help": "Passes over the kept samples per iteration."}
    )
    minibatch_size: int = field(
        default=8,
        metadata={
            "help": "Samples per optimiser step, over all processes (the global batch); under `accelerate launch` each process takes minibatch_size / num_processes of them."
        },
    )
    micro_batch_size: int = field(
        default=0,
        metadata={
            "help": "Samples per forward/backward pass on one process; gradients accumulate up to the minibatch (0: the whole per-process minibatch at once). Also the chunk size of the no-grad forward passes."
        },
    )
    loss_aggregation: str = field(
        default="seq_mean",
        metadata={
            "help": "How token losses become one number: 'seq_mean' (mean over each response's tokens, then over responses: the authors' OpenRLHF) or 'token_mean' (mean over all tokens of the minibatch: TRL)."
        },
    )
    policy_lr: float = field(default=5e-7, metadata={"help": "Adam learning rate of the policy."})
    critic_lr: float = field(default=9e-6, metadata={"help": "Adam learning rate of the critic."})
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam beta1. PF-PPO: 0.9."})
    adam_beta2: float = field(default=0.95, metadata={"help": "Adam beta2. PF-PPO: 0.95."})
    lr_schedule: str = field(
        default="cosine",
        metadata={
            "help": "Learning-rate schedule over iterations x optimiser steps: 'cosine' (transformers' get_cosine_schedule_with_warmup, as the authors) or 'constant'."
        },
    )
    warmup_ratio: float = field(
        default=0.03,
        metadata={
            "help": "Fraction of the planned optimiser steps spent warming up. PF-PPO: 0.03."
        },
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "Gradient-norm clip per model (<= 0 disables)."}
    )
    reward_norm: str = field(
        default="model",
        metadata={
            "help": "Reward normalisation before PPO: 'model' (the reward model's stored mean and std of its training rewards, as the authors; no shift for a reward without them, e.g. the oracle), 'none', 'batch' (standardise the trained samples' rewards per iteration) or 'running' (running mean/std over all rewards seen)."
        },
    )
    reward_clip: float = field(
        default=10.0,
        metadata={"help": "Clamp of the normalised reward to [-c, c] (<= 0: none). PF-PPO: 10."},
    )
    critic_init: str = field(
        default="reward_model",
        metadata={
            "help": "Where from_pretrained starts the critic: 'reward_model' (backbone and head of the reward model's first member, as the authors; the policy when the reward is not a learned model) or 'policy' (the policy's backbone, a fresh head)."
        },
    )
    whiten_advantages: bool = field(
        default=True,
        metadata={"help": "Standardise advantages over the kept tokens of the iteration."},
    )
    # --- infrastructure -----------------------------------------------------
    seed: int = field(
        default=0,
        metadata={"help": "Seed of every random choice (prompt order, sampling, filter ties)."},
    )
    device: str = field(
        default="auto", metadata={"help": "'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:K'."}
    )
    dtype: str = field(
        default="float32",
        metadata={
            "help": "Compute dtype: float32, bfloat16, float16 or auto (bf16 on a GPU). Trained models keep float32 master weights; bf16/fp16 run their forward passes under autocast (fp16 with a gradient scaler). With float32 here, `accelerate launch --mixed_precision bf16|fp16` selects the compute dtype instead."
        },
    )
    checkpoint_dir: str | None = field(
        default=None,
        metadata={
            "help": "Directory for checkpoints (and the JSONL log); a run with an existing checkpoint there resumes from it."
        },
    )
    checkpoint_every: int = field(
        default=0,
        metadata={"help": "Save a checkpoint every K iterations (0: only at the end of train())."},
    )
    log_path: str | None = field(
        default=None,
        metadata={
            "help": "JSONL log of per-iteration records (default: CHECKPOINT_DIR/log.jsonl, or none)."
        },
    )
    save_merged: bool = field(
        default=False,
        metadata={
            "help": "With a LoRA policy, also save a merged full model under policy_merged/ in each checkpoint (policy/ holds the adapter with its base recorded)."
        },
    )
    progress: bool = field(default=True, metadata={"help": "Show a tqdm progress bar in train()."})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; the one place a bad value is reported (scikit-learn style)."""

        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise param_error(name, _OWNER, expected, getattr(self, name))

        def is_int(v: Any) -> bool:
            return is_number(v, "int")

        is_num = is_number

        for name in (
            "samples_per_prompt",
            "prompts_per_iteration",
            "iterations",
            "max_new_tokens",
            "ppo_epochs",
            "minibatch_size",
            "adaptive_window",
        ):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "an int >= 1")
        need(
            is_int(self.checkpoint_every) and self.checkpoint_every >= 0,
            "checkpoint_every",
            "an int >= 0",
        )
        need(is_int(self.seed), "seed", "an int")
        need(
            is_int(self.micro_batch_size) and self.micro_batch_size >= 0,
            "micro_batch_size",
            "an int >= 0",
        )
        need(self.realisation in ("drop", "resample"), "realisation", "'drop' or 'resample'")
        need(
            self.loss_aggregation in ("seq_mean", "token_mean"),
            "loss_aggregation",
            "'seq_mean' or 'token_mean'",
        )
        need(self.lr_schedule in ("cosine", "constant"), "lr_schedule", "'cosine' or 'constant'")
        need(
            self.critic_init in ("reward_model", "policy"),
            "critic_init",
            "'reward_model' or 'policy'",
        )
        for name in ("adam_beta1", "adam_beta2"):
            need(
                is_num(getattr(self, name)) and 0 <= getattr(self, name) < 1,
                name,
                "a float in [0, 1)",
            )
        need(
            is_num(self.warmup_ratio) and 0 <= self.warmup_ratio < 1,
            "warmup_ratio",
            "a float in [0, 1)",
        )
        need(is_num(self.reward_clip), "reward_clip", "a float (<= 0 disables the clamp)")
        check_bool(self.save_merged, "save_merged", _OWNER)
        need(is_num(self.temperature) and self.temperature > 0, "temperature", "a float > 0")
        need(is_num(self.top_p) and 0 < self.top_p <= 1, "top_p", "a float in (0, 1]")
        need(is_num(self.gamma) and 0 <= self.gamma <= 1, "gamma", "a float in [0, 1]")
        need(is_num(self.lam) and 0 <= self.lam <= 1, "lam", "a float in [0, 1]")
        for name in ("clip", "value_clip", "policy_lr", "critic_lr"):
            need(is_num(getattr(self, name)) and getattr(self, name) > 0, name, "a float > 0")
        need(is_num(self.kl_coef) and self.kl_coef >= 0, "kl_coef", "a float >= 0")
        need(is_num(self.max_grad_norm), "max_grad_norm", "a float (<= 0 disables clipping)")
        need(self.reweight in ("sample", "loss"), "reweight", "'sample' or 'loss'")
        need(
            self.reward_norm in ("model", "none", "batch", "running"),
            "reward_norm",
            "'model', 'none', 'batch' or 'running'",
        )
        need(
            self.dtype in (*DTYPE_NAMES, "auto"),
            "dtype",
            "'auto' or one of " + ", ".join(DTYPE_NAMES),
        )
        need(
            isinstance(self.device, str)
            and (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")),
            "device",
            "'auto', 'cpu', 'cuda', 'cuda:K' or 'mps'",
        )
        check_bool(self.whiten_advantages, "whiten_advantages", _OWNER)
        check_bool(self.progress, "progress", _OWNER)
        # the filter must exist and must be servable by groups of N samples
        filt = rf.make_filter(self.filter)
        filt.check_group_size(self.samples_per_prompt)
        for name in ("checkpoint_dir", "log_path"):
            path = getattr(self, name)
            if path is None:
                continue
            need(isinstance(path, (str, os.PathLike)) and str(path) != "", name, "a path or None")
            p = Path(path)
            if name == "checkpoint_dir" and p.exists() and not p.is_dir():
                raise ValueError(
                    f"The 'checkpoint_dir' parameter of {_OWNER} must be a directory; {str(p)!r} is a file."
                )
            if name == "log_path" and p.is_dir():
                raise ValueError(
                    f"The 'log_path' parameter of {_OWNER} must be a file path; {str(p)!r} is a directory."
                )

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (what a command line shows)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass
class RewardModelConfig:
    """How a reward model (ensemble) is trained; saved beside it."""

    objective: str = field(
        default="bt",
        metadata={
            "help": "'bt' (Bradley-Terry on pairs of the same prompt, as the PF-PPO authors) or 'pointwise' (MSE to the true score)."
        },
    )
    pairs: str = field(
        default="pass_fail",
        metadata={
            "help": "Which pairs 'bt' uses: 'pass_fail' (a passing vs a failing response, the authors' rule) or 'score' (any two responses whose true scores differ)."
        },
    )
    max_pairs_per_prompt: int = field(
        default=4,
        metadata={
            "help": "Cap on pairs drawn per prompt, so prompts with many samples do not dominate."
        },
    )
    ensemble_size: int = field(default=3, metadata={"help": "Number K of members of the ensemble."})
    bootstrap: bool = field(
        default=True,
        metadata={
            "help": "Train each member on a bootstrap resample of the prompts (besides its own seed)."
        },
    )
    epochs: int = field(
        default=2, metadata={"help": "Passes over each member's training pairs (or samples)."}
    )
    batch_size: int = field(
        default=16, metadata={"help": "Pairs (bt) or samples (pointwise) per optimiser step."}
    )
    learning_rate: float = field(
        default=3e-4, metadata={"help": "AdamW learning rate of the backbone."}
    )
    head_learning_rate: float = field(
        default=3e-3, metadata={"help": "AdamW learning rate of the scalar head."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    head_init_std: float = field(
        default=0.02,
        metadata={"help": "Std of the head's initial weights (members differ from the start)."},
    )
    max_length: int = field(
        default=256,
        metadata={"help": "Token cap of prompt + completion (longer inputs keep their end)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of member k is seed + k."})
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu' or 'cuda[:i]'."})

    def __post_init__(self) -> None:
        if self.objective not in ("bt", "pointwise"):
            raise ValueError(
                f"The 'objective' parameter of RewardModelConfig must be 'bt' or 'pointwise'; got {self.objective!r}."
            )
        if self.pairs not in ("pass_fail", "score"):
            raise ValueError(
                f"The 'pairs' parameter of RewardModelConfig must be 'pass_fail' or 'score'; got {self.pairs!r}."
            )
        for name in ("max_pairs_per_prompt", "ensemble_size", "epochs", "batch_size", "max_length"):
            check_scalar(getattr(self, name), name, "RewardModelConfig", "int", min_val=1)
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if not (is_number(value) and value > 0):
                raise param_error(name, "RewardModelConfig", "a float > 0", value)


@dataclass
class RewardDataConfig:
    """Which responses the reward model learns from and is judged on."""

    train_per_family: int = field(
        default=60,
        metadata={
            "help": "Curriculum train-split prompts per family whose samples train the reward model (30 gave held-out accuracy 0.70, 60 gave 0.86 on the default tiny model)."
        },
    )
    heldout_per_family: int = field(
        default=15,
        metadata={
            "help": "Curriculum held-out prompts per family whose samples measure it (accuracy, R²)."
        },
    )
    families: list[str] | None = field(
        default=None, metadata={"help": "Curriculum families (default: all)."}
    )
    n_samples: int = field(
        default=8, metadata={"help": "Responses sampled per prompt from the starting policy."}
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature (PF-PPO samples at 1.0)."}
    )
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=96, metadata={"help": "Longest response, in tokens."})
    sample_batch_size: int = field(default=32, metadata={"help": "Prompts per generation call."})
    data_seed: int = field(
        default=1,
        metadata={
            "help": "Seed of the prompt draw and the sampling (use another seed than PPO's)."
        },
    )

    def __post_init__(self) -> None:
        for name in (
            "train_per_family",
            "heldout_per_family",
            "n_samples",
            "max_new_tokens",
            "sample_batch_size",
        ):
            check_scalar(getattr(self, name), name, "RewardDataConfig", "int", min_val=1)
