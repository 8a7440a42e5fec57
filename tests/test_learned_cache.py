"""The learned proxy's cache: any unreadable or invalid file is refitted with a warning (issue 12 item 10)."""

import gymnasium as gym
import numpy as np
import pytest

import rewardfilter.envs as rfe
from rewardfilter.envs import learned as learned_mod

TINY = {"n_members": 3, "n_transitions": 200, "max_iter": 20, "hidden_sizes": (8,)}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv(rfe.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(learned_mod, "_MEMO", {})


def _model():
    learned_mod._MEMO.clear()
    env = gym.make("rewardfilter/CartPole-v1", noise="learned", noise_kwargs=TINY)
    return env.get_wrapper_attr("noise_model")


def _rewrite(path, change):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(path, **arrays)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _drop_w0(path):
    _rewrite(path, lambda a: a.pop("W0"))


def _nan_weight(path):
    _rewrite(path, lambda a: a["W0"].__setitem__((0, 0, 0), np.nan))


def _bad_shape(path):
    _rewrite(path, lambda a: a.__setitem__("b0", a["b0"][:, :-1]))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_truncate, "unreadable"),
        (_flip_byte, "unreadable"),
        (_drop_w0, r"missing the array\(s\) \['W0'\]"),
        (_nan_weight, "non-finite or non-float values in 'W0'"),
        (_bad_shape, "bias 'b0' of shape"),
    ],
    ids=["truncated", "flipped-byte", "missing-array", "nan-weights", "bad-shape"],
)
def test_a_damaged_cache_is_refitted_with_a_warning(damage, reason):
    first = _model()
    assert not first.loaded_from_cache and first.path.exists()
    x = np.random.default_rng(0).normal(size=(5, first._arrays["x_mean"].shape[0]))
    expected = first.predict_features(x)
    damage(first.path)
    with pytest.warns(RuntimeWarning, match=f"cache .* is .*{reason}.*; refitting it"):
        refit = _model()
    assert not refit.loaded_from_cache
    np.testing.assert_allclose(refit.predict_features(x), expected)  # the same fit, all finite
    again = _model()  # the refit was written back, and now loads cleanly
    assert again.loaded_from_cache


def test_a_stale_cache_is_refitted_without_a_warning(recwarn):
    first = _model()
    np.savez(first.path, key=np.asarray("written for other parameters"))
    assert not _model().loaded_from_cache
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
