"""One table row per run of a code-domain calibration sweep (experiments/study/PLAN_code_v2.md, 3.1).

    python -m rewardfilter.experiments.code_calibration runs/code_v2/cal-trainer [more sweeps]

Per finished run (``final.json`` present): the method, its start and final
held-out pass@1 greedy (``true_return``) and sampled at the training
temperature (``sampled_pass@1``, when the sweep asked for it), the peak
greedy value over the evaluations, the sampled training pass rate of the
first and last iteration windows (5 iterations each, from the trainer's
log), the KL to the reference and the mean response length of the first
and last windows, and the run's wall and CPU seconds. A run is flagged
``collapsed`` (PLAN 3.1's guards) when its last-window response length is
below half its first window's or its last-window KL exceeds 20 nats. Prints
Markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from rewardfilter.io import read_jsonl

COLUMNS = (
    "method",
    "iters",
    "greedy start",
    "greedy end",
    "greedy peak",
    "sampled start",
    "sampled end",
    "train pass first/last",
    "KL last",
    "len first/last",
    "collapsed",
    "wall s",
    "CPU s",
)


def _window(log: list[dict], key: str, last: bool, width: int = 5) -> float:
    rows = log[-width:] if last else log[:width]
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def run_row(run_dir: Path) -> dict | None:
    """The summary of one run folder of a sweep, or None while it is unfinished."""
    if not (run_dir / "final.json").is_file():
        return None
    run = json.loads((run_dir / "run.json").read_text())
    final = json.loads((run_dir / "final.json").read_text())
    evals = [r for r in read_jsonl(run_dir / "records.jsonl") if "true_return" in r]
    log = read_jsonl(run_dir / "scratch" / "train_log.jsonl", errors="skip")
    len_first, len_last = _window(log, "response_len", False), _window(log, "response_len", True)
    kl_last = _window(log, "kl", True)
    return {
        "run_id": run["run_id"],
        "method": run["method"]["name"],
        "task": run.get("task_label") or run["task"],
        "seed": run["seed"],
        "iters": int(final["step"]),
        "greedy start": evals[0]["true_return"],
        "greedy end": evals[-1]["true_return"],
        "greedy peak": max(r["true_return"] for r in evals),
        "sampled start": evals[0].get("sampled_pass@1", float("nan")),
        "sampled end": evals[-1].get("sampled_pass@1", float("nan")),
        "unseen start": evals[0].get("unseen_pass@1", float("nan")),
        "unseen end": evals[-1].get("unseen_pass@1", float("nan")),
        "train pass first": _window(log, "true_pass_rate", False),
        "train pass last": _window(log, "true_pass_rate", True),
        "KL last": kl_last,
        "len first": len_first,
        "len last": len_last,
        "collapsed": bool(len_last < 0.5 * len_first or kl_last > 20.0),
        "wall s": final.get("wall_s", float("nan")),
        "CPU s": final.get("cpu_s", float("nan")),
        "curve": [(r["step"], r["true_return"], r.get("sampled_pass@1")) for r in evals],
    }


def sweep_rows(folder: Path) -> list[dict]:
    """The finished runs of one sweep folder (``rewardfilter run --out``), in run-id order."""
    from rewardfilter.experiments.outdir import runs_dir

    runs = runs_dir(folder, "sweeps")
    rows = [run_row(d) for d in sorted(runs.iterdir()) if d.is_dir()]
    return [r for r in rows if r is not None]


def _fmt(row: dict, col: str) -> str:
    if col == "train pass first/last":
        return f"{row['train pass first']:.3f} / {row['train pass last']:.3f}"
    if col == "len first/last":
        return f"{row['len first']:.1f} / {row['len last']:.1f}"
    value = row[col]
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return (
            "–" if np.isnan(value) else (f"{value:.0f}" if col.endswith(" s") else f"{value:.3f}")
        )
    return str(value)


def markdown(rows: list[dict]) -> str:
    """A Markdown table of :func:`run_row` dicts."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r, c) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    for folder in argv:
        print(f"\n### {folder}\n")
        print(markdown(sweep_rows(Path(folder))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
