"""Wang, Liu & Li's unbiased surrogate reward for confusion noise (AAAI 2020).

"Reinforcement Learning with Perturbed Rewards": when the observed reward level
is the true one passed through a known confusion matrix ``C[i, j] =
P(observed j | true i)``, replacing each observed level ``j`` by the surrogate
value ``r̂_j`` with ``C r̂ = R`` (``R`` the level values) makes the expected
surrogate reward equal the true reward at every true level:
``E[r̂ | true i] = sum_j C[i, j] r̂_j = R_i``. In the binary case (levels
``r-`` and ``r+``; ``e-`` = P(observe r+ | true r-), false successes, and
``e+`` = P(observe r- | true r+), missed ones)::

    r̂(r+) = ((1 - e-) r+ - e+ r-) / (1 - e+ - e-)
    r̂(r-) = ((1 - e+) r- - e- r+) / (1 - e+ - e-)

:class:`SurrogateConfusionNoise` (noise model ``confusion_surrogate``) draws the
observed level exactly as ``confusion`` does and returns its surrogate value:
the literature baseline "PPO-M trained on the surrogate reward" of the control
study's confusion column. The matrix is the known one (the paper also
estimates it; here the noise rates are given).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardfilter.noise import ConfusionNoise, ConfusionNoiseConfig
from rewardfilter.validation import param_error

__all__ = ["SurrogateConfusionNoise", "surrogate_values"]


def surrogate_values(matrix: Any, values: Any) -> np.ndarray:
    """The surrogate reward of each observed level: the solution ``r̂`` of ``matrix @ r̂ = values``.

    ``matrix`` is row-stochastic (true level x observed level); it must be
    invertible (in the binary case: ``e+ + e- != 1``), else ValueError.
    """
    c = np.asarray(matrix, dtype=float)
    v = np.asarray(values, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or v.shape != (c.shape[0],):
        raise ValueError(
            f"surrogate_values needs a square (m, m) 'matrix' and m 'values'; got shapes "
            f"{c.shape} and {v.shape}."
        )
    if not np.isfinite(c).all() or np.linalg.cond(c) > 1e12:
        raise param_error(
            "error",
            "confusion_surrogate noise",
            "rates whose confusion matrix is invertible (binary: error[0] + error[1] != 1)",
            c.tolist(),
        )
    return np.linalg.solve(c, v)


class SurrogateConfusionNoise(ConfusionNoise):
    """``confusion`` noise whose observed level is replaced by its unbiased surrogate value."""

    name = "confusion_surrogate"

    def __init__(self, config: ConfusionNoiseConfig | None = None):
        super().__init__(config)
        m = self.config.levels
        # in units of the range: level j sits at j / (m - 1); C^-1 keeps affine maps (C 1 = 1)
        self.unit_values = surrogate_values(self.config.matrix(), np.arange(m) / (m - 1))

    def corrupt(self, value, rng, low, high):
        observed = self.level(super().corrupt(value, rng, low, high), low, high)
        return float(low + (high - low) * self.unit_values[observed])
