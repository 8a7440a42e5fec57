"""Experiment configs: read a YAML file and validate it into the schema, in one place.

A config file (YAML) names a domain, its tasks, the noise models that corrupt
the reward, the methods to compare, the seeds, the budget and the
hyperparameters (the dataclasses of :mod:`rewardfilter.experiments.schema`).
:func:`load_config` validates all of it *in one place* before anything runs:
every problem is reported with its key path and the reason
(``methods[3].filter: Unknown filter spec 'bx' ...``,
``hparams.lrr: unknown hyperparameter of the bandit domain; did you mean 'lr'?``),
all problems at once, so a typo never costs a night of compute. What each
domain accepts (task ids, noise models and their parameters, hyperparameters
and their ranges) is checked by :mod:`rewardfilter.experiments.domains.checks`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from rewardfilter.experiments.schema import (
    DEFAULT_GROUP_SIZE,
    STANDARD_METHODS,
    STANDARD_SET,
    BudgetConfig,
    ExperimentConfig,
    MethodConfig,
    NoiseConfig,
    ReportConfig,
    TaskConfig,
    describe,
    run_id,
)
from rewardfilter.validation import Interval, is_number

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "STANDARD_METHODS",
    "STANDARD_SET",
    "BudgetConfig",
    "ConfigError",
    "ExperimentConfig",
    "MethodConfig",
    "NoiseConfig",
    "ReportConfig",
    "TaskConfig",
    "describe",
    "load_config",
    "parse_config",
    "run_id",
]


class ConfigError(ValueError):
    """An invalid experiment config; ``errors`` holds one ``"key.path: reason"`` per problem."""

    def __init__(self, errors: list[str], source: str = "config"):
        self.errors = list(errors)
        self.source = source
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(
            f"Invalid experiment config {source} ({len(self.errors)} problem(s)):\n{lines}"
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
        admissible = Interval("int", minimum)
        if value not in admissible:
            self.error(path, f"must be {admissible}; got {_show(value)}.")
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


#: a config name is a folder name below runs/
_SAFE_NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.-]+")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_budget(
    c: _Checker, raw: Any, path: str, base: BudgetConfig | None, *, check_eval_every: bool = True
) -> dict[str, Any]:
    """Validate a (partial) budget mapping; return only the keys it gives.

    ``check_eval_every=False`` leaves ``eval_every <= steps`` to the caller (a method's
    budget is merged over each task's, see :func:`_check_method_budgets`).
    """
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
    if check_eval_every and merged["eval_every"] > merged["steps"] and "eval_every" in out:
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
    budget = _check_budget(
        c, raw.get("budget"), _join(path, "budget"), None, check_eval_every=False
    )
    if len(c.errors) > n_errors:
        return None
    return MethodConfig(
        name=name,
        reward=reward,
        group_size=n,
        filter=filt.spec,
        hparams=hparams,
        noise=tuple(only),
        budget=budget,
    )


def _check_method_budgets(c, budget, tasks, methods, indices) -> None:
    """``eval_every <= steps`` for every method's budget merged over every task's."""
    for i, m in zip(indices, methods, strict=True):
        if not m.budget:
            continue
        for task in tasks:
            merged = {**dataclasses.asdict(budget), **task.budget, **m.budget}
            if merged["eval_every"] > merged["steps"]:
                c.error(
                    f"methods[{i}].budget",
                    f"eval_every ({merged['eval_every']}) must be <= steps ({merged['steps']}) "
                    f"on task {task.label!r}; give both, e.g. {{steps: {merged['eval_every'] * 10}, "
                    f"eval_every: {merged['eval_every']}}}.",
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
    if name is not None and not _SAFE_NAME.fullmatch(name):
        c.error(
            "name",
            "must be a plain folder name (letters, digits, '.', '_', '-'; not '.' or '..'), "
            f"since the default output folder is runs/<name>; got {name!r}.",
        )
    domain = raw.get("domain")
    if "domain" in raw and domain not in DOMAINS:
        c.error(
            "domain",
            f"unknown domain {_show(domain)}; known domains: {', '.join(sorted(DOMAINS))}.",
        )

    # seeds: an int count or a list of distinct non-negative ints
    seeds_raw = raw.get("seeds", 3)
    seeds: tuple[int, ...] = ()
    if is_number(seeds_raw, "int"):
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
    task_indices: list[int] = []  # position of each valid task in the file, for messages
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
        task_indices.append(i)
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
    _check_method_budgets(c, budget, tasks, methods, indices)
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

    if domain in DOMAINS:
        _check_domain(c, domain, hparams, tasks, task_indices, noises, methods, indices)
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


def _check_domain(c, domain, hparams, tasks, task_indices, noises, methods, indices) -> None:
    """What the domain accepts: task ids, noise models, hyperparameters (names, values, n_envs)."""
    from rewardfilter.experiments.domains import checks

    checks.check_hparams(domain, hparams, "hparams", c.error)
    for i, task in zip(task_indices, tasks, strict=True):
        checks.check_task(domain, task.id, f"tasks[{i}].id", c.error)
        checks.check_hparams(domain, task.hparams, f"tasks[{i}].hparams", c.error)
    for i, nz in enumerate(noises):
        checks.check_noise(domain, nz.model, nz.kwargs, f"noise[{i}]", c.error)
    for i, m in zip(indices, methods, strict=True):
        checks.check_hparams(domain, m.hparams, f"methods[{i}].hparams", c.error)
    # n_envs (wherever it is set) against the group size of every method it applies to
    for ti, task in zip(task_indices, tasks, strict=True):
        for i, m in zip(indices, methods, strict=True):
            for path, hp in (
                (f"methods[{i}]", m.hparams),
                (f"tasks[{ti}]", task.hparams),
                ("", hparams),
            ):
                if "n_envs" in hp:
                    where = f"{path}.hparams.n_envs" if path else "hparams.n_envs"
                    checks.check_group_sizes(
                        domain, [(where, hp["n_envs"])], [(m.name, m.group_size)], c.error
                    )
                    break
            else:
                checks.check_group_sizes(
                    domain, [("hparams.n_envs (default 8)", 8)], [(m.name, m.group_size)], c.error
                )
    c.errors[:] = list(dict.fromkeys(c.errors))  # one message per problem


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
