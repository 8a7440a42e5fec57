"""The offline R² test: filters compared on one common pool of grouped episodes.

PF-PPO chooses a filter by the R² between reward and true score on the samples
it keeps, measured *offline* on responses of one policy. The control analogue:

1. :func:`collect_pool` runs a policy (e.g. a PPO-M checkpoint at 25/50/75 % of
   training) on G contexts x N episodes that share start states, and records
   each episode's observed (noisy) return, true return and ensemble sums;
2. :func:`pool_metrics` computes, for every filter on that pool, the filtered R²,
   the within-group Spearman and the noise MSE on kept episodes, and the share
   of contexts whose noisy best is the true best;
3. :func:`permutation_spearman` tests whether the filters' offline R² ranks
   them as their training outcome does (Spearman ρ, one-sided permutation p).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import rewardfilter as rf
from rewardfilter.adapters.sb3.grouping import make_grouped_vec_env
from rewardfilter.adapters.sb3.stats import top1_correct
from rewardfilter.validation import check_scalar


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


def _within_group_spearman(noisy: np.ndarray, true: np.ndarray, groups: np.ndarray) -> float:
    values = []
    for g in np.unique(groups):
        m = groups == g
        if m.sum() >= 2 and np.ptp(noisy[m]) > 0 and np.ptp(true[m]) > 0:
            values.append(rf.spearman(noisy[m], true[m]))
    return float(np.mean(values)) if values else float("nan")


def pool_metrics(
    specs: Sequence[str],
    pool: dict[str, Any],
    *,
    rng: np.random.Generator | int | None = 0,
    draws: int = 20,
) -> list[dict[str, Any]]:
    """Per filter, on the kept episodes of the pool (averaged over ``draws`` draws of its
    randomness): ``filtered_r2``, ``within_group_spearman`` (groups with 2 or more kept),
    ``noise_mse`` (mean squared noisy - true return) and ``kept_fraction``; plus the pool's
    ``top1_correct``, the same for every filter."""
    check_scalar(draws, "draws", "pool_metrics", "int", min_val=1)
    gen = np.random.default_rng(rng)
    noisy, true, groups = pool["noisy"], pool["true"], pool["groups"]
    top1 = top1_correct(noisy, true, groups)
    rows = []
    for spec in specs:
        filt = rf.make_filter(spec)
        ens = pool.get("ensemble")
        r2s, rhos, mses, kept = [], [], [], []
        for _ in range(draws):
            w = filt.weights(noisy, groups, rng=gen, ensemble=ens if filt.needs_ensemble else None)
            k = w > 0
            kept.append(k.mean())
            if k.sum() >= 2:
                r2s.append(rf.r2(noisy, true, weights=w))
            rhos.append(_within_group_spearman(noisy[k], true[k], groups[k]))
            mses.append(rf.mse(noisy[k], true[k]) if k.any() else np.nan)

        def mean(values: list[float]) -> float:
            finite = [v for v in values if np.isfinite(v)]
            return float(np.mean(finite)) if finite else float("nan")

        rows.append(
            {
                "filter": filt.spec,
                "filtered_r2": mean(r2s),
                "within_group_spearman": mean(rhos),
                "noise_mse": mean(mses),
                "kept_fraction": mean(kept),
                "top1_correct": top1,
            }
        )
    return rows


def permutation_spearman(
    x: Sequence[float],
    y: Sequence[float],
    *,
    permutations: int = 10_000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float]:
    """Spearman ρ between ``x`` (e.g. offline filtered R² per filter) and ``y`` (their IQM),
    and the one-sided permutation p-value P(ρ_perm >= ρ) over shuffles of ``y``."""
    check_scalar(permutations, "permutations", "permutation_spearman", "int", min_val=1)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1 or xa.shape[0] < 3:
        raise ValueError(
            "The 'x' and 'y' parameters of permutation_spearman must be 1-D of one length >= 3; "
            f"got shapes {xa.shape} and {ya.shape}."
        )
    from scipy.stats import rankdata

    rho = rf.spearman(xa, ya)
    rx, ry = rankdata(xa), rankdata(ya)
    gen = np.random.default_rng(rng)
    perm = np.array([np.corrcoef(rx, gen.permutation(ry))[0, 1] for _ in range(permutations)])
    return float(rho), float((1 + (perm >= rho - 1e-12).sum()) / (permutations + 1))
