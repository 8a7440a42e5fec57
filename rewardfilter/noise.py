"""Noise models: how a reward model gets the true reward wrong (numpy only).

The one home of the numpy noise models: ``rewardfilter.envs`` wraps Gymnasium
tasks with them and the bandit domain of the experiments draws from them. Each
model is configured by a frozen dataclass (one place validates every
parameter, with one message shape) and corrupts a true reward value given the
range of rewards the task produces. Scales are *relative to that range*
(``std=0.1`` means a tenth of ``high - low``) so that one configuration means
the same thing on Pendulum (step rewards in about [-16, 0]) and on HalfCheetah
(episode returns in the thousands). A plain :class:`~rewardfilter.envs.NoisyReward`
on an arbitrary environment uses the range (0, 1), where relative and absolute
scales coincide.

Additive models (``none``, ``gaussian``, ``heteroscedastic``) also give their
noise std for a whole array of true values (:meth:`NoiseModel.scale`), so a
caller can draw many samples (or ensemble members) at once. The ``learned``
model (a proxy reward model fitted on limited data) lives in
:mod:`rewardfilter.envs.learned`; it predicts rewards from transitions rather
than perturbing the true value.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from rewardfilter.validation import check_choice, check_scalar, param_error

__all__ = [
    "ConfusionNoise",
    "ConfusionNoiseConfig",
    "GaussianNoise",
    "GaussianNoiseConfig",
    "HeteroscedasticNoise",
    "HeteroscedasticNoiseConfig",
    "NUMPY_NOISE_MODELS",
    "NoNoise",
    "NoNoiseConfig",
    "NoiseModel",
    "config_from_kwargs",
    "make_noise",
]


class NoiseModel(ABC):
    """Corrupts a true reward value; subclasses are built from a config dataclass.

    ``corrupt`` receives the range ``(low, high)`` of the values it may see (the
    task's step-reward range, or its episode-return range in episode-level
    mode) so that relative scales and reward levels are defined.
    """

    #: Name accepted by :func:`make_noise_model`.
    name: ClassVar[str]
    #: True for models that predict the reward from the transition itself
    #: (``learned``) rather than perturb the true value.
    uses_transitions: ClassVar[bool] = False
    #: True for models that add zero-mean Gaussian noise of std :meth:`scale`.
    additive: ClassVar[bool] = False

    @abstractmethod
    def corrupt(self, value: float, rng: np.random.Generator, low: float, high: float) -> float:
        """Return the noisy version of the true ``value``."""

    def scale(self, values: Any, low: float, high: float) -> Any:
        """The noise std (in reward units) at each true value; additive models only."""
        raise TypeError(f"The {self.name} noise model is not additive; it has no noise std.")


@dataclass(frozen=True)
class NoNoiseConfig:
    """No parameters: the observed reward is the true reward (the oracle baseline)."""


class NoNoise(NoiseModel):
    """The identity: keeps the true reward, so a filtered run with it is the oracle."""

    name = "none"
    additive = True

    def __init__(self, config: NoNoiseConfig | None = None):
        self.config = config or NoNoiseConfig()

    def scale(self, values, low, high):
        return np.zeros_like(np.asarray(values, dtype=float))

    def corrupt(self, value, rng, low, high):
        return float(value)


@dataclass(frozen=True)
class GaussianNoiseConfig:
    """Additive Gaussian noise of a constant scale (homoscedastic)."""

    std: float = field(
        default=0.1,
        metadata={"help": "Noise standard deviation, as a fraction of the reward range."},
    )

    def __post_init__(self):
        check_scalar(self.std, "std", "gaussian noise", min_val=0)


class GaussianNoise(NoiseModel):
    """``value + N(0, (std * (high - low))^2)``: equally unreliable everywhere."""

    name = "gaussian"
    additive = True

    def __init__(self, config: GaussianNoiseConfig | None = None):
        self.config = config or GaussianNoiseConfig()

    def scale(self, values, low, high):
        return np.full_like(np.asarray(values, dtype=float), self.config.std * (high - low))

    def corrupt(self, value, rng, low, high):
        return float(value + rng.normal(0.0, self.config.std * (high - low)))


_RELIABLE = ("high", "low", "none")


@dataclass(frozen=True)
class HeteroscedasticNoiseConfig:
    """Noise whose scale depends on where the true reward lies in its range.

    With ``reliable="high"`` (what PF-PPO observed for code reward models) the
    noise is large at low and moderate rewards and shrinks to ``min_std`` as the
    reward approaches the top of the range; ``"low"`` mirrors it and ``"none"``
    is uniform (large everywhere), a control.
    """

    std: float = field(
        default=0.3, metadata={"help": "Largest noise std, as a fraction of the reward range."}
    )
    min_std: float = field(
        default=0.01, metadata={"help": "Noise std in the reliable region (fraction of the range)."}
    )
    reliable: str = field(
        default="high", metadata={"help": "Where rewards are reliable: 'high', 'low' or 'none'."}
    )
    threshold: float | None = field(
        default=None,
        metadata={
            "help": "If set, a step instead of a ramp: min_std where the reward's position in "
            "its range (0 to 1) is >= threshold (<= for reliable='low'), std elsewhere."
        },
    )

    def __post_init__(self):
        owner = "heteroscedastic noise"
        check_scalar(self.std, "std", owner, min_val=0)
        check_scalar(self.min_std, "min_std", owner, min_val=0, max_val=self.std)
        check_choice(self.reliable, "reliable", owner, _RELIABLE)
        if self.threshold is not None:
            check_scalar(self.threshold, "threshold", owner, min_val=0, max_val=1)


class HeteroscedasticNoise(NoiseModel):
    """Gaussian noise with a reward-dependent scale (see :class:`HeteroscedasticNoiseConfig`).

    With ``u`` the true reward's position in its range (0 at ``low``, 1 at
    ``high``, clipped), the std is ``min_std + (std - min_std) * p(u)`` where
    the profile ``p`` is ``min(1, 2 (1 - u))`` for ``reliable="high"`` (flat and
    large on the lower half, falling to 0 at the top), ``min(1, 2 u)`` for
    ``"low"`` and 1 for ``"none"``. With ``threshold`` set the profile is a
    step: the std is ``min_std`` where ``u >= threshold`` (``u <= threshold``
    for ``"low"``; never for ``"none"``) and ``std`` elsewhere.
    """

    name = "heteroscedastic"
    additive = True

    def __init__(self, config: HeteroscedasticNoiseConfig | None = None):
        self.config = config or HeteroscedasticNoiseConfig()

    def scale(self, values: Any, low: float, high: float) -> Any:
        """The noise std (in reward units) at true reward(s) ``values``."""
        c = self.config
        v = np.asarray(values, dtype=float)
        u = np.clip((v - low) / (high - low), 0.0, 1.0)
        if c.threshold is not None:
            reliable = {"high": u >= c.threshold, "low": u <= c.threshold, "none": u < -1.0}
            out = np.where(reliable[c.reliable], c.min_std, c.std) * (high - low)
        else:
            profile = {
                "high": np.minimum(1.0, 2.0 * (1.0 - u)),
                "low": np.minimum(1.0, 2.0 * u),
                "none": np.ones_like(u),
            }[c.reliable]
            out = (c.min_std + (c.std - c.min_std) * profile) * (high - low)
        return float(out) if out.ndim == 0 else out

    def corrupt(self, value, rng, low, high):
        return float(value + rng.normal(0.0, self.scale(value, low, high)))


_FLIPS = ("uniform", "adjacent")
_RATE = {"min_val": 0.0, "max_val": 1.0, "include_boundaries": "left"}  # a probability < 1


@dataclass(frozen=True)
class ConfusionNoiseConfig:
    """The reward-confusion perturbation of Wang, Liu & Li (AAAI 2020).

    The true reward is discretised to the nearest of ``levels`` evenly spaced
    values from ``low`` to ``high`` (2 levels: the binary case of the paper),
    and the observed level is flipped with probability ``error`` (one rate, or
    one per true level: a confusion matrix with that off-diagonal mass) to a
    uniformly chosen other level (``flip="uniform"``) or to a neighbour
    (``"adjacent"``). The observed reward is the flipped level's value.
    """

    levels: int = field(default=2, metadata={"help": "Number of reward levels (>= 2)."})
    error: float | tuple[float, ...] = field(
        default=0.2,
        metadata={"help": "Flip probability, one rate or one per true level, each in [0, 1)."},
    )
    flip: str = field(
        default="uniform", metadata={"help": "Where a flip goes: 'uniform' or 'adjacent' level."}
    )

    def __post_init__(self):
        check_scalar(self.levels, "levels", "confusion noise", "int", min_val=2)
        if isinstance(self.error, (list, tuple, np.ndarray)):
            rates = tuple(check_scalar(e, "error", "confusion noise", **_RATE) for e in self.error)
            if len(rates) != self.levels:
                raise param_error(
                    "error",
                    "confusion noise",
                    f"a float or {self.levels} floats (one per level)",
                    self.error,
                )
            object.__setattr__(self, "error", rates)
        else:
            check_scalar(self.error, "error", "confusion noise", **_RATE)
        check_choice(self.flip, "flip", "confusion noise", _FLIPS)

    def matrix(self) -> np.ndarray:
        """The row-stochastic confusion matrix ``C[i, j] = P(observed j | true i)``."""
        m = self.levels
        rates = np.broadcast_to(np.asarray(self.error, dtype=float), (m,))
        c = np.zeros((m, m))
        for i in range(m):
            others = [j for j in range(m) if j != i]
            if self.flip == "adjacent":
                others = [j for j in (i - 1, i + 1) if 0 <= j < m]
            c[i, others] = rates[i] / len(others)
            c[i, i] = 1.0 - rates[i]
        return c


class ConfusionNoise(NoiseModel):
    """Discretise the reward into levels and flip levels through a confusion matrix."""

    name = "confusion"

    def __init__(self, config: ConfusionNoiseConfig | None = None):
        self.config = config or ConfusionNoiseConfig()
        self._cum = np.cumsum(self.config.matrix(), axis=1)

    def level(self, value: float, low: float, high: float) -> int:
        """Index of the level nearest to ``value`` (clipped to the range)."""
        m = self.config.levels
        u = min(1.0, max(0.0, (value - low) / (high - low)))
        return int(round(u * (m - 1)))

    def corrupt(self, value, rng, low, high):
        m = self.config.levels
        true_level = self.level(value, low, high)
        observed = int(np.searchsorted(self._cum[true_level], rng.random(), side="right"))
        observed = min(observed, m - 1)
        return float(low + (high - low) * observed / (m - 1))


def config_from_kwargs(config_cls: type, kwargs: dict[str, Any] | None, owner: str) -> Any:
    """Build a config dataclass, naming the accepted fields when a key is unknown."""
    kwargs = dict(kwargs or {})
    names = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for {owner}; accepted: {names or 'none'}."
        )
    return config_cls(**kwargs)


#: name -> (model class, config dataclass) of the numpy noise models
#: (``rewardfilter.envs`` adds ``learned``)
NUMPY_NOISE_MODELS: dict[str, tuple[type[NoiseModel], type]] = {
    "none": (NoNoise, NoNoiseConfig),
    "gaussian": (GaussianNoise, GaussianNoiseConfig),
    "heteroscedastic": (HeteroscedasticNoise, HeteroscedasticNoiseConfig),
    "confusion": (ConfusionNoise, ConfusionNoiseConfig),
}


def make_noise(name: str, kwargs: dict[str, Any] | None = None) -> NoiseModel:
    """Build a numpy noise model by name; an unknown name or parameter raises ``ValueError``."""
    if not isinstance(name, str) or name not in NUMPY_NOISE_MODELS:
        raise ValueError(f"Unknown noise model {name!r}; accepted: {sorted(NUMPY_NOISE_MODELS)}.")
    model_cls, config_cls = NUMPY_NOISE_MODELS[name]
    return model_cls(config_from_kwargs(config_cls, kwargs, f"{name} noise"))
