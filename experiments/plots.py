"""Plots of the report: learning curves with CI bands, and filtered R² against performance."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.experiments.statistics import ordered, r2_points
from rewardfilter.experiments.tables import fmt


def mean_curve(runs: list[dict[str, Any]], key: str, rng, resamples: int, points: int = 60):
    """Mean and CI band of the true return over seeds, on a common x grid (interpolated)."""
    series = []
    for r in runs:
        recs = [rec for rec in r["records"] if math.isfinite(rec.get(key, math.nan))]
        if recs:
            series.append(
                (
                    np.array([rec[key] for rec in recs], float),
                    np.array([rec["true_return"] for rec in recs], float),
                )
            )
    if not series:
        return None
    x_max = min(s[0][-1] for s in series)
    x_min = max(s[0][0] for s in series)
    if len(series[0][0]) == 1 or x_max <= x_min:
        grid = np.array([x_min])
    else:
        grid = np.linspace(x_min, x_max, points)
    ys = np.stack([np.interp(grid, x, y) for x, y in series])
    mean = ys.mean(axis=0)
    if ys.shape[0] == 1:
        return grid, mean, mean, mean
    boot = ys[rng.integers(ys.shape[0], size=(resamples, ys.shape[0]))].mean(axis=1)
    return grid, mean, np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)


def plot_curves(out, cells, columns, methods, keys, options, rng) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    files = []
    for key in keys:
        width = max(6.4, 4.2 * len(columns))  # one task still needs room for the legend
        fig, axes = plt.subplots(1, len(columns), figsize=(width, 3.8), squeeze=False)
        for ax, col in zip(axes[0], columns, strict=True):
            for m in methods:
                curve = mean_curve(cells.get((col, m), []), key, rng, min(options.resamples, 1000))
                if curve is None:
                    continue
                x, mean, lo, hi = curve
                ax.plot(x, mean, label=m, color=colors[m], lw=1.6)
                ax.fill_between(x, lo, hi, color=colors[m], alpha=0.18, lw=0)
            ax.set_title(col, fontsize=10)
            domain = next((g[0]["domain"] for (c, _), g in cells.items() if c == col), "")
            steps = "environment steps" if domain == "control" else "training steps"
            ax.set_xlabel(steps if key == "step" else "samples used in gradient updates")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("true return")
        legend: dict[str, Any] = {}  # every method once, also those absent from the first task
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        labels = [m for m in methods if m in legend]
        handles = [legend[m] for m in labels]
        per_row = max(1, min(len(labels), int(width // 1.6)))
        rows = -(-len(labels) // per_row)
        fig.legend(handles, labels, loc="upper center", ncol=per_row, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.07 * rows))
        path = out / f"curves_{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


def plot_r2(out: Path, rows: list[dict[str, Any]], spearman: dict[str, float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(spearman) or ["(none)"]
    fig, axes = plt.subplots(1, len(domains), figsize=(4.6 * len(domains), 3.8), squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        pts = r2_points(rows, domain)
        tasks = ordered([p["column"] for p in pts])
        markers = "osD^v<>p*h"
        for i, task in enumerate(tasks):
            sel = [p for p in pts if p["column"] == task]
            ax.scatter(
                [p["filtered_r2"] for p in sel],
                [p["y"] for p in sel],
                marker=markers[i % 10],
                label=task,
            )
            for p in sel:
                ax.annotate(
                    p["method"],
                    (p["filtered_r2"], p["y"]),
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ylabel = pts[0]["y_label"] if pts else "normalised"
        ax.set_xlabel("filtered R² (mean over training)")
        ax.set_ylabel("normalised score" if ylabel == "normalised" else "final true return")
        ax.set_title(
            f"{domain}: Spearman ρ = {fmt(spearman.get(domain, math.nan), 2)}", fontsize=10
        )
        ax.grid(alpha=0.3)
        if tasks:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "r2_vs_score.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
