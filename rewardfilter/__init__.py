"""rewardfilter: reinforcement learning when the reward cannot be trusted.

The core is domain-agnostic and needs numpy and scikit-learn only:

* filters (:func:`make_filter`) decide which sampled responses / trajectories
  of each group (prompt, reset seed) to train on;
* reliability estimators (:func:`r2`, :func:`filtered_r2`,
  :func:`rank_filters`, :func:`ensemble_std`, :func:`reliability_curve`, ...)
  say how far the reward can be trusted, and where; ranking reliability
  (:func:`within_group_spearman`, :func:`top1_correct`, :func:`pool_reliability`)
  how far its order within a group can;
* :func:`filter_stats` gives the one statistics record (:class:`FilterStats`)
  every trainer logs;
* ``rewardfilter.noise`` holds the numpy noise models and
  ``rewardfilter.validation`` the parameter checks every layer uses.

Domain code lives in ``rewardfilter.envs`` (Gymnasium), ``rewardfilter.adapters``
(SB3, code generation) and ``rewardfilter.experiments``; none of it is imported here.
"""

from rewardfilter.ensemble_rank import EnsembleRank
from rewardfilter.filters import (
    BestOfN,
    BestRandom,
    BestWorst,
    Compose,
    Filter,
    NoFilter,
    RandomK,
    RankWeights,
    Threshold,
    TopK,
    Uncertainty,
    accepted_specs,
    make_filter,
    register_spec,
)
from rewardfilter.group_filters import StdTop, ZeroStd
from rewardfilter.ranking import (
    permutation_spearman,
    pool_reliability,
    top1_correct,
    within_group_spearman,
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
from rewardfilter.selection import (
    AdaptiveFilter,
    FewKeptSamplesWarning,
    FilterR2,
    FilterScore,
    filtered_r2,
    rank_filters,
)
from rewardfilter.stats import FilterStats, filter_stats

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "NotFittedError":  # scikit-learn's class, imported on first use (keeps import light)
        from sklearn.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaptiveFilter",
    "BestOfN",
    "BestRandom",
    "BestWorst",
    "Compose",
    "EnsembleRank",
    "FewKeptSamplesWarning",
    "Filter",
    "FilterR2",
    "FilterScore",
    "FilterStats",
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
    "accepted_specs",
    "auc",
    "ensemble_std",
    "filter_stats",
    "filtered_r2",
    "make_filter",
    "mse",
    "permutation_spearman",
    "pool_reliability",
    "r2",
    "rank_filters",
    "register_spec",
    "reliability_curve",
    "spearman",
    "top1_correct",
    "within_group_spearman",
    "__version__",
]
