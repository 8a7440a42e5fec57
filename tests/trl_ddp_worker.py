"""Worker for tests/test_trl.py's 2-process run (``accelerate launch --cpu --num_processes 2``).

Every completion generated on process 0 gets reward 0, every one on process 1
reward 1 + a small spread, and the filter is ``threshold:0.5``: a kept fraction
gathered from both processes is 0.5, a per-process one would be 0 or 1.
Each process writes its ``log_history`` to ``<out>/rank<i>.json``.
"""

import json
import sys
import warnings

import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import AutoTokenizer

from rewardfilter.adapters.trl import LOCAL_RUN, PFGRPOConfig, PFGRPOTrainer


def process_reward(completions, **kwargs):
    rank = PartialState().process_index
    return [0.0 if rank == 0 else 1.0 + (sum(map(ord, c)) % 7) / 7 for c in completions]


def main(model_dir: str, out: str, spec: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    config = PFGRPOConfig(
        output_dir=out,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        filter=spec,
        **LOCAL_RUN,
    )
    trainer = PFGRPOTrainer(
        model=model_dir,
        reward_funcs=process_reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": ["def add(a, b):", "def neg(x):"] * 8}),
        processing_class=AutoTokenizer.from_pretrained(model_dir, padding_side="left"),
    )
    trainer.train()
    rank = trainer.accelerator.process_index
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump(
            {"world": trainer.accelerator.num_processes, "log_history": trainer.state.log_history},
            fh,
        )


if __name__ == "__main__":
    main(*sys.argv[1:4])
