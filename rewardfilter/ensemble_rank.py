"""Rank by a conservative aggregate of a reward-model ensemble, then filter (UWO / WCO ranking).

Coste et al. (ICLR 2024) optimise a policy against a conservative aggregate of
an ensemble's members: UWO, the mean minus ``lambda`` times the members'
variance, or WCO, the smallest member. These filters use the same aggregates
as the *ranking key* of another filter, whatever reward the policy trains on
(e.g. one randomly drawn member per episode):

* ``uwo:LAMBDA,INNER``: rank each group by ``mean - LAMBDA * var`` over the
  members (``uwo:0,INNER`` ranks by the ensemble mean), then apply ``INNER``
  (``bon``, ``br``, ``bw``, ``topk:K``, ``rank:w1,...`` ...);
* ``wco:INNER``: rank by the smallest member, then apply ``INNER``.

Both need ``ensemble`` (K x n member predictions). ``INNER`` is one spec
without ``+`` that needs no fitting (``adaptive`` is refused; compose outside:
``zero_std+uwo:0.5,br``); an ``INNER`` that needs the ensemble itself
(``uncertainty``) gets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rewardfilter.filters import Filter, _parse_float, make_filter, register_spec
from rewardfilter.validation import check_choice, check_scalar, param_error

__all__ = ["EnsembleRank"]


@dataclass(frozen=True, repr=False)
class EnsembleRank(Filter):
    """``inner`` applied to a conservative ensemble aggregate instead of the rewards."""

    inner: Filter
    key: str = "uwo"  # "uwo" or "wco"
    lam: float = 1.0
    needs_ensemble: ClassVar[bool] = True

    def __post_init__(self):
        check_choice(self.key, "key", "ensemble ranking", ("uwo", "wco"))
        check_scalar(self.lam, "lambda", self.key, min_val=0)
        if not isinstance(self.inner, Filter) or self.inner.requires_fit:
            raise param_error(
                "inner", self.key, "a filter spec that needs no fitting (not adaptive)", self.inner
            )

    @property
    def spec(self) -> str:
        head = f"uwo:{self.lam:g}," if self.key == "uwo" else "wco:"
        return head + self.inner.spec

    @property
    def is_binary(self) -> bool:
        return self.inner.is_binary

    @property
    def min_group_size(self) -> int:  # type: ignore[override]
        return self.inner.min_group_size

    def check_group_size(self, n: int) -> None:
        self.inner.check_group_size(n)

    def ranking_key(self, ensemble: np.ndarray) -> np.ndarray:
        """Per sample: ``mean - lam * var`` (UWO) or the smallest member (WCO)."""
        if self.key == "wco":
            return ensemble.min(axis=0)
        return ensemble.mean(axis=0) - self.lam * ensemble.var(axis=0)

    def _weights(self, rewards, groups, rng, ensemble):
        inner_ens = ensemble if self.inner.needs_ensemble else None
        return self.inner._weights(self.ranking_key(ensemble), groups, rng, inner_ens)


def _inner(text: str, key: str) -> Filter:
    try:
        return make_filter(text.strip())
    except ValueError:
        raise param_error("inner", key, "a filter spec such as br or topk:2", text) from None


def _uwo(arg: str) -> EnsembleRank:
    lam, sep, inner = arg.partition(",")
    if not sep or not inner.strip():
        raise param_error("spec", "uwo", "'uwo:LAMBDA,INNER', e.g. 'uwo:0.5,br'", f"uwo:{arg}")
    return EnsembleRank(_inner(inner, "uwo"), "uwo", _parse_float(lam, "lambda", "uwo"))


register_spec("uwo", "required", _uwo, form="uwo:LAMBDA,INNER")
register_spec(
    "wco",
    "required",
    lambda arg: EnsembleRank(_inner(arg, "wco"), "wco", 0.0),
    form="wco:INNER",
)
