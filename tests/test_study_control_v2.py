"""The calibration check of PLAN_control_v2.md computes C1 and C2 as the plan defines them."""

from __future__ import annotations

import json
from pathlib import Path

from rewardfilter.experiments import calibration_check


def _run(folder: Path, name: str, reward: str, returns: list[float], top1: list[float]) -> None:
    d = folder / "runs" / name
    d.mkdir(parents=True)
    run = {"noise": {"name": "hetero-20"}, "method": {"name": name, "reward": reward}}
    (d / "run.json").write_text(json.dumps(run))
    recs = [
        {"true_return": r, "start_true_return": -40.0, "top1_correct": t}
        for r, t in zip(returns, top1, strict=True)
    ]
    (d / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "final.json").write_text("{}")


def test_c1_and_c2_follow_the_plan(tmp_path):
    # oracle ends at -10 (mean of last 3), PPO-M at -25; start -40: C1 = 15 / 30 = 0.5
    _run(tmp_path, "oracle", "true", [-30, -10, -10, -10], [0, 0, 0, 0])
    # top1 over the last half of PPO-M's windows: (0.5 + 0.9) / 2 = 0.7
    _run(tmp_path, "PPO-M", "noisy", [-30, -25, -25, -25], [0.1, 0.2, 0.5, 0.9])
    assert calibration_check.main([str(tmp_path)]) == 0
    text = (tmp_path / "calibration.md").read_text()
    assert "| hetero-20 | -40.00 | -25.00 | 0.50 pass | 0.70 pass | 1 |" in text


def test_a_screen_of_oracle_variants_lists_each_with_its_gain(tmp_path):
    # two trainer settings of the oracle, no PPO-M: each is listed with its gain over the start
    _run(tmp_path, "oracle lam1", "true", [-30, -10, -10, -10], [0, 0, 0, 0])
    _run(tmp_path, "oracle lam.95", "true", [-30, -50, -50, -50], [0, 0, 0, 0])
    assert calibration_check.main([str(tmp_path)]) == 0
    text = (tmp_path / "calibration.md").read_text()
    assert "| oracle lam1 | -40.00 | -10.00 [-10.00, -10.00] | 30.00 | 1 |" in text
    assert "| oracle lam.95 | -40.00 | -50.00 [-50.00, -50.00] | -10.00 | 1 |" in text


def test_no_oracle_run_is_a_clear_error(tmp_path, capsys):
    _run(tmp_path, "PPO-M", "noisy", [-30, -25, -25, -25], [0.1, 0.2, 0.5, 0.9])
    assert calibration_check.main([str(tmp_path)]) == 2
    assert "No finished oracle run" in capsys.readouterr().err


def test_a_folder_that_is_not_a_sweep_is_a_clear_error(tmp_path, capsys):
    # (it used to be a FileNotFoundError traceback, also for --help's neighbour typos)
    assert calibration_check.main([str(tmp_path / "missing")]) == 2
    assert "'folders'" in capsys.readouterr().err


def test_runs_of_further_folders_join_the_first(tmp_path):
    # the oracle anchor comes from an earlier sweep; the table is written to the first folder
    first, earlier = tmp_path / "new", tmp_path / "old"
    _run(first, "PPO-M", "noisy", [-30, -25, -25, -25], [0.1, 0.2, 0.5, 0.9])
    _run(earlier, "oracle", "true", [-30, -10, -10, -10], [0, 0, 0, 0])
    assert calibration_check.main([str(first), str(earlier)]) == 0
    text = (first / "calibration.md").read_text()
    assert "| hetero-20 | -40.00 | -25.00 | 0.50 pass | 0.70 pass | 1 |" in text
