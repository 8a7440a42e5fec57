"""Samples per second of one training iteration: PFPPOTrainer against TRL's GRPOTrainer.

Both trainers get the same tiny causal LM (built here from a transformers
config with a BPE tokenizer trained in-process, or loaded from ``--model``),
the same prompts (synthetic-curriculum prompts when available), the same
number of generations per prompt, the same prompts per iteration, the same
completion length cap and sampling settings, the same cheap reward function,
and a KL penalty to a frozen reference in both (``kl_coef`` / ``beta`` =
0.01), so both compute reference log-probabilities. One iteration is: sample
``prompts * N`` completions, score them, and take the gradient step(s) on
them. PF-PPO additionally trains a critic (a second model) and, with a
filter, runs its forward/backward passes on the kept samples only.

The reward is a cheap function of the text rather than the sandbox and a
reward model, so that the trainers themselves are measured, not the
executor. Each trainer runs ``--warmup`` iterations, then ``--iters`` timed
ones, in this one process; the printed ratio is PF-PPO samples/s over GRPO
samples/s (> 1: PF-PPO is faster).

TRL is a benchmark-only dependency (``pip install trl``); without it, or if
its GRPOTrainer cannot run offline on this machine, the script says so and
still reports PF-PPO's own numbers.

Usage: ``python benchmarks/code_trainer.py [--model DIR] [--prompts 8] [--n 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def reward_fn(prompts, completions, **kwargs):
    """A cheap, deterministic stand-in for the reward model (favours short, indented code)."""
    return [float(c.count("    ") - 0.05 * len(c)) for c in completions]


def true_score_fn(tasks, completions):
    return np.array([float("return" in c) for c in completions])


def load_prompts(n: int) -> list[str]:
    """Curriculum prompts when the task sets are installed, else a few hand-written ones."""
    try:
        from rewardfilter.adapters.code.curriculum import make_curriculum

        prompts = [t.prompt for t in make_curriculum("train", n_per_family=4, seed=0)]
    except Exception:  # noqa: BLE001 - any failure falls back to fixed prompts
        prompts = [f'def f{i}(x):\n    """Return x plus {i}."""\n' for i in range(max(n, 16))]
    return prompts[: max(n * 4, n)]


def build_model(prompts: list[str], out: str, hidden: int, layers: int) -> str:
    """A randomly initialised Llama and a BPE tokenizer trained on the prompts, saved to ``out``."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(prompts, trainer=trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>"
    )
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=hf_tok.pad_token_id,
        eos_token_id=hf_tok.eos_token_id,
        bos_token_id=None,
        architectures=["LlamaForCausalLM"],
    )
    transformers.LlamaForCausalLM(cfg).save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out


class _Task:
    def __init__(self, i: int, prompt: str):
        self.task_id, self.prompt = f"bench/{i}", prompt


def time_pfppo(model_dir: str, prompts: list[str], args, spec: str) -> list[float]:
    """Seconds per iteration of PFPPOTrainer (filter ``spec``), after warm-up."""
    from rewardfilter.adapters.code.trainer import PFPPOConfig, PFPPOTrainer

    cfg = PFPPOConfig(
        samples_per_prompt=args.n,
        prompts_per_iteration=args.prompts,
        max_new_tokens=args.max_new_tokens,
        filter=spec,
        ppo_epochs=1,
        minibatch_size=args.prompts * args.n,  # one gradient step per iteration, as GRPO below
        policy_lr=1e-5,
        critic_lr=1e-5,
        temperature=1.0,
        top_p=1.0,
        kl_coef=0.01,
        device="cpu",
        progress=False,
        seed=0,
    )
    tasks = [_Task(i, p) for i, p in enumerate(prompts)]
    trainer = PFPPOTrainer.from_pretrained(
        model_dir, tasks, lambda p, c: reward_fn(p, c), cfg, true_score=true_score_fn
    )
    times = []
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        rec = trainer.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(
        f"  (last PF-PPO iteration, filter={spec}: generate {rec['generate_s']:.2f} s, "
        f"score {rec['score_s']:.2f} s, experience + PPO update {rec['train_s']:.2f} s)"
    )
    return times


def time_grpo(model_dir: str, prompts: list[str], args, workdir: str) -> list[float]:
    """Seconds per optimizer step of TRL's GRPOTrainer (one generation round each), after warm-up."""
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    batch = args.prompts * args.n
    steps = args.warmup + args.iters
    config = GRPOConfig(
        output_dir=workdir,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_generations=args.n,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        beta=0.01,
        learning_rate=1e-5,
        max_steps=steps,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=10_000,
        disable_tqdm=True,
        seed=0,
        bf16=False,
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    dataset = Dataset.from_dict({"prompt": prompts * (steps + 1)})
    stamps: list[float] = []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            stamps.append(time.perf_counter())

        def on_step_end(self, a, state, control, **kw):
            stamps.append(time.perf_counter())

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_fn,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Clock()],
    )
    trainer.train()
    per_step = [stamps[i + 1] - stamps[i] for i in range(0, len(stamps) - 1, 2)]
    return per_step[args.warmup :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a local causal-LM directory (default: build a tiny one)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per iteration")
    parser.add_argument("--n", type=int, default=5, help="generations per prompt (N)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    prompts = load_prompts(args.prompts)
    batch = args.prompts * args.n
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_model(
            prompts, os.path.join(tmp, "model"), args.hidden, args.layers
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
        n_params = sum(p.numel() for p in model.parameters())
        del model
        print(
            f"model: {model_dir if args.model else 'tiny Llama built in-process'} ({n_params / 1e6:.2f}M params); "
            f"{args.prompts} prompts x {args.n} generations = {batch} samples/iteration, "
            f"max {args.max_new_tokens} new tokens; {args.threads} CPU thread(s); "
            f"{args.warmup} warm-up + {args.iters} timed iterations each"
        )
        results: dict[str, float] = {}
        for spec in ("br", "none"):
            times = time_pfppo(model_dir, prompts, args, spec)
            sps = batch / statistics.median(times)
            results[f"PF-PPO ({spec})"] = sps
            print(
                f"PFPPOTrainer filter={spec:<5} {sps:8.2f} samples/s  (median {statistics.median(times):.2f} s/iteration)"
            )
        try:
            import trl

            times = time_grpo(model_dir, prompts, args, os.path.join(tmp, "grpo"))
        except ImportError:
            print("TRL is not installed (pip install trl); no GRPOTrainer comparison.")
            return 0
        except Exception as exc:  # noqa: BLE001 - report why TRL could not run here
            print(
                f"TRL's GRPOTrainer could not run offline on CPU here: {type(exc).__name__}: {exc}"
            )
            return 0
        grpo = batch / statistics.median(times)
        print(
            f"TRL {trl.__version__} GRPOTrainer   {grpo:8.2f} samples/s  (median {statistics.median(times):.2f} s/iteration)"
        )
        for name, sps in results.items():
            print(f"ratio {name} / GRPO: {sps / grpo:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
