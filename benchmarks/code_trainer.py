"""Throughput of one training iteration: PFPPOTrainer against TRL's GRPOTrainer, like for like.

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
ones, in this one process. Per trainer it prints, as medians over the timed
iterations: *generated* samples/s (samples sampled per second of a whole
iteration), *trained* tokens/s (response tokens that went through the
update's forward/backward passes per second of a whole iteration: a filter
that drops samples generates as many but trains fewer) and the per-phase
split (generate / score / train) of an iteration. PF-PPO runs with BR in
both realisations (``drop`` trains on the kept 40%, ``resample`` draws as
many samples as were generated) and with no filter (PPO-M).

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


def time_pfppo(model_dir: str, prompts: list[str], args, spec: str, realisation: str) -> dict:
    """Per-iteration throughput and phase split of PFPPOTrainer, medians after warm-up."""
    from rewardfilter.adapters.code.ppo.trainer import PFPPOConfig, PFPPOTrainer

    cfg = PFPPOConfig(
        samples_per_prompt=args.n,
        prompts_per_iteration=args.prompts,
        max_new_tokens=args.max_new_tokens,
        filter=spec,
        realisation=realisation,
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
    recs = [trainer.step() for _ in range(args.warmup + args.iters)][args.warmup :]
    med = lambda k: statistics.median(r[k] for r in recs)  # noqa: E731
    return {
        "time_s": med("time_s"),
        "generated_per_s": med("samples_per_s"),
        "trained_tokens_per_s": med("trained_tokens_per_s"),
        "generate_s": med("generate_s"),
        "score_s": med("score_s"),
        "train_s": med("train_s"),
    }


def time_grpo(model_dir: str, prompts: list[str], args, workdir: str) -> list[float]:
    """Seconds per optimizer step of TRL's GRPOTrainer (one generation round each), after warm-up."""
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewardfilter.adapters.trl import LOCAL_RUN

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
        gradient_checkpointing=False,
        logging_steps=10_000,
        bf16=False,
        **LOCAL_RUN,
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    dataset = Dataset.from_dict({"prompt": prompts * (steps + 1)})
    stamps: list[float] = []
    phase = {"generate": [], "score": [], "tokens": []}  # appended once per step
    real_generate = model.generate

    def timed_generate(*a, **k):  # GRPO samples with the model's own generate on CPU
        t0 = time.perf_counter()
        out = real_generate(*a, **k)
        phase["generate"].append(time.perf_counter() - t0)
        prompt_len = (k.get("input_ids") if "input_ids" in k else a[0]).shape[1]
        resp = out[:, prompt_len:]
        is_eos = resp == tokenizer.eos_token_id
        ends = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, resp.shape[1])
        phase["tokens"].append(float(ends.sum()))  # GRPO trains every completion token
        return out

    model.generate = timed_generate

    def timed_reward(prompts, completions, **kw):
        t0 = time.perf_counter()
        out = reward_fn(prompts, completions, **kw)
        phase["score"].append(time.perf_counter() - t0)
        return out

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            stamps.append(time.perf_counter())

        def on_step_end(self, a, state, control, **kw):
            stamps.append(time.perf_counter())

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=timed_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Clock()],
    )
    trainer.train()
    per_step = [stamps[i + 1] - stamps[i] for i in range(0, len(stamps) - 1, 2)][args.warmup :]
    gen = phase["generate"][args.warmup : args.warmup + len(per_step)]
    score = phase["score"][args.warmup : args.warmup + len(per_step)]
    tokens = phase["tokens"][args.warmup : args.warmup + len(per_step)]
    med = statistics.median
    return {
        "time_s": med(per_step),
        "generated_per_s": med(batch / t for t in per_step),
        "trained_tokens_per_s": med(n / t for n, t in zip(tokens, per_step, strict=False)),
        "generate_s": med(gen),
        "score_s": med(score),
        "train_s": med(t - g - c for t, g, c in zip(per_step, gen, score, strict=False)),
    }


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
        rows: dict[str, dict] = {}
        for name, spec, realisation in (
            ("PF-PPO BR drop", "br", "drop"),
            ("PF-PPO BR resample", "br", "resample"),
            ("PF-PPO none (PPO-M)", "none", "drop"),
        ):
            rows[name] = time_pfppo(model_dir, prompts, args, spec, realisation)
        try:
            import trl

            rows[f"TRL {trl.__version__} GRPO"] = time_grpo(
                model_dir, prompts, args, os.path.join(tmp, "grpo")
            )
        except ImportError:
            print("TRL is not installed (pip install trl); no GRPOTrainer comparison.")
        except Exception as exc:  # noqa: BLE001 - report why TRL could not run here
            print(
                f"TRL's GRPOTrainer could not run offline on CPU here: {type(exc).__name__}: {exc}"
            )
        print(
            f"{'trainer':<22} {'s/iter':>7} {'generated samples/s':>20} {'trained tokens/s':>17}"
            f" {'generate s':>11} {'score s':>8} {'train s':>8}"
        )
        for name, r in rows.items():
            print(
                f"{name:<22} {r['time_s']:7.2f} {r['generated_per_s']:20.2f} "
                f"{r['trained_tokens_per_s']:17.1f} {r['generate_s']:11.2f} {r['score_s']:8.3f} "
                f"{r['train_s']:8.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
