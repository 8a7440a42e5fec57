"""Ranking reliability: does the reward order each group's samples as the true score does?

A filter trusts the reward's *order within a group* (its best, its worst), not
its value. These measures look at that order, vectorised over all groups at
once (one sort and a few ``bincount``s, no Python loop over groups):

* :func:`within_group_spearman`: the mean over groups of Spearman's ρ between
  reward and true score inside the group;
* :func:`top1_correct`: P(top-1 correct), the share of groups whose
  highest-reward sample has the group's highest true score (with the
  reward's ties counted in expectation); ``top1_correct(zeros, scores,
  groups)`` is the chance level of a blind pick;
* :func:`pool_reliability`: every filter on one common pool of grouped samples
  (the paper's offline measurement): filtered R², within-group Spearman and
  noise MSE on the kept samples, kept fraction and mean kept score;
* :func:`permutation_spearman`: Spearman's ρ between two per-filter numbers
  (offline filtered R² and the trained policies' score) with a one-sided
  permutation p-value (exact when every permutation can be enumerated).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardfilter.filters import Filter, make_filter
from rewardfilter.reliability import mse, r2
from rewardfilter.validation import (
    as_generator,
    check_1d_finite,
    check_groups,
    check_same_length,
    check_scalar,
)

__all__ = [
    "POOL_METRICS",
    "permutation_spearman",
    "pool_reliability",
    "top1_correct",
    "within_group_spearman",
]


def _grouped(rewards: Any, scores: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated rewards and scores, and dense group codes 0..G-1."""
    r = check_1d_finite(rewards, "rewards")
    s = check_1d_finite(scores, "scores")
    check_same_length(r.shape[0], s, "scores")
    g = check_groups(groups, r.shape[0])
    return r, s, np.unique(g, return_inverse=True)[1].reshape(-1)


def _average_ranks(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Ranks (1 = lowest, ties averaged) of ``values`` within each group of ``codes``."""
    n = values.shape[0]
    order = np.lexsort((values, codes))
    v, g = values[order], codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    new_run = new_group.copy()
    new_run[1:] |= v[1:] != v[:-1]
    pos = np.arange(n)
    group_start = pos[new_group][np.cumsum(new_group) - 1]
    run_start = pos[new_run]
    run_len = np.diff(np.append(run_start, n))
    run = np.cumsum(new_run) - 1
    ranks = np.empty(n)
    ranks[order] = run_start[run] + (run_len[run] - 1) / 2 - group_start + 1
    return ranks


def _group_max(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.full(n_groups, -np.inf)
    np.maximum.at(out, codes, values)
    return out


def within_group_spearman(rewards: Any, scores: Any, groups: Any) -> float:
    """Mean over groups of Spearman's ρ(reward, score) within the group.

    Groups of one sample, or whose rewards or scores are all equal (ρ is
    undefined there), are left out; NaN when no group is left. Ties get
    average ranks, as in :func:`rewardfilter.spearman`.
    """
    r, s, codes = _grouped(rewards, scores, groups)
    n_groups = int(codes.max()) + 1
    rr, rs = _average_ranks(r, codes), _average_ranks(s, codes)
    count = np.bincount(codes, minlength=n_groups).astype(float)
    mean_r = np.bincount(codes, rr, n_groups) / count
    mean_s = np.bincount(codes, rs, n_groups) / count
    dr, ds = rr - mean_r[codes], rs - mean_s[codes]
    cov = np.bincount(codes, dr * ds, n_groups)
    var_r = np.bincount(codes, dr * dr, n_groups)
    var_s = np.bincount(codes, ds * ds, n_groups)
    valid = (count >= 2) & (var_r > 1e-12) & (var_s > 1e-12)
    if not valid.any():
        return math.nan
    return float(np.mean(cov[valid] / np.sqrt(var_r[valid] * var_s[valid])))


def top1_correct(rewards: Any, scores: Any, groups: Any) -> float:
    """P(top-1 correct): the share of groups whose highest-reward sample has the highest score.

    Samples tied at a group's highest reward are picked uniformly at random,
    so such a group counts the share of them that hold the highest score (with
    equal rewards everywhere this is the chance level of a blind pick).
    Groups of one sample and groups whose scores are all equal (there is no
    best to find, e.g. a prompt that no response passes) are left out; NaN
    when none is left.
    """
    r, s, codes = _grouped(rewards, scores, groups)
    n_groups = int(codes.max()) + 1
    top = r == _group_max(r, codes, n_groups)[codes]
    best = s == _group_max(s, codes, n_groups)[codes]
    count = np.bincount(codes, minlength=n_groups)
    n_best = np.bincount(codes, best, n_groups)
    valid = (count >= 2) & (n_best < count)
    if not valid.any():
        return math.nan
    share = np.bincount(codes, top & best, n_groups) / np.bincount(codes, top, n_groups)
    return float(share[valid].mean())


#: the numeric fields of a :func:`pool_reliability` record
POOL_METRICS = (
    "filtered_r2",
    "within_group_spearman",
    "noise_mse",
    "kept_fraction",
    "kept_score_mean",
    "top1_correct",
    "top1_chance",
)


def pool_reliability(
    rewards: Any,
    scores: Any,
    groups: Any,
    filters: Sequence[Filter | str],
    *,
    ensemble: Any = None,
    rng: np.random.Generator | int | None = 0,
    draws: int = 20,
    resamples: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Every filter on one common pool of grouped samples, one record per filter.

    Per filter, averaged over ``draws`` draws of its randomness (ties, random
    picks): ``filtered_r2`` (:func:`rewardfilter.r2` on the kept samples),
    ``within_group_spearman`` (groups with 2 or more kept samples),
    ``noise_mse`` (mean squared reward - score on the kept samples: the
    reward's noise where the filter looks; meaningful when both share a
    scale), ``kept_fraction`` and ``kept_score_mean``. Every record also
    carries the pool's ``top1_correct`` and its chance level ``top1_chance``
    (properties of the ranking, the same for every filter). A filter that
    needs fitting (``adaptive``) is fitted on the pool; its record names its
    choice in ``chosen``.

    With ``resamples`` > 0 each metric also gets a percentile bootstrap CI
    ``<metric>_ci = (low, high)`` at ``level``: every replicate draws the
    pool's *groups* with replacement (a group's samples stay together), refits
    a filter that needs fitting and draws each filter's randomness once.
    """
    r, s, codes = _grouped(rewards, scores, groups)
    check_scalar(draws, "draws", "pool_reliability", "int", min_val=1)
    check_scalar(resamples, "resamples", "pool_reliability", "int", min_val=0)
    check_scalar(
        level, "level", "pool_reliability", min_val=0, max_val=1, include_boundaries="neither"
    )
    gen = as_generator(rng, "pool_reliability")
    ens = None if ensemble is None else np.asarray(ensemble)
    records = _pool_records(r, s, codes, filters, ens, gen, draws)
    if resamples:
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes)
        starts = np.cumsum(counts) - counts
        replicates = []
        for _ in range(resamples):
            pick = gen.integers(0, counts.shape[0], counts.shape[0])
            sizes = counts[pick]
            first = np.cumsum(sizes) - sizes
            idx = order[np.repeat(starts[pick] - first, sizes) + np.arange(sizes.sum())]
            new_codes = np.repeat(np.arange(pick.shape[0]), sizes)
            sub_ens = None if ens is None else ens[:, idx]
            replicates.append(_pool_records(r[idx], s[idx], new_codes, filters, sub_ens, gen, 1))
        alpha = (1 - level) / 2
        for i, record in enumerate(records):
            for key in POOL_METRICS:
                v = np.array([rep[i][key] for rep in replicates], float)
                v = v[np.isfinite(v)]
                record[f"{key}_ci"] = (
                    (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))
                    if v.size
                    else (math.nan, math.nan)
                )
    return records


def _pool_records(r, s, codes, filters, ens, gen, draws) -> list[dict[str, Any]]:
    """:func:`pool_reliability`'s records on validated arrays (no CIs)."""
    top1 = top1_correct(r, s, codes)
    chance = top1_correct(np.zeros_like(r), s, codes)
    records = []
    for spec in filters:
        filt = make_filter(spec)
        f_ens = ens if filt.needs_ensemble else None
        if filt.requires_fit and not filt.is_fitted:
            filt.fit(r, s, codes, rng=gen, ensemble=f_ens)
        values: dict[str, list[float]] = {k: [] for k in POOL_METRICS[:5]}
        for _ in range(draws):
            w = filt.weights(r, codes, rng=gen, ensemble=f_ens)
            kept = w > 0
            values["kept_fraction"].append(kept.mean())
            values["filtered_r2"].append(r2(r, s, weights=w) if kept.sum() >= 2 else math.nan)
            if kept.any():
                values["within_group_spearman"].append(
                    within_group_spearman(r[kept], s[kept], codes[kept])
                )
                values["noise_mse"].append(mse(r[kept], s[kept]))
                values["kept_score_mean"].append(float(s[kept].mean()))
        record: dict[str, Any] = {"filter": filt.spec}
        record.update({k: _finite_mean(v) for k, v in values.items()})
        record.update(top1_correct=top1, top1_chance=chance)
        chosen = getattr(filt, "chosen_", None)
        if chosen is not None:
            record["chosen"] = chosen.spec
        records.append(record)
    return records


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def permutation_spearman(
    x: Any,
    y: Any,
    *,
    permutations: int = 10_000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float]:
    """Spearman's ρ between ``x`` and ``y`` and the one-sided p-value P(ρ_perm >= ρ).

    E.g. ``x`` the offline filtered R² of each filter and ``y`` the IQM score
    of the policies trained through it (the paper's claim is ρ > 0). When the
    n! orderings of ``y`` number at most ``permutations`` they are all
    enumerated (the exact p-value: the share of orderings with ρ at least the
    observed); otherwise ``permutations`` random shuffles give
    ``(1 + #{ρ_perm >= ρ}) / (permutations + 1)``. NaN, NaN when either
    side is constant.
    """
    from scipy.stats import rankdata

    check_scalar(permutations, "permutations", "permutation_spearman", "int", min_val=1)
    xa, ya = check_1d_finite(x, "x"), check_1d_finite(y, "y")
    if xa.shape != ya.shape or xa.shape[0] < 3:
        raise ValueError(
            "The 'x' and 'y' parameters of permutation_spearman must be 1-D of one length >= 3; "
            f"got shapes {xa.shape} and {ya.shape}."
        )
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return math.nan, math.nan
    rx, ry = rankdata(xa), rankdata(ya)
    rx, ry = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean()), ry - ry.mean()
    ry /= np.linalg.norm(ry)
    rho = float(rx @ ry)
    n = xa.shape[0]
    tol = 1e-12
    if math.factorial(n) <= permutations:
        orders = np.array(list(itertools.permutations(range(n))))
        return rho, float(np.mean(ry[orders] @ rx >= rho - tol))
    gen = as_generator(rng, "permutation_spearman")
    shuffled = gen.permuted(np.broadcast_to(ry, (permutations, n)), axis=1)
    return rho, float((1 + np.sum(shuffled @ rx >= rho - tol)) / (permutations + 1))
