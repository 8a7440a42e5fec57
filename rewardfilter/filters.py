"""Filtration policies: which sampled responses (trajectories) to train on.

PF-PPO samples several responses per prompt, ranks them by the (noisy) reward
and trains only on a subset whose rewards are more trustworthy. A filter here
maps ``(rewards, groups)`` to one weight >= 0 per sample; 0 means "filtered
out". Ranking is always *within a group* (a prompt id, a reset seed).

The small-group rule
--------------------
Every filter is defined by ranks counted from the best sample of a group
(rank 0 = highest reward). A rank that a group does not have is simply absent;
its weight is never moved to another sample and no sample is counted twice:

* ``br`` / ``bw`` on a group of one sample keep that sample once (weight 1);
* ``topk:K`` / ``random:K`` on a group of fewer than K samples keep them all;
* ``rank:w1,...,wN`` on a group of m < N samples uses w1..wm (a group larger
  than N raises ``ValueError``: every sample must have a weight);
* ``uncertainty:Q`` drops ``floor(Q * m)`` samples of a group of m, so a
  group is never emptied;
* the group-level ``zero_std:EPS`` and ``std_top:P`` weigh whole groups by
  their reward spread (population std); a group of one sample has spread 0;
* ``a+b`` applies ``b`` to the samples ``a`` kept, so ``b``'s rule above holds
  for the group sizes ``a`` leaves.

Trainers that draw a fixed number N of samples per group can check up front
that N suits the filter with :meth:`Filter.check_group_size`.
"""

from __future__ import annotations

import copy
import re
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rewardfilter.grouping import rank_within_groups
from rewardfilter.reliability import ensemble_std
from rewardfilter.validation import (
    as_generator,
    check_1d_finite,
    check_choice,
    check_ensemble,
    check_groups,
    check_scalar,
    is_number,
    param_error,
)


class Filter(ABC):
    """A filtration policy: one weight >= 0 per sample, ranked within groups.

    Subclasses implement :meth:`_weights` on validated inputs; validation lives
    in :meth:`weights` so every filter rejects bad input the same way.
    """

    #: Smallest group for which the filter does what its name says (see the
    #: module's small-group rule for what happens below it).
    min_group_size: ClassVar[int] = 1
    #: Whether ``weights`` needs a reward-model ensemble.
    needs_ensemble: ClassVar[bool] = False
    #: Whether the filter must be fitted on labelled data (:meth:`fit`) before ``weights``.
    requires_fit: ClassVar[bool] = False

    @property
    def is_fitted(self) -> bool:
        """True once ``weights`` can be called: always, unless :attr:`requires_fit`."""
        return True

    @property
    def resolved(self) -> Filter:
        """The filter whose weights this one gives: itself, or a fitted filter's choice."""
        return self

    @property
    @abstractmethod
    def spec(self) -> str:
        """The canonical string form, accepted by :func:`make_filter`."""

    @property
    def is_binary(self) -> bool:
        """True when every weight is 0 or 1 (a "filter" rather than a "reweight")."""
        return True

    def fit(
        self, rewards: Any, scores: Any, groups: Any, *, rng: Any = None, ensemble: Any = None
    ) -> Filter:
        """Learn from labelled data (true ``scores``); a no-op unless :attr:`requires_fit`."""
        return self

    def weights(
        self,
        rewards: Any,
        groups: Any,
        *,
        rng: np.random.Generator | int | None = None,
        ensemble: Any = None,
    ) -> np.ndarray:
        """One float weight >= 0 per sample; 0 means filtered out.

        Parameters
        ----------
        rewards : array of shape (n,)
            The (noisy) reward of each sample; must be finite.
        groups : array of shape (n,) or sequence of n ids
            A context id per sample (prompt id, reset seed): ints, floats,
            strings or tuples such as ``(prompt, seed)``; ids of different
            types are different groups (``1`` is not ``"1"``). Ranking is
            within a group, never across the batch.
        rng : numpy Generator, int seed or None
            Source of randomness for ties and for random filters.
        ensemble : array of shape (K, n), optional
            Per-member reward-model predictions (needed by ``uncertainty``).
        """
        rewards = check_1d_finite(rewards, "rewards")
        n = rewards.shape[0]
        groups = check_groups(groups, n)
        if ensemble is not None or self.needs_ensemble:
            if ensemble is None:
                raise ValueError(
                    f"Filter {self.spec!r} needs 'ensemble': a (K, n) array of reward-model member predictions."
                )
            ensemble = check_ensemble(ensemble, n)
        return self._weights(rewards, groups, as_generator(rng), ensemble)

    @abstractmethod
    def _weights(
        self,
        rewards: np.ndarray,
        groups: np.ndarray,
        rng: np.random.Generator,
        ensemble: np.ndarray | None,
    ) -> np.ndarray: ...

    def check_group_size(self, n: int) -> None:
        """Raise ``ValueError`` if groups of ``n`` samples cannot serve this filter."""
        check_scalar(n, "group_size", self.spec, "int", min_val=1)
        if n < self.min_group_size:
            raise ValueError(
                f"Filter {self.spec!r} needs groups of at least {self.min_group_size} samples; "
                f"got group size {n}. Sample more responses per prompt or choose another filter."
            )

    def __repr__(self) -> str:
        return f"make_filter({self.spec!r})"


def _ranked(
    rewards: np.ndarray, groups: np.ndarray, rng: np.random.Generator, keep_sorted
) -> np.ndarray:
    """Rank by reward within groups, apply ``keep_sorted(ranking)``, return weights in input order."""
    ranking = rank_within_groups(rewards, groups, rng)
    return ranking.scatter(np.asarray(keep_sorted(ranking), dtype=float))


@dataclass(frozen=True, repr=False)
class NoFilter(Filter):
    """Keep everything (PPO-M: N samples per prompt, no filtration)."""

    @property
    def spec(self) -> str:
        return "none"

    def _weights(self, rewards, groups, rng, ensemble):
        return np.ones(rewards.shape[0])


@dataclass(frozen=True, repr=False)
class RandomK(Filter):
    """Keep K samples per group chosen uniformly at random, ignoring rewards.

    The control for ``br``/``bw``: it trains on as many samples, so a gain of
    ``br`` over ``random:2`` comes from *which* samples, not how many.
    """

    k: int = 2

    def __post_init__(self):
        check_scalar(self.k, "k", "random", "int", min_val=1)

    @property
    def min_group_size(self) -> int:  # type: ignore[override]
        return self.k

    @property
    def spec(self) -> str:
        return f"random:{self.k}"

    def _weights(self, rewards, groups, rng, ensemble):
        return _ranked(rng.random(rewards.shape[0]), groups, rng, lambda r: r.rank < self.k)


@dataclass(frozen=True, repr=False)
class BestOfN(Filter):
    """Keep the best sample of each group (PF-PPO BoN)."""

    @property
    def spec(self) -> str:
        return "bon"

    def _weights(self, rewards, groups, rng, ensemble):
        return _ranked(rewards, groups, rng, lambda r: r.rank == 0)


@dataclass(frozen=True, repr=False)
class BestRandom(Filter):
    """Keep the best sample and one uniformly random other (PF-PPO BR, the authors' "filter" version)."""

    min_group_size: ClassVar[int] = 2

    @property
    def spec(self) -> str:
        return "br"

    def _weights(self, rewards, groups, rng, ensemble):
        def keep(r):
            # one pick per group among ranks 1..size-1; a singleton group picks rank 0 (itself)
            pick = 1 + np.floor(rng.random(r.n_groups) * (r.sizes - 1)).astype(np.int64)
            pick[r.sizes == 1] = 0
            return (r.rank == 0) | (r.rank == pick[r.group])

        return _ranked(rewards, groups, rng, keep)


@dataclass(frozen=True, repr=False)
class BestWorst(Filter):
    """Keep the best and the worst sample of each group (PF-PPO BW)."""

    min_group_size: ClassVar[int] = 2

    @property
    def spec(self) -> str:
        return "bw"

    def _weights(self, rewards, groups, rng, ensemble):
        return _ranked(rewards, groups, rng, lambda r: (r.rank == 0) | (r.rank == r.size - 1))


@dataclass(frozen=True, repr=False)
class TopK(Filter):
    """Keep the K highest-reward samples of each group."""

    k: int = 1

    def __post_init__(self):
        check_scalar(self.k, "k", "topk", "int", min_val=1)

    @property
    def min_group_size(self) -> int:  # type: ignore[override]
        return self.k

    @property
    def spec(self) -> str:
        return f"topk:{self.k}"

    def _weights(self, rewards, groups, rng, ensemble):
        return _ranked(rewards, groups, rng, lambda r: r.rank < self.k)


@dataclass(frozen=True, repr=False)
class Threshold(Filter):
    """Keep samples whose reward is at least T (an absolute, not a ranked, rule)."""

    t: float = 0.0

    def __post_init__(self):
        check_scalar(self.t, "t", "threshold")

    @property
    def spec(self) -> str:
        return f"threshold:{self.t:g}"

    def _weights(self, rewards, groups, rng, ensemble):
        return (rewards >= self.t).astype(float)


@dataclass(frozen=True, repr=False)
class RankWeights(Filter):
    """The sample of rank i gets weight w_(i+1) (PF-PPO's "reweight" version).

    The authors' BR reweighting is ``rank:0.4,0.1,0.1,0.1,0.1`` and their BW
    reweighting ``rank:1,0,0,0,1`` (N = 5).
    """

    w: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        ok = _is_sequence(self.w) and all(is_number(x) and x >= 0 for x in self.w)
        w = tuple(float(x) for x in self.w) if ok else ()
        if not w or not any(x > 0 for x in w):
            raise param_error(
                "w", "rank", "a non-empty list of finite weights >= 0, at least one > 0", self.w
            )
        object.__setattr__(self, "w", w)

    @property
    def spec(self) -> str:
        return "rank:" + ",".join(f"{x:g}" for x in self.w)

    @property
    def is_binary(self) -> bool:
        return all(x in (0.0, 1.0) for x in self.w)

    def check_group_size(self, n: int) -> None:
        super().check_group_size(n)
        if n != len(self.w):
            raise ValueError(
                f"Filter {self.spec!r} has {len(self.w)} rank weights, one per sample of a group; "
                f"got group size {n}. Give exactly one weight per sampled response."
            )

    def _weights(self, rewards, groups, rng, ensemble):
        table = np.asarray(self.w)

        def keep(r):
            too_big = r.sizes > table.shape[0]
            if too_big.any():
                raise ValueError(
                    f"Filter {self.spec!r} has {table.shape[0]} rank weights but a group has "
                    f"{int(r.sizes.max())} samples; every sample needs a weight."
                )
            return table[r.rank]

        return _ranked(rewards, groups, rng, keep)


@dataclass(frozen=True, repr=False)
class Uncertainty(Filter):
    """Drop the fraction Q of each group's samples on which the reward-model ensemble disagrees most.

    An ensemble of one member (K = 1) carries no disagreement information: then
    every sample is kept (weight 1), with a warning, rather than dropping
    samples at random.
    """

    q: float = 0.2
    needs_ensemble: ClassVar[bool] = True

    def __post_init__(self):
        check_scalar(self.q, "q", "uncertainty", min_val=0, max_val=1, include_boundaries="left")

    @property
    def spec(self) -> str:
        return f"uncertainty:{self.q:g}"

    def _weights(self, rewards, groups, rng, ensemble):
        if ensemble.shape[0] == 1:
            warnings.warn(
                "uncertainty got an ensemble of one member: no disagreement to filter on; "
                "every sample is kept.",
                stacklevel=3,
            )
            return np.ones(rewards.shape[0])
        disagreement = ensemble_std(ensemble)
        return _ranked(
            disagreement, groups, rng, lambda r: r.rank >= np.floor(self.q * r.size + 1e-9)
        )


@dataclass(frozen=True, repr=False)
class Compose(Filter):
    """Filters applied in turn (spec ``a+b``): each filters the samples the previous kept.

    Rule: the first filter weighs every sample; the next sees only the samples
    with weight > 0 so far (their rewards, groups and ensemble columns) and its
    weights multiply theirs. ``zero_std+br`` drops the groups without signal,
    then keeps the best and one random other of each remaining group.
    """

    parts: tuple[Filter, ...] = ()

    def __post_init__(self):
        flat: list[Filter] = []
        for part in self.parts if _is_sequence(self.parts) else ():
            if not isinstance(part, Filter):
                flat = []
                break
            flat.extend(part.parts if isinstance(part, Compose) else [part])
        if len(flat) < 2:
            raise param_error("parts", "compose", "a list of at least 2 filters", self.parts)
        object.__setattr__(self, "parts", tuple(flat))

    @property
    def spec(self) -> str:
        return "+".join(part.spec for part in self.parts)

    @property
    def is_binary(self) -> bool:
        return all(part.is_binary for part in self.parts)

    @property
    def min_group_size(self) -> int:  # type: ignore[override]
        return max(part.min_group_size for part in self.parts)

    @property
    def needs_ensemble(self) -> bool:  # type: ignore[override]
        return any(part.needs_ensemble for part in self.parts)

    @property
    def requires_fit(self) -> bool:  # type: ignore[override]
        return any(part.requires_fit for part in self.parts)

    @property
    def is_fitted(self) -> bool:
        return all(part.is_fitted for part in self.parts)

    def check_group_size(self, n: int) -> None:
        for part in self.parts:
            part.check_group_size(n)

    def fit(self, rewards, scores, groups, *, rng=None, ensemble=None) -> Compose:
        """Fit each part on the samples the parts before it keep."""
        rewards = check_1d_finite(rewards, "rewards")
        scores = check_1d_finite(scores, "scores")
        groups = check_groups(groups, rewards.shape[0])
        ensemble = None if ensemble is None else check_ensemble(ensemble, rewards.shape[0])
        rng = as_generator(rng)
        kept = np.arange(rewards.shape[0])
        for part in self.parts:
            ens = None if ensemble is None else ensemble[:, kept]
            part.fit(rewards[kept], scores[kept], groups[kept], rng=rng, ensemble=ens)
            kept = kept[part._weights(rewards[kept], groups[kept], rng, ens) > 0]
            if kept.size == 0:
                break
        return self

    def _weights(self, rewards, groups, rng, ensemble):
        w = np.ones(rewards.shape[0])
        for part in self.parts:
            kept = np.flatnonzero(w > 0)
            if kept.size == 0:
                break
            ens = None if ensemble is None else ensemble[:, kept]
            w[kept] *= part._weights(rewards[kept], groups[kept], rng, ens)
        return w


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _parse_int(text: str, param: str, owner: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise param_error(param, owner, "an int", text) from None


def _parse_float(text: str, param: str, owner: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise param_error(param, owner, "a float", text) from None


# name -> (its argument: "none", "required" or "optional", constructor from the argument text,
# its form in the accepted-forms list); other modules add theirs with register_spec
# (rewardfilter.group_filters adds zero_std and std_top, rewardfilter.ensemble_rank uwo and wco,
# rewardfilter.selection adaptive)
_PARSERS: dict[str, tuple[str, Callable[[str], Filter], str]] = {
    "none": ("none", lambda a: NoFilter(), "none"),
    "random": ("required", lambda a: RandomK(_parse_int(a, "k", "random")), "random:K"),
    "bon": ("none", lambda a: BestOfN(), "bon"),
    "br": ("none", lambda a: BestRandom(), "br"),
    "bw": ("none", lambda a: BestWorst(), "bw"),
    "topk": ("required", lambda a: TopK(_parse_int(a, "k", "topk")), "topk:K"),
    "threshold": (
        "required",
        lambda a: Threshold(_parse_float(a, "t", "threshold")),
        "threshold:T",
    ),
    "rank": (
        "required",
        lambda a: RankWeights(tuple(_parse_float(x, "w", "rank") for x in a.split(","))),
        "rank:w1,w2,...,wN",
    ),
    "uncertainty": (
        "required",
        lambda a: Uncertainty(_parse_float(a, "q", "uncertainty")),
        "uncertainty:Q",
    ),
}

_ARG_FORM = {"none": "{}", "required": "{}:<value>", "optional": "{}[:<value>]"}


def register_spec(
    name: str, argument: str, build: Callable[[str], Filter], form: str | None = None
) -> None:
    """Make ``make_filter`` accept ``name`` (``argument``: "none", "required" or "optional").

    ``build`` receives the argument text (stripped; "" when absent) and returns
    a new filter. ``form`` is how the spec is written in the accepted forms that
    a bad spec's error lists (e.g. ``"std_top:P"``; default ``name``,
    ``name:<value>`` or ``name[:<value>]`` by ``argument``). A filter defined in
    another module registers itself here, so adding a filter touches one file.
    """
    check_choice(argument, "argument", "register_spec", ("none", "required", "optional"))
    _PARSERS[name] = (argument, build, _ARG_FORM[argument].format(name) if form is None else form)


def accepted_specs() -> str:
    """Every accepted filter spec form (the registered ones, in registration order), as the
    error for a bad spec lists them."""
    forms = ", ".join(form for _, _, form in _PARSERS.values())
    return f"{forms}, and specs joined by '+' (zero_std+br)"


# "+" joins specs; a "+" inside a number ("threshold:1e+3", "rank:+1") is followed by a digit
_JOIN = re.compile(r"\+(?![\d.])")


def make_filter(spec: Filter | str) -> Filter:
    """Build a new filter from its spec string, or copy a ``Filter``.

    Accepted forms (:func:`accepted_specs`): ``none``, ``random:K``, ``bon``,
    ``br``, ``bw``, ``topk:K``, ``threshold:T``, ``rank:w1,...,wN``,
    ``uncertainty:Q``, the ensemble rankings ``uwo:LAMBDA,INNER`` and
    ``wco:INNER``, the group-level ``zero_std[:EPS]`` (EPS defaults to 0) and
    ``std_top:P``, ``adaptive``, and specs joined by ``+`` (``zero_std+br``: see
    :class:`Compose`). A bad spec raises ``ValueError`` naming it and these forms.

    Every call returns a fresh instance, so two trainers never share a fit.
    Given a ``Filter``, it returns an independent deep copy *with* its fitted
    state (unlike scikit-learn's ``clone``, which drops the fit): a pre-fitted
    ``adaptive`` filter handed to a trainer stays fitted, and a refit there does
    not change the caller's instance.
    """
    if isinstance(spec, Filter):
        return copy.deepcopy(spec)
    if not isinstance(spec, str):
        raise ValueError(
            f"A filter spec must be a string or a Filter; got {type(spec).__name__}. Accepted forms: {accepted_specs()}."
        )
    parts = [_parse_one(text, spec) for text in _JOIN.split(spec)]
    return parts[0] if len(parts) == 1 else Compose(tuple(parts))


def _parse_one(text: str, spec: str) -> Filter:
    """Parse one ``name[:arg]`` part of ``spec``."""
    name, sep, arg = text.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise ValueError(
            f"Malformed filter spec {spec!r}: an empty part around '+'. Accepted forms: {accepted_specs()}."
        )
    if name not in _PARSERS:
        raise ValueError(f"Unknown filter spec {spec!r}. Accepted forms: {accepted_specs()}.")
    arg_mode, build, _ = _PARSERS[name]
    arg = arg.strip()
    bad = (arg_mode == "none" and sep) or (arg_mode == "required" and not arg) or (sep and not arg)
    if bad:
        raise ValueError(
            f"Malformed filter spec {spec!r}: expected the form {_ARG_FORM[arg_mode].format(name)}. Accepted forms: {accepted_specs()}."
        )
    try:
        return build(arg)
    except ValueError as exc:
        raise ValueError(
            f"Invalid filter spec {spec!r}: {exc} Accepted forms: {accepted_specs()}."
        ) from None


def __getattr__(name: str) -> Any:
    if name == "AdaptiveFilter":  # moved to rewardfilter.selection (it uses the selection rule)
        import warnings

        warnings.warn(
            "rewardfilter.filters.AdaptiveFilter moved to rewardfilter.selection; "
            "use rf.AdaptiveFilter or rewardfilter.selection.AdaptiveFilter.",
            DeprecationWarning,
            stacklevel=2,
        )
        return sys.modules["rewardfilter.selection"].AdaptiveFilter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
