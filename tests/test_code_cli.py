"""`rewardfilter code ...`: help from the config dataclasses, config files, errors, a micro build."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rewardfilter.cli import main


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_code_help_lists_the_subcommands(capsys):
    code, out, _ = _run(["code", "--help"], capsys)
    assert code == 0
    for name in ("build-tiny", "train-rm", "train", "eval"):
        assert name in out


@pytest.mark.parametrize(
    "sub, text",
    [
        ("build-tiny", "BPE vocabulary size"),  # TinyConfig field help
        ("train-rm", "Bradley-Terry"),  # RewardModelConfig field help
        ("train-rm", "Responses sampled per prompt"),  # RewardDataConfig field help
        ("eval", "pass@k"),
        ("train", "--filter"),  # PFPPOConfig fields, added lazily
    ],
)
def test_subcommand_help_comes_from_the_config_fields(capsys, sub, text):
    code, out, _ = _run(["code", sub, "--help"], capsys)
    assert code == 0
    assert text in out.replace("\n", " ").replace("  ", " ")


def test_one_dataclass_to_flags_builder_for_the_whole_project():
    import rewardfilter.adapters.code.cli as code_cli
    import rewardfilter.io

    assert code_cli.add_dataclass_arguments is rewardfilter.io.add_dataclass_arguments


def test_building_the_parser_imports_no_torch():
    code = (
        "import sys; from rewardfilter.cli import build_parser; build_parser();"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_of_a_missing_model_is_a_clear_error(tmp_path, capsys):
    code, _, err = _run(["code", "eval", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err


def test_eval_of_an_empty_task_file_is_a_clear_error(tmp_path, capsys):
    from rewardfilter.adapters.code.tiny import build_random_tiny

    model = build_random_tiny(tmp_path / "m", hidden_size=32, num_layers=1)
    (tmp_path / "empty.jsonl").write_text("")
    code, _, err = _run(
        ["code", "eval", str(model), "--tasks", str(tmp_path / "empty.jsonl")], capsys
    )
    assert code == 2 and "empty" in err
    code, _, err = _run(["code", "eval", str(model), "--tasks", "nowhere.jsonl"], capsys)
    assert code == 2 and "neither" in err


def test_train_rm_rejects_a_non_causal_lm(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    code, _, err = _run(
        ["code", "train-rm", "--policy", str(tmp_path), "--out", str(tmp_path / "rm")], capsys
    )
    assert code == 2 and "causal language model" in err
    assert not (tmp_path / "rm").exists()  # nothing was started


def test_bad_config_value_and_unknown_key_are_errors(tmp_path, capsys):
    code, _, err = _run(
        ["code", "build-tiny", str(tmp_path / "o"), "--architecture", "rnn"], capsys
    )
    assert code == 2 and "'architecture' parameter" in err
    (tmp_path / "c.yaml").write_text("tiny:\n  hidden_sise: 64\n")
    code, _, err = _run(
        ["code", "build-tiny", str(tmp_path / "o"), "--config", str(tmp_path / "c.yaml")], capsys
    )
    assert code == 2 and "hidden_sise" in err and "valid keys" in err


def test_build_tiny_end_to_end_micro(tmp_path, capsys):
    """A micro build through the CLI: file values, flag overrides, the saved model loads anywhere."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    (tmp_path / "c.yaml").write_text(
        "tiny:\n  hidden_size: 48\n  num_layers: 1\n  num_heads: 2\n  intermediate_size: 64\n"
        "  vocab_size: 300\n  max_per_family: 3\n  pretrain_steps: 2\n  sft_steps: 2\n"
        "  batch_size: 8\n  warmup_steps: 1\n  eval_per_family: 1\n"
    )
    out = tmp_path / "tiny"
    argv = [
        "code",
        "build-tiny",
        str(out),
        "--config",
        str(tmp_path / "c.yaml"),
        "--hidden-size",
        "32",
    ]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert "held-out greedy pass@1" in stdout
    report = json.loads((out / "build_report.json").read_text())
    assert report["config"]["hidden_size"] == 32  # the flag beat the file
    assert report["config"]["num_layers"] == 1  # the file beat the default
    assert len(report["heldout_greedy_pass@1_per_family"]) == 13
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.hidden_size == 32 and tok.eos_token_id is not None
    # refuses to overwrite without --overwrite
    code, _, err = _run(["code", "build-tiny", str(out)], capsys)
    assert code == 2 and "not empty" in err


def test_train_runs_the_trainer_and_rejects_a_missing_reward(tmp_path, capsys):
    """`code train` wires the policy, the reward and the tasks into PFPPOTrainer."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("rewardfilter.adapters.code.trainer")
    torch.set_num_threads(1)
    from rewardfilter.adapters.code.tiny import build_random_tiny

    model = build_random_tiny(tmp_path / "m", hidden_size=32, num_layers=1)
    base = ["code", "train", "--policy", str(model), "--task-families", "constants"]
    code, _, err = _run(base + ["--reward", str(tmp_path / "no_rm")], capsys)
    assert code == 2 and "does not exist" in err
    out = tmp_path / "run"
    argv = base + [
        "--reward", "true", "--out", str(out), "--n-per-family", "2", "--iterations", "1",
        "--prompts-per-iteration", "2", "--samples-per-prompt", "2", "--max-new-tokens", "4",
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert "trained 1 iterations" in stdout
    assert len(json.loads((out / "history.json").read_text())) == 1
    assert (out / "policy" / "config.json").is_file()  # the trained policy loads like any model
