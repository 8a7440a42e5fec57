"""The control domain's run: evaluation after the update, labelled by what produced it."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from rewardfilter.envs import CACHE_ENV_VAR

th.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path_factory.getbasetemp() / "rf-cache"))


def _run(spec="bon", hparams=None):
    return {
        "task": "rewardfilter/Pendulum-v1",
        "noise": {"name": "hetero", "model": "heteroscedastic", "kwargs": {"std": 1.0}},
        "method": {"name": spec, "reward": "noisy", "group_size": 2, "filter": spec},
        "budget": {"steps": 1200, "eval_every": 400, "eval_episodes": 1},
        "seed": 0,
        "hparams": {
            "n_envs": 2,
            "n_steps": 200,
            "batch_size": 100,
            "n_epochs": 1,
            **(hparams or {}),
        },
    }


def test_every_evaluation_sees_the_policy_after_the_update_it_is_labelled_with(monkeypatch):
    from rewardfilter.experiments.domains import control

    seen = []
    real = control._evaluate

    def spy(model, env, episodes):
        params = th.cat([p.detach().flatten() for p in model.policy.parameters()]).clone()
        seen.append((model, params))
        return real(model, env, episodes)

    monkeypatch.setattr(control, "_evaluate", spy)
    records = []
    final = control.run_control(_run(), records.append)
    assert [r["step"] for r in records] == [400, 800, 1200]
    # 3 rollouts of 400 steps, each trained on before it is evaluated; the last one too
    model = seen[-1][0]
    final_params = th.cat([p.detach().flatten() for p in model.policy.parameters()])
    # the untrained policy once, then after each of the 3 updates; the last update is evaluated
    assert len(seen) == 4 and th.equal(seen[-1][1], final_params)
    assert not th.equal(seen[0][1], seen[1][1]) and not th.equal(seen[1][1], seen[2][1])
    # bon keeps 1 of 2 Pendulum episodes (200 steps each): 200 kept per rollout, 2 minibatches
    assert [r["samples_used"] for r in records] == [200, 400, 600]
    assert [r["gradient_steps"] for r in records] == [2, 4, 6]
    assert final == records[-1]


def test_ranking_by_the_true_return_is_a_run_option():
    from rewardfilter.experiments.domains import control

    records = []
    control.run_control(_run(hparams={"rank_by": "true"}), records.append)
    assert records[-1]["kept_fraction"] == 0.5 and np.isfinite(records[-1]["true_return"])


def test_learning_rate_can_be_annealed_linearly():
    from rewardfilter.experiments.domains.control import learning_rate

    assert learning_rate(1e-3, {}) == 1e-3
    schedule = learning_rate(1e-3, {"lr_schedule": "linear"})
    assert schedule(1.0) == pytest.approx(1e-3) and schedule(0.25) == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="'lr_schedule' parameter"):
        learning_rate(1e-3, {"lr_schedule": "cosine"})


def test_every_record_carries_the_untrained_policys_true_return():
    from rewardfilter.experiments.domains import control

    records = []
    control.run_control(_run(spec="none"), records.append)
    starts = {r["start_true_return"] for r in records}
    assert len(starts) == 1 and np.isfinite(starts.pop())


@pytest.mark.parametrize(
    ("name", "runs"),
    [
        ("calibration_v2", 39),
        ("control_v2_terminal", 110),
        ("control_v2_learned", 100),
        ("control_v2_negative", 40),
        ("calibration_v2_oracle", 4),
        ("calibration_v2_oracle2", 5),
        ("calibration_v2_cartpole", 3),
        ("calibration_v2b", 18),
        ("calibration_v2c", 6),
        ("control_v2_exploratory", 80),
    ],
)
def test_round_two_study_configs_are_valid(name, runs):
    from pathlib import Path

    from rewardfilter.experiments.config import load_config

    path = Path(__file__).parents[1] / "experiments" / "study" / f"{name}.yaml"
    assert len(load_config(path).expand()) == runs


def test_checkpoints_are_saved_for_the_offline_pool(tmp_path):
    from stable_baselines3 import PPO

    from rewardfilter.adapters.sb3.pool import collect_pool
    from rewardfilter.experiments.domains import control

    run = {**_run(spec="none", hparams={"checkpoints": [0.5, 1.0]}), "out_dir": str(tmp_path)}
    control.run_control(run, lambda record: None)
    assert sorted(p.name for p in tmp_path.glob("*.zip")) == [
        "checkpoint_100.zip",
        "checkpoint_50.zip",
    ]
    model = PPO.load(tmp_path / "checkpoint_50.zip", device="cpu")
    pool = collect_pool(model, "rewardfilter/Pendulum-v1", n_contexts=1, group_size=2)
    assert pool["noisy"].shape == (2,)
    with pytest.raises(ValueError, match="'checkpoints' parameter"):
        control.run_control(_run(hparams={"checkpoints": [1.5]}), lambda record: None)
