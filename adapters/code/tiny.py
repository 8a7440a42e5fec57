"""``rewardfilter code build-tiny``: a small code LM built from scratch on a CPU.

PF-PPO needs a starting policy that already solves *part* of its tasks: a
policy that never passes a test gives every sample the same true score (no
signal for a reward model, nothing for a filter to rank), and one that always
passes leaves nothing to learn. HumanEval-capable models do not run on a
laptop CPU, so this module builds the smallest thing that has the right
shape, in minutes, with no download:

1. a corpus from the synthetic curriculum's *train* split (prompt +
   canonical body, and the ``check`` functions as extra Python text);
2. a byte-level BPE tokenizer trained on that corpus with ``tokenizers``,
   digits split one per token so that copying a number from the docstring
   into the body is a per-digit copy the model can generalise to unseen
   numbers (held-out tasks differ from training ones mostly by their
   constants);
3. a randomly initialised causal LM from a ``transformers`` config (Llama
   or GPT-2 architecture, about a million parameters by default);
4. *pretraining* (next-token loss on every token of the corpus), then
   *supervised fine-tuning* (loss on the completion and its EOS only, the
   prompt is context), which teaches it to stop after the body;
5. ``save_pretrained`` of model and tokenizer, so every other part of the
   pipeline loads it with ``AutoModelForCausalLM`` / ``AutoTokenizer``
   exactly as it would a hub model.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rewardfilter.validation import check_scalar

__all__ = ["TinyConfig", "build_tiny", "build_tokenizer", "make_tiny_model", "train_causal_lm"]

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


@dataclass
class TinyConfig:
    """Everything that defines a tiny code model; saved as ``tiny_config.json`` beside it."""

    max_per_family: int = field(
        default=400,
        metadata={
            "help": "Training tasks per curriculum family (capped by the family's train pool)."
        },
    )
    families: list[str] | None = field(
        default=None, metadata={"help": "Curriculum families to train on (default: all)."}
    )
    vocab_size: int = field(
        default=512, metadata={"help": "BPE vocabulary size, special tokens included."}
    )
    architecture: str = field(
        default="llama", metadata={"help": "Model family: 'llama' or 'gpt2'."}
    )
    hidden_size: int = field(default=128, metadata={"help": "Width of the transformer."})
    num_layers: int = field(default=4, metadata={"help": "Number of transformer blocks."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads per block."})
    intermediate_size: int = field(
        default=384, metadata={"help": "Width of the MLP inside each block."}
    )
    max_length: int = field(
        default=160, metadata={"help": "Longest sequence (tokens); longer examples are dropped."}
    )
    pretrain_steps: int = field(
        default=150,
        metadata={
            "help": "Optimiser steps of next-token pretraining on the corpus. The defaults stop early on purpose: a longer run (300 + 900 steps) solves every held-out task, leaving PF-PPO nothing to learn."
        },
    )
    sft_steps: int = field(
        default=350, metadata={"help": "Optimiser steps of SFT (loss on completions only)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Sequences per optimiser step."})
    learning_rate: float = field(
        default=2e-3, metadata={"help": "Peak AdamW learning rate (cosine decay, linear warm-up)."}
    )
    sft_learning_rate: float = field(
        default=1e-3, metadata={"help": "Peak learning rate of the SFT stage."}
    )
    warmup_steps: int = field(default=50, metadata={"help": "Linear warm-up steps of each stage."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    eval_per_family: int = field(
        default=20,
        metadata={"help": "Held-out tasks per family for the greedy pass@1 report (0 skips it)."},
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the task draw, initialisation and batches."}
    )
    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads (0 keeps torch's default); 1 is fastest on a shared or busy CPU, where extra threads spin."
        },
    )

    def __post_init__(self) -> None:
        from .curriculum import FAMILIES

        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_length",
            "batch_size",
            "max_per_family",
        ):
            check_scalar(getattr(self, name), name, "TinyConfig", "int", min_val=1)
        for name in ("pretrain_steps", "sft_steps", "warmup_steps", "eval_per_family", "threads"):
            check_scalar(getattr(self, name), name, "TinyConfig", "int", min_val=0)
        if self.architecture not in ("llama", "gpt2"):
            raise ValueError(
                f"The 'architecture' parameter of TinyConfig must be 'llama' or 'gpt2'; got {self.architecture!r}."
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"The 'hidden_size' parameter of TinyConfig must be a multiple of num_heads={self.num_heads}; got {self.hidden_size}."
            )
        if self.vocab_size < 300:
            raise ValueError(
                f"The 'vocab_size' parameter of TinyConfig must be >= 300 (256 bytes + specials + merges); got {self.vocab_size}."
            )
        if self.families is not None:
            bad = [f for f in self.families if f not in FAMILIES]
            if bad or not self.families:
                raise ValueError(
                    f"The 'families' parameter of TinyConfig must be a non-empty subset of {FAMILIES}; got {self.families!r}."
                )


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


def training_tasks(config: TinyConfig):
    """The curriculum's train-split tasks the tiny model learns from."""
    from .curriculum import available, make_curriculum

    caps = available("train", config.families)
    tasks = []
    for family, cap in caps.items():
        tasks.extend(
            make_curriculum(
                "train", min(cap, config.max_per_family), seed=config.seed, families=[family]
            )
        )
    return tasks


def build_tokenizer(texts: list[str], vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for ``transformers``.

    Byte-level means any Python source (HumanEval included) is encodable,
    with no unknown token; single-digit pre-tokenization keeps numbers
    compositional. No BOS/EOS is added automatically: callers append EOS to
    completions themselves, so prompts tokenize identically at training and
    sampling time.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, model_max_length=4096
    )


def make_tiny_model(config: TinyConfig, tokenizer):
    """A randomly initialised causal LM of the configured shape."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if config.architecture == "llama":
        cfg = LlamaConfig(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_heads,
            max_position_embeddings=2048,  # room for HumanEval prompts at evaluation
            **common,
        )
        return LlamaForCausalLM(cfg)
    cfg = GPT2Config(
        n_embd=config.hidden_size,
        n_layer=config.num_layers,
        n_head=config.num_heads,
        n_inner=config.intermediate_size,
        n_positions=1024,  # learned positions: HumanEval prompts must fit
        **common,
    )
    return GPT2LMHeadModel(cfg)


def _encode_examples(
    tokenizer, pairs: list[tuple[str, str]], max_length: int, completion_only: bool
):
    """Token ids and loss masks of (context, target) pairs; EOS ends every target."""
    out = []
    for context, target in pairs:
        c = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
        t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = c + t
        if len(ids) > max_length:
            continue
        mask = ([0] * len(c) if completion_only else [1] * len(c)) + [1] * len(t)
        out.append((ids, mask))
    return out


def train_causal_lm(
    model,
    examples: list[tuple[list[int], list[int]]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    weight_decay: float,
    pad_id: int,
    seed: int,
    desc: str = "train",
) -> list[float]:
    """Next-token training with a per-token loss mask (1 = predict this token).

    Batches are drawn uniformly with replacement-free epochs and padded on
    the right to their longest member; the loss mask makes the pretraining
    (all tokens) and SFT (completion tokens) stages one function.

    Returns
    -------
    list of float
        The loss of every step, for the caller's report.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from tqdm.auto import tqdm
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    if steps == 0:
        return []
    if not examples:
        raise ValueError("train_causal_lm needs at least one example; the corpus is empty.")
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))

    # linear warm-up from 0 (step k at k/W of the peak), then cosine decay to 10% of it:
    # transformers' "cosine_with_min_lr" (the former own schedule ran step k at (k+1)/W)
    sched = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup_steps, steps, min_lr_rate=0.1)
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    bar = tqdm(range(steps), desc=desc, unit="step")
    for _ in bar:
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order.extend(fresh)
        idx, order = order[:batch_size], order[batch_size:]
        batch = [examples[i] for i in idx]
        ids, attn, lmask = (
            pad_sequence(rows, batch_first=True, padding_value=value)
            for rows, value in (
                ([torch.tensor(x, dtype=torch.long) for x, _ in batch], pad_id),
                ([torch.ones(len(x), dtype=torch.long) for x, _ in batch], 0),
                ([torch.tensor(m, dtype=torch.float) for _, m in batch], 0.0),
            )
        )
        ids, attn, lmask = ids.to(device), attn.to(device), lmask.to(device)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        target, m = ids[:, 1:], lmask[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
        )
        loss = (nll * m.reshape(-1)).sum() / m.sum().clamp_min(1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return losses


# ----------------------------------------------------------------------------
# the whole build
# ----------------------------------------------------------------------------


def build_tiny(
    out: str | os.PathLike, config: TinyConfig | None = None, *, overwrite: bool = False
) -> dict:
    """Build, train and save a tiny code model under ``out``.

    Parameters
    ----------
    out : path-like
        Output directory; receives the model, the tokenizer,
        ``tiny_config.json`` and ``build_report.json``.
    config : TinyConfig, optional
        Defaults build a ~1M-parameter Llama in a few minutes on 2 cores.
    overwrite : bool
        Allow writing into a non-empty directory.

    Returns
    -------
    dict
        The build report: parameter count, corpus size, final losses, time
        per stage and (if ``eval_per_family > 0``) greedy held-out pass@1 per
        family.
    """
    import torch

    config = config or TinyConfig()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"The output directory {str(out)!r} is not empty; pass overwrite=True (--overwrite)."
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    report: dict = {"config": asdict(config)}

    tasks = training_tasks(config)
    random.Random(config.seed).shuffle(tasks)
    full = [t.prompt + t.canonical_solution for t in tasks]
    checks = [t.test for t in tasks]
    tokenizer = build_tokenizer(full + checks, config.vocab_size)
    model = make_tiny_model(config, tokenizer)
    report["n_params"] = int(sum(p.numel() for p in model.parameters()))
    report["n_train_tasks"] = len(tasks)
    print(
        f"tiny model: {report['n_params'] / 1e6:.2f}M parameters, {len(tasks)} training tasks, vocab {len(tokenizer)}"
    )

    pre = _encode_examples(
        tokenizer, [("", x) for x in full + checks], config.max_length, completion_only=False
    )
    sft = _encode_examples(
        tokenizer,
        [(t.prompt, t.canonical_solution) for t in tasks],
        config.max_length,
        completion_only=True,
    )
    common = dict(
        batch_size=config.batch_size,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        pad_id=tokenizer.pad_token_id,
    )
    t1 = time.perf_counter()
    pre_losses = train_causal_lm(
        model,
        pre,
        steps=config.pretrain_steps,
        lr=config.learning_rate,
        seed=config.seed,
        desc="pretrain",
        **common,
    )
    t2 = time.perf_counter()
    sft_losses = train_causal_lm(
        model,
        sft,
        steps=config.sft_steps,
        lr=config.sft_learning_rate,
        seed=config.seed + 1,
        desc="sft",
        **common,
    )
    t3 = time.perf_counter()
    report.update(
        pretrain_loss=float(np.mean(pre_losses[-20:])) if pre_losses else None,
        sft_loss=float(np.mean(sft_losses[-20:])) if sft_losses else None,
        seconds_data=t1 - t0,
        seconds_pretrain=t2 - t1,
        seconds_sft=t3 - t2,
    )

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "tiny_config.json").write_text(json.dumps(asdict(config), indent=2))

    if config.eval_per_family:
        from .curriculum import make_curriculum
        from .evaluate import evaluate

        held = make_curriculum(
            "heldout", config.eval_per_family, seed=config.seed, families=config.families
        )
        res = evaluate(out, held, n_samples=1, k=(1,), temperature=0.0, device="cpu")
        report["heldout_greedy_pass@1"] = res["pass@1"]
        report["heldout_greedy_pass@1_per_family"] = res["per_family"]
    report["seconds_total"] = time.perf_counter() - t0
    (out / "build_report.json").write_text(json.dumps(report, indent=2))
    return report


def build_random_tiny(
    out: str | os.PathLike,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 300,
    architecture: str = "llama",
    seed: int = 0,
    n_per_family: int = 5,
) -> Path:
    """Save an *untrained* micro model + tokenizer in seconds (for tests and smoke runs).

    Same files and loading path as :func:`build_tiny`, so a test exercises
    the real pipeline, just without the minutes of training.
    """
    from .curriculum import make_curriculum

    config = TinyConfig(
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=2 * hidden_size,
        vocab_size=vocab_size,
        architecture=architecture,
        seed=seed,
        eval_per_family=0,
    )
    tasks = make_curriculum("train", n_per_family, seed=seed)
    tokenizer = build_tokenizer(
        [t.prompt + t.canonical_solution + t.test for t in tasks], vocab_size
    )
    model = make_tiny_model(config, tokenizer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "tiny_config.json").write_text(json.dumps(asdict(config), indent=2))
    return out
