"""The code study, round 2 (experiments/study/PLAN_code_v2.md): what its plan relies on.

The build configs load into the pipeline's dataclasses with the sizes the plan states, the
reward model's common pool is sampled at the comparison's sampling settings, and under the
``resample`` realisation BR and BW equal their reweight versions and ``random:2`` draws
uniformly (the A/A control). The runner configs of the study are validated, like every
shipped config, by ``tests/test_experiments.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import yaml

import rewardfilter as rf
from rewardfilter.adapters.code.cli import dataclass_from_args
from rewardfilter.adapters.code.config import RewardDataConfig, RewardModelConfig
from rewardfilter.adapters.code.ppo.experience import expected_weights
from rewardfilter.adapters.code.tiny import TinyConfig, make_tiny_model
from rewardfilter.experiments.config import load_config

STUDY = Path(__file__).resolve().parents[1] / "experiments" / "study"
BUILDS = {"s": 0.92e6, "m": 2.02e6, "l": 3.54e6}  # parameters with a 512-token vocabulary


class _Tokenizer:
    """What make_tiny_model reads from a tokenizer: its length and three special ids."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self) -> int:
        return 512


def _sections(name: str) -> dict:
    return yaml.safe_load((STUDY / "code_v2" / f"build_{name}.yaml").read_text())


@pytest.mark.parametrize("name, n_params", sorted(BUILDS.items()))
def test_build_configs_load_and_have_the_planned_size(name, n_params):
    raw = _sections(name)
    empty = argparse.Namespace()
    tiny = dataclass_from_args(TinyConfig, empty, raw["tiny"])
    data = dataclass_from_args(RewardDataConfig, empty, raw["reward_data"])
    dataclass_from_args(RewardModelConfig, empty, raw["reward_model"])
    model = make_tiny_model(tiny, _Tokenizer())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(n_params, rel=0.01)
    # the common pool (held-out samples of the reward model) is drawn at PPO's sampling settings
    primary = load_config(STUDY / "code_v2_primary.yaml").hparams
    assert (data.temperature, data.top_p, data.max_new_tokens) == (
        primary["temperature"],
        primary["top_p"],
        primary["max_new_tokens"],
    )
    assert data.families == ["conditionals", "booleans", "lists", "aggregates", "filtering"]


def _draw_probs(spec: str, rewards: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The resample realisation's draw probability per sample (as make_experience computes it)."""
    ew = expected_weights(rf.make_filter(spec), rewards, groups, rng=np.random.default_rng(0))
    return ew / ew.sum()


def test_resample_makes_br_and_bw_their_reweight_versions_and_random_uniform():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(16), 5)
    rewards = rng.normal(size=groups.size)  # no ties
    br = _draw_probs("br", rewards, groups)
    np.testing.assert_allclose(br, _draw_probs("rank:0.4,0.1,0.1,0.1,0.1", rewards, groups))
    np.testing.assert_allclose(
        br.reshape(16, 5).max(axis=1) / br.reshape(16, 5).sum(axis=1), 0.5
    )  # 0.5 best, 0.125 each other, within a group
    np.testing.assert_allclose(
        _draw_probs("bw", rewards, groups), _draw_probs("rank:1,0,0,0,1", rewards, groups)
    )
    uniform = np.full(groups.size, 1 / groups.size)
    np.testing.assert_allclose(_draw_probs("random:2", rewards, groups), uniform)
    np.testing.assert_allclose(_draw_probs("none", rewards, groups), uniform)
    assert not np.allclose(br, uniform)  # the equalities above are not vacuous


def test_study_configs_have_the_planned_run_counts():
    counts = {p.stem: len(load_config(p).expand("/tmp/out")) for p in STUDY.glob("code_v2_*.yaml")}
    assert counts == {  # the calibration as run (PLAN_code_v2.md, Amendments 1-10)
        "code_v2_cal_sanity": 2,
        "code_v2_cal_sanity2": 4,
        "code_v2_cal_trainer": 3,
        "code_v2_cal_start": 3,
        "code_v2_cal_models": 6,
        "code_v2_cal_levers": 2,
        "code_v2_cal_batch": 2,
        "code_v2_cal_grpo": 1,
        "code_v2_cal_size": 1,
        "code_v2_cal_size_lr": 1,
        "code_v2_cal_confirm": 3,
        "code_v2_cal_long": 1,
        "code_v2_primary": 45,
        "code_v2_secondary": 30,
        "code_v2_comparison": 75,  # 15 arms x 5 seeds (Amendment 11)
    }


# ---------------------------------------------------------------------------
# the calibration table (rewardfilter.experiments.code_calibration)
# ---------------------------------------------------------------------------
def _fake_run(folder: Path, name: str, lens: list[float], kls: list[float], greedy: list[float]):
    import json

    run_dir = folder / "runs" / name
    (run_dir / "scratch").mkdir(parents=True)
    run = {"run_id": name, "method": {"name": name}, "task": "curriculum", "seed": 0}
    (run_dir / "run.json").write_text(json.dumps(run))
    evals = [
        {"step": 10 * i, "true_return": g, "sampled_pass@1": g / 2} for i, g in enumerate(greedy)
    ]
    (run_dir / "records.jsonl").write_text("\n".join(json.dumps(r) for r in evals) + "\n")
    log = [
        {"iteration": i + 1, "response_len": n, "kl": k, "true_pass_rate": 0.1 * i}
        for i, (n, k) in enumerate(zip(lens, kls, strict=True))
    ]
    (run_dir / "scratch" / "train_log.jsonl").write_text(
        "\n".join(json.dumps(r) for r in log) + "\n"
    )
    (run_dir / "final.json").write_text(json.dumps({"step": 10 * (len(greedy) - 1), "wall_s": 9}))


def test_calibration_table_reads_runs_and_flags_collapse(tmp_path):
    from rewardfilter.experiments.code_calibration import markdown, sweep_rows

    _fake_run(tmp_path, "a-fine", [20] * 10, [1.0] * 10, [0.2, 0.3, 0.25])
    _fake_run(tmp_path, "b-short", [20] * 5 + [9] * 5, [1.0] * 10, [0.2, 0.1])
    _fake_run(tmp_path, "c-far", [20] * 10, [1.0] * 5 + [25.0] * 5, [0.2, 0.1])
    (tmp_path / "runs" / "d-unfinished").mkdir()
    rows = sweep_rows(tmp_path)
    assert [r["method"] for r in rows] == ["a-fine", "b-short", "c-far"]
    fine = rows[0]
    assert (fine["greedy start"], fine["greedy end"], fine["greedy peak"]) == (0.2, 0.25, 0.3)
    assert fine["sampled end"] == 0.125 and fine["iters"] == 20
    assert fine["train pass first"] == pytest.approx(0.2) and fine[
        "train pass last"
    ] == pytest.approx(0.7)
    assert [r["collapsed"] for r in rows] == [False, True, True]
    table = markdown(rows)
    assert (
        table.count("\n") == 4 and "| a-fine | 20 | 0.200 | 0.250 | 0.300 | 0.100 | 0.125" in table
    )
    with pytest.raises(FileNotFoundError, match="no runs/ folder"):
        sweep_rows(tmp_path / "nope")


def test_train_offset_gives_prompts_the_start_model_never_saw():
    """PPO's prompts after ``train_offset`` k are disjoint from a start built with max_per_family k."""
    from rewardfilter.adapters.code.tiny import training_tasks
    from rewardfilter.experiments.domains.code import DEFAULTS, _tasks

    fams = ["conditionals", "lists"]
    task = "curriculum:" + ",".join(fams)
    hp = {**DEFAULTS, "train_per_family": 30, "heldout_per_family": 5}
    plain, held = _tasks(task, hp)
    shifted, held_too = _tasks(task, {**hp, "train_offset": 20})
    assert [t.task_id for t in held] == [t.task_id for t in held_too]
    assert len(shifted) == 60 and [t.task_id.split("/")[1] for t in shifted[::30]] == fams
    sft = {t.task_id for t in training_tasks(TinyConfig(max_per_family=20))}
    assert not sft & {t.task_id for t in shifted}
    assert {t.task_id for t in plain[20:30]} <= {t.task_id for t in shifted}  # the draw continues
    assert {t.task_id for t in plain[:20]} <= sft  # without the offset PPO trains on SFT examples
    with pytest.raises(ValueError, match="train_offset"):
        _tasks(task, {**hp, "train_offset": -1})
