"""The noise models of the tasks: they live in :mod:`rewardfilter.noise` (numpy only).

Re-exported here so that ``rewardfilter.envs.noise`` keeps its names; the
``learned`` model is in :mod:`rewardfilter.envs.learned`.
"""

from rewardfilter.noise import (
    ConfusionNoise,
    ConfusionNoiseConfig,
    GaussianNoise,
    GaussianNoiseConfig,
    HeteroscedasticNoise,
    HeteroscedasticNoiseConfig,
    NoiseModel,
    NoNoise,
    NoNoiseConfig,
    config_from_kwargs,
)

__all__ = [
    "ConfusionNoise",
    "ConfusionNoiseConfig",
    "GaussianNoise",
    "GaussianNoiseConfig",
    "HeteroscedasticNoise",
    "HeteroscedasticNoiseConfig",
    "NoNoise",
    "NoNoiseConfig",
    "NoiseModel",
    "config_from_kwargs",
]
