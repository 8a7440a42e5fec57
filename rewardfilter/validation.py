"""Validation of parameters and arrays, in one place and with one message shape.

Every layer (core, envs, adapters, experiments) checks its arguments with these
functions, in the style of scikit-learn's ``check_scalar`` and ``Interval``, so
that a user always gets the same kind of message: which parameter of what,
what is accepted, what was given::

    >>> check_scalar(1.5, "q", "uncertainty", "float", min_val=0, max_val=1,
    ...              include_boundaries="left")
    Traceback (most recent call last):
    ValueError: The 'q' parameter of uncertainty must be a float in [0, 1); got 1.5.

Numbers are numbers: booleans, strings, complex values and NaN/inf are
refused wherever a number is expected. ``NotFittedError`` is scikit-learn's
(imported when first used, so that ``import rewardfilter`` stays light).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np

__all__ = [
    "Interval",
    "as_generator",
    "check_1d_finite",
    "check_bool",
    "check_choice",
    "check_ensemble",
    "check_groups",
    "check_same_length",
    "check_scalar",
    "check_weights",
    "is_number",
    "param_error",
]

Kind = Literal["int", "float"]
Closed = Literal["left", "right", "both", "neither"]


def __getattr__(name: str) -> Any:
    if name == "NotFittedError":  # scikit-learn's own class, imported on first use
        from sklearn.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def param_error(param: str, owner: str, expected: str, got: Any) -> ValueError:
    """The one error shape: ``The 'q' parameter of uncertainty must be a float in [0, 1); got 1.5.``"""
    return ValueError(f"The {param!r} parameter of {owner} must be {expected}; got {got!r}.")


def is_number(value: Any, kind: Kind = "float") -> bool:
    """True for a finite real number (an integer for ``kind="int"``); never for a bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if kind == "int":
        return isinstance(value, Integral)
    return isinstance(value, Real) and math.isfinite(value)


@dataclass(frozen=True)
class Interval:
    """Admissible numbers: a kind (``"int"``/``"float"``) and optional bounds.

    ``closed`` says which bounds belong to the interval (scikit-learn's
    ``Interval``); ``None`` means unbounded on that side. ``str()`` gives the
    phrase used in messages: ``a float in [0, 1)``, ``an int >= 1``,
    ``a finite float``.
    """

    kind: Kind = "float"
    left: float | None = None
    right: float | None = None
    closed: Closed = "both"

    def __contains__(self, value: Any) -> bool:
        if not is_number(value, self.kind):
            return False
        left_in = self.closed in ("left", "both")
        right_in = self.closed in ("right", "both")
        if self.left is not None and not (value >= self.left if left_in else value > self.left):
            return False
        return self.right is None or (value <= self.right if right_in else value < self.right)

    def __str__(self) -> str:
        noun = "an int" if self.kind == "int" else "a float"
        left_in = self.closed in ("left", "both")
        if self.left is None and self.right is None:
            return noun if self.kind == "int" else "a finite float"
        if self.kind == "int" and self.right is None:
            return f"an int {'>=' if left_in else '>'} {self.left:g}"
        low = "(-inf" if self.left is None else f"{'[' if left_in else '('}{self.left:g}"
        right_in = self.closed in ("right", "both")
        high = "inf)" if self.right is None else f"{self.right:g}{']' if right_in else ')'}"
        return f"{noun} in {low}, {high}"


def check_scalar(
    value: Any,
    name: str,
    owner: str,
    kind: Kind = "float",
    *,
    min_val: float | None = None,
    max_val: float | None = None,
    include_boundaries: Closed = "both",
) -> Any:
    """Return ``value`` (as ``int`` or ``float``) if it is a number in the interval, else raise.

    Parameters
    ----------
    value : object
        What the user passed.
    name, owner : str
        The parameter and what it belongs to, for the message.
    kind : {"int", "float"}
        ``"float"`` accepts any finite real number (ints too).
    min_val, max_val : float, optional
        Bounds; ``include_boundaries`` says which are admissible.
    """
    interval = Interval(kind, min_val, max_val, include_boundaries)
    if value not in interval:
        raise param_error(name, owner, str(interval), value)
    return int(value) if kind == "int" else float(value)


def check_bool(value: Any, name: str, owner: str) -> bool:
    """Return ``value`` if it is a bool (``numpy.bool_`` too), else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise param_error(name, owner, "a bool", value)
    return bool(value)


def check_choice(value: Any, name: str, owner: str, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    choices = tuple(choices)
    if isinstance(value, (bool, np.bool_)) or not _is_hashable(value) or value not in choices:
        raise param_error(name, owner, f"one of {choices}", value)
    return value


def as_generator(
    rng: np.random.Generator | int | None, owner: str = "rewardfilter"
) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from a generator, a seed >= 0 or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (is_number(rng, "int") and rng >= 0):
        return np.random.default_rng(rng)
    raise param_error("rng", owner, "a numpy Generator, an int seed >= 0 or None", rng)


def check_1d_finite(values: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Return ``values`` as a 1-D float array; refuse non-numbers, NaN, inf, wrong shape, empty.

    Booleans (pass/fail) count as numbers; strings, complex values and other
    objects do not (``"1"`` is refused, not parsed).
    """
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if kind == "O":
        ok = all(isinstance(x, (Real, np.bool_)) for x in arr.ravel().tolist())
    else:
        ok = kind in "biuf"
    if not ok:
        raise ValueError(
            f"{name!r} must be a 1-D array of real numbers; got {type(values).__name__} "
            f"of dtype {arr.dtype}."
        )
    arr = arr.astype(float)
    if arr.ndim != 1:
        raise ValueError(f"{name!r} must be a 1-D array; got shape {arr.shape}.")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name!r} is empty; at least one sample is needed.")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name!r} must be finite; found {int(bad.sum())} NaN or inf value(s), "
            f"the first at index {first} ({arr[first]})."
        )
    return arr


def check_groups(groups: Any, n: int) -> np.ndarray:
    """Return group ids as a sortable 1-D array of length ``n``.

    Integer and float ids are used as they are; strings as well; any other
    hashable ids (tuples such as ``(prompt, seed)``, mixed objects) are mapped
    to dense integer codes, keeping ids of different types apart (``1`` and
    ``"1"`` are two groups).
    """
    arr = np.asarray(groups) if isinstance(groups, np.ndarray) else _as_id_array(groups)
    if arr.ndim != 1:
        raise ValueError(f"'groups' must be a 1-D array of context ids; got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(
            f"'groups' has {arr.shape[0]} entries but 'rewards' has {n}; give one group id per sample."
        )
    if arr.dtype.kind in "iub":
        return arr
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("'groups' must not contain NaN or inf ids.")
        return arr
    if arr.dtype.kind in "US":
        return np.unique(arr, return_inverse=True)[1].reshape(-1)
    if arr.dtype.kind != "O":
        raise ValueError(f"'groups' must hold hashable ids; got dtype {arr.dtype}.")
    ids = arr.tolist()
    try:
        distinct = dict.fromkeys(ids)
    except TypeError:
        raise ValueError(
            "'groups' must hold hashable ids (ints, strings, tuples); got an unhashable one."
        ) from None
    # codes in the order of the ids' text, as before; the type name keeps 1 and "1" apart
    ordered = sorted(distinct, key=lambda g: (str(g), type(g).__name__))
    code = {g: i for i, g in enumerate(ordered)}
    return np.fromiter((code[g] for g in ids), dtype=np.int64, count=len(ids))


def _as_id_array(groups: Any) -> np.ndarray:
    """A 1-D array of ids; a list of tuples becomes an object array of tuples, not a 2-D array."""
    try:
        arr = np.asarray(groups)
    except ValueError:  # ragged tuples
        arr = None
    if arr is None or (arr.ndim > 1 and len(groups) == arr.shape[0]):
        arr = np.empty(len(groups), dtype=object)
        for i, g in enumerate(groups):
            arr[i] = tuple(g) if isinstance(g, (list, np.ndarray)) else g
    return arr


def check_weights(weights: Any, n: int) -> np.ndarray:
    """Return sample weights as a 1-D float array of length ``n``, all finite and >= 0."""
    arr = check_1d_finite(weights, "weights", allow_empty=True)
    if arr.shape[0] != n:
        raise ValueError(f"'weights' has {arr.shape[0]} entries but there are {n} samples.")
    if (arr < 0).any():
        raise ValueError(f"'weights' must be >= 0; found {int((arr < 0).sum())} negative value(s).")
    return arr


def check_same_length(n: int, other: np.ndarray, name: str) -> None:
    """Raise unless ``other`` has ``n`` entries, like the rewards."""
    if other.shape[0] != n:
        raise ValueError(
            f"{name!r} has {other.shape[0]} entries but 'rewards' has {n}; they must match."
        )


def check_ensemble(ensemble: Any, n: int | None = None) -> np.ndarray:
    """Return a (K, n) float array of reward-model member predictions (K >= 1)."""
    arr = np.asarray(ensemble)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"'ensemble' must be a (K, n) array of real numbers; got {type(ensemble).__name__} "
            f"of dtype {arr.dtype}."
        )
    arr = arr.astype(float)
    if arr.ndim != 2:
        raise ValueError(
            f"'ensemble' must be 2-D with one row per reward-model member (shape K x n); got shape {arr.shape}."
        )
    if arr.shape[0] < 1:
        raise ValueError("'ensemble' needs at least 1 member (row); got 0.")
    if n is not None and arr.shape[1] != n:
        raise ValueError(
            f"'ensemble' has {arr.shape[1]} columns but there are {n} samples; give one column per sample."
        )
    if not np.isfinite(arr).all():
        raise ValueError("'ensemble' must be finite; found NaN or inf predictions.")
    return arr


def _is_hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
