"""The offline R² test's pieces: a common pool of grouped episodes, per-filter metrics, the permutation test."""

from __future__ import annotations

import numpy as np
import pytest

from rewardfilter.adapters.sb3.pool import collect_pool, permutation_spearman, pool_metrics


class _RandomPolicy:
    def __init__(self, n_actions=2, seed=0):
        self.rng = np.random.default_rng(seed)
        self.n = n_actions

    def predict(self, obs, deterministic=False):
        return self.rng.integers(0, self.n, size=len(obs)), None


def test_collect_pool_records_one_episode_per_env_grouped_by_start_state():
    pool = collect_pool(
        _RandomPolicy(),
        "rewardfilter/CartPole-v1",
        n_contexts=3,
        group_size=4,
        env_kwargs={"noise": "gaussian", "noise_kwargs": {"std": 0.3}},
    )
    np.testing.assert_array_equal(pool["groups"], np.repeat(np.arange(3), 4))
    assert (pool["true"] >= 8).all()  # CartPole's true return is the episode length
    assert not np.allclose(pool["noisy"], pool["true"])
    assert pool["ensemble"] is None


def _synthetic_pool(noise, n=200, size=4, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=n)
    return {
        "noisy": true + rng.normal(scale=noise, size=n),
        "true": true,
        "groups": np.arange(n) // size,
        "ensemble": None,
    }


def test_pool_metrics_on_a_noise_free_pool():
    rows = pool_metrics(["none", "bon", "br", "random:2"], _synthetic_pool(0.0), draws=3)
    assert [r["filter"] for r in rows] == ["none", "bon", "br", "random:2"]
    for row in rows:
        assert row["filtered_r2"] == pytest.approx(1.0) and row["noise_mse"] == 0.0
        assert row["top1_correct"] == 1.0
    assert rows[1]["kept_fraction"] == 0.25 and rows[2]["kept_fraction"] == 0.5
    assert np.isnan(rows[1]["within_group_spearman"])  # one kept episode per group
    assert rows[2]["within_group_spearman"] == pytest.approx(1.0)


def test_pool_metrics_see_noise():
    clean = pool_metrics(["br"], _synthetic_pool(0.1), draws=3)[0]
    noisy = pool_metrics(["br"], _synthetic_pool(1.0), draws=3)[0]
    assert noisy["filtered_r2"] < clean["filtered_r2"]
    assert noisy["noise_mse"] > clean["noise_mse"]
    assert noisy["top1_correct"] < clean["top1_correct"]


def test_permutation_spearman():
    rho, p = permutation_spearman([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60], permutations=2000)
    assert rho == pytest.approx(1.0) and p < 0.01  # 1/720 of orderings are as good
    rho, p = permutation_spearman([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1], permutations=2000)
    assert rho == pytest.approx(-1.0) and p > 0.99
    with pytest.raises(ValueError, match="'x' and 'y' parameters"):
        permutation_spearman([1, 2], [1, 2])
