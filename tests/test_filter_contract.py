"""The filter contract without special cases: requires_fit / is_fitted, fresh instances, no cycle."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

import rewardfilter as rf


def labelled(n_groups=100, size=4, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    rewards = rng.normal(size=groups.shape[0])
    return rewards, rewards + 0.5 * rng.normal(size=groups.shape[0]), groups


@pytest.mark.parametrize("spec", ["none", "br", "uncertainty:0.2", "zero_std+bw", "std_top:0.5"])
def test_filters_without_fit_are_always_fitted(spec):
    f = rf.make_filter(spec)
    assert f.requires_fit is False and f.is_fitted is True


@pytest.mark.parametrize("spec", ["adaptive", "zero_std+adaptive"])
def test_filters_that_need_fitting_say_so_until_fitted(spec):
    rewards, scores, groups = labelled()
    f = rf.make_filter(spec)
    assert f.requires_fit is True and f.is_fitted is False
    with pytest.raises(rf.NotFittedError):
        f.weights(rewards, groups)
    f.fit(rewards, scores, groups, rng=0)
    assert f.is_fitted and f.weights(rewards, groups, rng=0).shape == rewards.shape


def test_resolved_is_the_filter_itself_or_adaptives_choice():
    rewards, scores, groups = labelled()
    br = rf.make_filter("br")
    assert br.resolved is br
    adaptive = rf.make_filter("adaptive")
    with pytest.raises(rf.NotFittedError):
        _ = adaptive.resolved
    adaptive.fit(rewards, scores, groups, rng=0)
    assert adaptive.resolved is adaptive.chosen_ and adaptive.resolved.spec in adaptive.r2_


def test_a_fitted_filter_handed_over_twice_does_not_share_its_fit():
    rewards, scores, groups = labelled()
    adaptive = rf.make_filter("adaptive").fit(rewards, scores, groups, rng=0)
    a, b = rf.make_filter(adaptive), rf.make_filter(adaptive)
    assert a is not b and a.is_fitted and b.is_fitted  # copies keep the fit
    assert a.chosen_.spec == b.chosen_.spec == adaptive.chosen_.spec
    a.fit(rewards[:40], -scores[:40], groups[:40], rng=1)  # a refit of one trainer's copy ...
    assert b.r2_ == adaptive.r2_ != a.r2_  # ... never reaches the other or the caller
    assert rf.make_filter("adaptive") is not rf.make_filter("adaptive")


def test_filtered_r2_fits_a_copy_and_leaves_the_callers_filter_unfitted():
    rewards, scores, groups = labelled()
    f = rf.make_filter("adaptive")
    assert np.isfinite(rf.filtered_r2(f, rewards, scores, groups, rng=0))
    assert not f.is_fitted


def test_adaptive_refuses_candidates_that_need_fitting():
    with pytest.raises(ValueError, match="'candidates' parameter of adaptive"):
        rf.AdaptiveFilter(candidates=("bon", "zero_std+adaptive"))


def test_adaptive_lives_in_selection_and_the_old_import_still_works():
    from rewardfilter.selection import AdaptiveFilter

    assert rf.AdaptiveFilter is AdaptiveFilter
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from rewardfilter.filters import AdaptiveFilter as old
    assert old is AdaptiveFilter
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_no_import_cycle_between_filters_and_selection():
    import ast
    from pathlib import Path

    source = Path(rf.filters.__file__).read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert "rewardfilter.selection" not in imported


def test_register_spec_adds_a_filter_in_one_place(monkeypatch):
    from dataclasses import dataclass

    @dataclass(frozen=True, repr=False)
    class KeepFirst(rf.Filter):
        @property
        def spec(self):
            return "keep_first_test"

        def _weights(self, rewards, groups, rng, ensemble):
            return (np.arange(rewards.shape[0]) == 0).astype(float)

    monkeypatch.setattr(rf.filters, "_PARSERS", dict(rf.filters._PARSERS))  # undone after the test
    rf.register_spec("keep_first_test", "none", lambda arg: KeepFirst())
    w = rf.make_filter("zero_std+keep_first_test").weights([1.0, 2.0, 3.0, 3.0], [0, 0, 1, 1])
    np.testing.assert_array_equal(w, [1, 0, 0, 0])
    with pytest.raises(ValueError, match="'argument' parameter of register_spec"):
        rf.register_spec("x", "sometimes", lambda arg: KeepFirst())


def test_import_rewardfilter_does_not_import_scikit_learn():
    code = "import sys, rewardfilter; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
