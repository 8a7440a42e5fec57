"""Reward normalisation and the statistics a PF-PPO run logs, pooled over a window of iterations.

One iteration keeps few samples (BR keeps 2 of each prompt's 5): an R² over
them is noise, and over 2 kept samples of one prompt it is 1 by
construction. :class:`Window` therefore pools the last ``adaptive_window``
iterations, both for the logged filtered R² and for fitting ``adaptive``
(the control domain does the same).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch

import rewardfilter as rf
from rewardfilter.io import append_jsonl

__all__ = ["RewardNormaliser", "Window", "finite_or_none", "iteration_record"]


def finite_or_none(x: float | None) -> float | None:
    """JSON-friendly: a finite float, or None for NaN / inf / None."""
    return float(x) if x is not None and math.isfinite(x) else None


class RewardNormaliser:
    """Rewards -> what PPO credits at the last token: normalised, then clamped at +-clip.

    Modes: ``model`` (the reward model's stored ``reward_stats`` mean/std, as
    the authors; identity when the reward has none), ``none``, ``batch`` (the
    trained samples of this iteration, over all processes) and ``running``
    (Welford over every reward seen, over all processes).
    """

    def __init__(self, mode: str, clip: float, reward: Any) -> None:
        self.mode, self.clip = mode, clip
        stats = getattr(reward, "reward_stats", None)
        self.model_stats = (float(stats["mean"]), float(stats["std"])) if stats else None
        self.running = {"count": 0.0, "mean": 0.0, "m2": 0.0}

    def __call__(self, rewards: np.ndarray, trained: np.ndarray, all_rewards: np.ndarray):
        """``rewards`` (local) normalised; ``trained`` / ``all_rewards`` are global arrays."""
        out = np.asarray(rewards, dtype=float)
        if self.mode == "model" and self.model_stats is not None:
            mean, std = self.model_stats
            out = (out - mean) / (std + 1e-8)
        elif self.mode == "batch":
            out = (out - trained.mean()) / (trained.std() + 1e-8)
        elif self.mode == "running":
            r = self.running
            for x in all_rewards:  # Welford update with every reward of the iteration
                r["count"] += 1
                d = x - r["mean"]
                r["mean"] += d / r["count"]
                r["m2"] += d * (x - r["mean"])
            std = math.sqrt(r["m2"] / r["count"]) if r["count"] > 1 else 1.0
            out = (out - r["mean"]) / (std + 1e-8)
        if self.clip > 0:
            out = np.clip(out, -self.clip, self.clip)
        return out


class Window:
    """The labelled samples of the last ``size`` iterations (all processes), pooled."""

    def __init__(self, size: int) -> None:
        self.items: deque[dict[str, np.ndarray | None]] = deque(maxlen=size)

    def add(self, **arrays: np.ndarray | None) -> None:
        self.items.append(arrays)

    def pooled(self, extra: dict[str, np.ndarray | None] | None = None) -> dict[str, Any]:
        """Concatenated arrays; groups made distinct per iteration (ranking stays within one).

        ``extra`` is the current iteration, not yet added: it joins the last
        ``size - 1`` iterations.
        """
        items = list(self.items)
        if extra is not None:
            items = items[len(items) - (self.items.maxlen or 1) + 1 :] + [extra]
        out: dict[str, Any] = {}
        offset = 0
        groups = []
        for it in items:
            groups.append(np.asarray(it["groups"]) + offset)
            offset = int(groups[-1].max()) + 1 if len(groups[-1]) else offset
        out["groups"] = np.concatenate(groups)
        for key in ("rewards", "scores", "weights"):
            if all(it.get(key) is not None for it in items):
                out[key] = np.concatenate([it[key] for it in items])
        members = [it.get("members") for it in items]
        if all(m is not None for m in members) and len({m.shape[0] for m in members}) == 1:
            out["members"] = np.concatenate(members, axis=1)
        else:
            out["members"] = None
        return out

    def stats(self) -> rf.FilterStats:
        """:func:`rewardfilter.filter_stats` over the pooled window (its ``filtered_r2``, ``r2``)."""
        p = self.pooled()
        return rf.filter_stats(p["rewards"], p["weights"], p["groups"], scores=p["scores"])


# ---- the iteration's log record (methods of PFPPOTrainer) ---------------------
def gather_arrays(self, *arrays: np.ndarray) -> dict[str, list[np.ndarray]]:
    names = ("rewards", "scores", "weights")
    return {
        n: self.dist.gather(np.asarray(a, dtype=float)) for n, a in zip(names, arrays, strict=False)
    }


def global_groups(self, groups: np.ndarray) -> np.ndarray:
    """Group ids made distinct across processes (process p's prompts come after p-1's)."""
    share = self.config.prompts_per_iteration // self.dist.world_size
    return np.concatenate(
        [g + p * share for p, g in enumerate(self.dist.gather(np.asarray(groups)))]
    )


def iteration_record(self, rollout, rewards, scores, weights, exp, stats) -> dict:
    """The iteration's log record, over all processes; filtered R² pooled over the window.

    The filter's numbers come from the one record of the core,
    :func:`rewardfilter.filter_stats`: this iteration's (kept fraction, reward
    and true-score means) and the pooled window's (``filtered_r2``, ``r2_all``).
    """
    g = {k: np.concatenate(v) for k, v in self._gather(rewards, scores, weights).items()}
    r, s, w = g["rewards"], g["scores"], g["weights"]
    groups = self._global_groups(rollout.groups)
    now = rf.filter_stats(r, w, groups, scores=s, fallback=self.last_fallback)
    self.window.add(rewards=r, scores=s, weights=w, groups=groups)
    pooled = self.window.stats()
    m = exp.mask
    per_seq_kl = exp.kl.sum(-1)
    sums = torch.tensor(
        [
            float(rollout.response_mask.sum()),
            self.last_trained_tokens,
            float(len(self.last_trained)),
            float(per_seq_kl.sum()) if not exp.placeholder else 0.0,
            0.0 if exp.placeholder else float(m.shape[0]),
        ],
        device=self.device,
    )
    n_tokens, n_trained_tokens, n_used, kl_sum, n_exp = self.dist.sum(sums).tolist()
    self.iteration += 1
    self.samples_generated += len(r)
    self.samples_used += int(n_used)  # samples that entered a gradient update
    return {
        "iteration": self.iteration,
        "samples": now.n_samples,
        "samples_generated": self.samples_generated,
        "samples_used": self.samples_used,
        "gradient_steps": self.gradient_steps,
        "reward_mean": now.reward_mean,
        "reward_kept_mean": now.kept_reward_mean,
        "true_score_mean": now.score_mean,
        "true_pass_rate": float((s >= 1.0).mean()),
        "true_pass_rate_kept": float(np.average(s >= 1.0, weights=w)),
        "kept_fraction": now.kept_fraction,
        "fallback": now.fallback,
        "filtered_r2": finite_or_none(pooled.filtered_r2),
        "r2_all": finite_or_none(pooled.r2),
        "filtered_r2_window": len(self.window.items),
        "kl": kl_sum / max(n_exp, 1.0),  # per-sequence KL to the reference, forwarded samples
        "response_len": n_tokens / len(r),
        "response_tokens": n_tokens,
        "trained_tokens": n_trained_tokens,
        "filter": self.filter.spec
        if self.filter.resolved is self.filter
        else f"{self.filter.spec}->{self.filter.resolved.spec}",
        "policy_lr": self.policy_sched.get_last_lr()[0],
        **stats,
    }


def write_log(self, record: dict) -> None:
    self.history.append(record)
    if self.log_path is not None and self.dist.is_main:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.log_path, record)
