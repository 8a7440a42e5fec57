"""Tables of the report: the CSV and the paper-style Markdown (methods x tasks)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from rewardfilter.experiments.statistics import nanmean, r2_points, spearman_at_equal_kept

#: x axis of the learning curves -> how the Markdown names it
CURVE_AXES = {"step": "environment / training steps", "samples_used": "samples used in updates"}


def cost(runs: list[dict[str, Any]]) -> str:
    """What the finished runs cost: the sum of their CPU time (and wall time) in hours."""
    cpu = sum(r["final"].get("cpu_s", 0.0) for r in runs) / 3600
    wall = sum(r["final"].get("wall_s", 0.0) for r in runs) / 3600
    return (
        f"Cost: {len(runs)} runs, {cpu:.2f} CPU-hours of their processes "
        f"({wall:.2f} h of wall time summed over runs)."
    )


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    return path


def fmt(x: float, digits: int | None = None) -> str:
    """Fixed decimals when given, else 4 significant digits (returns range from 0.7 to 5000)."""
    if not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}" if digits is not None else f"{x:.4g}"


def table(by, columns, methods, cell) -> list[str]:
    """A Markdown table: one row per method, one column per task; ``cell(row)`` fills a cell."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for m in methods:
        cells = ["" if (col, m) not in by else cell(by[(col, m)]) for col in columns]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def markdown(
    rows: list[dict[str, Any]],
    columns: list[str],
    methods: list[str],
    baseline: str | None,
    oracle: str | None,
    spearman: dict[str, float],
    n_runs: int,
    expected: int,
    config: dict[str, Any],
    curve_keys: list[str],
    preamble: str,
) -> str:
    by = {(r["column"], r["method"]): r for r in rows}
    n_seeds = sorted({r["n_seeds"] for r in rows})
    seeds = str(n_seeds[0]) if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"
    name = config.get("name", "experiment")
    lines = [f"# {name}", "", preamble, ""]
    if n_runs < expected:
        lines += [f"**Incomplete: {n_runs} of {expected} runs finished.**", ""]
    lines += [
        f"Final true return: mean [95% bootstrap CI] over {seeds} seeds.",
        "",
    ]
    lines += table(
        by,
        columns,
        methods,
        lambda r: f"{fmt(r['final_true_return'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
    )
    lines += [
        "",
        f"Normalised score: {baseline} (noisy reward) = 0, {oracle} (true reward) = 1; mean "
        f"[95% CI, the method's and both anchors' seeds resampled jointly].",
        "",
        "| method | " + " | ".join(columns) + " | mean |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for m in methods:
        cells, vals = [], []
        for col in columns:
            r = by.get((col, m))
            if r is None:
                cells.append("")
                continue
            vals.append(r["normalised"])
            cells.append(
                f"{fmt(r['normalised'], 2)} [{fmt(r['normalised_ci_low'], 2)}, {fmt(r['normalised_ci_high'], 2)}]"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {fmt(nanmean(vals), 2)} |")
    lines += [
        "",
        f"At equal samples used in gradient updates: final true return minus {baseline}'s true "
        f"return when it had used as many samples as the method used in all (in parentheses). "
        f"A filter that keeps 2 of N trains on fewer samples; a gain here is better data, not "
        f"more (random:2 is the control with the same amount of blindly chosen data). "
        f"mean [95% CI].",
        "",
    ]
    lines += table(
        by,
        columns,
        methods,
        lambda r: (
            f"{fmt(r['gain_at_equal_samples'])} [{fmt(r['gain_at_equal_samples_ci_low'])}, "
            f"{fmt(r['gain_at_equal_samples_ci_high'])}] ({fmt(r['baseline_at_equal_samples'])} "
            f"@ {fmt(r['samples_used'], 0)})"
        ),
    )
    lines += [
        "",
        "Filtered R² (reward vs true return on kept episodes, mean over the run) and kept fraction.",
        "",
    ]
    lines += table(
        by,
        columns,
        methods,
        lambda r: f"{fmt(r['filtered_r2'], 2)} ({fmt(100 * r['kept_fraction'], 0)}%)",
    )
    lines.append("")
    for domain, rho in spearman.items():
        n = len(r2_points(rows, domain))
        lines.append(
            f"Spearman correlation between filtered R² and performance ({domain}, {n} noisy-reward "
            f"method x task points): {fmt(rho, 2)}"
        )
        for kept, (rho_k, n_k) in spearman_at_equal_kept(rows, domain).items():
            lines.append(
                f"- among the methods that keep {kept:.0%} of the samples ({n_k} points): "
                f"{fmt(rho_k, 2)}"
            )
    lines += [
        "",
        *[f"![learning curves against {CURVE_AXES[k]}](curves_{k}.png)\n" for k in curve_keys],
        "![R² vs performance](r2_vs_score.png)",
        "",
    ]
    return "\n".join(lines)
