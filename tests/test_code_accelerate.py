"""PF-PPO data-parallel on 2 CPU processes (gloo): the same step as one process, and an end-to-end run.

With accelerate 1.16, ``accelerate launch --cpu --num_processes 2`` starts a
single process (several CPU processes need mpirun and a hostfile), so the
processes are started with ``accelerate launch --multi_gpu --num_processes 2``
(torchrun) and the trainer's ``device="cpu"`` makes Accelerate use gloo on
the CPU: the same DDP code path as on GPUs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "accelerate_step.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), *args,
        ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean"])
def test_two_processes_take_the_same_step_as_one(tmp_path, aggregation):
    """2 processes x 4 prompts == 1 process x 8 prompts: whitening and the loss normaliser are global."""
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    launch([str(SCRIPT), str(one), aggregation], 1)
    launch([str(SCRIPT), str(two), aggregation], 2)
    a = torch.load(one, weights_only=False)
    b = torch.load(two, weights_only=False)
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["record"]["samples"] == b["record"]["samples"] == 24  # stats gathered
    for key in ("reward_mean", "kept_fraction", "policy_loss", "value_loss", "kl"):
        assert a["record"][key] == pytest.approx(b["record"][key], rel=1e-4, abs=1e-6), key
    for model in ("policy", "critic"):
        for ga, gb in zip(a["grads"][model], b["grads"][model], strict=True):
            scale = ga.abs().max().clamp_min(1e-8)
            assert torch.allclose(ga, gb, atol=1e-5 * float(scale), rtol=1e-4), model
    # (the weights after Adam's first step are not compared: Adam divides each gradient by its
    # own magnitude, so float noise on a near-zero gradient moves its weight by +-lr either way)


@pytest.mark.slow
def test_code_train_runs_end_to_end_on_two_processes(tmp_path):
    from rewardfilter.adapters.code.tiny import build_random_tiny

    micro = build_random_tiny(tmp_path / "micro", hidden_size=32, num_layers=2)
    out = tmp_path / "run"
    launch(
        [
            "-m", "rewardfilter.cli", "code", "train", "--policy", str(micro), "--reward", "true",
            "--out", str(out), "--iterations", "2", "--prompts-per-iteration", "4",
            "--samples-per-prompt", "2", "--max-new-tokens", "6", "--minibatch-size", "4",
            "--n-per-family", "2", "--device", "cpu", "--no-progress",
        ],
        2,
    )  # fmt: skip
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2]  # written once, by the main process
    assert all(r["samples"] == 8 for r in log)  # both processes' samples in each record
    assert (out / "state.pt").is_file() and (out / "policy" / "config.json").is_file()


def test_launch_mixed_precision_selects_the_compute_dtype():
    """`accelerate launch --mixed_precision bf16` (its environment variable) turns on bf16 autocast."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r})\n"
        "import accelerate_step as s\n"
        "from rewardfilter.adapters.code.ppo.trainer import PFPPOConfig, PFPPOTrainer\n"
        "tok = s.build_tokenizer()\n"
        "from rewardfilter.adapters.code.models import ValueModel\n"
        "t = PFPPOTrainer(PFPPOConfig(device='cpu', progress=False), s.build_model(tok, 0), tok,\n"
        "    ValueModel(s.build_model(tok, 1).model), s.TASKS, s.reward_fn, true_score=s.true_score)\n"
        "print(t.compute_dtype, next(t.policy.parameters()).dtype)\n"
    )
    env = {**os.environ, "ACCELERATE_MIXED_PRECISION": "bf16"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["torch.bfloat16", "torch.float32"]  # fp32 masters


def test_leave_returns_the_status_in_a_single_process():
    from rewardfilter.adapters.code.ppo.parallel import Parallel

    dist = Parallel("cpu")
    assert dist.world_size == 1
    assert dist.leave(3) == 3  # os._exit only in a multi-process run
