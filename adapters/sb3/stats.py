"""The filtration statistics of one rollout, computed in one place from its ranked episodes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import rewardfilter as rf
from rewardfilter.adapters.sb3.episodes import Episode

#: the SB3-specific keys of a rollout's statistics, beside the core's FilterStats fields
TRANSITION_KEYS = (
    "n_kept_transitions",
    "kept_transition_fraction",
    "n_unranked_transitions",
    "n_held_transitions",
    "top1_correct",
)

#: every key of a rollout's statistics (logged by FilterStatsCallback): the core's one record
#: (:class:`rewardfilter.FilterStats`, over the episodes ranked in the rollout) and the above
STAT_KEYS = (*(f.name for f in dataclasses.fields(rf.FilterStats)), *TRANSITION_KEYS)


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


def _top1_correct(noisy: np.ndarray, true: np.ndarray, groups: np.ndarray) -> float:
    """:func:`rewardfilter.top1_correct` over the contexts whose true returns are all finite (a
    context with an unscored episode has no known best)."""
    scored = np.isin(groups, np.unique(groups[~np.isfinite(true)]), invert=True)
    if not scored.any():
        return math.nan
    return rf.top1_correct(noisy[scored], true[scored], groups[scored])


def episode_stats(
    ranked: Sequence[Episode],
    n_held: int,
    *,
    weights: Any = None,
    step_weights: np.ndarray | None = None,
    fallback: int = 0,
    unranked: int = 0,
) -> dict[str, float]:
    """The statistics record of one rollout: :func:`rewardfilter.filter_stats` over its ranked
    episodes (rewards = noisy returns, scores = true returns), plus transition counts.

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
        The fields of :class:`rewardfilter.FilterStats` (``n_samples`` episodes,
        ``kept_fraction`` of them kept, ``reward_mean`` the noisy and
        ``score_mean`` the true return, ``r2``, ``filtered_r2``,
        ``scores_skipped`` for non-finite true returns, ...; NaN when no
        episode was ranked), and ``n_kept_transitions``,
        ``kept_transition_fraction``, ``n_unranked_transitions``,
        ``n_held_transitions``, ``top1_correct`` (:func:`rewardfilter.top1_correct`
        over the contexts whose true returns are all finite).
    """
    ep = pool_episodes(ranked, weights)
    stats: dict[str, float] = dict.fromkeys(STAT_KEYS, math.nan)
    if ranked:
        ens = ep["ensemble"] if ep["ensemble"] is not None and len(ep["ensemble"]) >= 2 else None
        record = rf.filter_stats(
            ep["noisy"],
            ep["weights"],
            ep["groups"],
            scores=ep["true"],
            ensemble=ens,
            fallback=bool(fallback),
        )
        stats.update(record.as_dict())
        kept = ep["weights"] > 0
        stats["kept_transition_fraction"] = float(
            ep["lengths"][kept].sum() / max(1, ep["lengths"].sum())
        )
        stats["top1_correct"] = _top1_correct(ep["noisy"], ep["true"], ep["groups"])
    else:
        stats.update(n_samples=0, n_kept=0, n_groups=0, groups_dropped=0, scores_skipped=0)
        stats["fallback"] = float(bool(fallback))
    stats.update(
        n_kept_transitions=0 if step_weights is None else int((step_weights > 0).sum()),
        n_unranked_transitions=int(unranked),
        n_held_transitions=int(n_held),
    )
    return stats
