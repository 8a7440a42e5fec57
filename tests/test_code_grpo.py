"""``trainer: pfgrpo`` in the code domain: TRL's PF-GRPO on the PPO runs' tasks, reward and records."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from rewardfilter.experiments.config import ConfigError, parse_config  # noqa: E402


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from rewardfilter.adapters.code.tiny import build_random_tiny

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    return build_random_tiny(
        tmp_path_factory.mktemp("micro") / "m", hidden_size=32, num_layers=1, num_heads=2
    )


def grpo_run(model, out, *, steps=2, filter="br", noise="none", rm=None, grpo=None):
    from rewardfilter.adapters.code import FAMILIES

    hparams = {
        "model": str(model),
        "train_per_family": 2,
        "heldout_per_family": 1,
        "prompts_per_iteration": 2,
        "minibatch_size": 3,  # 6 completions per iteration: 2 optimiser steps, as PF-PPO would take
        "max_new_tokens": 6,
        "device": "cpu",
        "trainer": "pfgrpo",
    }
    if rm:
        hparams["reward_model"] = str(rm)
    if grpo:
        hparams["grpo"] = grpo
    return {
        "domain": "code",
        "task": "curriculum:" + ",".join(FAMILIES[:2]),
        "noise": {"name": noise, "model": noise, "kwargs": {}},
        "method": {"name": filter, "reward": "noisy", "group_size": 3, "filter": filter},
        "seed": 0,
        "budget": {"steps": steps, "eval_every": 1, "eval_episodes": 2},
        "hparams": hparams,
        "run_id": "test",
        "out_dir": str(out),
    }


def test_pfgrpo_runs_logs_the_ppo_records_and_resumes(micro, tmp_path):
    from rewardfilter.experiments.domains import RECORD_KEYS
    from rewardfilter.experiments.domains.code import run_code

    logged = []
    final = run_code(grpo_run(micro, tmp_path), logged.append)
    assert [r["step"] for r in logged] == [0, 1, 2]
    assert all(key in r for r in logged for key in RECORD_KEYS)
    # BR keeps 2 of each prompt's 3 completions; 6 completions in minibatches of 3
    assert [r["gradient_steps"] for r in logged] == [0, 2, 4]
    assert [r["samples_used"] for r in logged] == [0, 4, 8]
    assert final["kept_fraction"] == pytest.approx(2 / 3)
    assert (
        0.0 <= final["true_return"] <= 1.0
        and final["start_true_return"] == logged[0]["true_return"]
    )
    for key in ("train_pass_rate", "response_len"):
        assert 0.0 <= logged[-1][key] and math.isfinite(logged[-1][key]), key
    assert (tmp_path / "grpo" / "policy" / "config.json").is_file()  # the final policy
    on_disk = [json.loads(line) for line in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert [r["step"] for r in on_disk] == [0, 1, 2]
    # a finished run started again trains no more and logs its records again
    again = []
    run_code(grpo_run(micro, tmp_path), again.append)
    assert [r["step"] for r in again] == [0, 1, 2]
    # a longer budget continues from TRL's last checkpoint
    more = []
    run_code(grpo_run(micro, tmp_path, steps=3), more.append)
    assert [r["step"] for r in more] == [0, 1, 2, 3] and more[-1]["samples_used"] == 12
    assert more[-1]["gradient_steps"] == 6


def test_pfgrpo_takes_ppo_epochs_passes_and_needs_whole_minibatches(micro, tmp_path):
    from rewardfilter.experiments.domains.code import run_code

    run = grpo_run(micro, tmp_path, steps=1)
    run["hparams"]["ppo_epochs"] = 2
    logged = []
    run_code(run, logged.append)
    assert [r["gradient_steps"] for r in logged] == [0, 4]  # 2 epochs x 2 minibatches
    assert logged[-1]["samples_used"] == 4  # kept completions, each counted once
    # PF-PPO's precision on a CPU (float32), not TRL's default bf16 ...
    (ckpt,) = (tmp_path / "grpo").glob("checkpoint-*")
    args = torch.load(ckpt / "training_args.bin", weights_only=False)
    assert not args.bf16 and not args.fp16
    # ... and no Accelerate state left behind: a PF-PPO trainer built next computes in float32
    from rewardfilter.adapters.code.ppo.parallel import Parallel

    assert Parallel("cpu").mixed_precision == "no"
    run = grpo_run(micro, tmp_path / "bad", steps=1)
    run["hparams"]["minibatch_size"] = 4
    with pytest.raises(ValueError, match="'minibatch_size'.*divide.*6.*got 4"):
        run_code(run, print)


def test_pfgrpo_trains_on_the_reward_model_ensemble(micro, tmp_path):
    """The members are TRL's reward functions; none keeps all; the RM scores the evaluations."""
    from rewardfilter.adapters.code.curriculum import make_curriculum
    from rewardfilter.adapters.code.reward import (
        RewardData,
        RewardModelConfig,
        train_reward_ensemble,
    )
    from rewardfilter.experiments.domains.code import run_code

    tasks = make_curriculum("train", 2, seed=0, families=["constants", "arithmetic"])
    rows = [(t, c, s) for t in tasks for c, s in ((t.canonical_solution, 1.0), ("    pass\n", 0.0))]
    data = RewardData(
        [t.task_id for t, _, _ in rows],
        [t.prompt for t, _, _ in rows],
        [c for _, c, _ in rows],
        np.array([s for _, _, s in rows]),
        np.array([s == 1.0 for _, _, s in rows]),
    )
    cfg = RewardModelConfig(ensemble_size=2, epochs=1, batch_size=4, device="cpu")
    train_reward_ensemble(micro, data, cfg, progress=False).save_pretrained(tmp_path / "rm")
    logged = []
    run = grpo_run(micro, tmp_path / "run", steps=1, filter="uncertainty:0.4", noise="learned")
    run["hparams"]["reward_model"] = str(tmp_path / "rm")
    final = run_code(run, logged.append)
    assert [r["step"] for r in logged] == [0, 1]
    assert math.isfinite(final["noisy_return"])
    assert final["kept_fraction"] == pytest.approx(2 / 3)  # uncertainty:0.4 drops 1 of 3


def test_pfgrpo_rejects_fields_the_domain_sets(micro, tmp_path):
    from rewardfilter.experiments.domains.code import run_code

    with pytest.raises(ValueError, match=r"hparams.grpo.beta: is set by the code domain"):
        run_code(grpo_run(micro, tmp_path, grpo={"beta": 0.1}), print)


def _code_config(**hparams):
    return {
        "name": "g",
        "domain": "code",
        "seeds": 1,
        "budget": {"steps": 1, "eval_every": 1},
        "hparams": {"model": "m", **hparams},
        "tasks": ["curriculum:constants"],
        "noise": [{"name": "none", "model": "none"}],
        "methods": ["BR"],
    }


@pytest.mark.parametrize(
    "hparams, expected",
    [
        ({"trainer": "grpo"}, "hparams.trainer: must be one of 'pfppo', 'pfgrpo'; got 'grpo'."),
        (
            {"trainer": "pfgrpo", "grpo": {"loss_typ": "grpo"}},
            "hparams.grpo.loss_typ: unknown field of PFGRPOConfig.",
        ),
        (
            {"trainer": "pfgrpo", "grpo": {"learning_rate": 1.0}},
            "hparams.grpo.learning_rate: is set by the code domain from the run; give it there.",
        ),
        ({"grpo": [1]}, "hparams.grpo: must be a mapping of PFGRPOConfig fields; got [1]."),
    ],
)
def test_config_checks_name_the_key(hparams, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(_code_config(**hparams))
    assert expected in info.value.errors


def test_a_valid_pfgrpo_config_parses():
    parse_config(_code_config(trainer="pfgrpo", grpo={"loss_type": "grpo"}))


def test_unit_tests_score_the_text_before_the_stop_sequences():
    """As PF-PPO's sampler cuts a completion, so the TRL reward does: code after a stop is not run."""
    from rewardfilter.adapters.code.curriculum import make_curriculum
    from rewardfilter.experiments.domains.code_grpo import UnitTests

    task = make_curriculum("train", 1, seed=0, families=["constants"])[0]
    score = UnitTests([task], 3.0)
    tail = "\nprint(1 / 0)\n"  # would crash the program if it ran
    wrong = "    return None\n"
    got = score([task.prompt] * 2, [task.canonical_solution + tail, wrong], [task.task_id] * 2)
    assert got == [1.0, 0.0] and score.passed == [1.0, 0.0]
