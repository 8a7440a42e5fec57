"""The callback that connects SB3's rollout loop to the filtered buffer, and logs what it did."""

from __future__ import annotations

import math

from stable_baselines3.common.callbacks import BaseCallback

from rewardfilter.adapters.sb3.buffers import FilterMixin
from rewardfilter.adapters.sb3.stats import STAT_KEYS


class FilterStatsCallback(BaseCallback):
    """Hand every step's infos to the filtered buffer; log its statistics after every rollout.

    SB3 calls a callback's ``update_locals`` and then ``on_step`` after each
    ``env.step`` and *before* ``rollout_buffer.add`` (``OnPolicyAlgorithm.collect_rollouts``):
    :meth:`_on_step` passes ``locals["infos"]`` to the buffer's
    :meth:`~rewardfilter.adapters.sb3.FilteredRolloutBuffer.record_infos`, so
    the buffer never reads a caller's stack frame. Pass this callback to every
    ``learn`` of a model built with ``FilteredRolloutBuffer`` (the buffer raises
    otherwise); combine it with others in a list (``callback=[FilterStatsCallback(), ...]``).

    Logs, under ``prefix`` (default ``"filter/"``), every key of the buffer's
    ``last_stats`` (``STAT_KEYS``): the core's one statistics record
    (:class:`rewardfilter.FilterStats` over the episodes ranked in the rollout:
    ``kept_fraction``, ``filtered_r2`` — R² between noisy and true returns of
    the kept episodes, PF-PPO's criterion measured online —, ``reward_mean``
    (noisy return), ``score_mean`` (true return), ``n_samples`` (episodes),
    ...; ``ensemble_std_mean`` only when the reward model is an ensemble) and
    the transition counts ``n_kept_transitions``, ``kept_transition_fraction``,
    ``n_unranked_transitions``, ``n_held_transitions``, with ``top1_correct``.

    Parameters
    ----------
    prefix : str
        Logger key prefix.
    verbose : int
        SB3 verbosity.
    """

    def __init__(self, prefix: str = "filter/", verbose: int = 0):
        super().__init__(verbose)
        self.prefix = prefix
        #: every rollout's stats, in order (handy in tests and notebooks)
        self.history: list[dict[str, float]] = []

    def _init_callback(self) -> None:
        if not isinstance(self.model.rollout_buffer, FilterMixin):
            raise ValueError(
                "FilterStatsCallback needs a model built with rollout_buffer_class=FilteredRolloutBuffer "
                "(or FilteredDictRolloutBuffer); use filter='none' for unfiltered baselines."
            )

    def _on_step(self) -> bool:
        if "infos" not in self.locals:
            raise ValueError(
                "FilterStatsCallback found no 'infos' in the rollout loop's locals: it works with "
                "SB3's on-policy algorithms (PPO, A2C)."
            )
        self.model.rollout_buffer.record_infos(self.locals["infos"])
        return True

    def _on_rollout_end(self) -> None:
        stats = dict(self.model.rollout_buffer.last_stats)
        self.history.append(stats)
        for key in STAT_KEYS:
            value = stats.get(key, math.nan)
            if key == "ensemble_std_mean" and math.isnan(value):
                continue
            self.logger.record(self.prefix + key, value)
