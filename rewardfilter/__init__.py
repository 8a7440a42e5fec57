"""rewardfilter: reinforcement learning when the reward cannot be trusted.

The core is domain-agnostic and needs numpy and scikit-learn only:

* filters (:func:`make_filter`) decide which sampled responses / trajectories
  of each group (prompt, reset seed) to train on;
* reliability estimators (:func:`r2`, :func:`filtered_r2`,
  :func:`rank_filters`, :func:`ensemble_std`, :func:`reliability_curve`, ...)
  say how far the reward can be trusted, and where.

Domain code lives in ``rewardfilter.envs`` (Gymnasium), ``rewardfilter.adapters``
(SB3, code generation) and ``rewardfilter.experiments``; none of it is imported here.
"""

from rewardfilter.filters import (
    ACCEPTED_SPECS,
    AdaptiveFilter,
    BestOfN,
    BestRandom,
    BestWorst,
    Compose,
    Filter,
    NoFilter,
    RandomK,
    RankWeights,
    StdTop,
    Threshold,
    TopK,
    Uncertainty,
    ZeroStd,
    make_filter,
)
from rewardfilter.reliability import (
    ReliabilityCurve,
    auc,
    ensemble_std,
    mse,
    r2,
    reliability_curve,
    spearman,
)
from rewardfilter.selection import FilterScore, filtered_r2, rank_filters

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "NotFittedError":  # scikit-learn's class, imported on first use (keeps import light)
        from sklearn.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCEPTED_SPECS",
    "AdaptiveFilter",
    "BestOfN",
    "BestRandom",
    "BestWorst",
    "Compose",
    "Filter",
    "FilterScore",
    "NoFilter",
    "NotFittedError",
    "RandomK",
    "RankWeights",
    "ReliabilityCurve",
    "StdTop",
    "Threshold",
    "TopK",
    "Uncertainty",
    "ZeroStd",
    "auc",
    "ensemble_std",
    "filtered_r2",
    "make_filter",
    "mse",
    "r2",
    "rank_filters",
    "reliability_curve",
    "spearman",
    "__version__",
]
