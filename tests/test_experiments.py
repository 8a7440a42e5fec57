"""Comparative experiments: config validation, the runner end to end, kill-and-resume, the report."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rewardfilter.cli import main
from rewardfilter.experiments.config import ConfigError, load_config, parse_config
from rewardfilter.experiments.report import make_report
from rewardfilter.experiments.runner import execute_run, finished_runs, read_jsonl, run_experiment
from rewardfilter.experiments.statistics import bootstrap_ci, bootstrap_diff_ci, true_return_at

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TINY = EXPERIMENTS / "tiny.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_raw(**changes) -> dict:
    raw = yaml.safe_load(TINY.read_text())
    raw.update(changes)
    return raw


# --------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "name",
    ["tiny.yaml", "demo.yaml", "control.yaml"]
    + [f"study/{p.name}" for p in sorted((EXPERIMENTS / "study").glob("*.yaml"))],
)
def test_shipped_configs_are_valid_and_expand_to_unique_stable_ids(name):
    config = load_config(EXPERIMENTS / name)
    runs = config.expand("/tmp/out")
    ids = [r["run_id"] for r in runs]
    expected = sum(
        not m.noise or nz.name in m.noise
        for task in config.tasks
        for nz in config.noise
        if not task.noise or nz.name in task.noise
        for m in config.methods
    )
    assert len(ids) == len(set(ids)) == expected * len(config.seeds)
    assert ids == [r["run_id"] for r in load_config(EXPERIMENTS / name).expand("/tmp/elsewhere")]
    for run in runs:
        json.dumps(run)  # plain JSON
        assert set(run) >= {
            "domain",
            "task",
            "noise",
            "method",
            "seed",
            "budget",
            "hparams",
            "run_id",
            "out_dir",
        }
        assert set(run["method"]) == {"name", "reward", "group_size", "filter"}


def test_standard_aliases_and_merging_of_hparams_and_budget():
    config = parse_config(
        tiny_raw(
            methods="standard",
            group_size=5,
            hparams={"lr": 1.0, "sleep": 0.0},
            tasks=[{"id": "bandit/4x5", "hparams": {"lr": 2.0}, "budget": {"steps": 20}}],
        )
    )
    by_name = {m.name: m for m in config.methods}
    assert by_name["PPO-S"].group_size == 1 and by_name["PPO-M"].group_size == 5
    assert by_name["oracle"].reward == "true" and by_name["PF-PPO (BW)"].filter == "bw"
    assert (
        by_name["uncertainty:0.25"].filter == "uncertainty:0.25" and "PF-PPO (adaptive)" in by_name
    )
    run = config.expand()[0]
    assert run["hparams"] == {"lr": 2.0, "sleep": 0.0}
    assert run["budget"] == {"steps": 20, "eval_every": 10, "eval_episodes": 1}


def test_run_id_changes_when_the_run_definition_changes():
    a = parse_config(tiny_raw()).expand()[0]["run_id"]
    b = parse_config(tiny_raw(hparams={"lr": 31.0, "batch_contexts": 8})).expand()[0]["run_id"]
    assert a != b and a.split("-s0-")[0] == b.split("-s0-")[0]


BAD = [
    (
        {"methods": ["oracle", "PPO-M", "BR", {"name": "x", "filter": "bx"}]},
        "methods[3].filter: Unknown filter spec 'bx'",
    ),
    (
        {"methods": [{"name": "br1", "filter": "br", "group_size": 1}]},
        "methods[0].group_size: Filter 'br' needs groups of at least 2",
    ),
    (
        {"methods": [{"name": "rk", "filter": "rank:1,0,1", "group_size": 4}]},
        "methods[0].group_size: Filter 'rank:1,0,1' has 3 rank weights",
    ),
    (
        {"methods": [{"name": "u", "filter": "uncertainty:1.5"}]},
        "methods[0].filter: Invalid filter spec 'uncertainty:1.5'",
    ),
    ({"methods": ["BR", "oracel"]}, "methods[1]: unknown standard method 'oracel'"),
    ({"methods": ["BR", "BR"]}, "methods[1].name: duplicate name 'PF-PPO (BR)'"),
    (
        {"methods": [{"name": "m", "reward": "maybe"}]},
        "methods[0].reward: must be 'true' or 'noisy'",
    ),
    ({"methods": [{"name": "m", "fliter": "br"}]}, "methods[0].fliter: unknown key"),
    ({"metods": []}, "metods: unknown key"),
    ({"domain": "atari"}, "domain: unknown domain 'atari'"),
    ({"seeds": 0}, "seeds: an int count must be >= 1"),
    ({"seeds": [0, 0]}, "seeds: must be distinct"),
    ({"seeds": [0, -1]}, "seeds[1]: must be an int >= 0"),
    ({"budget": {"steps": 10, "eval_every": 20}}, "budget.eval_every: must be <= steps (10)"),
    ({"budget": {"steps": "many"}}, "budget.steps: must be an int >= 1"),
    ({"tasks": []}, "tasks: must be a non-empty list"),
    ({"tasks": [{"label": "x"}]}, "tasks[0].id: must be a non-empty string"),
    (
        {"noise": [{"name": "a", "model": "gaussian"}, {"name": "a"}]},
        "noise[1].name: duplicate name 'a'",
    ),
    ({"report": {"baseline": "PPO-X"}}, "report.baseline: names no method"),
    ({"hparams": [1, 2]}, "hparams: must be a mapping"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_invalid_configs_name_the_key_path_and_the_reason(change, message):
    with pytest.raises(ConfigError) as info:
        parse_config(tiny_raw(**change), "bad.yaml")
    assert message in str(info.value), str(info.value)
    assert "bad.yaml" in str(info.value)


def test_all_problems_are_reported_at_once_and_required_keys():
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "x", "seeds": "three", "methods": [{"name": "a", "filter": "bx"}]})
    errors = info.value.errors
    assert any(e.startswith("domain: is required") for e in errors)
    assert any(e.startswith("tasks: is required") for e in errors)
    assert any(e.startswith("seeds:") for e in errors)
    assert any(e.startswith("methods[0].filter:") for e in errors)


def test_cli_rejects_a_bad_file_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(tiny_raw(methods=["oracle", "PPO-M", "BR", {"name": "x", "filter": "bx"}]))
    )
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    assert "methods[3].filter: Unknown filter spec 'bx'" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    assert main(["run", str(tmp_path / "broken.yaml"), "--out", str(out)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


# --------------------------------------------------------------------------- runner and report end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert main(["run", str(TINY), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    return out


def test_tiny_grid_runs_end_to_end_and_records_every_run(tiny_run):
    config = load_config(TINY)
    runs = finished_runs(tiny_run)
    assert len(runs) == len(config.expand()) == 16
    for run in runs:
        steps = [r["step"] for r in run["records"]]
        expected = list(range(10, run["budget"]["steps"] + 1, 10))
        assert steps == expected, run["run_id"]
        assert run["final"]["step"] == run["budget"]["steps"]
        for key in ("true_return", "noisy_return", "kept_fraction", "filtered_r2", "samples_used"):
            assert np.isfinite(run["final"][key]), key
        assert not (tiny_run / "runs" / run["run_id"] / "progress.jsonl").exists()
    kept = {r["method"]["name"]: r["final"]["kept_fraction"] for r in runs}
    assert kept["PF-PPO (BR)"] == kept["PF-PPO (BW)"] == 0.5 and kept["PPO-M"] == 1.0


def test_rerun_skips_finished_runs(tiny_run):
    before = {p: p.stat().st_mtime_ns for p in tiny_run.glob("runs/*/final.json")}
    summary = run_experiment(TINY, out=str(tiny_run), workers=1, progress=False)
    assert (summary.total, summary.skipped, summary.completed) == (16, 16, [])
    assert before == {p: p.stat().st_mtime_ns for p in tiny_run.glob("runs/*/final.json")}


def test_report_writes_table_csv_and_plots(tiny_run, capsys):
    assert main(["report", str(tiny_run), "--resamples", "300"]) == 0
    printed = capsys.readouterr().out
    assert "| method | 16x6 | small |" in printed
    with open(tiny_run / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    for row in rows:
        assert float(row["ci_low"]) <= float(row["final_true_return"]) <= float(row["ci_high"])
        if row["method"] == "oracle":
            assert float(row["normalised"]) == pytest.approx(1.0)
        if row["method"] == "PPO-M":
            assert float(row["normalised"]) == pytest.approx(0.0)
    md = (tiny_run / "summary.md").read_text()
    assert "95% bootstrap CI" in md and "Normalised score" in md and "Spearman" in md
    assert "among the methods that keep 50% of the samples (4 points)" in md  # BR and BW, 2 tasks
    for name in ("curves_step.png", "curves_samples_used.png", "r2_vs_score.png"):
        data = (tiny_run / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    assert "At equal samples used in gradient updates" in md and "(curves_samples_used.png)" in md
    cpu_h = sum(r["final"]["cpu_s"] for r in finished_runs(tiny_run)) / 3600
    assert f"Cost: 16 runs, {cpu_h:.2f} CPU-hours" in md


def test_report_compares_at_equal_samples_used(tiny_run, tmp_path):
    """BR keeps half the samples: it is set against PPO-M when PPO-M had used as many."""
    out = tmp_path / "published"
    report = make_report(dir=str(tiny_run), out=str(out), resamples=200)
    assert (out / "summary.md").exists() and not (out / "runs").exists()
    runs = finished_runs(tiny_run)

    def of(column, method):
        return [r for r in runs if r["task_label"] == column and r["method"]["name"] == method]

    for row in report.rows:
        used = np.mean([r["final"]["samples_used"] for r in of(row["column"], row["method"])])
        # PPO-M read off its own evaluations, linearly between them
        base = []
        for r in of(row["column"], "PPO-M"):
            x = [rec["samples_used"] for rec in r["records"]]
            y = [rec["true_return"] for rec in r["records"]]
            base.append(np.interp(used, x, y) if x[0] <= used <= x[-1] else np.nan)
        assert row["baseline_at_equal_samples"] == pytest.approx(np.nanmean(base))
        gain = row["final_true_return"] - np.nanmean(base)
        assert row["gain_at_equal_samples"] == pytest.approx(gain)
        assert row["gain_at_equal_samples_ci_low"] <= gain <= row["gain_at_equal_samples_ci_high"]
        if row["method"] == "PPO-M":
            assert row["gain_at_equal_samples"] == pytest.approx(0.0)
        if row["method"] in ("PF-PPO (BR)", "PF-PPO (BW)"):  # keep half: PPO-M read off mid-run
            ppo_m_used = np.mean([r["final"]["samples_used"] for r in of(row["column"], "PPO-M")])
            assert used == pytest.approx(ppo_m_used / 2)
            assert row["baseline_at_equal_samples"] != pytest.approx(
                np.mean([r["final"]["true_return"] for r in of(row["column"], "PPO-M")])
            )


def test_bootstrap_diff_ci_covers_the_difference_and_needs_both_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3.0, 1.0, 50), rng.normal(1.0, 1.0, 50)
    lo, hi = bootstrap_diff_ci(a, b, rng, 1000)
    assert lo < a.mean() - b.mean() < hi and lo > 1.0 and hi < 3.0
    assert all(np.isnan(bootstrap_diff_ci([], b, rng)))


def test_true_return_at_never_extrapolates():
    run = {
        "records": [
            {"samples_used": 10, "true_return": 1.0},
            {"samples_used": 30, "true_return": 3.0},
        ]
    }
    assert true_return_at(run, 20) == pytest.approx(2.0)
    assert np.isnan(true_return_at(run, 5)) and np.isnan(true_return_at(run, 31))


def test_report_on_a_missing_folder_fails_cleanly(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "No experiment folder" in capsys.readouterr().err


def test_bootstrap_ci_covers_the_mean_and_collapses_on_constants():
    rng = np.random.default_rng(0)
    assert bootstrap_ci([3.0, 3.0, 3.0], rng) == (3.0, 3.0)
    assert bootstrap_ci([5.0], rng) == (5.0, 5.0)
    lo, hi = bootstrap_ci(rng.normal(size=50), rng)
    assert lo < 0.0 < hi or abs(lo + hi) < 0.6
    assert lo < hi


def test_a_failing_run_is_reported_and_redone_next_time(tmp_path):
    import dataclasses

    raw = tiny_raw(tasks=[{"id": "bandit/4x3"}, {"id": "bandit/4x4"}], methods=["PPO-M"], seeds=1)
    config = parse_config(raw)
    # a task id validation would refuse, slipped past it: the run itself fails in the worker
    bad = dataclasses.replace(config.tasks[1], id="bandit/oops")
    config = dataclasses.replace(config, tasks=(config.tasks[0], bad))
    summary = run_experiment(config, out=str(tmp_path), workers=1, progress=False)
    assert len(summary.completed) == 1 and len(summary.failed) == 1
    (failed,) = summary.failed
    assert "bandit/32x8" in summary.failed[failed]
    trace = (tmp_path / "runs" / failed / "error.txt").read_text()
    assert "Traceback" in trace and "bandit.py" in trace  # the worker's traceback, for debugging
    assert not (tmp_path / "runs" / failed / "final.json").exists()


# --------------------------------------------------------------------------- kill and resume


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_slow_runner(tmp_path: Path, sleep: float = 0.04) -> tuple[subprocess.Popen, Path, Path]:
    """A runner subprocess on 8 runs of ``20 * sleep`` seconds each, 2 at a time; returns once 2 finished."""
    raw = tiny_raw(hparams={"lr": 30.0, "batch_contexts": 8, "sleep": sleep}, seeds=2)
    raw["tasks"] = [{"id": "bandit/16x6", "budget": {"steps": 20, "eval_every": 5}}]
    config_path = tmp_path / "slow.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rewardfilter.cli", "run", str(config_path), "--out", str(out)]
    cmd += ["--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("runs/*/final.json"))) < 2:
        time.sleep(0.05)
    return proc, out, config_path


def _wait_dead(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(w) for w in pids):
        time.sleep(0.1)
    return not any(_alive(w) for w in pids)


LINUX_ONLY = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc to find the runner's workers"
)


@LINUX_ONLY
def test_sigkill_then_restart_loses_no_finished_run_and_duplicates_none(tmp_path):
    proc, out, config_path = _start_slow_runner(tmp_path)
    try:
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished_before = {p.parent.name: p.read_text() for p in out.glob("runs/*/final.json")}
    assert 2 <= len(finished_before) < 8, "the kill must land mid-grid"
    interrupted = [p.parent.name for p in out.glob("runs/*/progress.jsonl")]
    # the pool's workers die with the runner: no orphan keeps computing
    assert workers and _wait_dead(workers)

    summary = run_experiment(config_path, out=str(out), workers=2, progress=False)
    assert summary.ok and summary.skipped == len(finished_before) and summary.total == 8
    assert set(summary.completed).isdisjoint(finished_before)
    assert set(interrupted) <= set(summary.completed)
    for run_id, text in finished_before.items():  # finished runs untouched
        assert (out / "runs" / run_id / "final.json").read_text() == text
    runs = finished_runs(out)
    assert len(runs) == 8
    for run in runs:  # exactly one copy of each record, equal to an uninterrupted run
        assert [r["step"] for r in run["records"]] == [5, 10, 15, 20]
        assert read_jsonl(out / "runs" / run["run_id"] / "records.jsonl") == run["records"]
        fresh = execute_run({**run, "out_dir": None, "hparams": {**run["hparams"], "sleep": 0.0}})
        assert json.dumps(fresh["records"]) == json.dumps(run["records"])


def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in ("--backend", "--address", "--workers", "--out", "{local,ray}"):
        assert flag in text
    assert "one Ray task per run" in " ".join(text.split())


def test_methods_can_be_restricted_to_some_noise_models():
    raw = tiny_raw(
        noise=[{"name": "a", "model": "gaussian"}, {"name": "b", "model": "heteroscedastic"}],
        methods=["PPO-M", {"standard": "BR", "noise": ["b"]}],
        seeds=1,
    )
    runs = parse_config(raw).expand()
    pairs = {(r["noise"]["name"], r["method"]["name"]) for r in runs}
    assert pairs == {("a", "PPO-M"), ("b", "PPO-M"), ("b", "PF-PPO (BR)")}
    raw["methods"][1]["noise"] = ["c"]
    with pytest.raises(ConfigError, match=r"methods\[1\].noise: names no noise model: 'c'"):
        parse_config(raw)


def test_tasks_can_be_restricted_to_some_noise_models():
    raw = tiny_raw(
        noise=[{"name": "a", "model": "gaussian"}, {"name": "b", "model": "heteroscedastic"}],
        methods=["PPO-M"],
        tasks=[{"id": "bandit/4x3", "noise": ["a"]}, {"id": "bandit/8x4"}],
        seeds=1,
    )
    runs = parse_config(raw).expand()
    pairs = {(r["task_label"], r["noise"]["name"]) for r in runs}
    assert pairs == {("4x3", "a"), ("8x4", "a"), ("8x4", "b")}
    raw["tasks"][0]["noise"] = "c"
    with pytest.raises(ConfigError, match=r"tasks\[0\].noise: names no noise model: 'c'"):
        parse_config(raw)
    raw["tasks"][0]["noise"] = [3]
    with pytest.raises(ConfigError, match=r"tasks\[0\].noise: must be a list of noise model names"):
        parse_config(raw)


def test_control_domain_trains_and_logs_through_the_runner(tmp_path):
    """A few rollouts of PPO on the noisy Pendulum: the runner and the SB3 adapter wired together."""
    pytest.importorskip("stable_baselines3")
    pytest.importorskip(
        "rewardfilter.adapters.sb3.buffers", reason="the SB3 adapter is not installed"
    )
    raw = {
        "name": "control-smoke",
        "domain": "control",
        "seeds": 1,
        "group_size": 4,  # one group of 4 episodes per rollout: BR keeps 2 of them
        "budget": {"steps": 1600, "eval_every": 800, "eval_episodes": 1},
        "hparams": {"n_envs": 4, "n_steps": 200, "batch_size": 200, "n_epochs": 1},
        "tasks": ["rewardfilter/Pendulum-v1"],
        "noise": [{"name": "hetero", "model": "heteroscedastic", "kwargs": {"std": 1.0}}],
        "methods": ["oracle", "BR"],
    }
    summary = run_experiment(parse_config(raw), out=str(tmp_path), workers=2, progress=False)
    assert summary.ok, summary.failed
    runs = {r["method"]["name"]: r for r in finished_runs(tmp_path)}
    for run in runs.values():
        assert [r["step"] for r in run["records"]] == [800, 1600]
        assert -2000 < run["final"]["true_return"] <= 0
    br, oracle = runs["PF-PPO (BR)"]["final"], runs["oracle"]["final"]
    assert br["kept_fraction"] == pytest.approx(0.5) and oracle["kept_fraction"] == pytest.approx(
        1.0
    )
    assert br["samples_used"] == 800 and oracle["samples_used"] == 1600
    assert oracle["filtered_r2"] == pytest.approx(1.0)
    # every ranked group holds the N episodes of one start state
    assert br["group_size_mean"] == 4.0


@LINUX_ONLY
def test_ctrl_c_stops_the_runner_and_its_workers_promptly(tmp_path):
    proc, out, _ = _start_slow_runner(tmp_path, sleep=0.25)  # 5 s per run
    try:
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGINT)
        # a plain pool shutdown would first run the 6 queued runs (15 s)
        proc.wait(timeout=8)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert workers and _wait_dead(workers)
    assert len(list(out.glob("runs/*/final.json"))) < 8


def test_shipped_configs_are_found_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("demo.yaml").name == "demo"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")


def test_oracle_run_under_one_noise_model_anchors_every_noise_column(tmp_path):
    """The oracle never sees the noise: run once per task, it scores 1 in each noise column."""
    raw = tiny_raw(
        noise=[
            {"name": "a", "model": "heteroscedastic", "kwargs": {"std_low": 0.6}},
            {"name": "b", "model": "heteroscedastic", "kwargs": {"std_low": 0.3}},
        ],
        methods=[{"standard": "oracle", "noise": ["a"]}, "PPO-M", "BR"],
        tasks=[{"id": "bandit/8x4"}],
        seeds=2,
    )
    config = tmp_path / "shared.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert len(finished_runs(out)) == 2 + 2 * 2 * 2  # the oracle's 2 seeds ran once
    report = make_report(dir=str(out), resamples=100)
    oracle_rows = [r for r in report.rows if r["method"] == "oracle"]
    assert [(r["noise"], r["shared_from"]) for r in oracle_rows] == [("a", ""), ("b", "8x4 (a)")]
    assert all(r["normalised"] == pytest.approx(1.0) for r in oracle_rows)
    assert oracle_rows[0]["final_true_return"] == oracle_rows[1]["final_true_return"]
    assert "are shared by the task's other noise columns" in report.markdown
