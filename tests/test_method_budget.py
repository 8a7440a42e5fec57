"""Per-method budgets (issue 16, regime 2): sample N, keep K, at equal updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rewardfilter.experiments.config import ConfigError, load_config, parse_config
from rewardfilter.experiments.outdir import config_differences

ROOT = Path(__file__).resolve().parents[1]


def _regime2(**method_budget) -> dict:
    """PPO-M and random:2 sample N = 2 on 2 envs; topk:2 samples N = 8 on 8 envs, 4x the steps."""
    budget = method_budget or {"steps": 1600, "eval_every": 800}
    return {
        "name": "regime2",
        "domain": "control",
        "seeds": 1,
        "budget": {"steps": 400, "eval_every": 200, "eval_episodes": 1},
        "hparams": {"n_steps": 100, "batch_size": 50, "n_epochs": 1, "gamma": 1.0},
        "tasks": [
            {
                "id": "rewardfilter/Reacher-v5",
                "label": "Reacher terminal",
                "hparams": {"env_kwargs": {"episode_level": True}},
            }
        ],
        "noise": [{"name": "h", "model": "heteroscedastic", "kwargs": {"std": 0.1}}],
        "methods": [
            {"standard": "PPO-M", "group_size": 2, "hparams": {"n_envs": 2}},
            {"standard": "random:2", "group_size": 2, "hparams": {"n_envs": 2}},
            {
                "name": "top-2 of 8",
                "group_size": 8,
                "filter": "topk:2",
                "hparams": {"n_envs": 8},
                "budget": budget,
            },
        ],
    }


def test_a_method_budget_overrides_the_tasks_for_its_runs_only():
    runs = {r["method"]["name"]: r for r in parse_config(_regime2()).expand()}
    assert runs["PPO-M"]["budget"] == {"steps": 400, "eval_every": 200, "eval_episodes": 1}
    assert runs["top-2 of 8"]["budget"] == {"steps": 1600, "eval_every": 800, "eval_episodes": 1}
    assert "budget" not in runs["top-2 of 8"]["method"]  # run ids of other methods unchanged


def test_sweeps_started_before_method_budgets_still_resume():
    """Regression: an empty ``budget`` in every method's snapshot would make the runner refuse
    every existing output folder as 'a different config'."""
    folder = ROOT / "experiments" / "results" / "control_v2" / "calibration-runs"
    config = load_config(ROOT / "experiments" / "study" / "calibration_v2.yaml")
    old = yaml.safe_load((folder / "config.yaml").read_text())
    assert config_differences(old, config.to_dict()) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [r["run_id"] for r in config.expand()] == manifest


@pytest.mark.parametrize(
    "budget, expected",
    [
        ({"steps": 0}, "methods[2].budget.steps: must be an int >= 1; got 0."),
        ({"rollouts": 10}, "methods[2].budget.rollouts: unknown key"),
        (
            {"eval_every": 800},
            "methods[2].budget: eval_every (800) must be <= steps (400) on task 'Reacher terminal'",
        ),
    ],
)
def test_bad_method_budgets_are_refused_with_their_key_path(budget, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(_regime2(**budget))
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_sample_8_keep_2_makes_the_updates_of_ppo_m_at_n_2(tmp_path, monkeypatch):
    """Same kept samples and gradient steps per evaluation; 4x the environment steps."""
    pytest.importorskip("mujoco")
    from rewardfilter.envs import CACHE_ENV_VAR
    from rewardfilter.experiments.domains import control

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    records = {}
    for run in parse_config(_regime2()).expand():
        if run["method"]["name"] == "random:2":
            continue
        log = []
        control.run_control(run, log.append)
        records[run["method"]["name"]] = log
    ppo, top2 = records["PPO-M"], records["top-2 of 8"]
    assert [r["step"] for r in ppo] == [200, 400]
    assert [r["step"] for r in top2] == [800, 1600]
    for key in ("samples_used", "gradient_steps"):
        assert [r[key] for r in top2] == [r[key] for r in ppo], key
    assert [r["gradient_steps"] for r in ppo] == [4, 8]  # 200 kept / batch 50, 1 epoch
    assert top2[-1]["kept_fraction"] == pytest.approx(0.25)
