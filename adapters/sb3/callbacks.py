"""Log filtration statistics to SB3's logger (and so to TensorBoard / CSV)."""

from __future__ import annotations

import math

from stable_baselines3.common.callbacks import BaseCallback

from rewardfilter.adapters.sb3.buffers import STAT_KEYS, _FilterMixin


class FilterStatsCallback(BaseCallback):
    """Record the buffer's ``last_stats`` after every rollout.

    Logs, under ``prefix`` (default ``"filter/"``): ``kept_fraction``,
    ``filtered_r2`` (R² between noisy and true returns of the kept finished
    episodes: PF-PPO's criterion, measured online), ``noisy_return_mean``,
    ``true_return_mean``, ``ensemble_std_mean`` (mean ensemble disagreement,
    only when the reward model is an ensemble), ``n_episodes``,
    ``n_kept_transitions``, and also ``r2`` (all finished episodes),
    ``n_unranked_transitions`` and ``group_size_mean`` (episodes per ranked
    group).

    Parameters
    ----------
    prefix : str
        Logger key prefix.
    verbose : int
        SB3 verbosity.

    The model must use :class:`FilteredRolloutBuffer` (any filter, ``none``
    included: that is how baselines get the same statistics).
    """

    def __init__(self, prefix: str = "filter/", verbose: int = 0):
        super().__init__(verbose)
        self.prefix = prefix
        #: every rollout's stats, in order (handy in tests and notebooks)
        self.history: list[dict[str, float]] = []

    def _init_callback(self) -> None:
        if not isinstance(self.model.rollout_buffer, _FilterMixin):
            raise ValueError(
                "FilterStatsCallback needs a model built with rollout_buffer_class=FilteredRolloutBuffer "
                "(or FilteredDictRolloutBuffer); use filter='none' for unfiltered baselines."
            )

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        stats = dict(self.model.rollout_buffer.last_stats)
        self.history.append(stats)
        for key in (*STAT_KEYS, "r2", "n_unranked_transitions", "group_size_mean"):
            value = stats.get(key, math.nan)
            if key == "ensemble_std_mean" and math.isnan(value):
                continue
            self.logger.record(self.prefix + key, value)
