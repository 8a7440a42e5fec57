"""Experience: the sampled responses of an iteration and the per-token tensors PPO trains on.

:class:`Rollout` holds what sampling produced (token-aligned for the forward
passes); :class:`Experience` holds what is computed from it once, with no
gradient: old log-probs, reference log-probs, values, and the GAE inputs and
outputs. The forward helpers here are shared by experience making and the
update, so both read the log-probs of exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "Experience",
    "expected_weights",
    "Rollout",
    "position_ids",
    "sandbox_true_score",
    "token_logprobs",
    "token_values",
]


def sandbox_true_score(
    tasks: Sequence[Any], completions: Sequence[str], **kwargs: Any
) -> np.ndarray:
    """True score of each completion: the fraction of its task's unit tests it passes.

    A graded score (rather than pass/fail) is what PF-PPO's R² is measured
    against; a program that fails to run at all scores 0.
    """
    from rewardfilter.adapters.code.sandbox import score_completions

    results = score_completions(list(tasks), list(completions), **kwargs)
    out = np.empty(len(results))
    for i, res in enumerate(results):
        out[i] = res.score
    return out


@dataclass
class Rollout:
    """Sampled responses of one iteration, token-aligned for the forward passes.

    ``input_ids`` is ``[left-padded prompt | right-padded response]``; the
    prompt occupies the first ``prompt_len`` columns.
    """

    tasks: list[Any]  # one per sample (a task repeated N times)
    groups: np.ndarray  # prompt index of each sample within the iteration
    input_ids: torch.Tensor  # (n, prompt_len + T)
    attention_mask: torch.Tensor  # (n, prompt_len + T)
    response_mask: torch.Tensor  # (n, T) float
    prompt_len: int
    completions: list[str]

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len :]


@dataclass
class Experience:
    """What PPO trains on: per-token tensors of the kept samples, computed once with no grad."""

    index: torch.Tensor  # (m,) sample index in the rollout
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor  # (m, T) response mask
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    kl: torch.Tensor
    loss_weights: torch.Tensor | None  # (m,) or None (all 1)
    sample_probs: np.ndarray | None = None  # (m,) draw probabilities, or None (a permutation)
    placeholder: bool = False  # one masked-out row standing in for "no kept sample here"


def position_ids(attn: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them.

    ``generate`` derives positions this way; a plain forward would count the
    pad columns, and the log-probs of training would not be those of sampling.
    """
    return (attn.long().cumsum(-1) - 1).clamp_min(0)


def token_logprobs(
    model: torch.nn.Module,
    ids: torch.Tensor,
    attn: torch.Tensor,
    prompt_len: int,
    temperature: float,
) -> torch.Tensor:
    """Log-prob of each response token under ``model`` (temperature-scaled logits)."""
    logits = model(
        input_ids=ids, attention_mask=attn, position_ids=position_ids(attn), use_cache=False
    ).logits
    logits = logits[:, prompt_len - 1 : -1].float() / temperature
    return (
        torch.log_softmax(logits, dim=-1).gather(-1, ids[:, prompt_len:].unsqueeze(-1)).squeeze(-1)
    )


def token_values(
    critic: torch.nn.Module,
    ids: torch.Tensor,
    attn: torch.Tensor,
    prompt_len: int,
    takes_positions: bool = True,
) -> torch.Tensor:
    """The critic's value of the state before each response token."""
    kwargs = {"position_ids": position_ids(attn)} if takes_positions else {}
    out = critic(input_ids=ids, attention_mask=attn, **kwargs)
    if not isinstance(out, torch.Tensor):
        out = (
            out.values
            if getattr(out, "values", None) is not None and not callable(out.values)
            else out.logits
        )
    if out.dim() == 3:
        out = out.squeeze(-1)
    return out[:, prompt_len - 1 : -1]


def prompt_len_of(exp: Experience) -> int:
    """Prompt columns of an experience's ``input_ids``."""
    return exp.input_ids.shape[1] - exp.mask.shape[1]


def expected_weights(
    filt: Any,
    rewards: np.ndarray,
    groups: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    ensemble: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    draws: int = 64,
) -> np.ndarray:
    """Each sample's filter weight averaged over the filter's randomness.

    This is what the ``resample`` realisation draws in proportion to: for BR
    in a group of N the best gets 1 and every other 1/(N-1) (so with N = 5
    the draw probabilities within the group are 0.5 and 0.125); for
    ``random:K`` every sample gets K/N. Deterministic filters return their
    weights (ties broken once with ``rng``); other random filters are
    averaged over ``draws`` draws. ``weights`` is one realisation already
    drawn (it is drawn here if None).
    """
    import rewardfilter as rf

    rng = rng if rng is not None else np.random.default_rng(0)
    inner = filt.resolved  # adaptive: the filter it chose
    if weights is None:
        weights = filt.weights(rewards, groups, rng=rng, ensemble=ensemble)
    weights = np.asarray(weights, dtype=float)
    groups = np.asarray(groups)
    _, inv, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    size = sizes[inv].astype(float)
    if type(inner).__name__ == "BestRandom":
        best = rf.make_filter("bon").weights(rewards, groups, rng=rng) > 0
        return np.where(best, 1.0, np.where(size > 1, 1.0 / np.maximum(size - 1.0, 1.0), 0.0))
    if type(inner).__name__ == "RandomK":
        return np.minimum(inner.k / size, 1.0)
    if type(inner).__name__ in (
        "NoFilter",
        "BestOfN",
        "BestWorst",
        "TopK",
        "Threshold",
        "RankWeights",
        "Uncertainty",
    ):
        return weights
    total = weights.copy()
    for _ in range(draws - 1):
        total = total + filt.weights(rewards, groups, rng=rng, ensemble=ensemble)
    return total / draws
