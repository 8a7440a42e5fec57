"""The offline R² test of experiments/study/PLAN_control_v2.md (section 6, H4) on a finished control sweep.

    python -m rewardfilter.experiments.control_pool RUN_DIR [--contexts 100] [--runs 3]
        [--group-size N] [--filters SPEC ...]

For the first ``--runs`` PPO-M runs of RUN_DIR (by seed) that saved checkpoints
(``hparams.checkpoints``), every checkpoint collects G = ``--contexts`` contexts
x N episodes (N = the run's group size, or ``--group-size``: regime 2 asks how
reliable the top of 8 is) with its stochastic policy, under the run's task, noise and
``env_kwargs`` (contexts seeded by ``--seed``: every checkpoint sees the same
start states). Per filter, :func:`rewardfilter.adapters.sb3.pool.pool_metrics`
(filtered R², within-group Spearman, noise MSE, kept fraction), averaged over
the pools; per pool also the two numbers behind criterion C2: the mean
within-group standard deviation of the *true* returns (how much the N episodes
of a context differ) and the root-mean-square noise (observed - true return).

Then, for every filter that was also trained in RUN_DIR (a method with that
filter spec on the noisy reward, ranking by the observed reward), the Spearman
correlation between its offline filtered R² and the IQM of its runs' final true
return (mean of the last 3 evaluations), with the one-sided permutation p-value
of :func:`rewardfilter.ranking.permutation_spearman`. Writes ``pool.md`` and
``pool.json`` to ``--out`` (default RUN_DIR).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.experiments.outdir import runs_dir
from rewardfilter.io import atomic_write_text, read_jsonl, run_dataclass_cli
from rewardfilter.validation import check_scalar

FILTERS = ("none", "random:2", "bon", "br", "bw", "rank:0.4,0.2,0.2,0.2", "adaptive")


@dataclass
class PoolConfig:
    """What ``python -m rewardfilter.experiments.control_pool`` collects and compares."""

    folder: str = field(metadata={"help": "A finished control sweep (rewardfilter run --out)."})
    contexts: int = field(default=100, metadata={"help": "Contexts (start states) per pool."})
    runs: int = field(
        default=3, metadata={"help": "PPO-M runs (lowest seeds) whose checkpoints collect."}
    )
    seed: int = field(default=123_456, metadata={"help": "Seed of the pools' start states."})
    group_size: int | None = field(
        default=None, metadata={"help": "Episodes per context N (default: the runs' group size)."}
    )
    filters: list[str] = field(
        default_factory=lambda: list(FILTERS),
        metadata={"help": "Filter specs to measure (uncertainty:0.25 joins for ensembles)."},
    )
    out: str | None = field(default=None, metadata={"help": "Output folder (default: FOLDER)."})

    def __post_init__(self):
        check_scalar(self.contexts, "contexts", "control_pool", "int", min_val=1)
        check_scalar(self.runs, "runs", "control_pool", "int", min_val=1)
        if self.group_size is not None:
            check_scalar(self.group_size, "group_size", "control_pool", "int", min_val=2)


def _finished(folder: Path):
    for run_dir in sorted((folder / "runs").iterdir()):
        if (run_dir / "final.json").exists():
            yield run_dir, json.loads((run_dir / "run.json").read_text())


def spread_and_noise(pool: dict[str, Any]) -> tuple[float, float]:
    """Mean within-group std of the true returns, and the RMS of (observed - true)."""
    true, groups = np.asarray(pool["true"], float), np.asarray(pool["groups"])
    stds = [true[groups == g].std() for g in np.unique(groups)]
    rms = float(np.sqrt(np.mean((np.asarray(pool["noisy"], float) - true) ** 2)))
    return float(np.mean(stds)), rms


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when none is (e.g. the Spearman of a filter keeping 1 of N)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def arm_scores(folder: Path) -> dict[str, float]:
    """Filter spec -> IQM final true return of the noisy-reward runs that trained through it."""
    from scipy.stats import trim_mean

    finals = defaultdict(list)
    for run_dir, run in _finished(folder):
        m = run["method"]
        if m["reward"] != "noisy" or run["hparams"].get("rank_by", "observed") != "observed":
            continue
        recs = [r for r in read_jsonl(run_dir / "records.jsonl") if "true_return" in r]
        finals[m["filter"]].append(float(np.mean([r["true_return"] for r in recs[-3:]])))
    return {spec: float(trim_mean(v, 0.25)) for spec, v in finals.items()}


def offline_pool(a: PoolConfig) -> str:
    """Collect the pools, measure every filter on them, write pool.md / pool.json; the Markdown."""
    from stable_baselines3 import PPO

    import rewardfilter.envs  # noqa: F401  (registers the tasks)
    from rewardfilter.adapters.sb3.pool import collect_pool, permutation_spearman, pool_metrics

    folder = Path(a.folder)
    runs_dir(folder, "folder")
    ppo_m = [
        (d, r)
        for d, r in _finished(folder)
        if r["method"]["name"] == "PPO-M" and sorted((d / "scratch").glob("checkpoint_*.zip"))
    ]
    ppo_m = sorted(ppo_m, key=lambda dr: dr[1]["seed"])[: a.runs]
    if not ppo_m:
        raise ValueError(f"No finished PPO-M run with checkpoints in {folder}/runs.")
    per_filter, pools = defaultdict(lambda: defaultdict(list)), []
    for run_dir, run in ppo_m:
        noise = run["noise"]
        env_kwargs = {
            "noise": noise["model"],
            "noise_kwargs": dict(noise["kwargs"]),
            **run["hparams"].get("env_kwargs", {}),
        }
        n = a.group_size or int(run["method"]["group_size"])
        for ckpt in sorted((run_dir / "scratch").glob("checkpoint_*.zip")):
            model = PPO.load(ckpt, device="cpu")
            pool = collect_pool(
                model, run["task"], a.contexts, n, seed=a.seed, env_kwargs=env_kwargs
            )
            spread, rms = spread_and_noise(pool)
            # the ensemble-disagreement filter only where the reward is an ensemble's
            specs = [*a.filters, *(["uncertainty:0.25"] if pool["ensemble"] is not None else [])]
            records = pool_metrics(specs, pool)
            pools.append(
                {
                    "seed": run["seed"],
                    "checkpoint": ckpt.stem,
                    "spread": spread,
                    "noise_rms": rms,
                    "top1_correct": records[0]["top1_correct"],
                    "top1_chance": records[0]["top1_chance"],
                }
            )
            for spec, rec in zip(specs, records, strict=True):
                for key in ("filtered_r2", "within_group_spearman", "noise_mse", "kept_fraction"):
                    per_filter[spec][key].append(float(rec[key]))
    scores = arm_scores(folder)
    table = {
        spec: {k: float(np.nanmean(v)) for k, v in m.items()} for spec, m in per_filter.items()
    }
    trained = [s for s in table if s in scores]
    rho = pval = float("nan")
    if len(trained) >= 3:
        rho, pval = permutation_spearman(
            [table[s]["filtered_r2"] for s in trained], [scores[s] for s in trained]
        )
    lines = [
        f"Offline pool: {len(pools)} pools ({len(ppo_m)} PPO-M runs x their checkpoints), "
        f"{a.contexts} contexts x {a.group_size or 'N'} episodes each, stochastic policy.",
        "",
        "| pool | within-group std of true return | noise RMS | top-1 correct | chance |",
        "|---|---|---|---|---|",
        *(
            f"| s{q['seed']} {q['checkpoint']} | {q['spread']:.2f} | {q['noise_rms']:.2f} "
            f"| {q['top1_correct']:.2f} | {q['top1_chance']:.2f} |"
            for q in pools
        ),
        "",
        "| filter | filtered R² | within-group Spearman | noise MSE | kept | IQM final (trained) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s} | {m['filtered_r2']:.3f} | {m['within_group_spearman']:.3f} "
            f"| {m['noise_mse']:.2f} | {m['kept_fraction']:.2f} "
            f"| {f'{scores[s]:.2f}' if s in scores else '-'} |"
            for s, m in table.items()
        ),
        "",
        f"Spearman(offline filtered R², IQM final) over {len(trained)} trained filters: "
        f"{rho:.2f}, one-sided permutation p = {pval:.3f}.",
    ]
    text = "\n".join(lines) + "\n"
    out = Path(a.out or folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pool.md", text)
    summary = {"pools": pools, "filters": table, "scores": scores, "spearman": [rho, pval]}
    atomic_write_text(out / "pool.json", json.dumps(summary, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    text, status = run_dataclass_cli(
        PoolConfig,
        offline_pool,
        argv,
        module="rewardfilter.experiments.control_pool",
        doc=__doc__,
        positional="folder",
        metavar="RUN_DIR",
    )
    if not status:
        print(text)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
