"""``rewardfilter report DIR``: the paper-style table and plots of an experiment.

From the finished runs of an output folder it writes

* ``summary.csv``: one row per (task, noise model, method) with the mean and
  95% bootstrap CI of the final true return over seeds, the normalised score
  (noisy PPO-M = 0, oracle = 1), the mean filtered R², kept fraction and
  samples used;
* ``summary.md``: the table a paper would print (rows: methods; columns:
  tasks), the normalised scores, and the Spearman correlation between filtered
  R² and performance per domain;
* an *equal samples* table: each method's final true return against the
  baseline's (PPO-M's) when it had used as many samples in gradient updates
  (a filter keeping 2 of N trains on fewer samples per environment step; this
  separates "less data" from "better data", with ``random:2`` as the control);
* ``curves_step.png`` / ``curves_samples_used.png``: learning curves of the
  true return with CI bands, per task, against environment steps and against
  samples used in gradient updates (filters train on fewer samples per step);
* ``r2_vs_score.png``: filtered R² against final performance per domain --
  PF-PPO's claim that R² predicts which filter trains the better policy.

Only the finished runs of the folder's manifest are read; missing runs are
counted in the Markdown so an incomplete table is never mistaken for a whole one.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.io import atomic_write_text


@dataclass
class ReportOptions:
    """What to summarise and how; each field's help is also the command line's help."""

    dir: str = field(default="runs/demo", metadata={"help": "Output folder of 'rewardfilter run'."})
    x: str = field(
        default="both",
        metadata={
            "help": "x axis of the learning curves: step (env steps), samples_used, or both.",
            "choices": ("step", "samples_used", "both"),
        },
    )
    resamples: int = field(default=2000, metadata={"help": "Bootstrap resamples for the 95% CIs."})
    seed: int = field(
        default=0, metadata={"help": "Seed of the bootstrap (the report is deterministic)."}
    )
    out: str = field(
        default="",
        metadata={
            "help": "Folder to write the summary and plots to (default: the experiment folder), "
            "e.g. experiments/results/NAME to publish them."
        },
    )


@dataclass
class Report:
    """What :func:`make_report` produced."""

    rows: list[dict[str, Any]]
    markdown: str
    files: list[Path]
    spearman: dict[str, float]


#: x axis of the learning curves -> how the Markdown names it
CURVE_AXES = {"step": "environment / training steps", "samples_used": "samples used in updates"}

# --------------------------------------------------------------------------- statistics


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


def _nanmean(values: Any) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


# --------------------------------------------------------------------------- loading and grouping


def _load(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    from rewardfilter.experiments.runner import finished_runs

    if not out.is_dir():
        raise FileNotFoundError(
            f"No experiment folder {str(out)!r}; run 'rewardfilter run CONFIG --out {out}' first."
        )
    runs = finished_runs(out)
    config: dict[str, Any] = {}
    if (out / "config.yaml").exists():
        import yaml

        config = yaml.safe_load((out / "config.yaml").read_text()) or {}
    expected = (
        len(json.loads((out / "manifest.json").read_text()))
        if (out / "manifest.json").exists()
        else len(runs)
    )
    if not runs:
        raise FileNotFoundError(f"No finished runs in {str(out)!r} yet.")
    return runs, config, expected


def _true_return_at(run: dict[str, Any], samples: float) -> float:
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


def _cost(runs: list[dict[str, Any]]) -> str:
    """What the finished runs cost: the sum of their CPU time (and wall time) in hours."""
    cpu = sum(r["final"].get("cpu_s", 0.0) for r in runs) / 3600
    wall = sum(r["final"].get("wall_s", 0.0) for r in runs) / 3600
    return (
        f"Cost: {len(runs)} runs, {cpu:.2f} CPU-hours of their processes "
        f"({wall:.2f} h of wall time summed over runs)."
    )


def _share_true_reward_runs(cells, runs, columns, many_noises) -> dict[tuple[str, str], str]:
    """Let a method trained on the true reward (the oracle) fill the task's other noise columns.

    Its training does not depend on the noise model, so a config may run it
    under one noise model only (``{standard: oracle, noise: [...]}``) and save
    the duplicate runs; it then anchors the normalised score of every noise
    column of its task. Returns (column, method) -> the column it came from.
    """
    shared = {}
    true_methods = _ordered([r["method"]["name"] for r in runs if r["method"]["reward"] == "true"])
    for col in columns:
        task = next(r["task_label"] for r in runs if _column(r, many_noises) == col)
        for m in true_methods:
            if (col, m) in cells:
                continue
            source = next(
                (c for c in columns if (c, m) in cells and cells[(c, m)][0]["task_label"] == task),
                None,
            )
            if source is not None:
                cells[(col, m)] = cells[(source, m)]
                shared[(col, m)] = source
    return shared


def _column(run: dict[str, Any], many_noises: bool) -> str:
    label = run.get("task_label") or run["task"]
    return f"{label} ({run['noise']['name']})" if many_noises else label


def _ordered(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# --------------------------------------------------------------------------- the report


def make_report(options: ReportOptions | None = None, **overrides: Any) -> Report:
    """Write summary.csv, summary.md and the PNG plots into the experiment folder."""
    options = options or ReportOptions()
    for key, value in overrides.items():
        setattr(options, key, value)
    runs, config, expected = _load(Path(options.dir))
    out = Path(options.out or options.dir)
    if options.out:
        out.mkdir(parents=True, exist_ok=True)
    write = bool(options.out) or _writable(out)  # a read-only sweep is still reported (stdout)
    rng = np.random.default_rng(options.seed)
    baseline = (config.get("report") or {}).get("baseline", "PPO-M")
    oracle = (config.get("report") or {}).get("oracle", "oracle")

    many_noises = len({r["noise"]["name"] for r in runs}) > 1
    columns = _ordered([_column(r, many_noises) for r in runs])
    methods = _ordered([r["method"]["name"] for r in runs])
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        cells.setdefault((_column(r, many_noises), r["method"]["name"]), []).append(r)
    shared = _share_true_reward_runs(cells, runs, columns, many_noises)
    noise_of = {_column(r, many_noises): r["noise"]["name"] for r in runs}

    rows: list[dict[str, Any]] = []
    for col in columns:
        finals = {
            m: np.array([r["final"]["true_return"] for r in cells.get((col, m), [])], dtype=float)
            for m in methods
        }
        lo_anchor = _nanmean(finals.get(baseline, []))
        hi_anchor = _nanmean(finals.get(oracle, []))
        span = hi_anchor - lo_anchor
        for m in methods:
            group = sorted(cells.get((col, m), []), key=lambda r: r["seed"])
            if not group:
                continue
            x = finals[m]
            norm = (
                (x - lo_anchor) / span
                if np.isfinite(span) and span != 0
                else np.full_like(x, math.nan)
            )
            ci = bootstrap_ci(x, rng, options.resamples)
            nci = bootstrap_ci(norm, rng, options.resamples)
            # the baseline (PPO-M) when it had used as many samples as this method used in all
            samples = _nanmean([r["final"].get("samples_used", math.nan) for r in group])
            base_at = np.array(
                [_true_return_at(r, samples) for r in cells.get((col, baseline), [])], dtype=float
            )
            gain_ci = bootstrap_diff_ci(x, base_at, rng, options.resamples)
            first = group[0]
            rows.append(
                {
                    "domain": first["domain"],
                    "task": first["task"],
                    "noise": noise_of[col],
                    "column": col,
                    "method": m,
                    "reward": first["method"]["reward"],
                    "group_size": first["method"]["group_size"],
                    "filter": first["method"]["filter"],
                    "n_seeds": len(group),
                    "final_true_return": _nanmean(x),
                    "ci_low": ci[0],
                    "ci_high": ci[1],
                    "normalised": _nanmean(norm),
                    "normalised_ci_low": nci[0],
                    "normalised_ci_high": nci[1],
                    "final_noisy_return": _nanmean(
                        [r["final"].get("noisy_return", math.nan) for r in group]
                    ),
                    # R² and kept fraction averaged over the whole run: the reliability the filter saw
                    "filtered_r2": _nanmean(
                        [
                            _nanmean([rec.get("filtered_r2", math.nan) for rec in r["records"]])
                            for r in group
                        ]
                    ),
                    "kept_fraction": _nanmean(
                        [
                            _nanmean([rec.get("kept_fraction", math.nan) for rec in r["records"]])
                            for r in group
                        ]
                    ),
                    "samples_used": _nanmean(
                        [r["final"].get("samples_used", math.nan) for r in group]
                    ),
                    "steps": _nanmean([r["final"].get("step", math.nan) for r in group]),
                    "shared_from": shared.get((col, m), ""),
                    "baseline_at_equal_samples": _nanmean(base_at),
                    "gain_at_equal_samples": _nanmean(x) - _nanmean(base_at),
                    "gain_at_equal_samples_ci_low": gain_ci[0],
                    "gain_at_equal_samples_ci_high": gain_ci[1],
                }
            )

    spearman = _spearman_by_domain(rows)
    curve_keys = ["step", "samples_used"] if options.x == "both" else [options.x]
    preamble = _cost(runs)
    if shared:
        preamble += (
            "\nMethods trained on the true reward ("
            + ", ".join(sorted({m for _, m in shared}))
            + ") do not depend on the noise model: they ran under one and are shared by the "
            "task's other noise columns."
        )
    markdown = _markdown(
        rows,
        columns,
        methods,
        baseline,
        oracle,
        spearman,
        len(runs),
        expected,
        config,
        curve_keys,
        preamble,
    )
    if not write:
        return Report(rows=rows, markdown=markdown, files=[], spearman=spearman)
    files = [_write_csv(out / "summary.csv", rows)]
    atomic_write_text(out / "summary.md", markdown)
    files.append(out / "summary.md")
    files += _plot_curves(out, cells, columns, methods, curve_keys, options, rng)
    files.append(_plot_r2(out, rows, spearman))
    return Report(rows=rows, markdown=markdown, files=files, spearman=spearman)


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (tried, not guessed from permission bits)."""
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        with open(probe, "w"):
            pass
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    return path


def _r2_points(rows: list[dict[str, Any]], domain: str) -> list[dict[str, Any]]:
    """Methods trained on the noisy reward with a finite R² and score (the oracle is excluded)."""
    pts = [r for r in rows if r["domain"] == domain and r["reward"] == "noisy"]
    key = "normalised" if all(math.isfinite(r["normalised"]) for r in pts) else "final_true_return"
    return [
        {**r, "y": r[key], "y_label": key}
        for r in pts
        if math.isfinite(r["filtered_r2"]) and math.isfinite(r[key])
    ]


def _spearman_by_domain(rows: list[dict[str, Any]]) -> dict[str, float]:
    import rewardfilter as rf

    out = {}
    for domain in _ordered([r["domain"] for r in rows]):
        pts = _r2_points(rows, domain)
        if len(pts) >= 3:
            out[domain] = rf.spearman([p["filtered_r2"] for p in pts], [p["y"] for p in pts])
        else:
            out[domain] = math.nan
    return out


def _spearman_at_equal_kept(
    rows: list[dict[str, Any]], domain: str
) -> dict[float, tuple[float, int]]:
    """Spearman(R², performance) within sets of methods that keep the same share of samples.

    A filter that keeps half the samples also trains on half the data, so R² is
    compared most fairly between methods that keep as many (BR, BW, random:2).
    """
    import rewardfilter as rf

    by_kept: dict[float, list[dict[str, Any]]] = {}
    for p in _r2_points(rows, domain):
        if math.isfinite(p["kept_fraction"]):
            by_kept.setdefault(round(p["kept_fraction"], 2), []).append(p)
    return {
        kept: (rf.spearman([p["filtered_r2"] for p in pts], [p["y"] for p in pts]), len(pts))
        for kept, pts in sorted(by_kept.items())
        if len(pts) >= 3 and len(pts) < len(_r2_points(rows, domain))
    }


def _fmt(x: float, digits: int | None = None) -> str:
    """Fixed decimals when given, else 4 significant digits (returns range from 0.7 to 5000)."""
    if not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}" if digits is not None else f"{x:.4g}"


def _table(by, columns, methods, cell) -> list[str]:
    """A Markdown table: one row per method, one column per task; ``cell(row)`` fills a cell."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for m in methods:
        cells = ["" if (col, m) not in by else cell(by[(col, m)]) for col in columns]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _markdown(
    rows,
    columns,
    methods,
    baseline,
    oracle,
    spearman,
    n_runs,
    expected,
    config,
    curve_keys,
    preamble,
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
    lines += _table(
        by,
        columns,
        methods,
        lambda r: f"{_fmt(r['final_true_return'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
    )
    lines += [
        "",
        f"Normalised score: {baseline} (noisy reward) = 0, {oracle} (true reward) = 1; mean [95% CI].",
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
                f"{_fmt(r['normalised'], 2)} [{_fmt(r['normalised_ci_low'], 2)}, {_fmt(r['normalised_ci_high'], 2)}]"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_fmt(_nanmean(vals), 2)} |")
    lines += [
        "",
        f"At equal samples used in gradient updates: final true return minus {baseline}'s true "
        f"return when it had used as many samples as the method used in all (in parentheses). "
        f"A filter that keeps 2 of N trains on fewer samples; a gain here is better data, not "
        f"more (random:2 is the control with the same amount of blindly chosen data). "
        f"mean [95% CI].",
        "",
    ]
    lines += _table(
        by,
        columns,
        methods,
        lambda r: (
            f"{_fmt(r['gain_at_equal_samples'])} [{_fmt(r['gain_at_equal_samples_ci_low'])}, "
            f"{_fmt(r['gain_at_equal_samples_ci_high'])}] ({_fmt(r['baseline_at_equal_samples'])} "
            f"@ {_fmt(r['samples_used'], 0)})"
        ),
    )
    lines += [
        "",
        "Filtered R² (reward vs true return on kept episodes, mean over the run) and kept fraction.",
        "",
    ]
    lines += _table(
        by,
        columns,
        methods,
        lambda r: f"{_fmt(r['filtered_r2'], 2)} ({_fmt(100 * r['kept_fraction'], 0)}%)",
    )
    lines.append("")
    for domain, rho in spearman.items():
        n = len(_r2_points(rows, domain))
        lines.append(
            f"Spearman correlation between filtered R² and performance ({domain}, {n} noisy-reward "
            f"method x task points): {_fmt(rho, 2)}"
        )
        for kept, (rho_k, n_k) in _spearman_at_equal_kept(rows, domain).items():
            lines.append(
                f"- among the methods that keep {kept:.0%} of the samples ({n_k} points): "
                f"{_fmt(rho_k, 2)}"
            )
    lines += [
        "",
        *[f"![learning curves against {CURVE_AXES[k]}](curves_{k}.png)\n" for k in curve_keys],
        "![R² vs performance](r2_vs_score.png)",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _curve(runs: list[dict[str, Any]], key: str, rng, resamples: int, points: int = 60):
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


def _plot_curves(out, cells, columns, methods, keys, options, rng) -> list[Path]:
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
                curve = _curve(cells.get((col, m), []), key, rng, min(options.resamples, 1000))
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


def _plot_r2(out: Path, rows: list[dict[str, Any]], spearman: dict[str, float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(spearman) or ["(none)"]
    fig, axes = plt.subplots(1, len(domains), figsize=(4.6 * len(domains), 3.8), squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        pts = _r2_points(rows, domain)
        tasks = _ordered([p["column"] for p in pts])
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
            f"{domain}: Spearman ρ = {_fmt(spearman.get(domain, math.nan), 2)}", fontsize=10
        )
        ax.grid(alpha=0.3)
        if tasks:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "r2_vs_score.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
