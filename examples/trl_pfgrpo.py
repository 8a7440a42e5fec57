"""PF-GRPO with TRL on the project's code curriculum, a few steps on CPU.

* policy: a local causal LM (``--model``; e.g. one built by
  ``rewardfilter code build-tiny``); by default an untrained micro model is
  built in seconds, so the run shows the mechanics, not learning;
* reward: a cheap *noisy proxy* ensemble of 3 members (does the completion
  compile, does it return something, plus per-member noise), declared as one
  reward-model ensemble with ``ensemble_reward_funcs``;
* true score: the fraction of the task's unit tests passed, from the
  project's sandbox, as ``true_score_func`` (logged as filtered R² and
  Spearman, never in the loss).

Run:  python examples/trl_pfgrpo.py --filter br --steps 3
Turning an existing GRPOTrainer script into this is one line (see
``rewardfilter.adapters.trl``)::

    from rewardfilter.adapters.trl import PFGRPOConfig as GRPOConfig, PFGRPOTrainer as GRPOTrainer
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np


def _noise(completion: str, member: int) -> float:
    digest = hashlib.sha256(f"{member}:{completion}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0, 0.3))


def _proxy(prompts, completions, member: int) -> list[float]:
    out = []
    for prompt, completion in zip(prompts, completions, strict=True):
        try:
            compile(prompt + completion, "<completion>", "exec")
            compiles = 1.0
        except (SyntaxError, ValueError):
            compiles = 0.0
        returns = 0.5 if "return" in completion else 0.0
        out.append(compiles + returns + _noise(completion, member))
    return out


def proxy_a(prompts, completions, **kwargs):
    return _proxy(prompts, completions, 0)


def proxy_b(prompts, completions, **kwargs):
    return _proxy(prompts, completions, 1)


def proxy_c(prompts, completions, **kwargs):
    return _proxy(prompts, completions, 2)


def make_true_score(tasks):
    """The sandbox's unit-test pass fraction, as a function with the reward signature."""
    from rewardfilter.adapters.code import score_completions

    by_id = {task.task_id: task for task in tasks}

    def unit_tests(prompts, completions, task_id, **kwargs):
        results = score_completions([by_id[t] for t in task_id], completions, timeout=2.0)
        return [r.score for r in results]

    return unit_tests


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a local causal-LM directory (default: a micro model)")
    parser.add_argument("--filter", default="br", help="any rewardfilter spec (default: br)")
    parser.add_argument("--filter-advantages", default="all", choices=["all", "kept"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--n", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args(argv)

    import torch
    import transformers
    from datasets import Dataset

    from rewardfilter.adapters.code import make_curriculum
    from rewardfilter.adapters.trl import LOCAL_RUN, PFGRPOConfig, PFGRPOTrainer

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        model_dir = args.model
        if model_dir is None:
            from rewardfilter.adapters.code.tiny import build_random_tiny

            model_dir = str(build_random_tiny(out / "micro-model", hidden_size=32, num_layers=1))
        tasks = make_curriculum("train", n_per_family=4, seed=0)
        data = Dataset.from_dict(
            {"prompt": [t.prompt for t in tasks], "task_id": [t.task_id for t in tasks]}
        )
        config = PFGRPOConfig(
            output_dir=str(out / "run"),
            filter=args.filter,
            filter_advantages=args.filter_advantages,
            ensemble_reward_funcs=["proxy_a", "proxy_b", "proxy_c"],
            true_score_func=make_true_score(tasks),
            num_generations=args.n,
            per_device_train_batch_size=args.prompts * args.n,
            max_completion_length=args.max_new_tokens,
            max_steps=args.steps,
            learning_rate=1e-5,
            logging_steps=1,
            **LOCAL_RUN,
        )
        trainer = PFGRPOTrainer(
            model=model_dir,
            reward_funcs=[proxy_a, proxy_b, proxy_c],
            args=config,
            train_dataset=data,
            processing_class=transformers.AutoTokenizer.from_pretrained(
                model_dir, padding_side="left"
            ),
        )
        trainer.remove_callback(transformers.PrinterCallback)
        trainer.train()
    steps = [h for h in trainer.state.log_history if "filter/kept_fraction" in h]
    for h in steps:
        shown = {k: round(v, 3) for k, v in h.items() if k.startswith("filter/") or k == "reward"}
        print(f"step {h['step']}: loss {h['loss']:.4f} {shown}")
    return steps[-1]


if __name__ == "__main__":
    main()
