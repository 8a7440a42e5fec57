"""rliable's interval estimates for score matrices: IQM, probability of improvement, normalised IQM.

Every input is a matrix of final scores of shape (runs, columns), one per
method, as rliable expects (a column is a task, or a task under one noise
model; a run is one seed). The confidence intervals are rliable's
*stratified* percentile bootstrap (Agarwal et al., NeurIPS 2021): each
replicate resamples the runs of every column independently, with replacement.

* :func:`iqm_ci`: the interquartile mean (25 % trimmed mean over all runs and
  columns) with its CI.
* :func:`improvement_ci`: P(X > Y), the probability that a run of X scores
  above a run of Y on the same column (Mann-Whitney U / (n m), ties count 1/2),
  averaged over columns, with its CI; X and Y are resampled independently.
* :func:`normalised_iqm_ci`: the IQM of ``(x - mean(baseline)) / (mean(oracle)
  - mean(baseline))`` per column, where the method's runs *and both anchors'*
  are resampled in every replicate (jointly, not held at their means); a
  method that is an anchor is drawn once and used in both places.

rliable's bootstraps draw from NumPy's global random state; each estimate here
seeds it with ``seed`` and restores it afterwards, so the results are
reproducible and the caller's global state is untouched. rliable is in the
``[report]`` extra (``pip install 'rewardfilter[report]'``), imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from rewardfilter.validation import check_scalar

__all__ = ["Estimate", "improvement_ci", "iqm_ci", "normalised_iqm_ci", "score_matrix"]

#: (point estimate, CI low, CI high)
Estimate = tuple[float, float, float]


def _rliable() -> tuple[Any, Any]:
    """rliable's ``library`` and ``metrics`` modules, or an error that says how to install them."""
    from rewardfilter.extras import MissingExtraError

    try:
        from rliable import library, metrics
    except ModuleNotFoundError as exc:
        raise MissingExtraError(exc.name or "rliable", "report", "rliable statistics") from exc
    except TypeError as exc:  # arch < 8 under pandas 3: deprecate_kwarg() missing new_arg_name
        raise ImportError(
            f"rliable.library failed to import ({exc}); arch 7 (rliable needs arch < 8) "
            "does not work with pandas 3: pip install 'rewardfilter[report]' (pins pandas < 3)."
        ) from exc
    return library, metrics


def score_matrix(values: Any, name: str) -> np.ndarray:
    """``values`` as a finite float matrix (runs x columns) with at least one run; a 1-D array is one column."""
    arr = np.asarray(values, dtype=float) if _numeric(values) else None
    if arr is None:
        raise ValueError(
            f"{name!r} must be a (runs x columns) array of real numbers; got {values!r}."
        )
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name!r} must be a non-empty (runs x columns) matrix; got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name!r} must be finite; found {int((~np.isfinite(arr)).sum())} NaN or inf."
        )
    return arr


def _numeric(values: Any) -> bool:
    try:
        return np.asarray(values).dtype.kind in "biuf"
    except ValueError:  # ragged
        return False


def _same_columns(named: dict[str, np.ndarray]) -> None:
    widths = {name: m.shape[1] for name, m in named.items()}
    if len(set(widths.values())) > 1:
        raise ValueError(f"The score matrices must have the same columns; got widths {widths}.")


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global random state (rliable's bootstraps draw from it), then restore it."""
    state = np.random.get_state()  # noqa: NPY002 (rliable draws from the legacy global state)
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _interval(
    func: Callable[..., float],
    matrices: list[np.ndarray],
    resamples: int,
    level: float,
    seed: int,
) -> Estimate:
    """rliable's stratified-bootstrap percentile interval of ``func(*matrices)``."""
    resamples = check_scalar(resamples, "resamples", "the rliable statistics", "int", min_val=1)
    level = check_scalar(
        level, "level", "the rliable statistics", min_val=0, max_val=1, include_boundaries="neither"
    )
    seed = check_scalar(seed, "seed", "the rliable statistics", "int", min_val=0)
    library, _ = _rliable()

    def vector(*drawn: np.ndarray) -> np.ndarray:
        return np.array([func(*drawn)])

    data = matrices[0] if len(matrices) == 1 else list(matrices)
    with _seeded(seed):
        point, interval = library.get_interval_estimates(
            {"x": data}, vector, reps=resamples, confidence_interval_size=level
        )
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def iqm_ci(scores: Any, *, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Estimate:
    """IQM of ``scores`` (runs x columns) with its stratified-bootstrap CI."""
    _, metrics = _rliable()
    return _interval(
        metrics.aggregate_iqm, [score_matrix(scores, "scores")], resamples, level, seed
    )


def improvement_ci(
    scores_x: Any, scores_y: Any, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> Estimate:
    """P(X > Y) averaged over columns, with its CI (X and Y resampled independently, per column)."""
    _, metrics = _rliable()
    x, y = score_matrix(scores_x, "scores_x"), score_matrix(scores_y, "scores_y")
    _same_columns({"scores_x": x, "scores_y": y})
    return _interval(metrics.probability_of_improvement, [x, y], resamples, level, seed)


def normalised_iqm_ci(
    scores: Any,
    baseline: Any,
    oracle: Any,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """IQM of the scores normalised per column (baseline mean = 0, oracle mean = 1), with its CI.

    ``scores``, ``baseline`` and ``oracle`` (runs x columns, run counts may
    differ) are resampled jointly in every replicate, so the anchors' spread
    over seeds is in the interval. Pass the *same object* as ``scores`` and
    ``baseline`` (or ``oracle``) for the anchor's own row: it is then drawn
    once per replicate. A column whose anchors have equal means has no
    normalised score: ValueError.
    """
    _, metrics = _rliable()
    distinct: list[np.ndarray] = []
    index = []
    seen: dict[int, int] = {}
    for name, sample in (("scores", scores), ("baseline", baseline), ("oracle", oracle)):
        if id(sample) not in seen:
            seen[id(sample)] = len(distinct)
            distinct.append(score_matrix(sample, name))
        index.append(seen[id(sample)])
    _same_columns({f"sample {i}": m for i, m in enumerate(distinct)})

    def normalised(*drawn: np.ndarray) -> float:
        x, lo, hi = (drawn[i] for i in index)
        low, high = lo.mean(axis=0), hi.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(metrics.aggregate_iqm((x - low) / (high - low)))

    anchors = [distinct[i].mean(axis=0) for i in index[1:]]
    if np.any(anchors[0] == anchors[1]):
        raise ValueError(
            "The 'baseline' and 'oracle' anchors have equal means in a column "
            f"({anchors[0]} vs {anchors[1]}); the normalised score is undefined there."
        )
    return _interval(normalised, distinct, resamples, level, seed)
