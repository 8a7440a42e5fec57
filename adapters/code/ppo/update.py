"""Step 6 of a PF-PPO iteration: clipped PPO policy and value updates over epochs x minibatches.

:func:`update` is what :meth:`PFPPOTrainer.update` runs; it takes the
trainer for its models, optimisers, schedules, random generator and
collectives. The pure pieces (:func:`epoch_order`, :func:`loss_count`) take
plain arrays; the losses themselves are in :mod:`.losses`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch

from . import losses
from .experience import Experience, prompt_len_of

__all__ = ["epoch_order", "loss_count", "optimiser_step", "update"]


def epoch_order(rng: np.random.Generator, m: int, probs: np.ndarray | None) -> np.ndarray:
    """The rows of one epoch: a permutation of ``m``, or ``m`` draws with replacement by ``probs``."""
    if m == 0:
        return np.zeros(0, dtype=int)
    if probs is not None:
        return rng.choice(m, size=m, p=probs)
    return rng.permutation(m)


def loss_count(mask: torch.Tensor, loss_weights: torch.Tensor | None, aggregation: str):
    """This process's share of the loss mean's denominator: (weighted) tokens or responses."""
    ones = torch.ones(mask.shape[0], device=mask.device) if loss_weights is None else loss_weights
    if aggregation == "token_mean":
        return (mask.sum(-1) * ones).sum()
    return ((mask.sum(-1) > 0).float() * ones).sum()


def update(trainer: Any, exp: Experience) -> dict:
    """Clipped PPO policy and value updates over epochs and minibatches.

    Each epoch orders this process's rows (a permutation, or weighted
    draws with replacement); every process then takes the same number of
    optimiser steps, each over ``minibatch_size / num_processes`` rows of
    its own (an empty share still joins the gradient all-reduce).
    """
    cfg = trainer.config
    m = 0 if exp.placeholder else exp.index.shape[0]
    local_mb = max(1, cfg.minibatch_size // trainer.dist.world_size)
    trainer.policy.train()
    trainer.critic.train()
    acc: dict[str, list[float]] = {}
    trained: set[int] = set()
    tokens = 0.0
    for _ in range(cfg.ppo_epochs):
        order = epoch_order(trainer.rng, m, exp.sample_probs)
        n_steps = trainer.dist.max_int(math.ceil(len(order) / local_mb))
        trainer.gradient_steps += n_steps
        for s in range(n_steps):
            rows = order[s * local_mb : (s + 1) * local_mb]
            for k, v in optimiser_step(trainer, exp, rows).items():
                acc.setdefault(k, []).append(v)
            picked = torch.as_tensor(rows, dtype=torch.long)
            trained.update(exp.index[picked].tolist())
            tokens += float(exp.mask[picked].sum())
    trainer.last_trained = sorted(trained)
    trainer.last_trained_tokens = tokens  # response tokens through forward/backward, repeats too
    out = {k: float(np.mean(v)) for k, v in acc.items()}
    for k in ("policy_loss", "value_loss"):  # each process holds its share of the global loss
        if k in out:
            out[k] = float(trainer.dist.sum(torch.tensor([out[k]], device=trainer.device)).item())
    return out


def optimiser_step(trainer: Any, exp: Experience, rows: np.ndarray) -> dict[str, float]:
    """One optimiser step over ``rows``: micro-batches accumulate, the last one syncs."""
    cfg, world = trainer.config, trainer.dist.world_size
    empty = len(rows) == 0
    idx = torch.as_tensor(rows if not empty else np.array([0]), dtype=torch.long)
    mask = exp.mask[idx] * (0.0 if empty else 1.0)
    lw = exp.loss_weights[idx] if exp.loss_weights is not None else None
    # the denominator of the loss mean is global: all processes' tokens (or responses)
    local = loss_count(mask, lw, cfg.loss_aggregation)
    denom = trainer.dist.sum(local.reshape(1)).squeeze(0)
    micro = cfg.micro_batch_size or len(idx)
    chunks = [idx[i : i + micro] for i in range(0, len(idx), micro)]
    trainer.policy_opt.zero_grad(set_to_none=True)
    trainer.critic_opt.zero_grad(set_to_none=True)
    plen = prompt_len_of(exp)
    totals = {"policy_loss": 0.0, "value_loss": 0.0}
    stats: dict[str, list[float]] = {}
    for j, c in enumerate(chunks):
        sync = j == len(chunks) - 1
        cmask = mask[j * micro : j * micro + len(c)]
        clw = lw[j * micro : j * micro + len(c)] if lw is not None else None
        ctx = (
            contextlib.nullcontext()
            if sync
            else trainer.dist.no_sync(trainer._policy_train, trainer._critic_train)
        )
        with ctx:
            with trainer._autocast():
                new_lp = trainer._logprobs(
                    trainer._policy_train, exp.input_ids[c], exp.attention_mask[c], plen
                )
                new_v = trainer._values(
                    trainer._critic_train, exp.input_ids[c], exp.attention_mask[c], plen
                )
            kw = {"aggregation": cfg.loss_aggregation, "normaliser": denom}
            pg, pg_stats = losses.policy_loss(
                new_lp.float(), exp.logprobs[c], exp.advantages[c], cmask, cfg.clip, clw, **kw
            )
            vf, vf_stats = losses.value_loss(
                new_v.float(), exp.values[c], exp.returns[c], cmask, cfg.value_clip, clw, **kw
            )
            # DDP averages gradients over processes: scale so that they add up instead
            trainer.scaler.scale((pg + vf) * world).backward()
        totals["policy_loss"] += float(pg.detach())
        totals["value_loss"] += float(vf.detach())
        for k, v in {**pg_stats, **vf_stats}.items():
            stats.setdefault(k, []).append(float(v))
    for opt, model in ((trainer.policy_opt, trainer.policy), (trainer.critic_opt, trainer.critic)):
        trainer.scaler.unscale_(opt)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        trainer.scaler.step(opt)
    trainer.scaler.update()
    trainer.policy_sched.step()
    trainer.critic_sched.step()
    return {**totals, **{k: float(np.mean(v)) for k, v in stats.items()}}
