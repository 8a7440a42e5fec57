"""The paper's selection rule: prefer the filter whose kept samples have the highest R².

PF-PPO observed that the R² between reward and true score, measured on the
samples a filter keeps, predicts how well a policy trained through that filter
performs. These functions make that rule a call.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from rewardfilter.filters import Filter, make_filter
from rewardfilter.reliability import r2
from rewardfilter.validation import (
    as_generator,
    check_1d_finite,
    check_same_length,
    check_scalar,
    param_error,
)


class FilterScore(NamedTuple):
    """A filter spec and the R² of its kept samples."""

    spec: str
    r2: float


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
    ``draws`` draws. An unfitted ``adaptive`` filter is fitted on this data first.
    """
    filt = make_filter(spec)
    check_scalar(draws, "draws", "filtered_r2", "int", min_val=1)
    rewards = check_1d_finite(rewards, "rewards")
    scores = check_1d_finite(scores, "scores")
    check_same_length(rewards.shape[0], scores, "scores")
    rng = as_generator(rng)
    if getattr(filt, "chosen_", False) is None:
        filt = type(filt)(candidates=filt.candidates, draws=filt.draws).fit(
            rewards, scores, groups, rng=rng, ensemble=ensemble
        )
    values = [
        r2(rewards, scores, filt.weights(rewards, groups, rng=rng, ensemble=ensemble))
        for _ in range(draws)
    ]
    return float(np.mean(values))


def rank_filters(
    specs: Any,
    rewards: Any,
    scores: Any,
    groups: Any,
    *,
    rng: np.random.Generator | int | None = None,
    draws: int = 10,
    ensemble: Any = None,
) -> list[FilterScore]:
    """Order filter specs by filtered R², best first (NaN last).

    This is the paper's rule for choosing a filter before training: measure,
    on labelled samples, how well the reward explains the true score among the
    samples each filter keeps, and pick the highest.
    """
    specs = [specs] if isinstance(specs, (str, Filter)) else list(specs)
    if not specs:
        raise param_error("specs", "rank_filters", "a non-empty list of filter specs", specs)
    rng = as_generator(rng)
    scored = [
        FilterScore(
            make_filter(s).spec,
            filtered_r2(s, rewards, scores, groups, rng=rng, draws=draws, ensemble=ensemble),
        )
        for s in specs
    ]
    return sorted(
        scored, key=lambda item: (math.isnan(item.r2), -item.r2 if not math.isnan(item.r2) else 0.0)
    )
