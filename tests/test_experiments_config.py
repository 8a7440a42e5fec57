"""Configs are validated before anything runs, with the key path (issue 12.9).

Before: unknown hparams were ignored (``lrr: 100.0`` ran with the default), and a
bad task id, noise model or value failed every run with messages that did not
name the key; ``name: ../../etc`` put the output folder outside runs/.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from rewardfilter.experiments.config import ConfigError, parse_config
from rewardfilter.experiments.domains.checks import CONTROL

TINY = Path(__file__).resolve().parents[1] / "experiments" / "tiny.yaml"


def _raw(**changes) -> dict:
    raw = yaml.safe_load(TINY.read_text())
    raw.update(changes)
    return raw


def _control(**changes) -> dict:
    raw = {
        "name": "c",
        "domain": "control",
        "seeds": 1,
        "hparams": {"n_envs": 8},
        "tasks": ["rewardfilter/Pendulum-v1"],
        "noise": [{"name": "h", "model": "heteroscedastic", "kwargs": {"std": 1.0}}],
        "methods": ["PPO-M", "BR"],
    }
    raw.update(changes)
    return raw


def _errors(raw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.errors


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            _raw(hparams={"lrr": 100.0}),
            "hparams.lrr: unknown hyperparameter of the bandit domain; did you mean 'lr'?",
        ),
        (_raw(hparams={"lr": "fast"}), "hparams.lr: must be a float in (0, inf); got 'fast'."),
        (
            _raw(hparams={"batch_contexts": -1}),
            "hparams.batch_contexts: must be an int >= 1; got -1.",
        ),
        (_raw(tasks=["bandit/oops"]), "tasks[0].id: bandit task ids look like"),
        (
            _raw(noise=[{"name": "x", "model": "gausian"}]),
            "noise[0].model: unknown noise model 'gausian' of the bandit domain; did you mean 'gaussian'?",
        ),
        (
            _raw(noise=[{"name": "x", "model": "gaussian", "kwargs": {"sdt": 0.1}}]),
            "noise[0].kwargs.sdt: unknown parameter of noise model 'gaussian'; did you mean 'std'?",
        ),
        (
            _raw(methods=[{"standard": "BR", "hparams": {"batch_context": 4}}]),
            "methods[0].hparams.batch_context: unknown hyperparameter of the bandit domain; did you mean 'batch_contexts'?",
        ),
        (_raw(name="../../etc"), "name: must be a plain folder name"),
        (_raw(name=".."), "name: must be a plain folder name"),
        (_raw(name="a/b"), "name: must be a plain folder name"),
    ],
)
def test_bad_values_are_refused_with_their_key_path(raw, expected):
    errors = _errors(raw)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            _control(hparams={"n_envs": 6}),
            "hparams.n_envs: must be a multiple of the group size N=4 of PPO-M; got 6.",
        ),
        (
            _control(tasks=[{"id": "rewardfilter/Pendulum-v1", "hparams": {"n_envs": 10}}]),
            "tasks[0].hparams.n_envs: must be a multiple",
        ),
        (
            _control(hparams={"learning_rate": "fast"}),
            "hparams.learning_rate: must be a float in (0, inf); got 'fast'.",
        ),
        (
            _control(hparams={"learning_rat": 0.001}),
            "hparams.learning_rat: unknown hyperparameter of the control domain; did you mean 'learning_rate'?",
        ),
        (_control(hparams={"seed": 3}), "hparams.seed: is set by the control domain itself"),
        (
            _control(hparams={"rank_by": "truth"}),
            "hparams.rank_by: must be one of 'observed', 'true'; got 'truth'.",
        ),
        (
            _control(tasks=["rewardfilter/Pendulm-v1"]),
            "tasks[0].id: no Gymnasium task 'rewardfilter/Pendulm-v1' is registered; did you mean 'rewardfilter/Pendulum-v1'?",
        ),
        (
            _control(noise=[{"name": "x", "model": "heteroscedastc"}]),
            "noise[0].model: unknown noise model 'heteroscedastc' of the control domain; did you mean 'heteroscedastic'?",
        ),
        (
            _control(noise=[{"name": "x", "model": "gaussian", "kwargs": {"sd": 0.1}}]),
            "noise[0].kwargs.sd: unknown parameter of noise model 'gaussian'; did you mean 'std'?",
        ),
        (
            _control(noise=[{"name": "x", "model": "gaussian", "kwargs": {"std": -1.0}}]),
            "noise[0].kwargs: The 'std' parameter of",
        ),
    ],
)
def test_control_configs_are_checked_up_front(raw, expected):
    pytest.importorskip("gymnasium")
    errors = _errors(raw)
    assert any(e.startswith(expected) for e in errors), errors


def test_valid_configs_still_pass():
    parse_config(_raw(hparams={"lr": 1, "batch_contexts": 2, "sleep": 0}))
    pytest.importorskip("gymnasium")
    parse_config(_control(hparams={"n_envs": 8, "learning_rate": 0.001, "policy_kwargs": {}}))


def test_control_hyperparameters_are_those_of_sb3_ppo():
    sb3 = pytest.importorskip("stable_baselines3")
    params = set(inspect.signature(sb3.PPO.__init__).parameters) - {"self", "_init_setup_model"}
    from rewardfilter.experiments.domains.control import _OWN_KEYS

    own = set(_OWN_KEYS)  # the control domain's own keys, besides PPO's
    assert set(CONTROL.hparams) | set(CONTROL.set_by_domain) == (params | own) - {"policy"} | {
        "policy"
    }


def test_bandit_noise_takes_the_envs_parameter_names_and_checks_their_values():
    """The bandit's heteroscedastic noise is the core's: the envs' names pass, bad values name the key."""
    het = {"name": "h", "model": "heteroscedastic"}
    parse_config(_raw(noise=[{**het, "kwargs": {"std": 0.5, "min_std": 0.05, "reliable": "high"}}]))
    parse_config(_raw(noise=[{**het, "kwargs": {"std_low": 0.5}}]))  # the earlier name
    errors = _errors(_raw(noise=[{**het, "kwargs": {"std": -1.0}}]))
    assert any(e.startswith("noise[0].kwargs: ") and "'std'" in e for e in errors), errors
    errors = _errors(_raw(noise=[{**het, "kwargs": {"std_low": 0.5, "std": 0.5}}]))
    assert any("two names" in e for e in errors), errors
