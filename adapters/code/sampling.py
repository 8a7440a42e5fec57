"""Batched sampling of N completions per prompt, shared by the RM, the evaluator and PPO.

One function, :func:`generate`, turns a list of prompts into ``n`` sampled
completions each and returns both what the sandbox needs (decoded text) and
what PPO needs (token ids and masks), in one :class:`Samples` record. The
order is prompt-major: sample ``j`` of prompt ``i`` is row ``i * n + j``,
and ``Samples.group`` holds ``i`` for every row, which is the ``groups``
argument the core's filters expect.

Masks follow the convention of :mod:`rewardfilter.adapters.code.ppo`: the
prompt is kept apart (left-padded ``prompt_ids``), and ``response_mask`` is 1
on exactly the generated tokens the scored completion comes from: up to *and
including* the first EOS token, or, when a stop sequence cuts the decoded
text (the HumanEval post-processing), up to the token that completes the text
before the stop sequence. The sandbox and the reward model score that text,
so PPO trains on those tokens and credits the reward at the last of them. A
completion that hit ``max_new_tokens`` without an EOS is kept whole and
flagged in ``truncated``.

Prompts get the tokenizer's BOS token when the tokenizer adds one by default
(Llama, DeepSeek-Coder checkpoints: :func:`expects_bos`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rewardfilter.validation import check_scalar

__all__ = [
    "DEFAULT_STOP",
    "Samples",
    "encode_prompts",
    "expects_bos",
    "generate",
    "sample_and_score",
    "scored_token_count",
    "truncate_at_stop",
]

#: Stop sequences of the HumanEval harness: text after them is not part of the
#: function body (a new top-level statement begins).
DEFAULT_STOP: tuple[str, ...] = (
    "\ndef ",
    "\nclass ",
    "\nif __name__",
    "\nprint(",
    "\n#",
    "\nassert ",
)


def truncate_at_stop(text: str, stop: Sequence[str] = DEFAULT_STOP) -> str:
    """Cut ``text`` at the first stop sequence (the HumanEval post-processing)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def expects_bos(tokenizer) -> bool:
    """True when the tokenizer puts its BOS token first by default (the model was trained so)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, with BOS first when :func:`expects_bos` (never an EOS)."""
    bos = [tokenizer.bos_token_id] if expects_bos(tokenizer) else []
    return [bos + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def scored_token_count(tokenizer, ids: Sequence[int], text: str, cut: str) -> int:
    """How many of ``ids`` (decoding to ``text``) the scored text ``cut`` comes from.

    All of them when nothing was cut; otherwise the shortest prefix whose
    decoded text covers ``cut`` (at least one token).
    """
    ids = list(ids)
    if len(cut) >= len(text):
        return len(ids)
    lo, hi = 1, len(ids)
    while lo < hi:  # decoded length grows with the prefix: binary search
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) >= len(cut):
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class Samples:
    """N sampled completions per prompt, as text and as tensors.

    Attributes
    ----------
    prompts : list of str
        The distinct prompts, in input order.
    group : np.ndarray of int, shape (B,)
        Index into ``prompts`` of each row (the filters' ``groups``).
    completions : list of str
        Decoded completion per row (special tokens removed, cut at ``stop``).
    prompt_ids, prompt_mask : torch.LongTensor, shape (B, P)
        Left-padded prompt tokens and their attention mask.
    response_ids : torch.LongTensor, shape (B, R)
        Generated tokens, right-padded with the pad token.
    response_mask : torch.LongTensor, shape (B, R)
        1 on the generated tokens the scored completion comes from: up to and
        including the first EOS, or up to the token that completes the text a
        stop sequence cut.
    truncated : np.ndarray of bool, shape (B,)
        True where the sample hit ``max_new_tokens`` without an EOS.
    """

    prompts: list[str]
    group: np.ndarray
    completions: list[str]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.completions)

    @property
    def input_ids(self) -> torch.Tensor:
        """Prompt and response concatenated, shape ``(B, P + R)``."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """Attention mask of :attr:`input_ids` (padding on both sides is 0)."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    @property
    def row_prompts(self) -> list[str]:
        """The prompt of every row (length B), for the reward model's ``score``."""
        return [self.prompts[g] for g in self.group]


def _response_mask(resp: torch.Tensor, eos_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask up to and including the first EOS; also return rows without an EOS."""
    B, R = resp.shape
    if eos_id is None or R == 0:
        return torch.ones_like(resp), torch.ones(B, dtype=torch.bool)
    is_eos = resp == eos_id
    has_eos = is_eos.any(dim=1)
    first = torch.where(
        has_eos, is_eos.float().argmax(dim=1), torch.full((B,), R - 1, device=resp.device)
    )
    pos = torch.arange(R, device=resp.device).expand(B, R)
    return (pos <= first.unsqueeze(1)).long(), ~has_eos.cpu()


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    seed: int | None = None,
    stop: Sequence[str] = DEFAULT_STOP,
    progress: bool = False,
) -> Samples:
    """Sample ``n`` completions for each prompt, in batches of prompts.

    Parameters
    ----------
    model : transformers causal LM
        In eval mode for sampling (dropout off); the mode is restored after.
    tokenizer : tokenizer
        Must have a pad token; left padding is set for the duration.
    prompts : sequence of str
        Non-empty list of prompts.
    n : int
        Samples per prompt (PF-PPO's N; 5 in the paper).
    temperature : float
        0 means greedy decoding (then ``n`` must be 1, since every sample
        would be the same).
    top_p : float
        Nucleus sampling mass, in (0, 1].
    max_new_tokens : int
        Length cap of a completion.
    batch_size : int
        Prompts per ``generate`` call (each expanded to ``n`` rows).
    seed : int, optional
        Seeds torch's global RNG before sampling, for reproducible runs.
    stop : sequence of str
        Stop sequences applied to the decoded text only (the token mask ends
        at EOS); an SFT model trained to emit EOS never needs them.
    progress : bool
        Show a tqdm bar over batches.

    Returns
    -------
    Samples
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError(
            "The 'prompts' parameter of generate must be a non-empty list of strings; got []."
        )
    for name, value in (("n", n), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        check_scalar(value, name, "generate", "int", min_val=1)
    if not temperature >= 0:
        raise ValueError(
            f"The 'temperature' parameter of generate must be a float >= 0; got {temperature!r}."
        )
    if not 0 < top_p <= 1:
        raise ValueError(
            f"The 'top_p' parameter of generate must be a float in (0, 1]; got {top_p!r}."
        )
    greedy = temperature == 0
    if greedy and n > 1:
        raise ValueError(
            f"The 'n' parameter of generate must be 1 with temperature=0 (greedy); got {n}."
        )
    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer needs a pad token (load it with models.load_tokenizer).")
    if seed is not None:
        torch.manual_seed(seed)

    device = next(model.parameters()).device
    was_training = model.training
    old_side = tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sampling", unit="batch", leave=False)
    try:
        for start in starts:
            batch = prompts[start : start + batch_size]
            enc = tokenizer.pad(
                {"input_ids": encode_prompts(tokenizer, batch)}, return_tensors="pt"
            ).to(device)
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id)
            if greedy:
                kwargs.update(do_sample=False)
            else:
                kwargs.update(
                    do_sample=True,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=0,
                    num_return_sequences=n,
                )
            out = model.generate(**enc, **kwargs)
            P = enc["input_ids"].shape[1]
            reps = 1 if greedy else n
            chunks.append(
                (
                    enc["input_ids"].repeat_interleave(reps, dim=0),
                    enc["attention_mask"].repeat_interleave(reps, dim=0),
                    out[:, P:],
                )
            )
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)

    P = max(c[0].shape[1] for c in chunks)
    R = max(c[2].shape[1] for c in chunks)

    def left_pad(x: torch.Tensor, width: int, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

    def right_pad(x: torch.Tensor, width: int, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    prompt_ids = torch.cat([left_pad(c[0], P, pad_id) for c in chunks])
    prompt_mask = torch.cat([left_pad(c[1], P, 0) for c in chunks])
    response_ids = torch.cat([right_pad(c[2], R, pad_id) for c in chunks])
    response_mask, truncated = _response_mask(response_ids, eos_id)
    response_ids = torch.where(
        response_mask.bool(), response_ids, torch.full_like(response_ids, pad_id)
    )
    rows = [row[m.bool()].tolist() for row, m in zip(response_ids, response_mask, strict=True)]
    texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
    completions = [truncate_at_stop(t, stop) for t in texts]
    for r, (ids, text, cut) in enumerate(zip(rows, texts, completions, strict=True)):
        if len(cut) < len(text):  # a stop sequence cut the text: train on the scored tokens only
            response_mask[r, scored_token_count(tokenizer, ids, text, cut) :] = 0
    response_ids = torch.where(
        response_mask.bool(), response_ids, torch.full_like(response_ids, pad_id)
    )
    reps = 1 if greedy else n
    return Samples(
        prompts=prompts,
        group=np.repeat(np.arange(len(prompts)), reps),
        completions=completions,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        truncated=truncated.numpy(),
    )


def sample_and_score(
    model, tokenizer, tasks: Sequence, *, timeout: float = 3.0, **sampling: Any
) -> tuple[Samples, list]:
    """Sample completions for each task and execute each task's unit tests on them.

    ``sampling`` are the keyword arguments of :func:`generate` (``n``,
    ``temperature``, ``top_p``, ``max_new_tokens``, ``batch_size``, ``seed``,
    ``progress``); ``timeout`` is the sandbox's seconds per program.

    The one sample-and-score path of evaluation and of the reward model's
    data (PPO samples with :func:`generate` too and scores with its
    ``true_score``, the sandbox by default), so that the text scored is the
    same everywhere. Returns the samples and one sandbox ``ExecResult`` per
    row (prompt-major: row ``i * n + j`` is sample ``j`` of task ``i``).
    """
    from .sandbox import score_completions

    tasks = list(tasks)
    samples = generate(model, tokenizer, [t.prompt for t in tasks], **sampling)
    row_tasks = [tasks[g] for g in samples.group]
    return samples, score_completions(row_tasks, samples.completions, timeout=timeout)
