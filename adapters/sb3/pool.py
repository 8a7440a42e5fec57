"""The offline R² test: filters compared on one common pool of grouped episodes.

PF-PPO chooses a filter by the R² between reward and true score on the samples
it keeps, measured *offline* on responses of one policy. The control analogue:

1. :func:`collect_pool` runs a policy (e.g. a PPO-M checkpoint at 25/50/75 % of
   training) on G contexts x N episodes that share start states, and records
   each episode's observed (noisy) return, true return and ensemble sums;
2. :func:`pool_metrics` computes, for every filter on that pool, the filtered R²,
   the within-group Spearman and the noise MSE on kept episodes, and the share
   of contexts whose noisy best is the true best;
3. :func:`permutation_spearman` (from :mod:`rewardfilter.ranking`, re-exported
   here) tests whether the filters' offline R² ranks them as their training
   outcome does (Spearman ρ, one-sided permutation p).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardfilter.adapters.sb3.grouping import make_grouped_vec_env
from rewardfilter.ranking import permutation_spearman, pool_reliability
from rewardfilter.validation import check_scalar

__all__ = ["collect_pool", "permutation_spearman", "pool_metrics"]


def collect_pool(
    model: Any,
    env_id: str,
    n_contexts: int,
    group_size: int,
    *,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    deterministic: bool = False,
    max_steps: int = 100_000,
) -> dict[str, Any]:
    """One episode per env of a grouped vec env: G = ``n_contexts`` contexts x N = ``group_size``.

    Parameters
    ----------
    model
        Anything with SB3's ``predict(obs, deterministic=...)`` (a loaded PPO).
    env_id, env_kwargs
        The task and its ``gymnasium.make`` arguments (noise model, ``episode_level``).
    seed : int
        Base seed of the start states (see :class:`GroupMember`); a seed gives
        every filter and checkpoint the same contexts.
    deterministic : bool
        Sample actions (False, as in training: the N episodes of a context differ)
        or take the policy's mode.
    max_steps : int
        Safety bound on vec-env steps.

    Returns
    -------
    dict
        ``noisy``, ``true`` (episode returns), ``groups`` (context per episode) and
        ``ensemble`` (members x episodes, or None).
    """
    check_scalar(n_contexts, "n_contexts", "collect_pool", "int", min_val=1)
    check_scalar(group_size, "group_size", "collect_pool", "int", min_val=1)
    venv = make_grouped_vec_env(
        env_id, n_groups=n_contexts, group_size=group_size, seed=seed, env_kwargs=env_kwargs
    )
    n = n_contexts * group_size
    noisy, true = np.zeros(n), np.zeros(n)
    ens: np.ndarray | None = None
    done = np.zeros(n, dtype=bool)
    obs = venv.reset()
    for _ in range(max_steps):
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, _, dones, infos = venv.step(action)
        live = ~done
        for e in np.flatnonzero(live):
            info = infos[e]
            noisy[e] += info["observed_reward"]
            true[e] += info.get("true_reward", info["observed_reward"])
            if "reward_ensemble" in info:
                if ens is None:
                    ens = np.zeros((len(info["reward_ensemble"]), n))
                ens[:, e] += info["reward_ensemble"]
        done |= np.asarray(dones, dtype=bool) & live
        if done.all():
            break
    else:
        raise RuntimeError(f"collect_pool: episodes did not end within {max_steps} steps.")
    venv.close()
    return {
        "noisy": noisy,
        "true": true,
        "groups": np.arange(n) // group_size,
        "ensemble": ens,
    }


def pool_metrics(
    specs: Sequence[str],
    pool: dict[str, Any],
    *,
    rng: np.random.Generator | int | None = 0,
    draws: int = 20,
) -> list[dict[str, Any]]:
    """Per filter, :func:`rewardfilter.ranking.pool_reliability` on a pool of
    :func:`collect_pool`: ``filtered_r2``, ``within_group_spearman``, ``noise_mse``
    (noisy vs true return), ``kept_fraction``, ``kept_score_mean`` on the kept episodes,
    averaged over ``draws`` draws of the filter's randomness, and the pool's
    ``top1_correct`` and ``top1_chance``."""
    return pool_reliability(
        pool["noisy"],
        pool["true"],
        pool["groups"],
        specs,
        ensemble=pool.get("ensemble"),
        rng=rng,
        draws=draws,
    )
