"""rewardfilter.validation: one message shape, numbers are numbers (regressions of issue 12 item 11)."""

import warnings

import numpy as np
import pytest

import rewardfilter as rf
from rewardfilter.validation import (
    Interval,
    as_generator,
    check_1d_finite,
    check_bool,
    check_choice,
    check_groups,
    check_scalar,
)


@pytest.mark.parametrize(
    "interval, text",
    [
        (Interval("float", 0, 1, "left"), "a float in [0, 1)"),
        (Interval("float", 0, 1, "right"), "a float in (0, 1]"),
        (Interval("float", 0), "a float in [0, inf)"),
        (Interval("float"), "a finite float"),
        (Interval("int", 1), "an int >= 1"),
        (Interval("int", 0, 5), "an int in [0, 5]"),
        (Interval("float", None, 2, "neither"), "a float in (-inf, 2)"),
    ],
)
def test_interval_phrases(interval, text):
    assert str(interval) == text


def test_check_scalar_message_shape_and_conversion():
    with pytest.raises(ValueError) as info:
        check_scalar(1.5, "q", "uncertainty", min_val=0, max_val=1, include_boundaries="left")
    assert str(info.value) == "The 'q' parameter of uncertainty must be a float in [0, 1); got 1.5."
    assert check_scalar(np.int64(3), "k", "topk", "int", min_val=1) == 3
    assert isinstance(check_scalar(2, "t", "threshold"), float)


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), "1", 1 + 0j, float("nan"), None])
def test_check_scalar_refuses_non_numbers(bad):
    with pytest.raises(ValueError, match="'x' parameter of f must be a finite float"):
        check_scalar(bad, "x", "f")


def test_int_refuses_floats_and_bools():
    with pytest.raises(ValueError, match="an int >= 1; got 2.0"):
        check_scalar(2.0, "k", "topk", "int", min_val=1)
    with pytest.raises(ValueError, match="an int >= 1; got True"):
        check_scalar(True, "k", "topk", "int", min_val=1)


def test_check_bool_and_choice():
    assert check_bool(np.bool_(False), "flag", "f") is False
    with pytest.raises(ValueError, match="'flag' parameter of f must be a bool; got 1"):
        check_bool(1, "flag", "f")
    assert check_choice("a", "mode", "f", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"must be one of \('a', 'b'\); got \['a'\]"):
        check_choice(["a"], "mode", "f", ("a", "b"))


# ---------------------------------------------------------------- issue 12 item 11 regressions


def test_negative_seed_error_names_rng():
    with pytest.raises(ValueError, match="'rng' parameter of rewardfilter must be .* seed >= 0"):
        as_generator(-1)
    with pytest.raises(ValueError, match="'rng' parameter"):
        rf.make_filter("br").weights([1.0, 2.0], [0, 0], rng=-1)
    with pytest.raises(ValueError, match="'rng' parameter"):
        as_generator(True)


@pytest.mark.parametrize(
    "spec_or_call",
    [
        lambda: rf.Uncertainty(q=True),
        lambda: rf.Threshold(t=False),
        lambda: rf.TopK(k=True),
        lambda: rf.make_filter("br").check_group_size(True),
        lambda: rf.RankWeights((True, 0.5)),
        lambda: rf.ZeroStd(eps=False),
        lambda: rf.StdTop(p=True),
    ],
)
def test_booleans_are_refused_where_numbers_are_expected(spec_or_call):
    with pytest.raises(ValueError, match="parameter of"):
        spec_or_call()


@pytest.mark.parametrize("bad", [[1 + 2j, 3.0], ["1", "2"], np.array(["1.5", "2"]), [1.0, "2"]])
def test_complex_and_string_rewards_are_refused(bad):
    with pytest.raises(ValueError, match="'rewards' must be a 1-D array of real numbers"):
        rf.make_filter("bon").weights(bad, [0, 0])
    with pytest.raises(ValueError, match="'rewards' must be a 1-D array of real numbers"):
        rf.r2(bad, [1.0, 2.0])


def test_boolean_scores_still_count_as_numbers():
    assert check_1d_finite([True, False, True], "scores").tolist() == [1.0, 0.0, 1.0]


def test_object_ids_of_different_types_stay_apart():
    ids = np.array([1, "1", 1, "1"], dtype=object)
    codes = check_groups(ids, 4)
    assert codes[0] == codes[2] and codes[1] == codes[3] and codes[0] != codes[1]
    w = rf.make_filter("bon").weights([1.0, 5.0, 2.0, 3.0], ids)
    np.testing.assert_array_equal(w, [0, 1, 1, 0])


def test_tuple_ids_are_supported():
    groups = [("p0", 0), ("p0", 1), ("p0", 0), ("p0", 1)]
    w = rf.make_filter("bon").weights([1.0, 5.0, 2.0, 3.0], groups)
    np.testing.assert_array_equal(w, [0, 1, 1, 0])
    # numeric tuples, ragged tuples and a numpy object array of tuples
    np.testing.assert_array_equal(
        rf.make_filter("bon").weights([1.0, 2.0, 3.0], [(0, 1), (0, 1), (1, 1)]), [0, 1, 1]
    )
    np.testing.assert_array_equal(
        rf.make_filter("bon").weights([1.0, 2.0, 3.0], [(0,), (0,), (1, 1)]), [0, 1, 1]
    )
    with pytest.raises(ValueError, match="'groups' has 2 entries but 'rewards' has 3"):
        rf.make_filter("bon").weights([1.0, 2.0, 3.0], [(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="hashable"):
        check_groups(np.array([[0], {1: 2}], dtype=object), 2)


def test_not_fitted_error_is_scikit_learns():
    from sklearn.exceptions import NotFittedError

    assert rf.NotFittedError is NotFittedError
    with pytest.raises(NotFittedError):
        rf.make_filter("adaptive").weights([1.0, 2.0], [0, 0])


def test_private_module_is_a_deprecated_re_export():
    import importlib
    import sys

    sys.modules.pop("rewardfilter._validation", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module("rewardfilter._validation")
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    import rewardfilter.validation as public

    assert module.param_error is public.param_error and module.as_generator is public.as_generator
