"""One statistics record of a filtering step, produced by one function.

Every trainer (the SB3 buffer, the code trainer, the TRL trainer, the
experiment runner) logs the same numbers about what a filter did to a batch:
how much it kept, how many groups it dropped, how well the reward explains
the true score on the kept samples. :func:`filter_stats` computes them once,
from plain arrays, into a :class:`FilterStats`; ``as_dict`` gives the flat
mapping a logger wants.

Words: ``rewards`` are what the filter ranked (noisy reward, reward-model
output); ``scores`` are the true scores (true return, unit-test pass rate),
used for statistics only and optional.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardfilter.reliability import ensemble_std, r2, spearman
from rewardfilter.validation import (
    check_1d_finite,
    check_bool,
    check_ensemble,
    check_groups,
    check_weights,
)

_NAN = float("nan")


@dataclass(frozen=True)
class FilterStats:
    """What a filter did to one batch (NaN where a value is undefined).

    Attributes
    ----------
    n_samples, n_kept : int
        Samples weighed (episodes, completions) and those with weight > 0.
    kept_fraction : float
        ``n_kept / n_samples``.
    n_groups, groups_dropped : int
        Groups in the batch, and groups none of whose samples was kept.
    group_size_mean : float
        Mean number of samples per group.
    reward_mean, kept_reward_mean : float
        Mean reward over all samples, and its weighted mean over the kept ones.
    score_mean, kept_score_mean : float
        The same for the true scores (NaN without scores).
    r2, filtered_r2 : float
        R² between rewards and true scores over all samples with a score, and
        over the kept ones weighted by the filter (:func:`rewardfilter.r2`).
    filtered_spearman : float
        Spearman correlation between reward and true score on the kept samples.
    ensemble_std_mean : float
        Mean disagreement of the reward-model ensemble over all samples.
    scores_skipped : int
        Samples whose true score was NaN or inf, left out of every score statistic.
    fallback : bool
        The caller trained on every sample because the filter kept none.
    """

    n_samples: int
    n_kept: int
    kept_fraction: float
    n_groups: int
    groups_dropped: int
    group_size_mean: float
    reward_mean: float
    kept_reward_mean: float
    score_mean: float = _NAN
    kept_score_mean: float = _NAN
    r2: float = _NAN
    filtered_r2: float = _NAN
    filtered_spearman: float = _NAN
    ensemble_std_mean: float = _NAN
    scores_skipped: int = 0
    fallback: bool = False

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """A flat ``{prefix + field: number}`` mapping for loggers (bools as 0/1)."""
        return {
            prefix + f.name: float(getattr(self, f.name))
            if isinstance(getattr(self, f.name), bool)
            else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }


def filter_stats(
    rewards: Any,
    weights: Any,
    groups: Any,
    *,
    scores: Any = None,
    ensemble: Any = None,
    fallback: bool = False,
) -> FilterStats:
    """Statistics of a filtering step, from what the filter saw and what it gave.

    Parameters
    ----------
    rewards : array of shape (n,)
        What the filter ranked; finite.
    weights : array of shape (n,)
        The filter's weights (``Filter.weights``), >= 0.
    groups : array of shape (n,)
        The group id of each sample.
    scores : array of shape (n,), optional
        True scores, for statistics only. NaN or inf entries are skipped (and
        counted in ``scores_skipped``) rather than refused: a missing true
        score must not stop training.
    ensemble : array of shape (K, n), optional
        Reward-model member predictions.
    fallback : bool
        Whether the caller fell back to training on every sample.
    """
    r = check_1d_finite(rewards, "rewards")
    n = r.shape[0]
    w = check_weights(weights, n)
    _, index, sizes = np.unique(check_groups(groups, n), return_inverse=True, return_counts=True)
    kept = w > 0
    n_kept = int(kept.sum())
    kept_per_group = np.bincount(index.reshape(-1), weights=kept, minlength=sizes.shape[0])
    values: dict[str, Any] = {
        "n_samples": n,
        "n_kept": n_kept,
        "kept_fraction": n_kept / n,
        "n_groups": int(sizes.shape[0]),
        "groups_dropped": int((kept_per_group == 0).sum()),
        "group_size_mean": float(sizes.mean()),
        "reward_mean": float(r.mean()),
        "kept_reward_mean": float(np.average(r, weights=w)) if n_kept else _NAN,
        "fallback": check_bool(fallback, "fallback", "filter_stats"),
    }
    if scores is not None:
        values.update(_score_stats(r, w, scores, n))
    if ensemble is not None:
        values["ensemble_std_mean"] = float(ensemble_std(check_ensemble(ensemble, n)).mean())
    return FilterStats(**values)


def _score_stats(r: np.ndarray, w: np.ndarray, scores: Any, n: int) -> dict[str, Any]:
    """Score statistics over the samples whose true score is finite."""
    s = np.asarray(scores)
    if s.dtype.kind not in "biuf" or s.shape != (n,):
        raise ValueError(
            f"'scores' must be a 1-D array of {n} real numbers (NaN allowed: skipped); "
            f"got dtype {s.dtype} and shape {s.shape}."
        )
    s = s.astype(float)
    ok = np.isfinite(s)
    r, w, s = r[ok], w[ok], s[ok]
    kept = w > 0
    out: dict[str, Any] = {"scores_skipped": int((~ok).sum())}
    if s.shape[0]:
        out["score_mean"] = float(s.mean())
        out["r2"] = r2(r, s)
    if kept.any():
        out["kept_score_mean"] = float(np.average(s, weights=w))
        out["filtered_r2"] = r2(r, s, w)
        out["filtered_spearman"] = spearman(r[kept], s[kept])
    return out
