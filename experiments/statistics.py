"""Statistics of the report: bootstrap CIs over seeds, returns at equal samples, R² vs score.

CIs are percentile bootstraps over seeds. The normalised score's CI resamples
the method's seeds *and* both anchors' (the baseline's and the oracle's)
jointly, with :func:`scipy.stats.bootstrap`, so the anchors' own seed-to-seed
spread is in the interval instead of being held fixed at their means.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def ordered(values: list[str]) -> list[str]:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))


def bootstrap_ci(
    values: Any, rng: np.random.Generator, resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (NaNs dropped; a single value is its own CI)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan)
    if v.size == 1:
        return (float(v[0]), float(v[0]))
    means = _resampled_means(v, rng, resamples)
    alpha = (1.0 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def _resampled_means(v: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples (with replacement) of ``v``."""
    return v[rng.integers(v.size, size=(resamples, v.size))].mean(axis=1)


def bootstrap_diff_ci(
    a: Any, b: Any, rng: np.random.Generator, resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(a) - mean(b), the two samples resampled independently."""
    a, b = (np.asarray(v, dtype=float) for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return (math.nan, math.nan)
    diffs = _resampled_means(a, rng, resamples) - _resampled_means(b, rng, resamples)
    alpha = (1.0 - level) / 2
    return (float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha)))


def normalised_ci(
    values: Any,
    baseline: Any,
    oracle: Any,
    rng: np.random.Generator,
    resamples: int = 2000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``(mean(values) - mean(baseline)) / (mean(oracle) - mean(baseline))``.

    The three samples (seeds of the method, of the baseline and of the oracle)
    are resampled *jointly*: every bootstrap replicate draws each of them anew
    (stratified by sample; a sample that *is* an anchor, e.g. the baseline's
    own row, is drawn once and used in both places), so the anchors' spread
    over seeds widens the interval instead of being held fixed. Uses
    :func:`scipy.stats.bootstrap`. A sample of one value is held fixed; NaN if
    a sample is empty, or if the anchors never differ.
    """
    from scipy.stats import bootstrap

    arrays = []
    index = []  # position of values, baseline, oracle among the distinct samples
    for sample in (values, baseline, oracle):
        same = next((i for i, a in enumerate(arrays) if a[0] is sample), None)
        if same is None:
            v = np.asarray(sample, dtype=float)
            arrays.append((sample, v[np.isfinite(v)]))
            same = len(arrays) - 1
        index.append(same)
    samples = [v for _, v in arrays]
    if any(v.size == 0 for v in samples):
        return (math.nan, math.nan)

    def statistic(*drawn, axis=-1):
        means = [d.mean(axis=axis) for d in drawn]
        x, lo, hi = (means[i] for i in index)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (x - lo) / (hi - lo)

    point = float(statistic(*samples))
    if not math.isfinite(point):
        return (math.nan, math.nan)
    varying = [i for i, v in enumerate(samples) if v.size > 1 and np.ptp(v) > 0]
    if not varying:
        return (point, point)

    def varying_statistic(*drawn, axis=-1):
        full = list(samples)
        for i, d in zip(varying, drawn, strict=True):
            full[i] = d
        shape = np.broadcast_shapes(*(d.shape[:-1] for d in drawn))
        full = [
            f if i in varying else np.broadcast_to(f, (*shape, f.size)) for i, f in enumerate(full)
        ]
        return statistic(*full, axis=axis)

    res = bootstrap(
        [samples[i] for i in varying],
        varying_statistic,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        paired=False,
        random_state=rng,
    )
    lo, hi = res.confidence_interval
    return (float(lo), float(hi))


def nanmean(values: Any) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def true_return_at(run: dict[str, Any], samples: float) -> float:
    """True return of a run when it had used ``samples`` samples (linear between evaluations).

    NaN when the run never got that far or was first evaluated later: a value
    is never extrapolated.
    """
    recs = [
        rec
        for rec in run["records"]
        if math.isfinite(rec.get("samples_used", math.nan))
        and math.isfinite(rec.get("true_return", math.nan))
    ]
    if not recs or not math.isfinite(samples):
        return math.nan
    x = np.array([rec["samples_used"] for rec in recs], float)
    y = np.array([rec["true_return"] for rec in recs], float)
    if samples < x[0] or samples > x[-1]:
        return math.nan
    return float(np.interp(samples, x, y))


def r2_points(rows: list[dict[str, Any]], domain: str) -> list[dict[str, Any]]:
    """Methods trained on the noisy reward with a finite R² and score (the oracle is excluded)."""
    pts = [r for r in rows if r["domain"] == domain and r["reward"] == "noisy"]
    key = "normalised" if all(math.isfinite(r["normalised"]) for r in pts) else "final_true_return"
    return [
        {**r, "y": r[key], "y_label": key}
        for r in pts
        if math.isfinite(r["filtered_r2"]) and math.isfinite(r[key])
    ]


def spearman_by_domain(rows: list[dict[str, Any]]) -> dict[str, float]:
    import rewardfilter as rf

    out = {}
    for domain in ordered([r["domain"] for r in rows]):
        pts = r2_points(rows, domain)
        if len(pts) >= 3:
            out[domain] = rf.spearman([p["filtered_r2"] for p in pts], [p["y"] for p in pts])
        else:
            out[domain] = math.nan
    return out


def spearman_at_equal_kept(
    rows: list[dict[str, Any]], domain: str
) -> dict[float, tuple[float, int]]:
    """Spearman(R², performance) within sets of methods that keep the same share of samples.

    A filter that keeps half the samples also trains on half the data, so R² is
    compared most fairly between methods that keep as many (BR, BW, random:2).
    """
    import rewardfilter as rf

    by_kept: dict[float, list[dict[str, Any]]] = {}
    for p in r2_points(rows, domain):
        if math.isfinite(p["kept_fraction"]):
            by_kept.setdefault(round(p["kept_fraction"], 2), []).append(p)
    return {
        kept: (rf.spearman([p["filtered_r2"] for p in pts], [p["y"] for p in pts]), len(pts))
        for kept, pts in sorted(by_kept.items())
        if len(pts) >= 3 and len(pts) < len(r2_points(rows, domain))
    }
