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

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.experiments import plots, tables
from rewardfilter.experiments.plots import ordered
from rewardfilter.experiments.statistics import (
    bootstrap_ci,
    bootstrap_diff_ci,
    nanmean,
    normalised_ci,
    spearman_by_domain,
    true_return_at,
)
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


# --------------------------------------------------------------------------- loading and grouping


def load_runs(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """The finished runs of a ``rewardfilter run`` folder, its config and the planned run count."""
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


def _share_true_reward_runs(cells, runs, columns, many_noises) -> dict[tuple[str, str], str]:
    """Let a method trained on the true reward (the oracle) fill the task's other noise columns.

    Its training does not depend on the noise model, so a config may run it
    under one noise model only (``{standard: oracle, noise: [...]}``) and save
    the duplicate runs; it then anchors the normalised score of every noise
    column of its task. Returns (column, method) -> the column it came from.
    """
    shared = {}
    true_methods = ordered([r["method"]["name"] for r in runs if r["method"]["reward"] == "true"])
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


# --------------------------------------------------------------------------- the report


def make_report(options: ReportOptions | None = None, **overrides: Any) -> Report:
    """Write summary.csv, summary.md and the PNG plots into the experiment folder."""
    options = options or ReportOptions()
    for key, value in overrides.items():
        setattr(options, key, value)
    runs, config, expected = load_runs(Path(options.dir))
    out = Path(options.out or options.dir)
    if options.out:
        out.mkdir(parents=True, exist_ok=True)
    write = bool(options.out) or _writable(out)  # a read-only sweep is still reported (stdout)
    rng = np.random.default_rng(options.seed)
    baseline = (config.get("report") or {}).get("baseline", "PPO-M")
    oracle = (config.get("report") or {}).get("oracle", "oracle")

    many_noises = len({r["noise"]["name"] for r in runs}) > 1
    columns = ordered([_column(r, many_noises) for r in runs])
    methods = ordered([r["method"]["name"] for r in runs])
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
        lo_anchor = nanmean(finals.get(baseline, []))
        hi_anchor = nanmean(finals.get(oracle, []))
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
            # numerator and both anchors resampled jointly (issue 16.6)
            nci = (
                normalised_ci(x, finals[baseline], finals[oracle], rng, options.resamples)
                if baseline in finals and oracle in finals
                else (math.nan, math.nan)
            )
            # the baseline (PPO-M) when it had used as many samples as this method used in all
            samples = nanmean([r["final"].get("samples_used", math.nan) for r in group])
            base_at = np.array(
                [true_return_at(r, samples) for r in cells.get((col, baseline), [])], dtype=float
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
                    "final_true_return": nanmean(x),
                    "ci_low": ci[0],
                    "ci_high": ci[1],
                    "normalised": nanmean(norm),
                    "normalised_ci_low": nci[0],
                    "normalised_ci_high": nci[1],
                    "final_noisy_return": nanmean(
                        [r["final"].get("noisy_return", math.nan) for r in group]
                    ),
                    # R² and kept fraction averaged over the whole run: the reliability the filter saw
                    "filtered_r2": nanmean(
                        [
                            nanmean([rec.get("filtered_r2", math.nan) for rec in r["records"]])
                            for r in group
                        ]
                    ),
                    "kept_fraction": nanmean(
                        [
                            nanmean([rec.get("kept_fraction", math.nan) for rec in r["records"]])
                            for r in group
                        ]
                    ),
                    "samples_used": nanmean(
                        [r["final"].get("samples_used", math.nan) for r in group]
                    ),
                    "steps": nanmean([r["final"].get("step", math.nan) for r in group]),
                    "shared_from": shared.get((col, m), ""),
                    "baseline_at_equal_samples": nanmean(base_at),
                    "gain_at_equal_samples": nanmean(x) - nanmean(base_at),
                    "gain_at_equal_samples_ci_low": gain_ci[0],
                    "gain_at_equal_samples_ci_high": gain_ci[1],
                }
            )

    spearman = spearman_by_domain(rows)
    curve_keys = ["step", "samples_used"] if options.x == "both" else [options.x]
    preamble = tables.cost(runs)
    if shared:
        preamble += (
            "\nMethods trained on the true reward ("
            + ", ".join(sorted({m for _, m in shared}))
            + ") do not depend on the noise model: they ran under one and are shared by the "
            "task's other noise columns."
        )
    markdown = tables.markdown(
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
    files = [tables.write_csv(out / "summary.csv", rows)]
    atomic_write_text(out / "summary.md", markdown)
    files.append(out / "summary.md")
    files += plots.plot_curves(out, cells, columns, methods, curve_keys, options, rng)
    files.append(plots.plot_r2(out, rows, spearman))
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


# --------------------------------------------------------------------------- plots
