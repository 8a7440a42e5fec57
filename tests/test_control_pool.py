"""The offline R² test of PLAN_control_v2.md on a finished control sweep (experiments/control_pool.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th

from rewardfilter.experiments import control_pool

th.set_num_threads(1)


def test_spread_and_noise_by_hand():
    pool = {
        "true": np.array([0.0, 2.0, 5.0, 5.0]),
        "noisy": np.array([1.0, 2.0, 5.0, 3.0]),
        "groups": np.array([0, 0, 1, 1]),
    }
    spread, rms = control_pool.spread_and_noise(pool)
    # group stds 1 and 0; errors 1, 0, 0, -2
    assert spread == pytest.approx(0.5) and rms == pytest.approx(np.sqrt(5 / 4))


def _write(folder, name, spec, seed, finals, hparams=None):
    d = folder / "runs" / f"{name}-s{seed}"
    (d / "scratch").mkdir(parents=True)
    run = {
        "task": "rewardfilter/Pendulum-v1",
        "noise": {"name": "hetero", "model": "heteroscedastic", "kwargs": {"std": 1.0}},
        "method": {"name": name, "reward": "noisy", "group_size": 2, "filter": spec},
        "budget": {"steps": 800, "eval_every": 400, "eval_episodes": 1},
        "seed": seed,
        "hparams": {
            "n_envs": 2,
            "n_steps": 200,
            "batch_size": 100,
            "n_epochs": 1,
            **(hparams or {}),
        },
        "out_dir": str(d / "scratch"),
    }
    (d / "run.json").write_text(json.dumps(run))
    (d / "records.jsonl").write_text("".join(json.dumps({"true_return": v}) + "\n" for v in finals))
    (d / "final.json").write_text("{}")
    return run


def test_pool_table_and_spearman_over_the_trained_filters(tmp_path):
    from rewardfilter.experiments.domains import control

    run = _write(tmp_path, "PPO-M", "none", 0, [-900.0], {"checkpoints": [0.5]})
    control.run_control(run, lambda record: None)  # saves scratch/checkpoint_50.zip
    _write(tmp_path, "random:2", "random:2", 0, [-1000.0])
    _write(tmp_path, "BoN", "bon", 0, [-800.0])
    # a ceiling run (ranks by the true return) is not an arm of the offline test
    _write(tmp_path, "BoN (true ranking)", "bon", 1, [0.0], {"rank_by": "true"})
    assert control_pool.main([str(tmp_path), "--contexts", "3"]) == 0
    text = (tmp_path / "pool.md").read_text()
    summary = json.loads((tmp_path / "pool.json").read_text())
    assert len(summary["pools"]) == 1 and summary["pools"][0]["checkpoint"] == "checkpoint_50"
    assert summary["scores"] == {"none": -900.0, "random:2": -1000.0, "bon": -800.0}
    assert "| bon |" in text and "over 3 trained filters" in text
    assert summary["filters"]["none"]["kept_fraction"] == 1.0


def test_group_size_and_filters_override_the_runs(tmp_path):
    # regime 2's question: how reliable is the top of 8 episodes where PPO-M sampled 2?
    from rewardfilter.experiments.domains import control

    run = _write(tmp_path, "PPO-M", "none", 0, [-900.0], {"checkpoints": [0.5]})
    control.run_control(run, lambda record: None)
    argv = [str(tmp_path), "--contexts", "3", "--group-size", "4", "--filters", "none", "topk:2"]
    assert control_pool.main(argv) == 0
    summary = json.loads((tmp_path / "pool.json").read_text())
    assert sorted(summary["filters"]) == ["none", "topk:2"]
    assert summary["filters"]["topk:2"]["kept_fraction"] == 0.5  # 2 of 4, not 2 of the runs' 2
    assert summary["pools"][0]["top1_chance"] == 0.25


def test_a_folder_without_checkpoints_is_a_clear_error(tmp_path, capsys):
    _write(tmp_path, "PPO-M", "none", 0, [-900.0])
    assert control_pool.main([str(tmp_path)]) == 2
    assert "No finished PPO-M run with checkpoints" in capsys.readouterr().err
    assert control_pool.main([str(tmp_path / "nothing")]) == 2
    assert "'folder'" in capsys.readouterr().err
    assert control_pool.main([str(tmp_path), "--contexts", "0"]) == 2  # the config's own check
    assert "'contexts'" in capsys.readouterr().err
