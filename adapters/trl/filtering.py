"""Torch-side pieces of PF-GRPO that do not need a trainer: one job each.

* :func:`ranking_reward` builds the reward a filter ranks (the weighted sum
  of the reward functions, as TRL logs it);
* :func:`kept_advantages` recomputes GRPO's group-normalised advantages over
  the kept completions only (``filter_advantages="kept"``);
* :func:`select_rows` takes the kept completions out of a TRL batch.
"""

from __future__ import annotations

import numpy as np
import torch
from trl.trainer.utils import nanstd

#: Batch entries that are not one row per completion (images are concatenated patches).
NON_ROW_KEYS = frozenset(
    {
        "pixel_values",
        "image_grid_thw",
        "pixel_attention_mask",
        "spatial_shapes",
        "image_sizes",
        "num_images",
        "num_tiles",
        "image_position_ids",
    }
)


def ranking_reward(rewards_per_func: torch.Tensor, reward_weights: torch.Tensor) -> torch.Tensor:
    """The weighted sum of the reward functions; NaN where every function returned None."""
    weights = reward_weights.to(rewards_per_func.device).unsqueeze(0)
    rewards = (rewards_per_func * weights).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return rewards


def finite_for_ranking(rewards: np.ndarray) -> np.ndarray:
    """Replace NaN rewards (unscorable completions) by a value below every finite reward.

    TRL gives such completions advantage 0; here they rank last in their group.
    """
    rewards = np.asarray(rewards, dtype=float)
    bad = ~np.isfinite(rewards)
    if not bad.any():
        return rewards
    floor = rewards[~bad].min() - 1.0 if (~bad).any() else 0.0
    out = rewards.copy()
    out[bad] = floor
    return out


def kept_advantages(
    rewards: torch.Tensor, keep: torch.Tensor, group_size: int, scale_rewards: str
) -> torch.Tensor:
    """GRPO advantages computed from the kept completions of each group only.

    Parameters
    ----------
    rewards : tensor of shape (n,)
        The reward of every completion (NaN for unscorable ones), groups of
        ``group_size`` contiguous completions.
    keep : bool tensor of shape (n,)
        Which completions the filter kept.
    group_size : int
        Completions per prompt (``num_generations``).
    scale_rewards : {"group", "batch", "none"}
        As in ``GRPOConfig``: divide by the std of the kept rewards of the
        group, of the whole batch, or not at all.

    Returns
    -------
    tensor of shape (n,)
        ``(r - mean_kept) / (std_kept + 1e-4)`` (no division for ``"none"``)
        on kept completions, 0 elsewhere; 0 too where the statistics are
        undefined (a group with one kept completion has mean equal to it).
    """
    kept_rewards = torch.where(keep, rewards, torch.full_like(rewards, torch.nan))
    grouped = kept_rewards.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    advantages = rewards - mean
    if scale_rewards == "group":
        std = nanstd(grouped, dim=1).repeat_interleave(group_size)
    elif scale_rewards == "batch":
        std = nanstd(kept_rewards).expand_as(rewards)
    elif scale_rewards == "none":
        std = None
    else:
        raise ValueError(
            f"The 'scale_rewards' parameter of GRPOConfig must be 'group', 'batch' or 'none'; got {scale_rewards!r}."
        )
    if std is not None:
        advantages = advantages / (torch.nan_to_num(std, nan=0.0) + 1e-4)
    advantages = torch.nan_to_num(advantages, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.where(keep, advantages, torch.zeros_like(advantages))


def can_select_rows(inputs: dict) -> bool:
    """Whether every batch entry is per completion, so kept rows can be taken out."""
    return not (NON_ROW_KEYS & inputs.keys())


def select_rows(inputs: dict, keep: torch.Tensor) -> dict:
    """The batch restricted to the rows where ``keep`` is true (scalars and None pass through)."""
    n_rows = keep.shape[0]
    out = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n_rows:
            out[key] = value[keep]
        elif isinstance(value, list) and len(value) == n_rows:
            out[key] = [v for v, k in zip(value, keep.tolist(), strict=True) if k]
        else:
            out[key] = value
    return out
