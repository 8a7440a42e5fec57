"""Ranking reliability (rewardfilter.ranking): hand-computed values and a per-group loop as reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rewardfilter as rf
from rewardfilter.ranking import (
    permutation_spearman,
    pool_reliability,
    top1_correct,
    within_group_spearman,
)


def test_within_group_spearman_by_hand():
    # A: same order, rho 1. B: scores (3, 1, 2) -> d = (-2, 1, 1), rho = 1 - 6*6/(3*8) = -0.5.
    # E: tied rewards (1, 1, 2) vs (1, 2, 3): average ranks -> 1.5 / sqrt(1.5 * 2) = sqrt(3)/2.
    # C (constant rewards) and D (one sample) have no rho and are left out.
    rewards = [1, 2, 3, 1, 2, 3, 5, 5, 5, 7, 1, 1, 2]
    scores = [1, 2, 3, 3, 1, 2, 1, 2, 3, 0, 1, 2, 3]
    groups = ["A"] * 3 + ["B"] * 3 + ["C"] * 3 + ["D"] + ["E"] * 3
    expected = (1.0 - 0.5 + math.sqrt(3) / 2) / 3
    assert within_group_spearman(rewards, scores, groups) == pytest.approx(expected)
    assert math.isnan(within_group_spearman([1, 1], [1, 2], [0, 0]))


def test_within_group_spearman_equals_a_loop_over_groups():
    rng = np.random.default_rng(0)
    n = 500
    groups = rng.integers(0, 70, n)
    scores = rng.normal(size=n)
    rewards = scores + rng.normal(size=n)
    rewards[:80] = np.round(rewards[:80])  # ties
    scores[200:260] = np.round(scores[200:260])
    per_group = []
    for g in np.unique(groups):
        m = groups == g
        if m.sum() >= 2 and np.ptp(rewards[m]) > 0 and np.ptp(scores[m]) > 0:
            per_group.append(rf.spearman(rewards[m], scores[m]))
    assert within_group_spearman(rewards, scores, groups) == pytest.approx(np.mean(per_group))


def test_top1_correct_by_hand_and_its_chance_level():
    # A: top reward holds the best score (1). B: it does not (0). C: two tied at the top,
    # one of them best (1/2). D: all scores equal, E: one sample -> left out.
    rewards = [3, 1, 2, 3, 1, 2, 2, 1, 4, 5, 6, 9]
    scores = [5, 1, 0, 0, 1, 1, 0, 0, 2, 2, 2, 1]
    groups = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert top1_correct(rewards, scores, groups) == pytest.approx((1 + 0 + 0.5) / 3)
    # a blind pick: 1/3, 1/2 and 1/3 of the samples hold the best score
    chance = top1_correct(np.zeros(12), scores, groups)
    assert chance == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert math.isnan(top1_correct([1, 2], [1, 1], [0, 0]))


def test_pool_reliability_by_hand():
    # two groups of 3; BoN keeps each group's best reward: samples 2 and 3
    rewards = np.array([0.0, 1.0, 2.0, 3.0, 1.0, 0.0])
    scores = np.array([0.0, 2.0, 1.0, 3.0, 2.0, 1.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    rows = {
        r["filter"]: r for r in pool_reliability(rewards, scores, groups, ["none", "bon"], draws=2)
    }
    assert rows["none"]["kept_fraction"] == 1.0
    assert rows["none"]["filtered_r2"] == pytest.approx(rf.r2(rewards, scores))
    assert rows["none"]["noise_mse"] == pytest.approx(np.mean((rewards - scores) ** 2))
    # group 0: ranks (1,2,3) vs (1,3,2) -> rho 0.5; group 1: identical order -> 1
    assert rows["none"]["within_group_spearman"] == pytest.approx(0.75)
    bon = rows["bon"]
    assert bon["kept_fraction"] == pytest.approx(2 / 6)
    assert bon["kept_score_mean"] == pytest.approx((1.0 + 3.0) / 2)
    assert bon["noise_mse"] == pytest.approx(((2 - 1) ** 2 + 0) / 2)
    assert bon["filtered_r2"] == pytest.approx(1.0)  # two kept points lie on a line
    assert math.isnan(bon["within_group_spearman"])  # one kept per group
    # the pool's ranking: group 0's top reward (sample 2) is not its best (sample 1)
    assert bon["top1_correct"] == pytest.approx(0.5)
    assert bon["top1_chance"] == pytest.approx(1 / 3)


def test_pool_reliability_fits_adaptive_and_needs_the_ensemble_only_where_used():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=300)
    rewards = scores + rng.normal(scale=0.5, size=300)
    groups = np.arange(300) // 5
    ens = np.stack([rewards + rng.normal(scale=0.1, size=300) for _ in range(3)])
    rows = pool_reliability(rewards, scores, groups, ["adaptive", "uncertainty:0.4"], ensemble=ens)
    assert rows[0]["chosen"] in ("bon", "br", "bw", "none")
    assert rows[1]["kept_fraction"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="needs 'ensemble'"):
        pool_reliability(rewards, scores, groups, ["uncertainty:0.4"])
    with pytest.raises(ValueError, match="'draws' parameter of pool_reliability"):
        pool_reliability(rewards, scores, groups, ["none"], draws=0)


def test_permutation_spearman_exact_and_sampled():
    # n = 5: 120 orderings; rho >= 0.9 for the identity and the 4 adjacent swaps
    rho, p = permutation_spearman([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])
    assert rho == pytest.approx(0.9) and p == pytest.approx(5 / 120)
    rho, p = permutation_spearman([1, 2, 3, 4], [4, 3, 2, 1])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(1.0)
    # n = 10 > 10_000 orderings: sampled, (1 + hits) / (permutations + 1)
    rho, p = permutation_spearman(np.arange(10), np.arange(10), permutations=2000)
    assert rho == pytest.approx(1.0) and p == pytest.approx(1 / 2001)
    assert all(math.isnan(v) for v in permutation_spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="length >= 3"):
        permutation_spearman([1, 2], [1, 2])


def test_validation_names_the_argument():
    with pytest.raises(ValueError, match="'scores' has 2 entries"):
        top1_correct([1, 2, 3], [1, 2], [0, 0, 0])
    with pytest.raises(ValueError, match="'rewards' must be finite"):
        within_group_spearman([1, np.nan], [1, 2], [0, 0])
    with pytest.raises(ValueError, match="'groups' has 1 entries"):
        within_group_spearman([1, 2], [1, 2], [0])


def test_pool_reliability_bootstraps_whole_groups():
    # ten copies of one group: any resample of *groups* gives the same numbers, so every CI
    # collapses to its point; resampling single samples would scatter the within-group rho
    rewards = np.tile([0.0, 1.0, 2.0], 10)
    scores = np.tile([0.0, 2.0, 1.0], 10)
    groups = np.repeat(np.arange(10), 3)
    (row,) = pool_reliability(rewards, scores, groups, ["none"], draws=1, resamples=50)
    assert row["within_group_spearman"] == pytest.approx(0.5)
    for key in ("filtered_r2", "within_group_spearman", "noise_mse", "top1_correct"):
        assert row[f"{key}_ci"] == pytest.approx((row[key], row[key])), key
    rng = np.random.default_rng(2)
    scores = rng.normal(size=400)
    rows = pool_reliability(
        scores + rng.normal(size=400),
        scores,
        np.arange(400) // 4,
        ["br", "adaptive"],
        resamples=200,
    )
    for row in rows:
        low, high = row["filtered_r2_ci"]
        assert low < row["filtered_r2"] < high
    with pytest.raises(ValueError, match="'resamples' parameter of pool_reliability"):
        pool_reliability(scores, scores, np.arange(400) // 4, ["none"], resamples=-1)
