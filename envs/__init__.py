"""Noisy-reward Gymnasium tasks (imported as ``rewardfilter.envs``).

Importing this package registers the tasks of :data:`TASKS` under the
``rewardfilter/`` namespace::

    import gymnasium as gym
    import rewardfilter.envs  # noqa: F401  (registers the tasks)

    env = gym.make("rewardfilter/Pendulum-v1", noise="heteroscedastic",
                   noise_kwargs={"std": 0.3, "reliable": "high"})

Noise models (``NOISE_MODELS``): ``none`` (the oracle), ``gaussian``,
``heteroscedastic`` (reliable at high, low or no rewards), ``confusion``
(Wang, Liu & Li, AAAI 2020), ``confusion_surrogate`` (the same noise through
their unbiased surrogate reward, :mod:`rewardfilter.envs.surrogate`), ``learned``
(an ensemble proxy reward model fitted on random-policy data, cached on disk)
and ``proxy`` (the same on random plus expert data, scored by the mean, one
random member, UWO or WCO: :mod:`rewardfilter.envs.proxy`). Every step's info
carries ``true_reward``; ``learned`` and ``proxy`` add ``reward_ensemble``.
"""

from rewardfilter.extras import check_modules

check_modules(("gymnasium",), "sb3", "rewardfilter.envs")

from rewardfilter.envs import noise as _noise
from rewardfilter.envs.learned import (
    CACHE_ENV_VAR,
    LearnedRewardConfig,
    LearnedRewardModel,
    default_cache_dir,
)
from rewardfilter.envs.noise import *  # noqa: F403  (the numpy noise models)
from rewardfilter.envs.tasks import NAMESPACE, TASKS, TaskSpec, make_task, register_tasks
from rewardfilter.envs.wrappers import (
    NOISE_MODELS,
    NOISE_SEED_OPTION,
    NoisyReward,
    make_noise_model,
)

register_tasks()

__all__ = [
    "CACHE_ENV_VAR",
    "NAMESPACE",
    "NOISE_MODELS",
    "NOISE_SEED_OPTION",
    "TASKS",
    "LearnedRewardConfig",
    "LearnedRewardModel",
    "NoisyReward",
    "TaskSpec",
    "default_cache_dir",
    "make_noise_model",
    "make_task",
    "register_tasks",
    *_noise.__all__,
]
