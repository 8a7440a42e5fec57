"""The pure math of PPO for language models: per-token rewards, GAE, clipped losses.

Everything here is a function of tensors and a mask, with no model, tokenizer
or optimizer in sight, so that each piece can be checked by hand (see
``tests/test_code_ppo.py``). Shapes follow one convention:

* ``(B, T)`` tensors hold one value per *response* token of B samples; the
  prompt is never part of them (it is sliced off before), so a response token
  at index t is the (t+1)-th generated token.
* ``mask`` is a ``(B, T)`` float/bool tensor, 1 on real response tokens and 0
  on padding after the end of a response. Every reduction here is a masked
  one, so the value of a padded position can never change a result.
* ``weights`` (optional) is a ``(B,)`` tensor of per-sample loss weights, the
  "reweight" form of a rank filter; ``None`` means every sample weighs 1.
* ``aggregation`` is ``"token_mean"`` (every token of the minibatch counts
  once: TRL) or ``"seq_mean"`` (each response's token mean, then the mean over
  responses: the PF-PPO authors' OpenRLHF). ``normaliser`` (optional)
  replaces the denominator of that mean: the data-parallel trainer passes the
  token (or response) count of the *global* minibatch, so that the losses of
  several processes add up to the loss of one process holding all the data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import last_token_index  # one copy, shared with the scalar-head models

__all__ = [
    "aggregate",
    "approx_kl",
    "gae",
    "kl_penalised_rewards",
    "last_token_index",
    "masked_mean",
    "masked_whiten",
    "policy_loss",
    "value_loss",
]


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (token-level mean).

    Token-level (every kept token counts once) rather than sequence-level
    averaging is what TRL's PPO and OpenRLHF use; ``weights`` scales each
    sample's tokens, which is how a non-binary rank filter enters a loss.
    Returns 0 when nothing is masked in (an empty minibatch must not be NaN).
    """
    m = mask.to(x.dtype)
    if weights is not None:
        m = m * weights.to(x.dtype).unsqueeze(-1)
    total = m.sum()
    # an empty selection gives 0 (still attached to the graph), never NaN
    return (x * m).sum() / torch.where(total > 0, total, torch.ones_like(total))


def aggregate(
    x: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor | None = None,
    aggregation: str = "token_mean",
    normaliser: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Reduce per-token values to one number: token mean or per-sequence mean then batch mean.

    With ``normaliser`` None the denominator is this batch's (weighted) token
    count (``token_mean``) or count of non-empty responses (``seq_mean``);
    otherwise it is ``normaliser``. An empty selection gives 0, never NaN.
    """
    if aggregation == "token_mean":
        m = mask.to(x.dtype)
        if weights is not None:
            m = m * weights.to(x.dtype).unsqueeze(-1)
        num, den = (x * m).sum(), m.sum()
    elif aggregation == "seq_mean":
        m = mask.to(x.dtype)
        count = m.sum(-1)
        per_seq = (x * m).sum(-1) / count.clamp_min(1.0)
        w = (count > 0).to(x.dtype)
        if weights is not None:
            w = w * weights.to(x.dtype)
        num, den = (per_seq * w).sum(), w.sum()
    else:
        raise ValueError(
            f"The 'aggregation' parameter of aggregate must be 'token_mean' or 'seq_mean'; got {aggregation!r}."
        )
    if normaliser is not None:
        den = torch.as_tensor(normaliser, dtype=x.dtype, device=x.device)
    return num / torch.where(den > 0, den, torch.ones_like(den))


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Standardise ``x`` with the mean and (unbiased) std of its masked-in entries.

    Whitened advantages keep the policy step size independent of the reward
    scale. Masked-out entries are returned as 0 so they cannot leak anywhere.
    ``all_reduce`` (a sum over processes) makes the statistics global: each
    process passes its own tokens and all get the mean and std of all tokens.
    """
    m = mask.to(x.dtype)
    reduce = all_reduce or (lambda t: t)
    n, total = reduce(torch.stack([m.sum(), (x * m).sum()]))
    mean = total / n.clamp_min(1.0)
    var = reduce((((x - mean) * m) ** 2).sum()) / (n - 1).clamp_min(1.0)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * m


def kl_penalised_rewards(
    sequence_rewards: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: ``-kl_coef * (logp - logp_ref)`` plus the sequence's reward at its last token.

    This is the RLHF reward of Ziegler et al. (and PF-PPO): the KL penalty to
    the frozen reference keeps the policy close to the SFT model where the
    reward model was trained, and the sequence's reward arrives only when the
    response is complete. The KL estimate per token is the simple
    ``log pi(a|s) - log pi_ref(a|s)`` of the sampled token (unbiased, so its
    sum over tokens estimates the sequence KL).

    Returns
    -------
    rewards : (B, T) tensor, 0 on masked positions
    kl : (B, T) tensor of per-token KL estimates, 0 on masked positions
    """
    m = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * m
    rewards = -kl_coef * kl
    last = last_token_index(mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    has_tokens = last >= 0
    rewards = rewards.clone()
    rewards[rows[has_tokens], last[has_tokens]] += sequence_rewards[has_tokens].to(rewards.dtype)
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the response tokens (Schulman et al. 2016).

    The episode is one response: it ends after its last masked-in token, so
    the value after it is 0 (no bootstrap), and padded positions neither
    contribute reward nor value. With ``gamma = 1`` (PF-PPO's default) a
    token's return is the sum of all rewards from it to the end.

    Returns
    -------
    advantages : (B, T) tensor, 0 on masked positions
    returns : (B, T) tensor, the value targets ``advantages + values``, 0 on masked positions
    """
    m = mask.to(values.dtype)
    values = values * m
    rewards = rewards * m
    T = rewards.shape[-1]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(T)):
        # next_value / next_adv are already 0 past the end of a response (their mask was 0)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = (delta + gamma * lam * next_adv) * m[:, t]
        advantages[:, t] = adv_t
        next_adv, next_value = adv_t, values[:, t]
    returns = (advantages + values) * m
    return advantages, returns


# policy_loss and value_loss deliberately take the same arguments in the same order (the
# new and old estimates, the target, the mask, the clip, weights, aggregation, normaliser):
# the update calls them side by side.
def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    weights: torch.Tensor | None = None,
    aggregation: str = "token_mean",
    normaliser: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, to be minimised: ``-min(r A, clip(r, 1-e, 1+e) A)``.

    The clip keeps each update within a trust region around the policy that
    sampled the data, so several epochs over the same batch stay safe.

    Returns the loss and diagnostics (clip fraction, approximate KL to the
    sampling policy), both as masked means.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = aggregate(torch.maximum(unclipped, clipped), mask, weights, aggregation, normaliser)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).to(logprobs.dtype), mask, weights),
            "approx_kl": masked_mean(approx_kl(logprobs, old_logprobs), mask, weights),
        }
    return loss, stats


# The same argument list as policy_loss, deliberately (see there).
def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    weights: torch.Tensor | None = None,
    aggregation: str = "token_mean",
    normaliser: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ``0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2)``.

    The clip mirrors the policy's: the critic may not move a value by more
    than ``clip`` from the value it had when the batch was collected, which
    keeps a badly scaled first reward from wrecking the critic.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * aggregate(
        torch.maximum(unclipped, clipped), mask, weights, aggregation, normaliser
    )
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((clipped > unclipped).to(values.dtype), mask, weights)}
    return loss, stats


def approx_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token ``k3`` KL estimate ``(r - 1) - log r`` with ``r = p_ref / p`` (Schulman's blog).

    Non-negative and low-variance; used for diagnostics only (the reward's
    penalty uses the unbiased ``log p - log p_ref``).
    """
    log_ratio = ref_logprobs - logprobs
    return torch.expm1(log_ratio) - log_ratio
