"""rf.filter_stats / rf.FilterStats: one statistics record of a filtering step."""

import math

import numpy as np
import pytest

import rewardfilter as rf


def test_hand_computed_record():
    rewards = np.array([1.0, 3.0, 2.0, 5.0, 5.0, 0.0])
    groups = np.array([0, 0, 0, 1, 1, 2])
    weights = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 0.5])
    scores = np.array([0.0, 3.0, 1.0, 9.0, 9.0, 1.0])
    st = rf.filter_stats(rewards, weights, groups, scores=scores)
    assert (st.n_samples, st.n_kept, st.n_groups, st.groups_dropped) == (6, 3, 3, 1)
    assert st.kept_fraction == 0.5 and st.group_size_mean == 2.0
    assert st.reward_mean == pytest.approx(16 / 6)
    assert st.kept_reward_mean == pytest.approx((3 + 2 + 0) / 2.5)
    assert st.score_mean == pytest.approx(23 / 6)
    assert st.kept_score_mean == pytest.approx((3 + 1 + 0.5) / 2.5)
    assert st.r2 == pytest.approx(rf.r2(rewards, scores))
    assert st.filtered_r2 == pytest.approx(rf.r2(rewards, scores, weights))
    # kept: rewards 3, 2, 0 rank 3, 2, 1; scores 3, 1, 1 rank 3, 1.5, 1.5 -> corr = sqrt(3) / 2
    assert st.filtered_spearman == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(st.ensemble_std_mean) and st.scores_skipped == 0 and not st.fallback


def test_without_scores_the_score_fields_are_nan_and_ensemble_is_summarised():
    ens = np.array([[0.0, 1.0, 2.0, 2.0], [0.0, 3.0, 2.0, 4.0]])
    st = rf.filter_stats(ens.mean(0), [1, 1, 0, 1], ["a", "a", "b", "b"], ensemble=ens)
    assert math.isnan(st.score_mean) and math.isnan(st.filtered_r2)
    assert st.ensemble_std_mean == pytest.approx(0.5) and st.groups_dropped == 0


def test_nan_scores_are_skipped_and_counted_not_refused():
    st = rf.filter_stats(
        [1.0, 2.0, 3.0, 4.0], [1, 1, 1, 0], [0, 0, 0, 0], scores=[1.0, np.nan, 3.0, 4.0]
    )
    assert st.scores_skipped == 1 and st.score_mean == pytest.approx(8 / 3)
    assert st.filtered_r2 == pytest.approx(1.0)


def test_nothing_kept_and_fallback():
    st = rf.filter_stats([1.0, 2.0], [0.0, 0.0], [0, 0], scores=[0.0, 1.0], fallback=True)
    assert st.n_kept == 0 and st.groups_dropped == 1 and st.fallback
    assert math.isnan(st.kept_reward_mean) and math.isnan(st.filtered_r2)
    d = st.as_dict(prefix="filter/")
    assert d["filter/fallback"] == 1.0 and d["filter/n_kept"] == 0 and len(d) == 16


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="'weights' has 1 entries"):
        rf.filter_stats([1.0, 2.0], [1.0], [0, 0])
    with pytest.raises(ValueError, match="'rewards' must be finite"):
        rf.filter_stats([1.0, np.nan], [1.0, 1.0], [0, 0])
    with pytest.raises(ValueError, match="'scores' must be a 1-D array of 2 real numbers"):
        rf.filter_stats([1.0, 2.0], [1.0, 1.0], [0, 0], scores=["a", "b"])
    with pytest.raises(ValueError, match="'fallback' parameter of filter_stats must be a bool"):
        rf.filter_stats([1.0, 2.0], [1.0, 1.0], [0, 0], fallback=1)
