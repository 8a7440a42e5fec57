"""Criteria C1 and C2 of experiments/study/PLAN_control_v2.md (section 3) from a finished calibration sweep.

    python -m rewardfilter.experiments.calibration_check experiments/results/control_v2/calibration-runs
    python -m rewardfilter.experiments.calibration_check DIR OTHER_DIR ...

Per noise column: the oracle's, PPO-M's and the untrained policy's true return
(final = mean of the last 3 evaluations, then mean over seeds), C1 =
(oracle - PPO-M) / (oracle - start) (passes at >= 0.3), C2 = mean `top1_correct`
over the last half of PPO-M's evaluation windows (passes at >= 0.6); then every
other method's final true return per column (the tuning sweep, the ranking
ceiling). A screen of trainer settings may hold several oracle methods (runs with
``reward: true`` under different names): each gets its own line (final true
return and gain over the untrained policy), and C1 uses the one named ``oracle``
(else the first by name). Runs of further folders join the first's (e.g. the
oracle anchor of an earlier sweep with the same trainer and seeds). Prints
Markdown; writes it to DIR/calibration.md (the first folder).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rewardfilter.experiments.outdir import runs_dir
from rewardfilter.io import atomic_write_text, read_jsonl, run_dataclass_cli


@dataclass
class CalibrationCheckConfig:
    """What ``python -m rewardfilter.experiments.calibration_check`` reads."""

    folders: list[str] = field(
        metadata={"help": "Sweep folders (rewardfilter run --out); the table goes to the first."}
    )


def _runs(folder: Path):
    for run_dir in sorted(runs_dir(folder, "folders").iterdir()):
        if not (run_dir / "final.json").exists():
            continue
        run = json.loads((run_dir / "run.json").read_text())
        records = [r for r in read_jsonl(run_dir / "records.jsonl") if "true_return" in r]
        if records:
            yield run, records


def check(config: CalibrationCheckConfig) -> str:
    """The calibration table of ``config.folders`` (Markdown), also written to the first's calibration.md."""
    folders = [Path(a) for a in config.folders]
    folder = folders[0]
    final = defaultdict(list)  # (noise, method) -> per-seed final true return
    start = defaultdict(list)
    top1 = defaultdict(list)
    oracle = defaultdict(list)  # oracle method name -> per-seed final true return
    oracle_start = defaultdict(list)
    for run, recs in (r for f in folders for r in _runs(f)):
        noise, method = run["noise"]["name"], run["method"]["name"]
        value = float(np.mean([r["true_return"] for r in recs[-3:]]))
        if run["method"]["reward"] == "true":
            oracle[method].append(value)
            oracle_start[method].append(recs[0]["start_true_return"])
            continue
        final[noise, method].append(value)
        start[noise].append(recs[0]["start_true_return"])
        if method == "PPO-M":
            half = recs[len(recs) // 2 :]
            top1[noise].append(float(np.nanmean([r.get("top1_correct", np.nan) for r in half])))
    if not oracle:
        raise ValueError(
            f"No finished oracle run (reward: true) in {', '.join(f'{f}/runs' for f in folders)}."
        )
    chosen = "oracle" if "oracle" in oracle else sorted(oracle)[0]
    o = float(np.mean(oracle[chosen]))
    lines = [
        f"Oracle ({chosen}) final true return {o:.2f} ({len(oracle[chosen])} seeds).",
        "",
        "| oracle | start | final true return, mean [min, max] over seeds | gain | seeds |",
        "|---|---|---|---|---|",
    ]
    for name, values in sorted(oracle.items()):
        s0 = float(np.mean(oracle_start[name]))
        lines.append(
            f"| {name} | {s0:.2f} | {np.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}] "
            f"| {np.mean(values) - s0:.2f} | {len(values)} |"
        )
    lines += [
        "",
        "| noise | start | PPO-M | C1 (>= 0.3) | C2 top-1 correct (>= 0.6) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for noise in sorted(start):
        s, m = float(np.mean(start[noise])), float(np.mean(final[noise, "PPO-M"]))
        c1 = (o - m) / (o - s) if o != s else float("nan")
        c2 = float(np.mean(top1[noise])) if top1[noise] else float("nan")
        lines.append(
            f"| {noise} | {s:.2f} | {m:.2f} | {c1:.2f} {'pass' if c1 >= 0.3 else 'fail'} "
            f"| {c2:.2f} {'pass' if c2 >= 0.6 else 'fail'} | {len(final[noise, 'PPO-M'])} |"
        )
    lines += [
        "",
        "| noise | method | final true return, mean [min, max] over seeds |",
        "|---|---|---|",
    ]
    for (noise, method), values in sorted(final.items()):
        lines.append(
            f"| {noise} | {method} | {np.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}] |"
        )
    text = "\n".join(lines) + "\n"
    atomic_write_text(folder / "calibration.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    text, status = run_dataclass_cli(
        CalibrationCheckConfig,
        check,
        argv,
        module="rewardfilter.experiments.calibration_check",
        doc=__doc__,
        positional="folders",
        metavar="DIR",
        nargs="+",
    )
    if not status:
        print(text)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
