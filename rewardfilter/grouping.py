"""Vectorised ranking of samples within their groups.

All filters rank samples *within a group* (one prompt, one reset seed), never
across the batch. This module does that once, with one sort and no Python loop
over groups, so that filtering a million samples costs about one ``lexsort``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroupRanking:
    """Samples sorted by group, then by key descending (ties at random).

    Attributes are in *sorted* order; ``order`` maps sorted positions back to
    the caller's samples (``weights[order] = sorted_weights``).
    """

    order: np.ndarray  # sorted position -> original index
    rank: np.ndarray  # rank within its group, 0 = highest key
    group: np.ndarray  # dense group index 0..n_groups-1 of each sorted sample
    sizes: np.ndarray  # size of each group, indexed by dense group index

    @property
    def n_groups(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def size(self) -> np.ndarray:
        """Size of the group of each sorted sample."""
        return self.sizes[self.group]

    def scatter(self, sorted_values: np.ndarray) -> np.ndarray:
        """Put values computed in sorted order back in the caller's order."""
        out = np.empty_like(sorted_values)
        out[self.order] = sorted_values
        return out


def rank_within_groups(
    keys: np.ndarray, groups: np.ndarray, rng: np.random.Generator
) -> GroupRanking:
    """Rank ``keys`` from highest (rank 0) to lowest inside each group.

    Ties are broken uniformly at random: the samples are shuffled first and a
    stable sort keeps the shuffled order among equal keys.
    """
    n = keys.shape[0]
    perm = rng.permutation(n)
    order = perm[np.lexsort((-keys[perm], groups[perm]))]
    sorted_groups = groups[order]
    starts_mask = np.empty(n, dtype=bool)
    starts_mask[0] = True
    np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=starts_mask[1:])
    starts = np.flatnonzero(starts_mask)
    group = np.cumsum(starts_mask) - 1
    sizes = np.diff(np.append(starts, n))
    rank = np.arange(n) - starts[group]
    return GroupRanking(order=order, rank=rank, group=group, sizes=sizes)


def group_sizes(groups: np.ndarray) -> np.ndarray:
    """Size of the group of each sample, in the caller's order."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def group_spread(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reward spread of each group: the population std of its values (ddof = 0).

    Returns ``(spread, index)``: ``spread[g]`` for each dense group index ``g``
    (groups in sorted id order) and ``index``, each sample's dense group index.
    One ``unique`` and two ``bincount``s, no loop over groups. Values are
    shifted by their group's first value before squaring, so a group of equal
    values has a spread of exactly 0 (a plain sum of squares leaves rounding).
    """
    _, first, index, counts = np.unique(
        groups, return_index=True, return_inverse=True, return_counts=True
    )
    index = index.reshape(-1)
    shifted = values - values[first][index]
    mean = np.bincount(index, weights=shifted) / counts
    centred = shifted - mean[index]
    return np.sqrt(np.bincount(index, weights=centred * centred) / counts), index
