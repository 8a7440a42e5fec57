"""``rewardfilter rliable DIR``: rliable statistics of an experiment, on every x axis its runs record.

Reads the finished runs of a ``rewardfilter run`` folder (or a table of
evaluation points, see :func:`curves_from_rows`) and writes ``rliable.md``
and ``rliable.json`` with, per column (a task under one noise model) and over
all columns:

* the IQM of the **final score** (the mean of a run's last ``last``
  evaluations) and of the **area under the learning curve** (trapezoids over
  environment steps, divided by the run's length; the untrained policy's
  ``start_true_return`` is the point at step 0), with 95 % stratified-bootstrap
  CIs (:mod:`rewardfilter.experiments.rliable_stats`);
* the **normalised score** (baseline = 0, oracle = 1) with numerator and
  anchors bootstrapped jointly, per column and aggregated over the columns;
* the **probability of improvement** of every method over each baseline
  (PPO-M, ``random:K``) on each axis (``step``: environment steps,
  ``gradient_steps``, ``samples_used``): both methods are scored at the same
  positions on that axis -- the last ``last`` evaluation positions of
  whichever ends first there, each run's curve interpolated linearly (never
  extrapolated) -- so a filter that took fewer gradient steps is compared with
  PPO-M *when PPO-M had taken as many*.

Methods trained on the true reward (the oracle) run under one noise model may
anchor the task's other noise columns (the same rule as ``rewardfilter report``).
Over all columns, a method's runs are its seeds present in every column.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.experiments.rliable_stats import improvement_ci, iqm_ci, normalised_iqm_ci
from rewardfilter.io import atomic_write_text, read_jsonl
from rewardfilter.validation import check_scalar, is_number

__all__ = ["Curve", "auc", "curves_from_rows", "curves_from_runs", "rliable_summary", "scores_at"]

AXES = ("step", "gradient_steps", "samples_used")


@dataclass
class Curve:
    """One run's evaluation curve: the score against each recorded x axis (start point included)."""

    method: str
    column: str
    seed: int
    task: str
    reward: str  # "true" for the oracle: it may anchor the task's other noise columns
    y: np.ndarray
    x: dict[str, np.ndarray]


def curves_from_runs(runs: list[dict[str, Any]], metric: str = "true_return") -> list[Curve]:
    """Curves of finished runs (``rewardfilter.experiments.runner.finished_runs``).

    A run's column is ``"<task label> (<noise name>)"``; its axes are the keys
    of :data:`AXES` that every record carries. The untrained policy's
    ``start_true_return`` (control records) becomes the point at 0 on every
    axis when the records do not start at 0 themselves.
    """
    curves = []
    for run in runs:
        recs = [r for r in run["records"] if is_number(r.get(metric))]
        if not recs:
            continue
        label = run.get("task_label") or run["task"]
        x = {
            a: np.array([r[a] for r in recs], float)
            for a in AXES
            if all(is_number(r.get(a)) for r in recs)
        }
        y = np.array([r[metric] for r in recs], float)
        start = recs[0].get("start_true_return") if metric == "true_return" else None
        if is_number(start) and x and all(v[0] > 0 for v in x.values()):
            x = {a: np.concatenate([[0.0], v]) for a, v in x.items()}
            y = np.concatenate([[float(start)], y])
        curves.append(
            Curve(
                method=run["method"]["name"],
                column=f"{label} ({run['noise']['name']})",
                seed=int(run["seed"]),
                task=label,
                reward=run["method"].get("reward", "noisy"),
                y=y,
                x=x,
            )
        )
    return curves


def curves_from_rows(rows: list[dict[str, Any]], metric: str = "score") -> list[Curve]:
    """Curves from a long table: one row per evaluation point.

    Each row has ``method``, ``column``, ``seed``, the ``metric`` and any of
    :data:`AXES` (a table of final scores only, e.g. per-family pass@1 of a
    post hoc evaluation, has one row per run and no axis: then every axis
    compares final with final). Optional ``reward`` ("true" for the oracle).
    """
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for i, row in enumerate(rows):
        missing = [k for k in ("method", "column", "seed", metric) if k not in row]
        if missing:
            raise ValueError(f"Row {i} of the table lacks {missing}; got keys {sorted(row)}.")
        grouped.setdefault((str(row["method"]), str(row["column"]), int(row["seed"])), []).append(
            row
        )
    curves = []
    for (method, column, seed), pts in grouped.items():
        axes = [a for a in AXES if all(is_number(p.get(a)) for p in pts)]
        pts = sorted(pts, key=lambda p: tuple(float(p[a]) for a in axes))
        x = {a: np.array([p[a] for p in pts], float) for a in axes}
        if not axes:  # final scores only: one point, compared at the same position on every axis
            x = {a: np.zeros(1) for a in AXES}
            pts = pts[-1:]
        y = np.array([p[metric] for p in pts], float)
        reward = str(pts[0].get("reward", "noisy"))
        curves.append(Curve(method, column, seed, column, reward, y, x))
    return curves


# --------------------------------------------------------------------------- per-run scores


def auc(curve: Curve, axis: str = "step") -> float:
    """Trapezoidal area under the curve on ``axis``, divided by its length (NaN for one point)."""
    x = curve.x.get(axis)
    if x is None or x.size < 2 or x[-1] == x[0]:
        return math.nan
    y = curve.y
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def scores_at(curves: list[Curve], axis: str, targets: np.ndarray) -> np.ndarray:
    """Each curve's mean score at the ``targets`` on ``axis`` (linear; NaN outside a curve's range)."""
    out = np.full(len(curves), math.nan)
    for i, c in enumerate(curves):
        x = c.x.get(axis)
        if x is None or targets.min() < x[0] - 1e-9 or targets.max() > x[-1] + 1e-9:
            continue
        out[i] = float(np.interp(targets, x, c.y).mean())
    return out


def common_positions(a: list[Curve], b: list[Curve], axis: str, last: int) -> np.ndarray | None:
    """The last ``last`` positions on ``axis`` reached by every run of both arms (None if absent)."""
    tails = []
    for c in a + b:
        x = c.x.get(axis)
        if x is None:
            return None
        tail = x[-last:]
        tails.append(np.concatenate([np.full(last - tail.size, tail[0]), tail]))
    return np.min(tails, axis=0)


# --------------------------------------------------------------------------- the summary


def _cells(curves: list[Curve]) -> tuple[list[str], list[str], dict[tuple[str, str], list[Curve]]]:
    columns = list(dict.fromkeys(c.column for c in curves))
    methods = list(dict.fromkeys(c.method for c in curves))
    cells: dict[tuple[str, str], list[Curve]] = {}
    for c in curves:
        cells.setdefault((c.column, c.method), []).append(c)
    for col in columns:  # a true-reward method run under one noise anchors its task's other columns
        task = next(c.task for c in curves if c.column == col)
        for m in methods:
            if (col, m) in cells:
                continue
            source = next(
                (
                    cs
                    for (other, om), cs in cells.items()
                    if om == m and cs[0].task == task and cs[0].reward == "true"
                ),
                None,
            )
            if source is not None:
                cells[(col, m)] = source
    for cs in cells.values():
        cs.sort(key=lambda c: c.seed)
    return columns, methods, cells


def _est(e: tuple[float, float, float], n: int) -> dict[str, float]:
    return {"value": e[0], "ci_low": e[1], "ci_high": e[2], "n_runs": n}


def _matrix(per_column: list[dict[int, float]]) -> tuple[np.ndarray, list[int]]:
    """Runs x columns over the seeds present (and finite) in every column."""
    seeds = sorted(
        set.intersection(*(set(s for s, v in d.items() if math.isfinite(v)) for d in per_column))
    )
    values = [[d[s] for d in per_column] for s in seeds]
    return np.array(values, float).reshape(len(seeds), len(per_column)), seeds


def rliable_summary(
    curves: list[Curve],
    baselines: list[str],
    oracle: str | None = "oracle",
    *,
    last: int = 3,
    axes: tuple[str, ...] = ("step", "gradient_steps"),
    auc_axis: str = "step",
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    pool_raw: bool = False,
) -> dict[str, Any]:
    """The statistics of the module docstring as plain data (what ``rliable.json`` holds).

    ``baselines[0]`` anchors the normalised score at 0 and ``oracle`` at 1.
    Keys: ``columns``, ``methods``, ``per_column[column][method]`` and
    ``all_columns[method]``, each with ``final``, ``auc``, ``normalised`` and
    ``improvement[baseline][axis]`` estimates (``value``, ``ci_low``,
    ``ci_high``, ``n_runs``; absent where it cannot be computed, e.g. a
    baseline that never reached the method's positions on an axis). Over all
    columns the raw ``final`` and ``auc`` are pooled only with ``pool_raw``
    (columns on one scale, e.g. pass@1 per task family).
    """
    last = check_scalar(last, "last", "rliable_summary", "int", min_val=1)
    for a in (*axes, auc_axis):
        if a not in AXES:
            raise ValueError(
                f"The 'axes' parameter of rliable_summary must name axes in {AXES}; got {a!r}."
            )
    if not curves:
        raise ValueError("rliable_summary needs at least one run with a finite score; got none.")
    columns, methods, cells = _cells(curves)
    unknown = [b for b in [*baselines, oracle] if b is not None and b not in methods]
    if unknown:
        raise ValueError(
            f"The baseline/oracle method(s) {unknown} are not among the methods {methods}."
        )
    kw = {"resamples": resamples, "level": level, "seed": seed}

    def finals(col: str, m: str) -> dict[int, float]:
        return {c.seed: float(c.y[-last:].mean()) for c in cells.get((col, m), [])}

    def aucs(col: str, m: str) -> dict[int, float]:
        return {c.seed: auc(c, auc_axis) for c in cells.get((col, m), [])}

    def paired(
        col: str, m: str, b: str, axis: str
    ) -> tuple[dict[int, float], dict[int, float]] | None:
        xs, bs = cells.get((col, m), []), cells.get((col, b), [])
        pos = common_positions(xs, bs, axis, last) if xs and bs else None
        if pos is None:
            return None
        sx, sb = scores_at(xs, axis, pos), scores_at(bs, axis, pos)
        return (
            dict(zip([c.seed for c in xs], sx, strict=True)),
            dict(zip([c.seed for c in bs], sb, strict=True)),
        )

    def block(cols: list[str], m: str) -> dict[str, Any]:
        out: dict[str, Any] = {"improvement": {}}
        for key, get in (("final", finals), ("auc", aucs)):
            mat, seeds = _matrix([get(col, m) for col in cols])
            if seeds and (len(cols) == 1 or pool_raw):  # pooled only if columns share a scale
                out[key] = _est(iqm_ci(mat, **kw), len(seeds))
        anchor = baselines[0] if baselines else None
        if (
            anchor
            and oracle
            and all((col, anchor) in cells and (col, oracle) in cells for col in cols)
        ):
            x, _ = _matrix([finals(col, m) for col in cols])
            lo, _ = _matrix([finals(col, anchor) for col in cols])
            hi, _ = _matrix([finals(col, oracle) for col in cols])
            same = {anchor: lo, oracle: hi}.get(m)
            if x.size and lo.size and hi.size and not np.any(lo.mean(0) == hi.mean(0)):
                args = (x if same is None else same, lo, hi)
                out["normalised"] = _est(normalised_iqm_ci(*args, **kw), x.shape[0])
        for b in baselines:
            if b == m:
                continue
            for axis in axes:
                pairs = [paired(col, m, b, axis) for col in cols]
                if any(p is None for p in pairs):
                    continue
                x, _ = _matrix([p[0] for p in pairs])
                y, _ = _matrix([p[1] for p in pairs])
                if x.size and y.size:
                    out["improvement"].setdefault(b, {})[axis] = _est(
                        improvement_ci(x, y, **kw), x.shape[0]
                    )
        return out

    return {
        "options": {
            "baselines": baselines,
            "oracle": oracle,
            "last": last,
            "axes": list(axes),
            "auc_axis": auc_axis,
            "resamples": resamples,
            "level": level,
            "seed": seed,
            "pool_raw": pool_raw,
        },
        "columns": columns,
        "methods": methods,
        "per_column": {
            col: {m: block([col], m) for m in methods if (col, m) in cells} for col in columns
        },
        # over all columns: the methods present in every one of them
        "all_columns": {
            m: block(columns, m) for m in methods if all((col, m) in cells for col in columns)
        }
        if len(columns) > 1
        else {},
    }


# --------------------------------------------------------------------------- markdown, files, CLI

AXIS_LABEL = {
    "step": "env steps",
    "gradient_steps": "gradient steps",
    "samples_used": "samples used",
}


def _fmt(e: dict[str, float] | None, digits: int = 2) -> str:
    if not e:
        return "n/a"
    return f"{e['value']:.{digits}f} [{e['ci_low']:.{digits}f}, {e['ci_high']:.{digits}f}]"


def to_markdown(summary: dict[str, Any]) -> str:
    """Tables of :func:`rliable_summary`: one per column, one over all columns."""
    opt = summary["options"]
    improvement_heads = [(b, a) for b in opt["baselines"] for a in opt["axes"]]
    lines = [
        "# rliable statistics",
        "",
        f"IQM with {opt['level']:.0%} stratified-bootstrap CIs ({opt['resamples']} resamples, "
        f"seed {opt['seed']}); final = mean of the last {opt['last']} evaluations; AUC over "
        f"{AXIS_LABEL[opt['auc_axis']]} divided by the run length; normalised: "
        f"{opt['baselines'][0] if opt['baselines'] else '-'} = 0, {opt['oracle']} = 1 (anchors "
        "resampled jointly); P(X > baseline) with both scored at the same positions on each axis.",
    ]

    def table(title: str, blocks: dict[str, Any], raw: bool) -> None:
        head = ["method", "runs"] + (["IQM final", "IQM AUC"] if raw else []) + ["normalised IQM"]
        head += [f"P(> {b}), {AXIS_LABEL[a]}" for b, a in improvement_heads]
        lines.extend(
            ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        )
        for m, blk in blocks.items():
            n = max((e["n_runs"] for e in _estimates(blk)), default=0)
            cells = [m, str(n)]
            if raw:
                cells += [_fmt(blk.get("final")), _fmt(blk.get("auc"))]
            cells.append(_fmt(blk.get("normalised")))
            cells += [
                "-" if b == m else _fmt(blk["improvement"].get(b, {}).get(a))
                for b, a in improvement_heads
            ]
            lines.append("| " + " | ".join(cells) + " |")

    for col, blocks in summary["per_column"].items():
        table(col, blocks, raw=True)
    if summary["all_columns"]:
        table(
            f"All {len(summary['columns'])} columns",
            summary["all_columns"],
            raw=opt.get("pool_raw", False),
        )
    return "\n".join(lines) + "\n"


def _estimates(blk: dict[str, Any]) -> list[dict[str, float]]:
    out = [blk[k] for k in ("final", "auc", "normalised") if k in blk]
    return out + [e for per in blk["improvement"].values() for e in per.values()]


def load_curves(
    source: str | Path, metric: str | None = None
) -> tuple[list[Curve], dict[str, Any]]:
    """Curves of a ``rewardfilter run`` folder, or of a ``.json``/``.jsonl``/``.csv`` table of points."""
    source = Path(source)
    if source.is_dir():
        from rewardfilter.experiments.report import load_runs

        runs, config, _ = load_runs(source)
        return curves_from_runs(runs, metric or "true_return"), config
    if not source.is_file():
        raise FileNotFoundError(f"No run folder or table {str(source)!r}.")
    if source.suffix == ".csv":
        import csv

        with open(source, newline="") as fh:
            rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    elif source.suffix == ".jsonl":
        rows = read_jsonl(source)
    else:
        rows = json.loads(source.read_text())
    return curves_from_rows(rows, metric or "score"), {}


def _number(text: str) -> Any:
    try:
        return float(text) if text.strip() else math.nan
    except ValueError:
        return text


def default_baselines(curves: list[Curve], config: dict[str, Any]) -> list[str]:
    """The config's report baseline (PPO-M by default) and every ``random:K`` method present."""
    methods = list(dict.fromkeys(c.method for c in curves))
    first = (config.get("report") or {}).get("baseline") or "PPO-M"
    randoms = [m for m in methods if m.lower().startswith("random:")]
    return [b for b in dict.fromkeys([first, *randoms]) if b in methods]


def write_rliable(
    source: str | Path,
    out: str | Path | None = None,
    *,
    baselines: list[str] | None = None,
    oracle: str | None = None,
    metric: str | None = None,
    **kwargs: Any,
) -> tuple[dict[str, Any], str, list[Path]]:
    """Compute :func:`rliable_summary` for ``source`` and write ``rliable.md`` / ``rliable.json``."""
    curves, config = load_curves(source, metric)
    baselines = baselines or default_baselines(curves, config)
    if oracle is None:
        oracle = (config.get("report") or {}).get("oracle", "oracle")
        oracle = oracle if any(c.method == oracle for c in curves) else None
    summary = rliable_summary(curves, baselines, oracle, **kwargs)
    markdown = to_markdown(summary)
    folder = Path(out) if out else (Path(source) if Path(source).is_dir() else Path(source).parent)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "rliable.md", folder / "rliable.json"]
    atomic_write_text(files[0], markdown)
    atomic_write_text(files[1], json.dumps(summary, indent=1, default=float) + "\n")
    return summary, markdown, files


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="Output folder of 'rewardfilter run', or a .csv/.json/.jsonl table of points.",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=None,
        help="Baseline method (repeatable; "
        "the first anchors the normalised score). Default: the config's report "
        "baseline (PPO-M) and every random:K method.",
    )
    parser.add_argument(
        "--oracle",
        default=None,
        help="Method scored 1 in the normalised score (default: the config's, 'oracle').",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="Record key of the score (default: true_return for a run folder, score for a table).",
    )
    parser.add_argument(
        "--last", type=int, default=3, help="Final score = mean of the last this many evaluations."
    )
    parser.add_argument(
        "--axis",
        action="append",
        choices=AXES,
        default=None,
        help="x axes of the probability of improvement (repeatable; default: step and gradient_steps).",
    )
    parser.add_argument(
        "--auc-axis", choices=AXES, default="step", help="x axis of the area under the curve."
    )
    parser.add_argument("--resamples", type=int, default=2000, help="Bootstrap resamples.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap.")
    parser.add_argument(
        "--pool-raw",
        action="store_true",
        help="Also pool the raw final score and AUC over all columns (only when they share a "
        "scale, e.g. pass@1 per task family).",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="Folder for rliable.md / rliable.json (default: the run folder).",
    )


def cmd_rliable(args: argparse.Namespace) -> int:
    try:
        _, markdown, files = write_rliable(
            args.source,
            args.out,
            baselines=args.baseline,
            oracle=args.oracle,
            metric=args.metric,
            last=args.last,
            axes=tuple(args.axis or ("step", "gradient_steps")),
            auc_axis=args.auc_axis,
            resamples=args.resamples,
            seed=args.seed,
            pool_raw=args.pool_raw,
        )
    except (FileNotFoundError, ValueError, ImportError) as exc:  # ImportError: no [report] extra
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def add_subcommands(subparsers) -> None:
    parser = subparsers.add_parser(
        "rliable",
        help="rliable statistics of an experiment: IQM, probability of improvement, normalised "
        "score, AUC, on env-step and gradient-step axes (needs the [report] extra).",
    )
    _add_arguments(parser)
    parser.set_defaults(func=cmd_rliable)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewardfilter.experiments.rliable_report")
    _add_arguments(parser)
    return cmd_rliable(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
