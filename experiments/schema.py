"""The experiment config schema: dataclasses whose fields carry their help text.

What a config file says, as typed, frozen dataclasses (TRL's habit: each
field's ``metadata["help"]`` is also the command line's help; :func:`describe`
prints them). Reading and validating a YAML file into these is
:mod:`rewardfilter.experiments.config`'s job.

A method is a *name* plus what defines it: the reward it trains on (the true
reward or the noisy one), the group size N (episodes sampled per start state,
responses per prompt) and a filter spec (:func:`rewardfilter.make_filter`).
Standard methods can be named by a short alias in the YAML (``- BR``); see
:data:`STANDARD_METHODS`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Default group size N for standard methods when the config gives none (the paper's N = 5
#: is for code; 4 divides the usual vectorised-env counts).
DEFAULT_GROUP_SIZE = 4


@dataclass(frozen=True)
class BudgetConfig:
    """How long each run trains and how often it is evaluated."""

    steps: int = field(
        default=50_000,
        metadata={
            "help": "Training budget per run: environment steps (control) or PPO iterations (code)."
        },
    )
    eval_every: int = field(
        default=10_000,
        metadata={
            "help": "Evaluate the true (and noisy) return every this many steps; also at the end."
        },
    )
    eval_episodes: int = field(
        default=5,
        metadata={"help": "Episodes (control) or prompts (code) per evaluation."},
    )


@dataclass(frozen=True)
class NoiseConfig:
    """One noise model: how the training reward differs from the true reward."""

    name: str = field(metadata={"help": "Short label used in run ids and report columns."})
    model: str = field(
        default="none",
        metadata={
            "help": "Noise model of the domain (control: none, gaussian, heteroscedastic, confusion, learned)."
        },
    )
    kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Parameters of the noise model, passed as they are."},
    )


@dataclass(frozen=True)
class TaskConfig:
    """One task of the domain, with its own hyperparameters."""

    id: str = field(metadata={"help": "Task id, e.g. a Gymnasium id 'rewardfilter/Pendulum-v1'."})
    label: str = field(
        default="",
        metadata={
            "help": "Short name for tables and run ids; defaults to the id without its namespace."
        },
    )
    hparams: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Hyperparameters for this task; override the config-level 'hparams'."},
    )
    budget: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Budget overrides for this task (steps, eval_every, eval_episodes)."},
    )
    noise: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Names of the noise models this task runs under (default: all), e.g. only "
            "those under which the noisy reward measurably hurts on this task."
        },
    )


@dataclass(frozen=True)
class MethodConfig:
    """One method compared: reward source, group size N and filter."""

    name: str = field(metadata={"help": "Row label in the report, e.g. 'PF-PPO (BR)'."})
    reward: str = field(
        default="noisy",
        metadata={
            "help": "'noisy' trains on the corrupted reward, 'true' on the true one (the oracle)."
        },
    )
    group_size: int = field(
        default=DEFAULT_GROUP_SIZE,
        metadata={"help": "N: episodes sampled from the same start state (responses per prompt)."},
    )
    filter: str = field(
        default="none",
        metadata={
            "help": "Filter spec for rewardfilter.make_filter: none, bon, br, bw, random:K, rank:..."
        },
    )
    hparams: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Hyperparameters for this method only; override the task's."},
    )
    noise: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Names of the noise models this method runs under (default: all), e.g. an "
            "ensemble-disagreement filter only where the reward model is an ensemble."
        },
    )
    budget: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Budget overrides for this method (steps, eval_every, eval_episodes), over "
            "the task's: e.g. filters that sample N = 8 and keep 2 on 4x the envs run 4x the "
            "steps of PPO-M at N = 2, so both make as many updates on as many kept samples."
        },
    )


@dataclass(frozen=True)
class ReportConfig:
    """Which methods anchor the normalised score."""

    baseline: str | None = field(
        default="PPO-M",
        metadata={
            "help": "Method whose mean final true return scores 0 (noisy PPO-M in the paper)."
        },
    )
    oracle: str | None = field(
        default="oracle",
        metadata={
            "help": "Method whose mean final true return scores 1 (trained on the true reward)."
        },
    )


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole comparison: the grid tasks x noise models x methods x seeds."""

    name: str = field(
        metadata={"help": "Experiment name; the default output folder is runs/<name>."}
    )
    domain: str = field(
        metadata={"help": "Domain that runs each run (see rewardfilter.experiments.domains)."}
    )
    tasks: tuple[TaskConfig, ...] = field(metadata={"help": "Tasks (table columns)."})
    methods: tuple[MethodConfig, ...] = field(metadata={"help": "Methods (table rows)."})
    seeds: tuple[int, ...] = field(
        default=(0, 1, 2),
        metadata={
            "help": "Seeds: a list of ints, or an int n for 0..n-1. Every method sees the same seeds."
        },
    )
    noise: tuple[NoiseConfig, ...] = field(
        default=(NoiseConfig(name="none"),),
        metadata={"help": "Noise models; every task runs under each of them."},
    )
    budget: BudgetConfig = field(default_factory=BudgetConfig, metadata={"help": "Default budget."})
    hparams: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Hyperparameters shared by every task and method."}
    )
    group_size: int = field(
        default=DEFAULT_GROUP_SIZE,
        metadata={"help": "Default N for methods named by a standard alias."},
    )
    report: ReportConfig = field(
        default_factory=ReportConfig, metadata={"help": "Report settings."}
    )

    def expand(self, out_dir: str | Path | None = None) -> list[dict[str, Any]]:
        """The grid as a list of plain JSON-able run dicts, in a stable order.

        Each run carries its own seed and a stable ``run_id``: a readable slug
        plus a hash of everything that defines the run, so that re-running the
        same config finds its finished runs, and changing a run's definition
        (its budget, a hyperparameter) gives it a new id instead of silently
        reusing stale results.
        """
        runs = []
        for task in self.tasks:
            task_budget = {**dataclasses.asdict(self.budget), **task.budget}
            for noise in self.noise:
                if task.noise and noise.name not in task.noise:
                    continue
                for method in self.methods:
                    if method.noise and noise.name not in method.noise:
                        continue
                    for seed in self.seeds:
                        run = {
                            "domain": self.domain,
                            "task": task.id,
                            "task_label": task.label,
                            "noise": dataclasses.asdict(noise),
                            "method": {
                                "name": method.name,
                                "reward": method.reward,
                                "group_size": method.group_size,
                                "filter": method.filter,
                            },
                            "seed": int(seed),
                            "budget": {**task_budget, **method.budget},
                            "hparams": {**self.hparams, **task.hparams, **method.hparams},
                        }
                        run = json.loads(json.dumps(run))  # plain JSON types only
                        run["run_id"] = run_id(run)
                        if out_dir is not None:
                            run["out_dir"] = str(Path(out_dir) / "runs" / run["run_id"] / "scratch")
                        else:
                            run["out_dir"] = None
                        runs.append(run)
        return runs

    def to_dict(self) -> dict[str, Any]:
        """The normalised config as plain data (what the runner snapshots beside the results).

        A method without a budget of its own has no ``budget`` key, so the snapshot of a
        sweep started before methods could have one still matches (no "different config").
        """
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for method in data["methods"]:
            if not method["budget"]:
                del method["budget"]
        return data


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def run_id(run: dict[str, Any]) -> str:
    """Readable, stable id of a run: ``<task>-<noise>-<method>-s<seed>-<hash8>``."""
    defining = {k: v for k, v in run.items() if k not in ("run_id", "out_dir")}
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:8]
    parts = [run["task_label"], run["noise"]["name"], run["method"]["name"]]
    return "-".join(_slug(p) for p in parts) + f"-s{run['seed']}-{digest}"


# --------------------------------------------------------------------------- standard methods

#: alias (case-insensitive) -> (name, reward, group size or None for the config's N, filter).
STANDARD_METHODS: dict[str, tuple[str, str, int | None, str]] = {
    "oracle": ("oracle", "true", None, "none"),
    "ppo-s": ("PPO-S", "noisy", 1, "none"),
    "ppo-m": ("PPO-M", "noisy", None, "none"),
    "random:2": ("random:2", "noisy", None, "random:2"),
    "bon": ("PF-PPO (BoN)", "noisy", None, "bon"),
    "br": ("PF-PPO (BR)", "noisy", None, "br"),
    "bw": ("PF-PPO (BW)", "noisy", None, "bw"),
    "uncertainty": ("uncertainty:0.25", "noisy", None, "uncertainty:0.25"),
    "adaptive": ("PF-PPO (adaptive)", "noisy", None, "adaptive"),
}

#: The standard comparison, in table order.
STANDARD_SET = (
    "oracle",
    "ppo-s",
    "ppo-m",
    "random:2",
    "bon",
    "br",
    "bw",
    "uncertainty",
    "adaptive",
)


def describe(cls: type = ExperimentConfig) -> str:
    """The help text of every field of a config dataclass, one line each."""
    lines = [f"{cls.__name__}: {cls.__doc__.strip().splitlines()[0]}"]
    for f in dataclasses.fields(cls):
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (
                "(required)"
                if f.default_factory is dataclasses.MISSING
                else copy.deepcopy(f.default_factory())
            )
        )
        lines.append(f"  {f.name}: {f.metadata.get('help', '')} [default: {default}]")
    return "\n".join(lines)
