"""Up-front checks of what a config gives each domain: task ids, noise models, hyperparameters.

:func:`check` runs inside :func:`~rewardfilter.experiments.config.parse_config`,
before anything runs, and reports every problem with its key path
(``tasks[0].hparams.lrr: unknown hyperparameter of the bandit domain; did you
mean 'lr'?``). Without it a typo ran with the default silently, and a bad value
failed every run with a message that did not name the key.

Each domain is described by :class:`DomainSpec`: its hyperparameters (name ->
the interval, type or tuple of strings a value must have, or a function (value, key path) ->
[(key path, reason)] for nested values; ``None`` accepts any plain value), how a
task id is checked and which noise models and noise parameters it accepts. The
checks import nothing heavy: the control domain's PPO parameters are listed here
(a test compares them with SB3's signature), and its task ids and noise models
are read from ``rewardfilter.envs`` only when gymnasium is installed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rewardfilter.validation import Interval

Error = Callable[[str, str], None]

POSITIVE = Interval("float", 0, None, "neither")
NON_NEGATIVE = Interval("float", 0, None, "left")
UNIT = Interval("float", 0, 1, "right")  # (0, 1]
COUNT = Interval("int", 1, None, "left")
ANY = None  # any plain value


@dataclass(frozen=True)
class DomainSpec:
    """What a domain accepts; see the module docstring."""

    #: name -> rule, or a function returning them (read from the domain; {} when unknown)
    hparams: dict[str, Any] | Callable[[], dict[str, Any]]
    task: Callable[[str], str | None] = lambda task_id: None  # -> a reason, or None if fine
    #: noise model -> accepted kwargs (None: not checked here); empty dict: any model passes
    noise: Callable[[], dict[str, tuple[str, ...] | None]] = dict
    #: (model, kwargs) -> a reason the values are bad, or None
    noise_values: Callable[[str, dict[str, Any]], str | None] = lambda model, kwargs: None
    set_by_domain: tuple[str, ...] = field(default=())


def _suggest(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}."


# --------------------------------------------------------------------------- bandit


def _bandit_task(task_id: str) -> str | None:
    if re.fullmatch(r"bandit/[1-9]\d*x[1-9]\d*", task_id):
        return None
    return "bandit task ids look like 'bandit/<contexts>x<arms>', e.g. 'bandit/32x8'"


BANDIT = DomainSpec(
    hparams={
        "lr": POSITIVE,
        "batch_contexts": COUNT,
        "ensemble_size": COUNT,
        "adaptive_groups": COUNT,
        "sleep": NON_NEGATIVE,
    },
    task=_bandit_task,
    noise=lambda: dict(_bandit().NOISE_KWARGS),
    noise_values=lambda model, kwargs: _bandit_noise_values(model, kwargs),
)


def _bandit():
    from rewardfilter.experiments.domains import bandit

    return bandit


def _bandit_noise_values(model: str, kwargs: dict[str, Any]) -> str | None:
    try:
        _bandit().noise_model(model, kwargs)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- control (SB3 PPO)


def _control_task(task_id: str) -> str | None:
    try:
        import gymnasium as gym

        import rewardfilter.envs  # noqa: F401  (registers the tasks)
    except ImportError:  # the missing extra is reported by the runner, naming it
        return None
    if task_id in gym.registry:
        return None
    ours = [k for k in gym.registry if k.startswith("rewardfilter/")]
    return f"no Gymnasium task {task_id!r} is registered; {_suggest(task_id, ours)}"


def _control_noise() -> dict[str, tuple[str, ...] | None]:
    try:
        import dataclasses

        from rewardfilter.envs.wrappers import NOISE_MODELS
    except ImportError:
        return {}
    return {
        name: tuple(f.name for f in dataclasses.fields(cfg))
        for name, (_, cfg) in NOISE_MODELS.items()
    }


def _control_noise_values(model: str, kwargs: dict[str, Any]) -> str | None:
    try:
        from rewardfilter.envs.wrappers import NOISE_MODELS
        from rewardfilter.noise import config_from_kwargs
    except ImportError:
        return None
    try:
        config_from_kwargs(NOISE_MODELS[model][1], kwargs, f"{model} noise")
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


CONTROL = DomainSpec(
    hparams={
        # the domain's own keys
        "n_envs": COUNT,
        "env_kwargs": dict,
        "policy": str,
        "adaptive_window": COUNT,
        "rank_by": ("observed", "true"),
        "lr_schedule": ("constant", "linear"),
        "checkpoints": list,  # fractions of the budget in (0, 1] (checked by domains/control.py)
        # stable_baselines3.PPO's constructor (tests/test_experiments_config.py checks this list)
        "learning_rate": POSITIVE,
        "n_steps": COUNT,
        "batch_size": COUNT,
        "n_epochs": COUNT,
        "gamma": UNIT,
        "gae_lambda": UNIT,
        "clip_range": POSITIVE,
        "clip_range_vf": ANY,
        "normalize_advantage": bool,
        "ent_coef": NON_NEGATIVE,
        "vf_coef": NON_NEGATIVE,
        "max_grad_norm": POSITIVE,
        "use_sde": bool,
        "sde_sample_freq": Interval("int", -1, None, "left"),
        "target_kl": ANY,
        "stats_window_size": COUNT,
        "tensorboard_log": ANY,
        "policy_kwargs": dict,
    },
    task=_control_task,
    noise=_control_noise,
    noise_values=_control_noise_values,
    set_by_domain=(
        "env",
        "rollout_buffer_class",
        "rollout_buffer_kwargs",
        "seed",
        "device",
        "verbose",
    ),
)


# --------------------------------------------------------------------------- code


def _code_hparams() -> dict[str, Any]:
    from rewardfilter.experiments.domains.code import DEFAULTS

    hp: dict[str, Any] = dict.fromkeys(DEFAULTS, ANY)
    try:  # the trainer's fields (PFPPOConfig) pass through; its module imports torch
        import dataclasses

        from rewardfilter.adapters.code.trainer import PFPPOConfig

        hp.update(dict.fromkeys((f.name for f in dataclasses.fields(PFPPOConfig)), ANY))
    except ImportError:
        return {}  # cannot tell: the runner reports the missing [code] extra
    from rewardfilter.experiments.domains.code import TRAINERS
    from rewardfilter.experiments.domains.code_grpo import check_grpo_options

    hp.update(policy_lr=POSITIVE, critic_lr=POSITIVE, prompts_per_iteration=COUNT)
    hp.update(trainer=TRAINERS, grpo=check_grpo_options)  # grpo: PFGRPOConfig fields, checked
    return hp


def _code_task(task_id: str) -> str | None:
    name, _, _ = task_id.partition(":")
    if name != "curriculum":
        return "code task ids are 'curriculum' or 'curriculum:fam1,fam2'"
    return None


CODE = DomainSpec(
    hparams=_code_hparams, task=_code_task, noise=lambda: {"none": (), "learned": ("path",)}
)

SPECS: dict[str, DomainSpec] = {"bandit": BANDIT, "control": CONTROL, "code": CODE}


# --------------------------------------------------------------------------- the check


def _check_value(value: Any, rule: Any, path: str, error: Error) -> None:
    if rule is ANY:
        return
    if isinstance(rule, Interval):
        if value not in rule:
            error(path, f"must be {rule}; got {value!r}.")
    elif isinstance(rule, tuple):  # one of these strings
        if value not in rule:
            error(path, f"must be one of {', '.join(map(repr, rule))}; got {value!r}.")
    elif callable(rule) and not isinstance(rule, type):  # a checker: value, path -> problems
        for sub, reason in rule(value, path):
            error(sub, reason)
    elif rule is bool:
        if not isinstance(value, bool):
            error(path, f"must be true or false; got {value!r}.")
    elif not isinstance(value, rule) or isinstance(value, bool):
        error(path, f"must be a {rule.__name__}; got {value!r}.")


def check_hparams(domain: str, hparams: dict[str, Any], path: str, error: Error) -> None:
    """Check one ``hparams`` mapping (config, task or method level) of ``domain``."""
    spec = SPECS.get(domain)
    if spec is None:
        return
    known = spec.hparams() if callable(spec.hparams) else spec.hparams
    if not known:
        return
    for key, value in hparams.items():
        sub = f"{path}.{key}"
        if key in spec.set_by_domain:
            error(sub, f"is set by the {domain} domain itself and cannot be given.")
        elif key not in known:
            error(
                sub, f"unknown hyperparameter of the {domain} domain; {_suggest(key, list(known))}"
            )
        else:
            _check_value(value, known[key], sub, error)


def check_task(domain: str, task_id: str, path: str, error: Error) -> None:
    spec = SPECS.get(domain)
    reason = spec.task(task_id) if spec else None
    if reason:
        error(path, reason + ".")


def check_noise(domain: str, model: str, kwargs: dict[str, Any], path: str, error: Error) -> None:
    spec = SPECS.get(domain)
    models = spec.noise() if spec else {}
    if not models:
        return
    if model not in models:
        error(
            f"{path}.model",
            f"unknown noise model {model!r} of the {domain} domain; {_suggest(model, list(models))}",
        )
        return
    accepted = models[model]
    unknown = [k for k in kwargs if accepted is not None and k not in accepted]
    for key in unknown:
        hint = _suggest(key, list(accepted)) if accepted else "it takes no parameters."
        error(f"{path}.kwargs.{key}", f"unknown parameter of noise model {model!r}; {hint}")
    reason = None if unknown else spec.noise_values(model, kwargs)
    if reason:
        error(f"{path}.kwargs", reason)


def check_group_sizes(
    domain: str, n_envs_at: list[tuple[str, Any]], sizes: list[tuple[str, int]], error: Error
) -> None:
    """Control: ``n_envs`` (where it is set, its value) must be a multiple of every group size."""
    if domain != "control":
        return
    for path, n_envs in n_envs_at:
        if not isinstance(n_envs, int) or isinstance(n_envs, bool):
            continue
        for method, n in sizes:
            if n_envs % n:
                error(
                    path, f"must be a multiple of the group size N={n} of {method}; got {n_envs}."
                )
