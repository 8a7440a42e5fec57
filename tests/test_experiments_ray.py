"""The Ray backend runs the tiny grid on a local Ray and gives the same run records as the local pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardfilter.experiments.runner import finished_runs, run_experiment

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'rewardfilter[ray]'")

TINY = Path(__file__).resolve().parents[1] / "experiments" / "tiny.yaml"


def _records(out: Path) -> dict[str, str]:
    return {
        r["run_id"]: json.dumps(
            [r["records"], {k: v for k, v in r["final"].items() if k not in ("wall_s", "cpu_s")}]
        )
        for r in finished_runs(out)
    }


def test_ray_backend_gives_the_same_records_as_the_local_pool(tmp_path):
    local = run_experiment(TINY, out=str(tmp_path / "local"), workers=2, progress=False)
    assert local.ok and len(local.completed) == 16
    try:
        remote = run_experiment(
            TINY, backend="ray", out=str(tmp_path / "ray"), workers=2, progress=False
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert not ray.is_initialized(), "the runner shuts down the Ray it started"
    assert remote.ok and len(remote.completed) == 16
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
    # and it resumes like the local backend: nothing left to do
    again = run_experiment(
        TINY, backend="ray", out=str(tmp_path / "ray"), workers=2, progress=False
    )
    assert again.skipped == 16 and not again.completed and not ray.is_initialized()


def test_ray_and_local_agree_on_the_control_domain(tmp_path):
    """torch + SB3 runs: one thread and a seed per run make them reproducible across backends."""
    pytest.importorskip("stable_baselines3")
    pytest.importorskip(
        "rewardfilter.adapters.sb3.buffers", reason="the SB3 adapter is not installed"
    )
    from rewardfilter.experiments.config import parse_config

    config = parse_config(
        {
            "name": "control-smoke",
            "domain": "control",
            "seeds": [3],
            "group_size": 2,
            "budget": {"steps": 1600, "eval_every": 800, "eval_episodes": 1},
            "hparams": {"n_envs": 4, "n_steps": 200, "batch_size": 200, "n_epochs": 1},
            "tasks": ["rewardfilter/Pendulum-v1"],
            "noise": [{"name": "hetero", "model": "heteroscedastic", "kwargs": {"std": 1.0}}],
            "methods": ["PPO-M", "BW"],
        }
    )
    assert run_experiment(config, out=str(tmp_path / "local"), workers=2, progress=False).ok
    try:
        assert run_experiment(
            config, backend="ray", out=str(tmp_path / "ray"), workers=2, progress=False
        ).ok
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
