"""Step time of PFGRPOTrainer against TRL's GRPOTrainer on the same tiny model and batch.

Three trainers, same model, data, seed and config: TRL's ``GRPOTrainer``,
``PFGRPOTrainer(filter="none")`` (the cost of the hooks alone; target: a ratio
of at most 1.03) and ``PFGRPOTrainer(filter="br")`` (2 of every 4 completions
kept: the filtered ones skip the training forward/backward pass, generation is
unchanged). Runs are interleaved: every repetition builds the three trainers
in a rotating order and times ``--steps`` optimizer steps of each after one
warm-up step; a repetition's ratio is the median step time of a trainer over
that of GRPOTrainer in the same repetition. Printed, for CPU time (this
process's, less sensitive to other load on a shared machine; torch runs one
thread) and wall time: the median ratio over repetitions and its spread
(min-max). On a busy machine the spread of these ratios is wider than the
overhead itself, so the script also measures the work the filtration adds
directly: the CPU time spent inside PFGRPOTrainer's three overrides minus the
time spent inside the GRPOTrainer methods they call, as a share of a step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

#: The three GRPOTrainer methods PFGRPOTrainer overrides; the time inside an override minus
#: the time inside the GRPOTrainer method it calls is the work the filtration adds.
HOOKS = ("_calculate_rewards", "_generate_and_score_completions", "compute_loss")


class HookTimer:
    """CPU seconds inside PFGRPOTrainer's overrides ("outer") and GRPOTrainer's ("inner")."""

    def __init__(self, pf_cls, base_cls):
        self.seconds = {"outer": 0.0, "inner": 0.0}
        for cls, key in ((pf_cls, "outer"), (base_cls, "inner")):
            for name in HOOKS:
                setattr(cls, name, self._timed(getattr(cls, name), key))

    def _timed(self, fn, key):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.process_time() - start

        return wrapper

    def reset(self) -> None:
        self.seconds = {"outer": 0.0, "inner": 0.0}

    @property
    def added(self) -> float:
        return self.seconds["outer"] - self.seconds["inner"]


def reward_fn(completions, **kwargs):
    return [float(sum(map(ord, c)) % 97) for c in completions]


def time_steps(
    trainer_cls, config_cls, model_dir, args, workdir, hooks=None, **extra
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per optimizer step (one generation round each), warm-up excluded.

    ``hooks`` (a :class:`HookTimer`) is reset when the first timed step begins.
    """
    import transformers
    from datasets import Dataset

    from rewardfilter.adapters.trl import LOCAL_RUN

    prompts = [f"def f{i}(x):\n    return x +" for i in range(args.prompts)]
    config = config_cls(
        output_dir=workdir,
        per_device_train_batch_size=args.prompts * args.n,
        num_generations=args.n,
        max_completion_length=args.max_new_tokens,
        max_steps=args.warmup + args.steps,
        learning_rate=1e-5,
        logging_steps=10_000,
        **LOCAL_RUN,
        **extra,
    )
    stamps: list[tuple[float, float]] = []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if hooks is not None and len(stamps) == 2 * args.warmup:
                hooks.reset()
            stamps.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, a, state, control, **kw):
            stamps.append((time.perf_counter(), time.process_time()))

    trainer = trainer_cls(
        model=model_dir,
        reward_funcs=reward_fn,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": prompts * (args.warmup + args.steps + 1)}),
        processing_class=transformers.AutoTokenizer.from_pretrained(model_dir, padding_side="left"),
        callbacks=[Clock()],
    )
    trainer.remove_callback(transformers.PrinterCallback)  # no end-of-training log line
    trainer.train()
    pairs = [(stamps[i], stamps[i + 1]) for i in range(0, len(stamps) - 1, 2)][args.warmup :]
    return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--n", type=int, default=4, help="generations per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--steps", type=int, default=4, help="timed steps per trainer per repetition"
    )
    parser.add_argument("--reps", type=int, default=9, help="interleaved repetitions")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        import torch
        import transformers
        import trl
        from trl import GRPOConfig, GRPOTrainer

        from rewardfilter.adapters.code.tiny import build_random_tiny
        from rewardfilter.adapters.trl import PFGRPOConfig, PFGRPOTrainer
    except ImportError as exc:
        print(f"needs the [trl] extra (pip install 'rewardfilter[trl]'): {exc}")
        return 0
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    runs = {
        "GRPOTrainer": (GRPOTrainer, GRPOConfig, {}),
        "PFGRPOTrainer(none)": (PFGRPOTrainer, PFGRPOConfig, {"filter": "none"}),
        "PFGRPOTrainer(br)": (PFGRPOTrainer, PFGRPOConfig, {"filter": "br"}),
    }
    names = list(runs)
    hooks = HookTimer(PFGRPOTrainer, GRPOTrainer)
    added: dict[str, list[float]] = {name: [] for name in names[1:]}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(
            build_random_tiny(
                os.path.join(tmp, "model"), hidden_size=args.hidden, num_layers=args.layers
            )
        )
        print(
            f"TRL {trl.__version__}; tiny Llama (hidden {args.hidden}, {args.layers} layers) built "
            f"in-process; {args.prompts} prompts x {args.n} generations, up to "
            f"{args.max_new_tokens} new tokens; {args.threads} thread(s); {args.reps} interleaved "
            f"repetitions of {args.warmup} warm-up + {args.steps} timed steps per trainer"
        )
        wall: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                trainer_cls, config_cls, extra = runs[name]
                hooks.reset()
                w, c = time_steps(
                    trainer_cls,
                    config_cls,
                    model_dir,
                    args,
                    os.path.join(tmp, name),
                    hooks,
                    **extra,
                )
                wall[name].append(statistics.median(w))
                cpu[name].append(statistics.median(c))
                if name in added:
                    added[name].append(hooks.added / args.steps / statistics.median(c))
            print(
                f"  rep {rep + 1}: "
                + ", ".join(
                    f"{n} {wall[n][-1] * 1000:.0f} ms ({cpu[n][-1] * 1000:.0f} ms CPU)"
                    for n in names
                ),
                flush=True,
            )
    for label, table in (("CPU time", cpu), ("wall time", wall)):
        base = table["GRPOTrainer"]
        print(f"{label}: GRPOTrainer median step {statistics.median(base) * 1000:.0f} ms")
        for name in names[1:]:
            ratios = [a / b for a, b in zip(table[name], base, strict=True)]
            print(
                f"  ratio {name} / GRPOTrainer: median {statistics.median(ratios):.3f} "
                f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} repetitions)"
            )
    print("work the filtration adds (CPU time in the overrides minus in GRPOTrainer's methods):")
    for name, fractions in added.items():
        print(
            f"  {name}: median {statistics.median(fractions) * 100:.2f}% of a step "
            f"(min {min(fractions) * 100:.2f}%, max {max(fractions) * 100:.2f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
