"""The paper's selection rule: prefer the filter whose kept samples have the highest R².

PF-PPO observed that the R² between reward and true score, measured on the
samples a filter keeps, predicts how well a policy trained through that filter
performs. These functions make that rule a call, and :class:`AdaptiveFilter`
makes it a filter (spec ``adaptive``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from rewardfilter.filters import Filter, make_filter, register_spec
from rewardfilter.reliability import r2
from rewardfilter.validation import (
    as_generator,
    check_1d_finite,
    check_same_length,
    check_scalar,
    param_error,
)

#: An R² computed on this many kept samples or fewer is not evidence (two
#: points always lie on a line); ``rank_filters`` warns about it.
FEW_SAMPLES = 3


class FewKeptSamplesWarning(UserWarning):
    """A candidate's filtered R² rests on ``FEW_SAMPLES`` kept samples or fewer."""


class FilterR2(NamedTuple):
    """A filter spec and the R² of its kept samples."""

    spec: str
    r2: float


#: Deprecated name of :class:`FilterR2` ("score" means the true score only).
FilterScore = FilterR2


def _filtered_r2(filt, rewards, scores, groups, rng, draws, ensemble) -> tuple[float, int]:
    """Mean R² over ``draws`` draws of the filter's weights, and the fewest samples kept."""
    values, fewest = [], rewards.shape[0]
    for _ in range(draws):
        w = filt.weights(rewards, groups, rng=rng, ensemble=ensemble)
        fewest = min(fewest, int((w > 0).sum()))
        values.append(r2(rewards, scores, w))
    return float(np.mean(values)), fewest


def _prepare(spec, rewards, scores, groups, rng, draws, ensemble, owner):
    """Validate, and fit a fresh copy of a filter that needs fitting on this data."""
    filt = make_filter(spec)  # a fresh copy: the caller's filter is never fitted here
    check_scalar(draws, "draws", owner, "int", min_val=1)
    rewards = check_1d_finite(rewards, "rewards")
    scores = check_1d_finite(scores, "scores")
    check_same_length(rewards.shape[0], scores, "scores")
    rng = as_generator(rng, owner)
    if filt.requires_fit and not filt.is_fitted:
        filt.fit(rewards, scores, groups, rng=rng, ensemble=ensemble)
    return filt, rewards, scores, rng


# filtered_r2 and rank_filters deliberately share their signature (one spec / many specs,
# the same labelled data and keywords): both are public and documented in DESIGN.md.
def filtered_r2(
    spec: Filter | str,
    rewards: Any,
    scores: Any,
    groups: Any,
    *,
    rng: np.random.Generator | int | None = None,
    draws: int = 10,
    ensemble: Any = None,
) -> float:
    """R² between rewards and true scores on the samples ``spec`` keeps.

    The filter's weights are the R² sample weights (so ``rank:`` reweighting
    counts too). Random filters (and random tie-breaking) are averaged over
    ``draws`` draws. A filter that needs fitting and is not fitted (``adaptive``)
    is fitted, as a copy, on this data first. NaN when the kept true scores
    are constant or fewer than two samples are kept.
    """
    filt, rewards, scores, rng = _prepare(
        spec, rewards, scores, groups, rng, draws, ensemble, "filtered_r2"
    )
    return _filtered_r2(filt, rewards, scores, groups, rng, draws, ensemble)[0]


# The same signature as filtered_r2, deliberately (see there).
def rank_filters(
    specs: Any,
    rewards: Any,
    scores: Any,
    groups: Any,
    *,
    rng: np.random.Generator | int | None = None,
    draws: int = 10,
    ensemble: Any = None,
) -> list[FilterR2]:
    """Order filter specs by filtered R², best first (NaN last: never selected).

    This is the paper's rule for choosing a filter before training: measure,
    on labelled samples, how well the reward explains the true score among the
    samples each filter keeps, and pick the highest. A candidate whose R² rests
    on ``FEW_SAMPLES`` (3) kept samples or fewer raises a
    :class:`FewKeptSamplesWarning`: use more groups.
    """
    specs = [specs] if isinstance(specs, (str, Filter)) else list(specs)
    if not specs:
        raise param_error("specs", "rank_filters", "a non-empty list of filter specs", specs)
    rng = as_generator(rng, "rank_filters")
    scored = []
    for s in specs:
        filt, r, sc, _ = _prepare(s, rewards, scores, groups, rng, draws, ensemble, "rank_filters")
        value, fewest = _filtered_r2(filt, r, sc, groups, rng, draws, ensemble)
        if fewest <= FEW_SAMPLES:
            warnings.warn(
                f"The filtered R² of {filt.spec!r} rests on {fewest} kept sample(s) "
                f"({FEW_SAMPLES} or fewer always fit a line well): give more groups.",
                FewKeptSamplesWarning,
                stacklevel=2,
            )
        scored.append(FilterR2(filt.spec, value))
    return sorted(scored, key=lambda item: (math.isnan(item.r2), -np.nan_to_num(item.r2)))


@dataclass(repr=False)
class AdaptiveFilter(Filter):
    """Choose among candidate filters by filtered R² on labelled data (the paper's rule).

    After :meth:`fit` it behaves as the candidate whose kept samples have the
    highest R² between reward and true score; candidates whose R² is NaN
    (constant kept scores, too few samples) are never chosen. ``chosen_``
    names the choice and ``r2_`` holds the R² of every candidate.
    """

    candidates: tuple[str, ...] = ("bon", "br", "bw", "none")
    draws: int = 10
    chosen_: Filter | None = field(default=None, init=False)
    r2_: dict[str, float] = field(default_factory=dict, init=False)
    requires_fit = True

    def __post_init__(self):
        if not isinstance(self.candidates, (list, tuple)) or not self.candidates:
            raise param_error(
                "candidates", "adaptive", "a non-empty list of filter specs", self.candidates
            )
        filters = [make_filter(c) for c in self.candidates]
        if any(f.requires_fit for f in filters):
            raise param_error(
                "candidates", "adaptive", "specs of filters that need no fitting", self.candidates
            )
        self.candidates = tuple(f.spec for f in filters)
        check_scalar(self.draws, "draws", "adaptive", "int", min_val=1)

    @property
    def spec(self) -> str:
        return "adaptive"

    @property
    def is_fitted(self) -> bool:
        return self.chosen_ is not None

    @property
    def resolved(self) -> Filter:
        return self._fitted()

    @property
    def is_binary(self) -> bool:
        return self._fitted().is_binary

    @property
    def min_group_size(self) -> int:  # type: ignore[override]
        return max(make_filter(c).min_group_size for c in self.candidates)

    def fit(self, rewards, scores, groups, *, rng=None, ensemble=None) -> AdaptiveFilter:
        ranking = rank_filters(
            self.candidates, rewards, scores, groups, rng=rng, ensemble=ensemble, draws=self.draws
        )
        self.r2_ = {item.spec: item.r2 for item in ranking}
        if math.isnan(ranking[0].r2):
            raise ValueError(
                "adaptive could not compute R² for any candidate: the kept samples need at least "
                "2 distinct rewards, more than one sample and true scores that are not all equal."
            )
        self.chosen_ = make_filter(ranking[0].spec)
        return self

    def _fitted(self) -> Filter:
        if self.chosen_ is None:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                "This adaptive filter is not fitted yet; call fit(rewards, scores, groups) with labelled data first."
            )
        return self.chosen_

    def _weights(self, rewards, groups, rng, ensemble):
        return self._fitted()._weights(rewards, groups, rng, ensemble)


register_spec("adaptive", "none", lambda arg: AdaptiveFilter())
