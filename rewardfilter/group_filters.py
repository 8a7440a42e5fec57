"""Group-level filters: weigh whole groups by the spread of their rewards.

A group whose rewards are all equal gives every member the same
group-relative advantage (GRPO, PF-PPO with a group-mean baseline), so it
carries no learning signal. ``zero_std:EPS`` drops such groups (DAPO's dynamic
sampling), ``std_top:P`` keeps the fraction P of groups with the largest
spread. The spread of a group is the population std of its rewards
(:func:`rewardfilter.grouping.group_spread`, vectorised). Both compose with a
within-group filter: ``zero_std+br``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rewardfilter.filters import Filter, _parse_float, register_spec
from rewardfilter.grouping import group_spread
from rewardfilter.validation import check_scalar


@dataclass(frozen=True, repr=False)
class ZeroStd(Filter):
    """Drop every group whose reward spread is at most EPS (DAPO's dynamic sampling).

    Rule: a sample gets 1 when the population std of its group's rewards is
    greater than ``eps``, else 0: a group whose rewards are all (about) equal
    gives every member the same group-relative advantage, so it carries no
    signal. A group of one sample has spread 0 and is dropped.
    """

    eps: float = 0.0
    min_group_size: ClassVar[int] = 2

    def __post_init__(self):
        check_scalar(self.eps, "eps", "zero_std", min_val=0)

    @property
    def spec(self) -> str:
        return f"zero_std:{self.eps:g}"

    def _weights(self, rewards, groups, rng, ensemble):
        spread, index = group_spread(rewards, groups)
        return (spread > self.eps)[index].astype(float)


@dataclass(frozen=True, repr=False)
class StdTop(Filter):
    """Keep the fraction P of groups with the largest reward spread; the others get 0.

    Rule: of G groups, the ``ceil(P * G)`` with the largest population std of
    their rewards keep every sample (weight 1); ties in spread are broken
    uniformly at random with ``rng``. So at least one group is always kept.
    """

    p: float = 0.5
    min_group_size: ClassVar[int] = 2

    def __post_init__(self):
        check_scalar(self.p, "p", "std_top", min_val=0, max_val=1, include_boundaries="right")

    @property
    def spec(self) -> str:
        return f"std_top:{self.p:g}"

    def _weights(self, rewards, groups, rng, ensemble):
        spread, index = group_spread(rewards, groups)
        n_keep = math.ceil(self.p * spread.shape[0] - 1e-9)
        perm = rng.permutation(spread.shape[0])  # random order among equal spreads
        keep = np.zeros(spread.shape[0])
        keep[perm[np.argsort(-spread[perm], kind="stable")[:n_keep]]] = 1.0
        return keep[index]


register_spec(
    "zero_std",
    "optional",
    lambda a: ZeroStd(_parse_float(a, "eps", "zero_std") if a else 0.0),
    form="zero_std[:EPS]",
)
register_spec(
    "std_top", "required", lambda a: StdTop(_parse_float(a, "p", "std_top")), form="std_top:P"
)
