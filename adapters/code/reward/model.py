"""The reward model: a scalar head read at the response's last token, and an ensemble of them.

The API the PPO trainer uses is ``predict(prompts, completions) -> (n,)``
(the rewards: the ensemble mean) and ``predict_members(prompts, completions)
-> (K, n)`` (each member's rewards). Words as in the README: a reward model's
output is a *reward*; *score* is the true score only. ``score`` /
``score_members`` are deprecated aliases of the two.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RewardModelConfig
from ..models import ScalarHeadModel, load_tokenizer

__all__ = ["ENSEMBLE_FILE", "RewardEnsemble", "RewardModel", "has_reward_api", "predict_rewards"]

ENSEMBLE_FILE = "reward_ensemble.json"


def has_reward_api(reward: Any) -> bool:
    """Whether ``reward`` can give rewards: ``predict_members``, ``predict``, or a callable."""
    return any(hasattr(reward, m) for m in ("predict_members", "predict", *_LEGACY)) or callable(
        reward
    )


#: former method names (deprecated): what an outside reward object may still have
_LEGACY = {"score_members": "predict_members", "score": "predict"}


def predict_rewards(
    reward: Any, prompts: Sequence[str], completions: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rewards (n,), members (K, n) or None)`` from a reward model, ensemble or callable.

    The one place that reads a reward object: ``predict_members`` (the
    rewards are the members' mean), else ``predict``, else a call; an
    object with only the former names ``score_members`` / ``score`` is read
    through them with a DeprecationWarning.
    """
    n = len(prompts)
    for old, new in _LEGACY.items():
        if not hasattr(reward, new) and hasattr(reward, old):
            warnings.warn(
                f"A reward object with {old}() is deprecated: name the method {new}().",
                DeprecationWarning,
                stacklevel=2,
            )
    members_fn = getattr(reward, "predict_members", None) or getattr(reward, "score_members", None)
    if members_fn is not None:
        members = np.asarray(members_fn(prompts, completions), dtype=float)
        if members.ndim != 2 or members.shape[1] != n:
            raise ValueError(
                f"predict_members must return a (K, n={n}) array; got shape {members.shape}."
            )
        return members.mean(axis=0), members
    fn = getattr(reward, "predict", None) or getattr(reward, "score", None) or reward
    rewards = np.asarray(fn(prompts, completions), dtype=float).reshape(-1)
    if rewards.shape[0] != n:
        raise ValueError(f"The reward returned {rewards.shape[0]} rewards for {n} samples.")
    return rewards, None


def _deprecated_alias(old: str, new: str):
    """A method ``old`` that warns and calls ``new`` (former names, kept for callers)."""

    def alias(self, *args, **kwargs):
        warnings.warn(
            f"{type(self).__name__}.{old} is deprecated: use {new} (a reward model's output "
            "is a reward; 'score' means the true score only).",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, new)(*args, **kwargs)

    alias.__name__ = old
    return alias


class RewardModel(ScalarHeadModel):
    """Scalar-head model whose reward is its value at the response's last token.

    The text scored is ``prompt + completion`` followed by EOS, the same
    string the policy produced, so the final position has read the whole
    program, including where it ended.
    """

    kind = "reward"

    def __init__(self, backbone, head_init_std: float = 0.0, tokenizer=None, max_length: int = 256):
        super().__init__(backbone, head_init_std=head_init_std)
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(
        self, prompts: Sequence[str], completions: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and mask of ``prompt + completion + EOS``, end kept if too long."""
        if self.tokenizer is None:
            raise ValueError(
                "This RewardModel has no tokenizer; pass tokenizer= or load it with from_pretrained."
            )
        if len(prompts) != len(completions):
            raise ValueError(
                f"predict needs one prompt per completion; got {len(prompts)} prompts and {len(completions)} completions."
            )
        tok = self.tokenizer
        eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        seqs = [
            (tok(p + c, add_special_tokens=False)["input_ids"] + eos)[-self.max_length :]
            for p, c in zip(prompts, completions, strict=True)
        ]
        enc = tok.pad({"input_ids": seqs}, padding_side="right", return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """Differentiable rewards, shape ``(n,)`` (used in training)."""
        ids, mask = self.encode(prompts, completions)
        return self.last_token_values(ids, mask)

    @torch.no_grad()
    def predict(
        self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        """Rewards as a numpy array, shape ``(n,)``, in eval mode and batches."""
        was = self.training
        self.eval()
        try:
            out = [
                self.rewards(prompts[i : i + batch_size], completions[i : i + batch_size])
                .cpu()
                .numpy()
                for i in range(0, len(prompts), batch_size)
            ]
        finally:
            self.train(was)
        return np.concatenate(out).astype(float) if out else np.zeros(0)

    def predict_members(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """A single model is an ensemble of one: shape ``(1, n)``."""
        return self.predict(prompts, completions)[None, :]

    score = _deprecated_alias("score", "predict")
    score_members = _deprecated_alias("score_members", "predict_members")

    def save_pretrained(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        p = super().save_pretrained(path, {"max_length": self.max_length, **(extra or {})})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(p)
        return p

    @classmethod
    def from_pretrained(cls, path, *, device="auto", dtype="auto") -> RewardModel:
        model = super().from_pretrained(path, device=device, dtype=dtype)
        meta = json.loads((Path(path) / "scalar_head.json").read_text())
        model.max_length = int(meta.get("max_length", 256))
        model.tokenizer = load_tokenizer(path, padding_side="right")
        return model


class RewardEnsemble:
    """K reward models scored together; the reward is their mean.

    Parameters
    ----------
    members : list of RewardModel
        Non-empty; they must share a tokenizer vocabulary (they are trained
        from the same policy).
    config : RewardModelConfig, optional
        Saved beside the members for the record.
    """

    def __init__(self, members: Sequence[RewardModel], config: RewardModelConfig | None = None):
        members = list(members)
        if not members:
            raise ValueError("A RewardEnsemble needs at least one member; got none.")
        self.members = members
        self.config = config
        self.report: dict = {}
        #: mean and std of the ensemble's rewards on its training responses (set by
        #: train_reward_ensemble, saved beside it): what PPO's reward_norm="model" uses
        self.reward_stats: dict | None = None

    def __len__(self) -> int:
        return len(self.members)

    def to(self, device) -> RewardEnsemble:
        for m in self.members:
            m.to(device)
        return self

    def predict_members(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Reward of every member, shape ``(K, n)`` (the core's ``ensemble``)."""
        prompts, completions = list(prompts), list(completions)
        return np.stack([m.predict(prompts, completions) for m in self.members])

    def predict(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Ensemble-mean reward, shape ``(n,)``."""
        return self.predict_members(prompts, completions).mean(axis=0)

    __call__ = predict
    score = _deprecated_alias("score", "predict")
    score_members = _deprecated_alias("score_members", "predict_members")

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """One sub-directory per member plus ``reward_ensemble.json``."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        names = []
        for k, m in enumerate(self.members):
            name = f"member_{k}"
            m.save_pretrained(p / name)
            names.append(name)
        meta = {
            "members": names,
            "config": asdict(self.config) if self.config is not None else None,
            "report": self.report,
            "reward_stats": self.reward_stats,
        }
        (p / ENSEMBLE_FILE).write_text(json.dumps(meta, indent=2))
        return p

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, device="auto", dtype="auto"
    ) -> RewardEnsemble:
        """Load an ensemble (or a single :class:`RewardModel` directory as K = 1)."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"The reward model path {str(p)!r} does not exist.")
        if (p / ENSEMBLE_FILE).is_file():
            meta = json.loads((p / ENSEMBLE_FILE).read_text())
            members = [
                RewardModel.from_pretrained(p / n, device=device, dtype=dtype)
                for n in meta["members"]
            ]
            cfg = RewardModelConfig(**meta["config"]) if meta.get("config") else None
            ens = cls(members, cfg)
            ens.report = meta.get("report") or {}
            ens.reward_stats = meta.get("reward_stats")
            return ens
        return cls([RewardModel.from_pretrained(p, device=device, dtype=dtype)])
