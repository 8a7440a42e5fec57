"""The domain registry: how the runner turns one run of the grid into results.

A *domain* is one function::

    run_fn(run: dict, log: Callable[[dict], None]) -> dict

``run`` is one expanded run of the grid, a plain JSON-able dict::

    {"domain": "control", "task": "rewardfilter/Pendulum-v1",
     "noise": {"name": ..., "model": ..., "kwargs": {...}},
     "method": {"name": "PF-PPO (BR)", "reward": "noisy", "group_size": 4, "filter": "br"},
     "seed": 0, "budget": {...}, "hparams": {...}, "run_id": ..., "out_dir": ...}

``log(record)`` appends one evaluation record::

    {"step": env steps (or iterations) so far,
     "samples_used": cumulative samples that entered gradient updates,
     "true_return": ..., "noisy_return": ..., "kept_fraction": ..., "filtered_r2": ...}

(extra keys are allowed and kept). The function returns the final record (the
same keys plus anything else). ``out_dir`` is a per-run scratch directory that
survives an interrupted run, so a long domain may checkpoint there and resume;
records logged before an interruption are discarded, so a domain that resumes
from a checkpoint must log again the records it wants kept.

Domains are resolved lazily by import path, so that ``rewardfilter --help``
never imports torch, gymnasium or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]
DomainFn = Callable[[dict[str, Any], Callable[[Record], None]], Record]

#: name -> "module:function". Add a domain by adding a line here.
DOMAINS: dict[str, str] = {
    "control": "rewardfilter.experiments.domains.control:run_control",
    "code": "rewardfilter.experiments.domains.code:run_code",
    "bandit": "rewardfilter.experiments.domains.bandit:run_bandit",
}

#: name -> (extra, modules it needs): checked before any run starts, so a missing extra is one
#: message naming it (``pip install 'rewardfilter[sb3]'``), not a traceback per run.
REQUIRES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "control": ("sb3", ("gymnasium", "stable_baselines3", "torch")),
    "code": ("code", ("torch", "transformers")),
    "bandit": (None, ()),
}

#: Keys every evaluation record carries (NaN where a domain cannot measure one).
RECORD_KEYS = (
    "step",
    "samples_used",
    "true_return",
    "noisy_return",
    "kept_fraction",
    "filtered_r2",
)


def check_requirements(name: str) -> None:
    """Raise :class:`~rewardfilter.extras.MissingExtraError` if domain ``name`` lacks its extra."""
    from rewardfilter.extras import check_modules

    extra, modules = REQUIRES.get(name, (None, ()))
    if extra:
        check_modules(modules, extra, f"The {name!r} domain")


def resolve(name: str) -> DomainFn:
    """Import and return the run function of domain ``name``.

    Raises ``ValueError`` naming the known domains for an unknown name; an
    optional dependency missing for a known domain raises
    :class:`~rewardfilter.extras.MissingExtraError` naming the extra to install.
    """
    from rewardfilter.extras import from_import_error

    if name not in DOMAINS:
        raise ValueError(f"Unknown domain {name!r}; known domains: {', '.join(sorted(DOMAINS))}.")
    check_requirements(name)
    module_name, _, attr = DOMAINS[name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        missing = from_import_error(exc, f"The {name!r} domain", REQUIRES.get(name, (None,))[0])
        if missing is None:
            raise
        raise missing from exc
