"""Checkpoints of a PF-PPO run: everything resume needs, written atomically by the main process.

``state.pt`` holds the policy and critic weights, both optimisers and
learning-rate schedules, the gradient scaler, every process's RNG states,
the prompt order, the running reward statistics, the window of labelled
samples (pooled R², ``adaptive``), the adaptive filter's choice and the
iteration. The policy is also exported under ``policy/`` so
that evaluation and ``from_pretrained`` load it like any model: a full model,
or, for a LoRA policy, the adapter with its base model's path recorded
(``adapter_config.json``); ``save_merged`` adds a merged full copy under
``policy_merged/``.
"""

from __future__ import annotations

import copy
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
_EXPORTS = ("policy", "policy_merged")


def save_checkpoint(self: Any, directory: str | os.PathLike) -> Path:
    """Save everything resume needs (atomically: a crash mid-save keeps the previous checkpoint)."""
    from ..models import is_lora

    directory = Path(directory)
    rng_states = self.dist.gather(self.rng.bit_generator.state)  # one per process
    if not self.dist.is_main:
        self.dist.wait()
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / ".tmp_checkpoint"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {
        "iteration": self.iteration,
        "samples_generated": self.samples_generated,
        "samples_used": self.samples_used,
        "gradient_steps": self.gradient_steps,
        "policy": self.policy.state_dict(),
        "critic": self.critic.state_dict(),
        "policy_opt": self.policy_opt.state_dict(),
        "critic_opt": self.critic_opt.state_dict(),
        "policy_sched": self.policy_sched.state_dict(),
        "critic_sched": self.critic_sched.state_dict(),
        "scaler": self.scaler.state_dict(),
        "np_rng": rng_states,
        "order_rng": self.order_rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "order": self._order,
        "cursor": self._cursor,
        "running": dict(self.normaliser.running),
        "window": list(self.window.items),  # the pooled R² and adaptive continue across a resume
        "adaptive_choice": self.filter.resolved.spec
        if self.filter.requires_fit and self.filter.is_fitted
        else None,
        "config": asdict(self.config),
    }
    torch.save(state, tmp / STATE)
    if hasattr(self.policy, "save_pretrained"):
        self.policy.save_pretrained(tmp / "policy")
        exports = ["policy"]
        if self.config.save_merged and is_lora(self.policy):
            copy.deepcopy(self.policy).merge_and_unload().save_pretrained(tmp / "policy_merged")
            exports.append("policy_merged")
        if hasattr(self.tokenizer, "save_pretrained"):
            for name in exports:
                self.tokenizer.save_pretrained(tmp / name)
    for name in (STATE, *_EXPORTS):
        if (directory / name).exists():
            if (directory / name).is_dir():
                shutil.rmtree(directory / name)
            else:
                (directory / name).unlink()
    for name in _EXPORTS:
        if (tmp / name).exists():
            os.replace(tmp / name, directory / name)
    os.replace(tmp / STATE, directory / STATE)  # lands last: it marks a complete checkpoint
    shutil.rmtree(tmp, ignore_errors=True)
    self.dist.wait()
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
    for name in ("policy_sched", "critic_sched", "scaler"):
        if state.get(name) is not None:
            getattr(self, name).load_state_dict(state[name])
    rng_states = state["np_rng"]
    if isinstance(rng_states, list):  # one per process of the run that saved it
        rank = self.dist.rank if self.dist.rank < len(rng_states) else 0
        self.rng.bit_generator.state = rng_states[rank]
    else:
        self.rng.bit_generator.state = rng_states
    if state.get("order_rng") is not None:
        self.order_rng.bit_generator.state = state["order_rng"]
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    self.iteration, self.samples_used = state["iteration"], state["samples_used"]
    self.samples_generated = state["samples_generated"]
    # a checkpoint from before the counter: the policy schedule counts the same optimiser steps
    self.gradient_steps = state.get("gradient_steps", self.policy_sched.last_epoch)
    self._order, self._cursor = np.asarray(state["order"]), state["cursor"]
    self.normaliser.running = dict(state["running"])
    self.window.items.clear()
    self.window.items.extend(state.get("window") or [])
    if state.get("adaptive_choice") and isinstance(self.filter, rf.AdaptiveFilter):
        self.filter.chosen_ = rf.make_filter(state["adaptive_choice"])
