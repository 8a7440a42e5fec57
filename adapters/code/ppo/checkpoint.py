"""Checkpoints of a PF-PPO run: everything resume needs, written atomically."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rewardfilter as rf

__all__ = ["STATE", "load_checkpoint", "save_checkpoint"]

STATE = "state.pt"


def save_checkpoint(self: Any, directory: str | os.PathLike) -> Path:
    """Save everything resume needs (atomically: a crash mid-save keeps the previous checkpoint).

    ``state.pt`` holds the policy and critic weights, both optimizers,
    the numpy and torch RNG states, the prompt order, the running reward
    statistics, the adaptive filter's choice and the iteration; the
    policy is also exported with ``save_pretrained`` under ``policy/`` so
    that evaluation can load it like any model.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / ".tmp_checkpoint"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {
        "iteration": self.iteration,
        "samples_generated": self.samples_generated,
        "samples_used": self.samples_used,
        "policy": self.policy.state_dict(),
        "critic": self.critic.state_dict(),
        "policy_opt": self.policy_opt.state_dict(),
        "critic_opt": self.critic_opt.state_dict(),
        "np_rng": self.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "order": self._order,
        "cursor": self._cursor,
        "running": dict(self._running),
        "adaptive_choice": getattr(self.filter, "chosen_", None) and self.filter.chosen_.spec,
        "config": asdict(self.config),
    }
    torch.save(state, tmp / STATE)
    if hasattr(self.policy, "save_pretrained"):
        self.policy.save_pretrained(tmp / "policy")
        if hasattr(self.tokenizer, "save_pretrained"):
            self.tokenizer.save_pretrained(tmp / "policy")
    for name in (STATE, "policy"):
        if (directory / name).exists():
            if (directory / name).is_dir():
                shutil.rmtree(directory / name)
            else:
                (directory / name).unlink()
    if (tmp / "policy").exists():
        os.replace(tmp / "policy", directory / "policy")
    os.replace(
        tmp / STATE, directory / STATE
    )  # the state file lands last: it marks a complete checkpoint
    shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_checkpoint(self: Any, directory: str | os.PathLike) -> None:
    """Restore a checkpoint written by :meth:`save_checkpoint` (the reference model is not touched)."""
    path = Path(directory) / STATE
    if not path.is_file():
        raise FileNotFoundError(
            f"No PF-PPO checkpoint at {str(directory)!r} (expected {STATE} inside)."
        )
    state = torch.load(path, map_location=self.device, weights_only=False)
    self.policy.load_state_dict(state["policy"])
    self.critic.load_state_dict(state["critic"])
    self.policy_opt.load_state_dict(state["policy_opt"])
    self.critic_opt.load_state_dict(state["critic_opt"])
    self.rng.bit_generator.state = state["np_rng"]
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    self.iteration, self.samples_used = state["iteration"], state["samples_used"]
    self.samples_generated = state["samples_generated"]
    self._order, self._cursor = np.asarray(state["order"]), state["cursor"]
    self._running = dict(state["running"])
    if state.get("adaptive_choice") and isinstance(self.filter, rf.AdaptiveFilter):
        self.filter.chosen_ = rf.make_filter(state["adaptive_choice"])
