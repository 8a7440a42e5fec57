"""The filtration statistics of one rollout, computed in one place from its ranked episodes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import rewardfilter as rf
from rewardfilter.adapters.sb3.episodes import Episode

#: the keys every rollout's statistics carry (logged by FilterStatsCallback)
STAT_KEYS = (
    "kept_fraction",
    "filtered_r2",
    "noisy_return_mean",
    "true_return_mean",
    "ensemble_std_mean",
    "n_episodes",
    "n_kept_transitions",
)

#: further keys, also logged
EXTRA_KEYS = (
    "r2",
    "kept_transition_fraction",
    "n_unranked_transitions",
    "n_held_transitions",
    "group_size_mean",
    "n_true_nonfinite",
    "fallback",
    "top1_correct",
)


def pool_episodes(episodes: Sequence[Episode], weights: Any = None) -> dict[str, Any]:
    """One rollout's ranked episodes as arrays: ``noisy``, ``true``, ``groups``, ``weights``,
    ``lengths`` and ``ensemble`` (members x episodes, or None)."""
    n = len(episodes)
    ens = [ep.ensemble for ep in episodes]
    same = n > 0 and all(e is not None for e in ens) and len({e.shape for e in ens}) == 1
    return {
        "noisy": np.array([ep.noisy for ep in episodes], dtype=np.float64),
        "true": np.array([ep.true for ep in episodes], dtype=np.float64),
        "groups": np.array([ep.context for ep in episodes], dtype=np.int64),
        "lengths": np.array([ep.length for ep in episodes], dtype=np.int64),
        "weights": np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64),
        "ensemble": np.stack(ens, axis=1) if same else None,
    }


def pool_history(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate several rollouts' pooled episodes (groups kept apart per rollout), leaving out
    episodes whose true return is not finite (they cannot be scored)."""
    noisy, true, groups, ensembles = [], [], [], []
    offset = 0
    for ep in history:
        _, inverse = np.unique(ep["groups"], return_inverse=True)
        ok = np.isfinite(ep["true"])
        noisy.append(ep["noisy"][ok])
        true.append(ep["true"][ok])
        groups.append(inverse.reshape(-1)[ok] + offset)
        offset += int(inverse.max()) + 1 if inverse.size else 0
        ensembles.append(None if ep["ensemble"] is None else ep["ensemble"][:, ok])
    same_k = (
        bool(ensembles)
        and all(e is not None for e in ensembles)
        and len({e.shape[0] for e in ensembles}) == 1
    )
    return {
        "noisy": np.concatenate(noisy) if noisy else np.zeros(0),
        "true": np.concatenate(true) if true else np.zeros(0),
        "groups": np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64),
        "ensemble": np.concatenate(ensembles, axis=1) if same_k else None,
    }


def top1_correct(noisy: np.ndarray, true: np.ndarray, groups: np.ndarray) -> float:
    """Share of contexts (of 2 or more episodes, all with a finite true return) whose highest
    noisy return is also the highest true return (NaN when there is none)."""
    hits, n = 0, 0
    for g in np.unique(groups):
        member = groups == g
        if member.sum() < 2 or not np.isfinite(true[member]).all():
            continue
        n += 1
        best = true[member].max()
        hits += bool(true[member][np.argmax(noisy[member])] == best)
    return hits / n if n else math.nan


def episode_stats(
    ranked: Sequence[Episode],
    n_held: int,
    *,
    weights: Any = None,
    step_weights: np.ndarray | None = None,
    fallback: int = 0,
    unranked: int = 0,
) -> dict[str, float]:
    """The statistics record of one rollout.

    Parameters
    ----------
    ranked : sequence of Episode
        The episodes ranked (or, with filter ``none``, ended) in this rollout.
    n_held : int
        Steps held at the rollout's end, waiting for their context to complete.
    weights : array, optional
        The filter's weight per ranked episode (default all 1).
    step_weights : array, optional
        The weight of every step of the training set (kept = weight > 0).
    fallback : int
        1 when the rollout was used unfiltered (nothing kept, or nothing ranked).
    unranked : int
        Steps trained on without a ranking.

    Returns
    -------
    dict
        ``kept_fraction`` (ranked episodes kept), ``kept_transition_fraction``,
        ``filtered_r2`` (R² between noisy and true returns of the kept episodes),
        ``r2`` (all ranked episodes), ``noisy_return_mean``, ``true_return_mean``,
        ``ensemble_std_mean`` (NaN without an ensemble), ``n_episodes``,
        ``n_kept_transitions``, ``n_unranked_transitions``, ``n_held_transitions``,
        ``group_size_mean`` (episodes per ranked context), ``n_true_nonfinite``
        (episodes left out for a non-finite true return), ``fallback`` and
        ``top1_correct`` (share of contexts whose noisy best is the true best).
    """
    ep = pool_episodes(ranked, weights)
    n = len(ranked)
    kept_steps = 0 if step_weights is None else int((step_weights > 0).sum())
    stats: dict[str, float] = dict.fromkeys((*STAT_KEYS, *EXTRA_KEYS), math.nan)
    stats.update(
        n_episodes=n,
        n_kept_transitions=kept_steps,
        n_unranked_transitions=int(unranked),
        n_held_transitions=int(n_held),
        fallback=int(fallback),
        n_true_nonfinite=int((~np.isfinite(ep["true"])).sum()),
    )
    if n == 0:
        return stats
    kept = ep["weights"] > 0
    ok = np.isfinite(ep["true"])
    stats.update(
        kept_fraction=float(kept.mean()),
        kept_transition_fraction=float(ep["lengths"][kept].sum() / max(1, ep["lengths"].sum())),
        noisy_return_mean=float(ep["noisy"].mean()),
        group_size_mean=float(np.unique(ep["groups"], return_counts=True)[1].mean()),
        top1_correct=top1_correct(ep["noisy"], ep["true"], ep["groups"]),
    )
    if ok.any():
        stats["true_return_mean"] = float(ep["true"][ok].mean())
        stats["r2"] = rf.r2(ep["noisy"][ok], ep["true"][ok])
        if (kept & ok).any():
            stats["filtered_r2"] = rf.r2(ep["noisy"][ok], ep["true"][ok], weights=ep["weights"][ok])
    if ep["ensemble"] is not None and ep["ensemble"].shape[0] >= 2:
        stats["ensemble_std_mean"] = float(rf.ensemble_std(ep["ensemble"]).mean())
    return stats
