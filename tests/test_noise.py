"""The numpy noise models live once (rewardfilter.noise); the envs and the bandit domain use them."""

import numpy as np
import pytest

from rewardfilter import noise as rn
from rewardfilter.experiments.domains import bandit


def test_envs_and_bandit_share_the_models():
    import rewardfilter.envs as rfe

    assert rfe.HeteroscedasticNoise is rn.HeteroscedasticNoise
    assert rfe.NOISE_MODELS["gaussian"] == rn.NUMPY_NOISE_MODELS["gaussian"]
    assert isinstance(bandit.noise_model("heteroscedastic"), rn.HeteroscedasticNoise)


def test_vectorised_scale_matches_the_scalar_one():
    values = np.linspace(-20.0, 3.0, 47)
    for kwargs in [{}, {"reliable": "low"}, {"reliable": "none"}, {"threshold": 0.7}]:
        model = rn.make_noise("heteroscedastic", kwargs)
        many = model.scale(values, -16.3, 0.0)
        assert [model.scale(float(v), -16.3, 0.0) for v in values] == many.tolist()
    np.testing.assert_array_equal(rn.make_noise("gaussian", {"std": 0.2}).scale([0, 5], 0, 10), 2.0)
    np.testing.assert_array_equal(rn.make_noise("none").scale([0.3, 0.9], 0, 1), 0.0)
    with pytest.raises(TypeError, match="not additive"):
        rn.make_noise("confusion").scale([0.5], 0, 1)


def test_step_profile():
    model = rn.make_noise("heteroscedastic", {"std": 0.5, "min_std": 0.05, "threshold": 0.8})
    np.testing.assert_array_equal(
        model.scale([0.1, 0.79, 0.8, 1.0], 0.0, 1.0), [0.5, 0.5, 0.05, 0.05]
    )
    low = rn.make_noise(
        "heteroscedastic", {"std": 0.5, "min_std": 0.05, "reliable": "low", "threshold": 0.2}
    )
    np.testing.assert_array_equal(low.scale([0.1, 0.2, 0.3], 0.0, 1.0), [0.05, 0.05, 0.5])
    with pytest.raises(
        ValueError,
        match=r"'threshold' parameter of heteroscedastic noise must be a float in \[0, 1\]",
    ):
        rn.make_noise("heteroscedastic", {"threshold": 1.5})


def test_bandit_heteroscedastic_takes_the_envs_parameter_names():
    model = bandit.noise_model(
        "heteroscedastic", {"std": 0.4, "min_std": 0.1, "reliable": "high", "threshold": None}
    )
    envs_model = rn.HeteroscedasticNoise(rn.HeteroscedasticNoiseConfig(std=0.4, min_std=0.1))
    scores = np.linspace(0, 1, 11)
    np.testing.assert_array_equal(model.scale(scores, 0.0, 1.0), envs_model.scale(scores, 0.0, 1.0))
    # the earlier names still mean what they meant
    legacy = bandit.noise_model(
        "heteroscedastic", {"std_low": 0.6, "std_high": 0.05, "threshold": 0.7}
    )
    np.testing.assert_array_equal(legacy.scale([0.5, 0.7], 0.0, 1.0), [0.6, 0.05])


def _run(noise_kwargs):
    logs = []
    bandit.run_bandit(
        {
            "task": "bandit/8x4",
            "hparams": {},
            "method": {"group_size": 4, "filter": "none", "reward": "noisy"},
            "noise": {"model": "heteroscedastic", "kwargs": noise_kwargs},
            "budget": {"steps": 3, "eval_every": 3},
            "seed": 0,
        },
        logs.append,
    )
    return logs[-1]


def test_bandit_no_longer_ignores_the_envs_names():
    # before: std/min_std were silently ignored and the default noise (std 0.5) applied
    assert _run({"std": 0.0, "min_std": 0.0})["filtered_r2"] == pytest.approx(1.0)
    assert _run({})["filtered_r2"] < 0.9


@pytest.mark.parametrize(
    "model, kwargs, match",
    [
        (
            "heteroscedastic",
            {"sigma": 1.0},
            r"Unknown parameter\(s\) \['sigma'\] for heteroscedastic noise",
        ),
        ("gaussian", {"std_low": 0.1}, r"Unknown parameter\(s\) \['std_low'\] for gaussian noise"),
        ("heteroscedastic", {"std_low": 0.1, "std": 0.2}, "both 'std_low' and 'std'"),
        (
            "heteroscedastic",
            {"reliable": "middle"},
            "'reliable' parameter of heteroscedastic noise",
        ),
        ("confusion", {}, "The bandit domain has no noise model 'confusion'"),
    ],
)
def test_bandit_rejects_unknown_noise_and_keys_naming_them(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bandit.noise_model(model, kwargs)


def test_bandit_lists_the_parameters_it_accepts():
    assert bandit.NOISE_KWARGS == {
        "none": (),
        "gaussian": ("std",),
        "heteroscedastic": ("std", "min_std", "reliable", "threshold", "std_low", "std_high"),
    }
    for model, names in bandit.NOISE_KWARGS.items():
        for name in names:
            if name not in ("std_low", "std_high", "reliable"):
                bandit.noise_model(model, {name: 0.1})  # each one is accepted
