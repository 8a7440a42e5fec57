"""Reward-reliability estimators: how far can the reward be trusted, and where?

PF-PPO's selection rule rests on one number, the coefficient of determination
R² between reward and true score on the samples a filter keeps. Beside it live
the other measures the paper's discussion names (Spearman, MSE, AUC for binary
scores), the disagreement of a reward-model ensemble, and a per-bin
reliability curve. Each is a plain function of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardfilter.validation import (
    check_1d_finite,
    check_choice,
    check_ensemble,
    check_same_length,
    check_weights,
    is_number,
    param_error,
)


def _paired(
    rewards: Any, scores: Any, weights: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate (rewards, scores[, weights]) and keep samples with weight > 0."""
    r = check_1d_finite(rewards, "rewards")
    s = check_1d_finite(scores, "scores")
    check_same_length(r.shape[0], s, "scores")
    w = np.ones_like(r) if weights is None else check_weights(weights, r.shape[0])
    kept = w > 0
    return r[kept], s[kept], w[kept]


def r2(rewards: Any, scores: Any, weights: Any = None) -> float:
    """R² of the weighted least-squares line that predicts ``scores`` from ``rewards``.

    Only samples with weight > 0 count. Equals scikit-learn's
    ``r2_score(scores, LinearRegression().fit(rewards, scores, w).predict(rewards),
    sample_weight=w, force_finite=False)``: NaN for fewer than two samples and
    when the kept true scores are constant (nothing to explain, so no evidence
    about the reward: a filter that keeps only failures must not look perfect);
    0.0 when the rewards are constant (they explain nothing). Values of extreme
    magnitude (beyond 2**±400, e.g. rewards around 1e160) are scaled by a power
    of two before and after centring, which is exact, so their squares neither
    overflow nor underflow; other values are used as they are.
    """
    r, s, w = _paired(rewards, scores, weights)
    if r.shape[0] < 2 or np.ptp(s) == 0:
        return float("nan")
    r, s = _pow2_scaled(r), _pow2_scaled(s)
    total = w.sum()
    r_c = _pow2_scaled(r - (w @ r) / total)
    s_c = _pow2_scaled(s - (w @ s) / total)
    var_r = w @ (r_c * r_c)
    slope = (w @ (r_c * s_c)) / var_r if var_r > 0 else 0.0
    residual = s_c - slope * r_c
    ss_res = float(w @ (residual * residual))
    ss_tot = float(w @ (s_c * s_c))
    return 1.0 - ss_res / ss_tot


def _pow2_scaled(x: np.ndarray) -> np.ndarray:
    """``x`` divided by the power of two nearest its largest magnitude (exact: no rounding)."""
    top = float(np.max(np.abs(x)))
    if top == 0.0 or 2.0**-400 < top < 2.0**400:
        return x  # safe range: leave the bits alone
    return np.ldexp(x, -int(np.frexp(top)[1]))


def spearman(rewards: Any, scores: Any) -> float:
    """Spearman rank correlation between rewards and true scores (NaN if either is constant)."""
    from scipy.stats import rankdata

    r, s, _ = _paired(rewards, scores)
    if r.shape[0] < 2 or np.ptp(r) == 0 or np.ptp(s) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(r), rankdata(s))[0, 1])


def mse(rewards: Any, scores: Any) -> float:
    """Mean squared error of the rewards as predictions of the true scores (same scale assumed)."""
    r, s, _ = _paired(rewards, scores)
    return float(np.mean((r - s) ** 2))


def auc(rewards: Any, scores: Any) -> float:
    """ROC AUC of the rewards at separating binary true scores (pass / fail).

    ``scores`` must hold exactly two values; the higher one is the positive class.
    """
    from sklearn.metrics import roc_auc_score

    r, s, _ = _paired(rewards, scores)
    values = np.unique(s)
    if values.shape[0] != 2:
        raise ValueError(
            f"auc needs binary 'scores' with exactly two distinct values (e.g. pass=1, fail=0); "
            f"got {values.shape[0]} distinct value(s)."
        )
    return float(roc_auc_score(s == values[1], r))


def ensemble_std(ensemble: Any) -> np.ndarray:
    """Per-sample disagreement of a reward-model ensemble: the std over its K members.

    ``ensemble`` has shape (K, n), one row per member.
    """
    return check_ensemble(ensemble).std(axis=0)


@dataclass(frozen=True)
class ReliabilityCurve:
    """True-score statistics per reward bin: where is the reward model reliable?

    A reliable region has a true-score mean that rises with the reward and a
    small std. Empty bins have count 0 and NaN mean/std.
    """

    edges: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    def to_rows(self) -> list[dict[str, float]]:
        """One dict per bin, ready for ``csv.DictWriter`` or a DataFrame."""
        return [
            {
                "low": float(lo),
                "high": float(hi),
                "count": int(c),
                "mean": float(m),
                "std": float(sd),
            }
            for lo, hi, c, m, sd in zip(
                self.edges[:-1], self.edges[1:], self.count, self.mean, self.std, strict=True
            )
        ]


def reliability_curve(
    rewards: Any, scores: Any, bins: int | Any = 10, strategy: str = "uniform"
) -> ReliabilityCurve:
    """Count, mean and std of the true score in each reward bin.

    Parameters
    ----------
    bins : int or array of edges
        Number of bins, or increasing bin edges.
    strategy : {"uniform", "quantile"}
        With an int ``bins``: equal-width bins over the reward range, or bins
        holding about equal numbers of samples.
    """
    r, s, _ = _paired(rewards, scores)
    if is_number(bins, "int"):
        if not 1 <= bins <= r.shape[0]:
            raise param_error(
                "bins",
                "reliability_curve",
                f"an int in [1, {r.shape[0]}] (at most one bin per sample) or increasing edges",
                bins,
            )
        if strategy == "uniform":
            edges = np.linspace(r.min(), r.max(), bins + 1)
        elif strategy == "quantile":
            edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)))
        else:
            check_choice(strategy, "strategy", "reliability_curve", ("uniform", "quantile"))
        if edges.shape[0] < 2 or edges[0] == edges[-1]:
            edges = np.array([r.min() - 0.5, r.max() + 0.5])
    else:
        edges = check_1d_finite(bins, "bins")
        if edges.shape[0] < 2 or np.any(np.diff(edges) <= 0):
            raise param_error(
                "bins", "reliability_curve", "an int >= 1 or strictly increasing edges", bins
            )
    n_bins = edges.shape[0] - 1
    # right-closed last bin, like np.histogram; samples outside the edges are left out of every bin
    index = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, n_bins - 1)
    inside = (r >= edges[0]) & (r <= edges[-1])
    index, s_in = index[inside], s[inside]
    count = np.bincount(index, minlength=n_bins)
    total = np.bincount(index, weights=s_in, minlength=n_bins)
    total_sq = np.bincount(index, weights=s_in * s_in, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        var = np.where(count > 0, total_sq / np.maximum(count, 1) - mean**2, np.nan)
    return ReliabilityCurve(edges=edges, count=count, mean=mean, std=np.sqrt(np.clip(var, 0, None)))
