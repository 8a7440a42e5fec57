"""Experiment configs: what to compare, on what, for how long.

A config file (YAML) names a domain, its tasks, the noise models that corrupt
the reward, the methods to compare, the seeds, the budget and the
hyperparameters. :func:`load_config` validates all of it *in one place* before
anything runs: every problem is reported with its key path and the reason
(``methods[3].filter: Unknown filter spec 'bx' ...``), all problems at once,
so a typo never costs a night of compute.

Every field of the dataclasses below carries its help text in
``metadata["help"]`` (as TRL's configs do); :func:`describe` prints them, and
the command line builds its options from the same text.

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


class ConfigError(ValueError):
    """An invalid experiment config; ``errors`` holds one ``"key.path: reason"`` per problem."""

    def __init__(self, errors: list[str], source: str = "config"):
        self.errors = list(errors)
        self.source = source
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(
            f"Invalid experiment config {source} ({len(self.errors)} problem(s)):\n{lines}"
        )


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
            budget = {**dataclasses.asdict(self.budget), **task.budget}
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
                            "budget": budget,
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
        """The normalised config as plain data (what the runner snapshots beside the results)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


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


# --------------------------------------------------------------------------- validation (one place)


class _Checker:
    """Collects ``path: reason`` messages while the raw YAML is turned into dataclasses."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, reason: str) -> None:
        self.errors.append(f"{path}: {reason}")

    def mapping(self, value: Any, path: str, cls: type) -> dict[str, Any] | None:
        """Check that ``value`` is a mapping whose keys are fields of ``cls``."""
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping; got {_show(value)}.")
            return None
        known = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            if key not in known:
                self.error(_join(path, key), f"unknown key; known keys: {', '.join(known)}.")
        return value

    def string(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, f"must be a non-empty string; got {_show(value)}.")
            return None
        return value.strip()

    def integer(self, value: Any, path: str, minimum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.error(path, f"must be an int >= {minimum}; got {_show(value)}.")
            return None
        return value

    def dict_of_any(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self.error(path, f"must be a mapping with string keys; got {_show(value)}.")
            return {}
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            self.error(path, "must hold plain values only (numbers, strings, lists, mappings).")
            return {}
        return dict(value)

    def sequence(self, value: Any, path: str) -> list[Any] | None:
        if not isinstance(value, list) or not value:
            self.error(path, f"must be a non-empty list; got {_show(value)}.")
            return None
        return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_budget(c: _Checker, raw: Any, path: str, base: BudgetConfig | None) -> dict[str, Any]:
    """Validate a (partial) budget mapping; return only the keys it gives."""
    out: dict[str, Any] = {}
    if raw is None:
        return out
    raw = c.mapping(raw, path, BudgetConfig)
    if raw is None:
        return out
    for key in ("steps", "eval_every", "eval_episodes"):
        if key in raw:
            value = c.integer(raw[key], _join(path, key), 1)
            if value is not None:
                out[key] = value
    merged = {**dataclasses.asdict(base or BudgetConfig()), **out}
    if merged["eval_every"] > merged["steps"] and "eval_every" in out:
        c.error(
            _join(path, "eval_every"),
            f"must be <= steps ({merged['steps']}); got {merged['eval_every']}.",
        )
    return out


def _check_method(c: _Checker, raw: Any, path: str, default_n: int) -> MethodConfig | None:
    import rewardfilter as rf

    overrides: dict[str, Any] = {}
    if isinstance(raw, dict) and "standard" in raw:  # {standard: BR, noise: [...], ...}
        overrides = {k: v for k, v in raw.items() if k != "standard"}
        raw = raw["standard"]
    if isinstance(raw, str):  # a standard alias
        alias = raw.strip().lower()
        if alias not in STANDARD_METHODS:
            c.error(
                path,
                f"unknown standard method {raw!r}; known aliases: {', '.join(STANDARD_METHODS)} "
                "(or give a mapping with name, reward, group_size, filter).",
            )
            return None
        name, reward, n, spec = STANDARD_METHODS[alias]
        raw = {
            "name": name,
            "reward": reward,
            "group_size": n or default_n,
            "filter": spec,
            **overrides,
        }
    raw = c.mapping(raw, path, MethodConfig)
    if raw is None:
        return None
    n_errors = len(c.errors)
    name = c.string(raw.get("name"), _join(path, "name"))
    reward = raw.get("reward", "noisy")
    if reward is True:  # YAML reads `reward: true` as a boolean
        reward = "true"
    if reward not in ("true", "noisy"):
        c.error(_join(path, "reward"), f"must be 'true' or 'noisy'; got {_show(reward)}.")
    n = c.integer(raw.get("group_size", default_n), _join(path, "group_size"), 1)
    spec = raw.get("filter", "none")
    filt = None
    if not isinstance(spec, str):
        c.error(_join(path, "filter"), f"must be a filter spec string; got {_show(spec)}.")
    else:
        try:
            filt = rf.make_filter(spec)
        except ValueError as exc:
            c.error(_join(path, "filter"), str(exc))
    if filt is not None and n is not None:
        try:
            filt.check_group_size(n)
        except ValueError as exc:
            c.error(_join(path, "group_size"), str(exc))
    hparams = c.dict_of_any(raw.get("hparams"), _join(path, "hparams"))
    only = _noise_names(c, raw.get("noise", []), _join(path, "noise"))
    if len(c.errors) > n_errors:
        return None
    return MethodConfig(
        name=name, reward=reward, group_size=n, filter=filt.spec, hparams=hparams, noise=tuple(only)
    )


def parse_config(raw: Any, source: str = "config") -> ExperimentConfig:
    """Validate a raw config mapping (parsed YAML) and build the :class:`ExperimentConfig`.

    All problems are collected and raised together as one :class:`ConfigError`.
    """
    from rewardfilter.experiments.domains import DOMAINS

    c = _Checker()
    raw = c.mapping(raw, "", ExperimentConfig)
    if raw is None:
        raise ConfigError(c.errors, source)
    for key in ("name", "domain", "tasks", "methods"):
        if key not in raw:
            c.error(key, "is required.")

    name = c.string(raw.get("name"), "name") if "name" in raw else None
    domain = raw.get("domain")
    if "domain" in raw and domain not in DOMAINS:
        c.error(
            "domain",
            f"unknown domain {_show(domain)}; known domains: {', '.join(sorted(DOMAINS))}.",
        )

    # seeds: an int count or a list of distinct non-negative ints
    seeds_raw = raw.get("seeds", 3)
    seeds: tuple[int, ...] = ()
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        if seeds_raw < 1:
            c.error("seeds", f"an int count must be >= 1; got {seeds_raw}.")
        seeds = tuple(range(max(seeds_raw, 0)))
    elif isinstance(seeds_raw, list) and seeds_raw:
        for i, s in enumerate(seeds_raw):
            c.integer(s, f"seeds[{i}]", 0)
        if len(set(map(repr, seeds_raw))) != len(seeds_raw):
            c.error("seeds", f"must be distinct; got {seeds_raw}.")
        seeds = tuple(s for s in seeds_raw if isinstance(s, int))
    else:
        c.error(
            "seeds", f"must be an int >= 1 or a non-empty list of ints; got {_show(seeds_raw)}."
        )

    budget = BudgetConfig(
        **{
            **dataclasses.asdict(BudgetConfig()),
            **_check_budget(c, raw.get("budget"), "budget", None),
        }
    )
    hparams = c.dict_of_any(raw.get("hparams"), "hparams")
    default_n = (
        c.integer(raw.get("group_size", DEFAULT_GROUP_SIZE), "group_size", 1) or DEFAULT_GROUP_SIZE
    )

    tasks: list[TaskConfig] = []
    for i, t in enumerate(c.sequence(raw["tasks"], "tasks") or [] if "tasks" in raw else []):
        path = f"tasks[{i}]"
        if isinstance(t, str):
            t = {"id": t}
        t = c.mapping(t, path, TaskConfig)
        if t is None:
            continue
        tid = c.string(t.get("id"), _join(path, "id"))
        if tid is None:
            continue
        label = t.get("label") or tid.split("/")[-1]
        label = c.string(label, _join(path, "label")) or tid
        tasks.append(
            TaskConfig(
                id=tid,
                label=label,
                hparams=c.dict_of_any(t.get("hparams"), _join(path, "hparams")),
                budget=_check_budget(c, t.get("budget"), _join(path, "budget"), budget),
                noise=tuple(_noise_names(c, t.get("noise", []), _join(path, "noise"))),
            )
        )
    _check_unique(c, [t.label for t in tasks], "tasks", "label")

    noises: list[NoiseConfig] = []
    noise_raw = raw.get("noise", [{"name": "none", "model": "none"}])
    if isinstance(noise_raw, dict):
        noise_raw = [noise_raw]
    for i, nz in enumerate(c.sequence(noise_raw, "noise") or []):
        path = f"noise[{i}]"
        if isinstance(nz, str):
            nz = {"name": nz, "model": nz}
        nz = c.mapping(nz, path, NoiseConfig)
        if nz is None:
            continue
        model = c.string(nz.get("model", "none"), _join(path, "model"))
        nname = c.string(nz.get("name", model), _join(path, "name"))
        kwargs = c.dict_of_any(nz.get("kwargs"), _join(path, "kwargs"))
        if model and nname:
            noises.append(NoiseConfig(name=nname, model=model, kwargs=kwargs))
    _check_unique(c, [n.name for n in noises], "noise", "name")

    methods: list[MethodConfig] = []
    indices: list[int] = []  # position of each valid method in the file, for messages
    methods_raw = raw.get("methods")
    if methods_raw == "standard":
        methods_raw = list(STANDARD_SET)
    for i, m in enumerate(c.sequence(methods_raw, "methods") or [] if "methods" in raw else []):
        method = _check_method(c, m, f"methods[{i}]", default_n)
        if method is not None:
            methods.append(method)
            indices.append(i)
    _check_unique(c, [m.name for m in methods], "methods", "name")
    noise_names = {nz.name for nz in noises}
    restricted = [(f"methods[{i}]", m) for i, m in zip(indices, methods, strict=True)]
    restricted += [(f"tasks[{i}]", t) for i, t in enumerate(tasks)]
    for path, item in restricted:
        for name_ in item.noise:
            if noises and name_ not in noise_names:
                c.error(
                    f"{path}.noise",
                    f"names no noise model: {name_!r}; noise models: {', '.join(sorted(noise_names))}.",
                )

    report_raw = c.mapping(raw.get("report", {}), "report", ReportConfig) or {}
    report = ReportConfig(**{k: report_raw[k] for k in ("baseline", "oracle") if k in report_raw})
    names = {m.name for m in methods}
    for key in ("baseline", "oracle"):
        value = getattr(report, key)
        if key in report_raw and value is not None and value not in names and methods:
            c.error(
                f"report.{key}",
                f"names no method; got {_show(value)}; methods: {', '.join(sorted(names))}.",
            )

    if c.errors:
        raise ConfigError(c.errors, source)
    return ExperimentConfig(
        name=name,
        domain=domain,
        tasks=tuple(tasks),
        methods=tuple(methods),
        seeds=seeds,
        noise=tuple(noises),
        budget=budget,
        hparams=hparams,
        group_size=default_n,
        report=report,
    )


def _noise_names(c: _Checker, raw: Any, path: str) -> list[str]:
    """A ``noise:`` restriction: a name or a list of noise model names."""
    only = [raw] if isinstance(raw, str) else raw
    if not isinstance(only, list) or not all(isinstance(x, str) for x in only):
        c.error(path, f"must be a list of noise model names; got {_show(raw)}.")
        return []
    return only


def _check_unique(c: _Checker, values: list[str], path: str, key: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            c.error(f"{path}[{i}].{key}", f"duplicate {key} {v!r}; each must be unique.")
        seen.add(v)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML config file.

    A path that does not exist is also looked up among the configs shipped with
    the package (``demo.yaml``, ``control.yaml``, ...).
    """
    import yaml

    p = Path(path)
    if not p.exists():
        shipped = Path(__file__).parent / p.name
        if shipped.exists():
            p = shipped
        else:
            raise FileNotFoundError(
                f"No config file {str(path)!r} (nor a shipped config of that name)."
            )
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError([f"(file): not valid YAML: {exc}"], str(p)) from None
    return parse_config(raw, str(p))


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
