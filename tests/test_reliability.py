"""Reliability estimators and the paper's selection rule."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score, roc_auc_score

import rewardfilter as rf


def sklearn_r2(rewards, scores, weights):
    kept = weights > 0
    x, y, w = rewards[kept].reshape(-1, 1), scores[kept], weights[kept]
    pred = LinearRegression().fit(x, y, sample_weight=w).predict(x)
    return r2_score(y, pred, sample_weight=w)


finite = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(3, 40).flatmap(
        lambda n: st.tuples(
            arrays(float, n, elements=finite),
            arrays(float, n, elements=finite),
            arrays(float, n, elements=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0])),
        )
    )
)
def test_r2_equals_scikit_learn(data):
    rewards, scores, weights = data
    kept = weights > 0
    if kept.sum() < 2 or np.ptp(rewards[kept]) < 1e-6 or np.ptp(scores[kept]) < 1e-6:
        return  # sklearn's lstsq and the closed form differ only on (near-)degenerate designs
    np.testing.assert_allclose(
        rf.r2(rewards, scores, weights), sklearn_r2(rewards, scores, weights), atol=1e-6
    )


def test_r2_conventions():
    assert np.isnan(rf.r2([1.0], [2.0]))
    assert np.isnan(rf.r2([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))  # constant scores: no evidence
    assert rf.r2([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0  # constant rewards explain nothing
    assert rf.r2([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == pytest.approx(1.0)
    # zero weights remove samples
    assert rf.r2([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, -50.0], [1, 1, 1, 0]) == pytest.approx(1.0)


def test_r2_bad_input():
    with pytest.raises(ValueError, match="'scores' has 2 entries but 'rewards' has 3"):
        rf.r2([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="'weights' must be >= 0"):
        rf.r2([1.0, 2.0], [1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="'scores' must be finite"):
        rf.r2([1.0, 2.0], [1.0, np.nan])


def test_spearman_mse_auc_match_references():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=200)
    scores = rewards + rng.normal(size=200)
    assert rf.spearman(rewards, scores) == pytest.approx(spearmanr(rewards, scores).statistic)
    assert rf.mse(rewards, scores) == pytest.approx(np.mean((rewards - scores) ** 2))
    passed = (scores > 0).astype(float)
    assert rf.auc(rewards, passed) == pytest.approx(roc_auc_score(passed, rewards))
    with pytest.raises(ValueError, match="binary 'scores'"):
        rf.auc(rewards, scores)


def test_ensemble_std():
    ens = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 2.0]])
    np.testing.assert_allclose(rf.ensemble_std(ens), [0.0, 1.0, 0.0])
    # one member (DESIGN: K = 1 is allowed): no disagreement
    np.testing.assert_array_equal(rf.ensemble_std(np.array([[1.0, 5.0, 2.0]])), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="at least 1 member"):
        rf.ensemble_std(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="2-D"):
        rf.ensemble_std(np.zeros(3))


def test_reliability_curve_finds_the_reliable_region():
    rng = np.random.default_rng(0)
    rewards = rng.uniform(0, 1, 5000)
    noise = np.where(rewards > 0.7, 0.01, 0.5)  # the reward is reliable only where it is high
    scores = rewards + rng.normal(size=5000) * noise
    curve = rf.reliability_curve(rewards, scores, bins=5, strategy="quantile")
    assert curve.count.sum() == 5000
    assert curve.std[-1] < 0.1 < 0.4 < curve.std[1]  # bin width alone gives 0.2/sqrt(12)
    assert len(curve.to_rows()) == 5
    uniform = rf.reliability_curve([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0], bins=[0.0, 1.5, 3.0])
    np.testing.assert_array_equal(uniform.count, [2, 2])
    np.testing.assert_allclose(uniform.mean, [0.5, 2.5])
    with pytest.raises(ValueError, match="'bins' parameter"):
        rf.reliability_curve([0.0, 1.0], [0.0, 1.0], bins=0)


def best_only_predicts(n_groups=400, size=5, seed=0):
    """Only each group's highest reward says anything about its true score."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    rewards = rng.normal(size=groups.shape[0])
    scores = rng.normal(size=groups.shape[0])  # unrelated ...
    best = rf.make_filter("bon").weights(rewards, groups, rng=0) > 0
    scores[best] = 2.0 * rewards[best] + 0.01 * rng.normal(
        size=best.sum()
    )  # ... except at the best
    return rewards, scores, groups


def test_rank_filters_puts_bon_first_when_only_the_best_is_reliable():
    rewards, scores, groups = best_only_predicts()
    ranking = rf.rank_filters(
        ["none", "random:2", "br", "bw", "bon", "topk:2"], rewards, scores, groups, rng=0
    )
    assert ranking[0].spec == "bon"
    assert rf.filtered_r2("bon", rewards, scores, groups, rng=0) > 0.99
    assert rf.filtered_r2("none", rewards, scores, groups, rng=0) < 0.5
    assert [s.r2 for s in ranking] == sorted((s.r2 for s in ranking), reverse=True)


def test_adaptive_fits_chooses_and_exposes_candidates():
    rewards, scores, groups = best_only_predicts(seed=1)
    f = rf.make_filter("adaptive")
    with pytest.raises(rf.NotFittedError, match="not fitted"):
        f.weights(rewards, groups)
    f.fit(rewards, scores, groups, rng=0)
    assert f.chosen_.spec == "bon"
    assert set(f.r2_) == {"bon", "br", "bw", "none"}
    np.testing.assert_array_equal(
        f.weights(rewards, groups, rng=0), rf.make_filter("bon").weights(rewards, groups, rng=0)
    )
    custom = rf.AdaptiveFilter(candidates=("none", "bw"))
    custom.fit(rewards, scores, groups, rng=0)
    assert custom.chosen_.spec in {"none", "bw"}
    with pytest.raises(ValueError, match="'candidates' parameter of adaptive"):
        rf.AdaptiveFilter(candidates=())


def test_filtered_r2_averages_random_filters_and_handles_uncertainty():
    rewards, scores, groups = best_only_predicts(seed=2)
    one = rf.filtered_r2("br", rewards, scores, groups, rng=0, draws=1)
    many = rf.filtered_r2("br", rewards, scores, groups, rng=0, draws=20)
    assert 0 < many < 1 and 0 < one < 1
    ens = np.random.default_rng(0).normal(size=(3, rewards.shape[0]))
    assert np.isfinite(
        rf.filtered_r2("uncertainty:0.2", rewards, scores, groups, rng=0, ensemble=ens)
    )
    with pytest.raises(ValueError, match="'draws' parameter"):
        rf.filtered_r2("br", rewards, scores, groups, draws=0)


# ---------------------------------------------------------------- issue 12 items 4 and 11 regressions


def test_r2_of_a_perfect_line_at_extreme_magnitudes_is_one():
    x = np.arange(6.0)
    assert rf.r2(x * 1e160, 3.0 * x + 1.0) == pytest.approx(1.0)
    assert rf.r2(x * 1e160 + 1e161, x * 1e160) == pytest.approx(1.0)
    assert rf.r2(x * 1e-170, -x) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    r, s = rng.normal(size=50), rng.normal(size=50)
    assert rf.r2(r * 2.0**600, s) == rf.r2(r, s)  # power-of-two scaling is exact


def test_constant_kept_scores_make_r2_nan_and_such_candidates_are_never_chosen():
    # every group's best response fails (score 0); the others are explained by the reward
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 4)
    rewards = rng.normal(size=200)
    scores = rewards + 0.1 * rng.normal(size=200)
    best = rf.make_filter("bon").weights(rewards, groups, rng=0) > 0
    scores[best] = 0.0
    assert np.isnan(rf.filtered_r2("bon", rewards, scores, groups, rng=0))
    ranking = rf.rank_filters(["bon", "none", "bw"], rewards, scores, groups, rng=0)
    assert ranking[-1].spec == "bon" and np.isnan(ranking[-1].r2)
    chosen = rf.make_filter("adaptive").fit(rewards, scores, groups, rng=0).chosen_.spec
    assert chosen != "bon"


def test_rank_filters_and_adaptive_warn_when_an_r2_rests_on_three_samples_or_fewer():
    rewards = np.array([0.0, 1.0, 2.0, 3.0, 0.5, 1.5])
    scores = np.array([0.0, 1.2, 1.9, 3.1, 0.4, 1.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    with pytest.warns(rf.FewKeptSamplesWarning, match="'bon' rests on 2 kept sample"):
        rf.rank_filters(["none", "bon"], rewards, scores, groups, rng=0)
    with pytest.warns(rf.FewKeptSamplesWarning):
        rf.make_filter("adaptive").fit(rewards, scores, groups, rng=0)
    many = np.repeat(np.arange(20), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", rf.FewKeptSamplesWarning)
        rf.rank_filters(["bon"], np.tile(rewards[:3], 20), np.tile(scores[:3], 20), many, rng=0)


def test_reliability_curve_bounds_bins_by_the_sample_count():
    with pytest.raises(
        ValueError, match=r"'bins' parameter of reliability_curve must be an int in \[1, 3\]"
    ):
        rf.reliability_curve([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], bins=10**9)
    with pytest.raises(ValueError, match="'bins'"):
        rf.reliability_curve([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], bins=True)
    assert rf.reliability_curve([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], bins=3).count.sum() == 3
