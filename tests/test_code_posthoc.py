"""Post hoc evaluation of a code sweep's final policies, HumanEval included (experiments/code_posthoc.py)."""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardfilter.experiments.code_posthoc import PosthocConfig, main  # noqa: E402

FAMILIES = ["constants", "arithmetic"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished two-run sweep (BR, seeds 0 and 1) of the code domain on a micro model."""
    from rewardfilter.adapters.code.tiny import build_random_tiny
    from rewardfilter.experiments.config import parse_config
    from rewardfilter.experiments.runner import run_experiment

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    tmp = tmp_path_factory.mktemp("posthoc")
    micro = build_random_tiny(tmp / "micro", hidden_size=32, num_layers=1, num_heads=2)
    config = parse_config(
        {
            "name": "posthoc-test",
            "domain": "code",
            "seeds": 2,
            "group_size": 3,
            "budget": {"steps": 1, "eval_every": 1, "eval_episodes": 1},
            "hparams": {
                "model": str(micro),
                "train_per_family": 2,
                "heldout_per_family": 1,
                "prompts_per_iteration": 2,
                "max_new_tokens": 6,
                "device": "cpu",
            },
            "tasks": ["curriculum:" + ",".join(FAMILIES)],
            "noise": [{"name": "none", "model": "none"}],
            "methods": ["BR"],
        }
    )
    summary = run_experiment(config, out=str(tmp / "sweep"), workers=1, progress=False)
    assert len(summary.completed) == 2
    return tmp / "sweep"


def test_every_suite_of_every_final_policy_and_the_start(sweep, capsys):
    argv = [str(sweep), "--suites", "heldout", "sampled", "unseen", "humaneval", "--start"]
    argv += ["--heldout-per-family", "2", "--sampled-per-family", "1", "--sampled-n", "5"]
    argv += [
        "--unseen-per-family",
        "1",
        "--humaneval-limit",
        "2",
        "--humaneval-max-new-tokens",
        "8",
    ]
    assert main(argv) == 0
    runs = sorted((sweep / "runs").iterdir())
    assert len(runs) == 2
    for run_dir in runs:
        he = json.loads((run_dir / "posthoc" / "humaneval.json").read_text())
        assert he["n_tasks"] == 2 and he["sandbox_modes"] == {"strong": 2}  # HumanEval, strong mode
        assert he["model"].endswith("scratch/pfppo/policy")
        held = json.loads((run_dir / "posthoc" / "heldout.json").read_text())
        assert held["n_tasks"] == 4 and held["temperature"] == 0.0
        sampled = json.loads((run_dir / "posthoc" / "sampled.json").read_text())
        assert sampled["n_samples"] == 5 and set(sampled) >= {"pass@1", "pass@5"}
        assert sampled["settings"]["top_p"] == 0.9  # the training top-p (PFPPOConfig's default)
    rows = [json.loads(x) for x in (sweep / "posthoc_heldout.jsonl").read_text().splitlines()]
    name = json.loads((runs[0] / "run.json").read_text())["method"]["name"]  # "PF-PPO (BR)"
    assert {(r["method"], r["seed"]) for r in rows} == {(name, 0), (name, 1), ("start", 0)}
    assert {r["column"] for r in rows} == set(FAMILIES) and all(0 <= r["score"] <= 1 for r in rows)
    sampled_rows = [
        json.loads(x) for x in (sweep / "posthoc_sampled.jsonl").read_text().splitlines()
    ]
    assert all("pass@5" in r for r in sampled_rows)
    unseen = [json.loads(x) for x in (sweep / "posthoc_unseen.jsonl").read_text().splitlines()]
    assert (
        not {r["column"] for r in unseen} & set(FAMILIES)
        and len({r["column"] for r in unseen}) == 11
    )
    assert f"humaneval: {name}" in capsys.readouterr().out
    # the rliable report reads the table
    from rewardfilter.experiments.rliable_report import load_curves

    curves, _ = load_curves(sweep / "posthoc_heldout.jsonl")
    assert {c.method for c in curves} == {name, "start"}
    # a second call evaluates nothing again (the reports are reused)
    stamp = (runs[0] / "posthoc" / "humaneval.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (runs[0] / "posthoc" / "humaneval.json").stat().st_mtime_ns == stamp
    # --seeds keeps the runs of those training seeds only (HumanEval of one seed per arm)
    assert main([*argv, "--seeds", "1"]) == 0
    rows = [json.loads(x) for x in (sweep / "posthoc_heldout.jsonl").read_text().splitlines()]
    assert {(r["method"], r["seed"]) for r in rows} == {(name, 1), ("start", 0)}


def test_bad_input_names_the_argument(sweep, tmp_path, capsys):
    with pytest.raises(ValueError, match="'suites'"):
        PosthocConfig(sweeps=[str(sweep)], suites=["mbpp"])
    with pytest.raises(ValueError, match="'sampled_n'"):
        PosthocConfig(sweeps=[str(sweep)], sampled_n=0)
    assert main([str(tmp_path)]) == 2
    assert "has no runs/ folder" in capsys.readouterr().err
