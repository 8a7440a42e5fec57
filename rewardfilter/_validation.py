"""Input validation in one place, with one message shape.

Every public function of the core checks its arguments here, so that a user
always gets the same kind of message: which argument, what is accepted, and
what was given (scikit-learn style).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def param_error(param: str, owner: str, expected: str, got: Any) -> ValueError:
    """Build the one error shape used for bad parameters.

    ``The 'q' parameter of uncertainty must be a float in [0, 1); got 1.5.``
    """
    return ValueError(f"The {param!r} parameter of {owner} must be {expected}; got {got!r}.")


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Return a ``np.random.Generator`` from a generator, a seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise param_error("rng", "rewardfilter", "a numpy Generator, an int seed or None", rng)


def check_1d_finite(values: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Return ``values`` as a 1-D float array; reject NaN, inf, wrong shape, empty."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name!r} must be a 1-D array of numbers; got {type(values).__name__}: {exc}"
        ) from None
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

    Integer ids are used as they are; any other hashable ids (strings, tuples
    turned to objects) are mapped to dense integer codes.
    """
    arr = np.asarray(groups)
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
    _, codes = np.unique(arr.astype(str) if arr.dtype.kind == "O" else arr, return_inverse=True)
    return codes.reshape(-1)


def check_weights(weights: Any, n: int) -> np.ndarray:
    """Return sample weights as a 1-D float array of length ``n``, all finite and >= 0."""
    arr = check_1d_finite(weights, "weights", allow_empty=True)
    if arr.shape[0] != n:
        raise ValueError(f"'weights' has {arr.shape[0]} entries but there are {n} samples.")
    if (arr < 0).any():
        raise ValueError(f"'weights' must be >= 0; found {int((arr < 0).sum())} negative value(s).")
    return arr


def check_same_length(n: int, other: np.ndarray, name: str) -> None:
    if other.shape[0] != n:
        raise ValueError(
            f"{name!r} has {other.shape[0]} entries but 'rewards' has {n}; they must match."
        )


def check_ensemble(ensemble: Any, n: int | None = None) -> np.ndarray:
    """Return a (K, n) float array of reward-model member predictions."""
    try:
        arr = np.asarray(ensemble, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"'ensemble' must be a (K, n) array of numbers; got {type(ensemble).__name__}."
        ) from None
    if arr.ndim != 2:
        raise ValueError(
            f"'ensemble' must be 2-D with one row per reward-model member (shape K x n); got shape {arr.shape}."
        )
    if arr.shape[0] < 2:
        raise ValueError(
            f"'ensemble' needs at least 2 members (rows) to measure disagreement; got {arr.shape[0]}."
        )
    if n is not None and arr.shape[1] != n:
        raise ValueError(
            f"'ensemble' has {arr.shape[1]} columns but there are {n} samples; give one column per sample."
        )
    if not np.isfinite(arr).all():
        raise ValueError("'ensemble' must be finite; found NaN or inf predictions.")
    return arr
