"""Step 4 of a PF-PPO iteration: the core filter's weights, ranked within each prompt's group.

:func:`filter_weights` is what :meth:`PFPPOTrainer.filter_weights` runs: it
refits a filter that needs fitting (``adaptive``) on the pooled window of all
processes, weighs this process's samples, and falls back to keeping every
sample when the filter kept none anywhere.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["ensemble_for_filter", "filter_weights"]


def ensemble_for_filter(filt: Any, members: np.ndarray | None) -> np.ndarray | None:
    """The members go to the filter when it needs them or when they can disagree (K >= 2)."""
    if members is None or (members.shape[0] < 2 and not filt.needs_ensemble):
        return None
    return members


def filter_weights(
    trainer: Any,
    rewards: np.ndarray,
    groups: np.ndarray,
    members: np.ndarray | None,
    scores: np.ndarray,
) -> np.ndarray:
    """The core filter's weight per sample, ranked within each prompt's group.

    A filter that ``requires_fit`` (``adaptive``) is refitted every
    iteration on the labelled samples of the last ``adaptive_window``
    iterations of all processes. An iteration whose
    filter keeps nothing on any process falls back to keeping everything,
    with a warning (as the SB3 buffer does).
    """
    ensemble = ensemble_for_filter(trainer.filter, members)
    if trainer.filter.requires_fit:
        now = {k: np.concatenate(v) for k, v in trainer._gather(rewards, scores).items()}
        now["groups"] = trainer._global_groups(groups)
        mem = trainer.dist.gather(ensemble)
        now["members"] = None if any(m is None for m in mem) else np.concatenate(mem, axis=1)
        pool = trainer.window.pooled(extra=now)
        fit_rng = np.random.default_rng([trainer.config.seed, trainer.iteration])
        trainer.filter.fit(
            pool["rewards"],
            pool["scores"],
            pool["groups"],
            rng=fit_rng,
            ensemble=pool["members"],
        )
    weights = np.asarray(
        trainer.filter.weights(rewards, groups, rng=trainer.rng, ensemble=ensemble), dtype=float
    )
    n_kept = trainer.dist.sum(torch.tensor([float((weights > 0).sum())], device=trainer.device))
    trainer.last_fallback = bool(n_kept.item() == 0)
    if trainer.last_fallback:
        warnings.warn(
            f"Filter {trainer.filter.spec!r} kept no sample in iteration {trainer.iteration + 1}; "
            "training on every sample of it instead (unfiltered).",
            RuntimeWarning,
            stacklevel=3,
        )
        weights = np.ones_like(weights)
    trainer.last_weights = weights
    return weights
