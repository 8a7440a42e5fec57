"""rliable statistics: hand-computed values, equality with rliable itself, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rliable.library", reason="the [report] extra (rliable, pandas < 3)")

from rliable import library, metrics  # noqa: E402

from rewardfilter.experiments.rliable_report import (  # noqa: E402
    Curve,
    auc,
    curves_from_rows,
    curves_from_runs,
    main,
    rliable_summary,
    scores_at,
)
from rewardfilter.experiments.rliable_stats import (  # noqa: E402
    improvement_ci,
    iqm_ci,
    normalised_iqm_ci,
)

# --------------------------------------------------------------------------- rliable_stats


def test_iqm_by_hand_and_constant_scores():
    # 8 runs: the 25 % trimmed mean drops 2 at each end -> mean(3, 4, 5, 6) = 4.5
    point, lo, hi = iqm_ci(np.arange(1.0, 9.0)[:, None], resamples=200)
    assert point == pytest.approx(4.5)
    assert lo <= 4.5 <= hi and lo < hi
    assert iqm_ci(np.full((5, 2), 3.0), resamples=50) == pytest.approx((3.0, 3.0, 3.0))


def test_probability_of_improvement_by_hand():
    # column 1: pairs (x > y) + ties / 2 = (2 + 2.5 + 3) / 9; column 2: X always below
    x = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    y = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 1.0]])
    point, lo, hi = improvement_ci(x, y, resamples=200)
    assert point == pytest.approx((7.5 / 9 + 0.0) / 2)
    assert 0.0 <= lo <= point <= hi <= 1.0
    assert improvement_ci(x[:, :1], y[:, :1], resamples=10)[0] == pytest.approx(7.5 / 9)


def test_intervals_equal_rliables_own():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(10, 3)), rng.normal(0.5, size=(7, 3))
    ours = iqm_ci(x, resamples=300, seed=11)
    np.random.seed(11)  # noqa: NPY002 (rliable's bootstrap draws from the global state)
    p, ci = library.get_interval_estimates(
        {"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=300
    )
    assert ours == pytest.approx((p["x"][0], ci["x"][0, 0], ci["x"][1, 0]))
    ours = improvement_ci(x, y, resamples=300, seed=5)
    np.random.seed(5)  # noqa: NPY002
    p, ci = library.get_interval_estimates(
        {"xy": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=300
    )
    assert ours == pytest.approx((p["xy"][0], ci["xy"][0, 0], ci["xy"][1, 0]))


def test_seeded_reproducible_and_global_state_restored():
    x = np.random.default_rng(0).normal(size=(6, 2))
    np.random.seed(123)  # noqa: NPY002
    expected = np.random.rand()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    a = iqm_ci(x, resamples=100, seed=1)
    assert np.random.rand() == expected  # noqa: NPY002
    assert iqm_ci(x, resamples=100, seed=1) == a
    assert iqm_ci(x, resamples=100, seed=2) != a


def test_normalised_resamples_the_anchors_jointly():
    # the method's runs are all 5: held-fixed anchors (mean 0 and 10) would give [0.5, 0.5]
    x = np.full((4, 1), 5.0)
    base = np.array([[-1.0], [1.0], [-1.0], [1.0]])
    oracle = np.array([[9.0], [11.0], [9.0], [11.0]])
    point, lo, hi = normalised_iqm_ci(x, base, oracle, resamples=500)
    assert point == pytest.approx(0.5)
    assert lo < 0.5 < hi
    # the anchor's own row: drawn once, so (b - mean b*) is centred in every replicate
    point, lo, hi = normalised_iqm_ci(base, base, oracle, resamples=200)
    assert point == pytest.approx(0.0)


def test_validation_names_the_argument():
    good = np.ones((3, 2))
    with pytest.raises(ValueError, match="'scores' must be finite"):
        iqm_ci([[1.0, np.nan]])
    with pytest.raises(ValueError, match="'scores' must be a non-empty"):
        iqm_ci(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="same columns"):
        improvement_ci(good, np.ones((3, 1)))
    with pytest.raises(ValueError, match="equal means"):
        normalised_iqm_ci(good, good, good)
    with pytest.raises(ValueError, match="'resamples' parameter"):
        iqm_ci(good, resamples=0)
    with pytest.raises(ValueError, match="'scores_x' must be a"):
        improvement_ci("abc", good)


# --------------------------------------------------------------------------- curves and the summary


def _curve(method, seed, steps, grads, ys, reward="noisy", column="T (n)"):
    x = {"step": np.asarray(steps, float), "gradient_steps": np.asarray(grads, float)}
    return Curve(method, column, seed, "T", reward, np.asarray(ys, float), x)


def test_auc_and_scores_at_by_hand():
    c = _curve("a", 0, [0, 10, 20], [0, 5, 10], [0.0, 1.0, 1.0])
    assert auc(c, "step") == pytest.approx((5 + 10) / 20)
    assert scores_at([c], "step", np.array([5.0, 15.0]))[0] == pytest.approx((0.5 + 1.0) / 2)
    assert np.isnan(scores_at([c], "step", np.array([25.0]))[0])  # never extrapolated


def test_curves_from_runs_puts_the_start_at_zero():
    run = {
        "method": {"name": "PPO-M", "reward": "noisy"},
        "task": "rewardfilter/Reacher-v5",
        "task_label": "Reacher",
        "noise": {"name": "hetero"},
        "seed": 2,
        "records": [
            {
                "step": 10,
                "gradient_steps": 4,
                "samples_used": 10,
                "true_return": 1.0,
                "start_true_return": -1.0,
            },
            {
                "step": 20,
                "gradient_steps": 8,
                "samples_used": 20,
                "true_return": 3.0,
                "start_true_return": -1.0,
            },
        ],
    }
    (c,) = curves_from_runs([run])
    assert c.column == "Reacher (hetero)" and c.seed == 2
    np.testing.assert_array_equal(c.x["step"], [0, 10, 20])
    np.testing.assert_array_equal(c.y, [-1.0, 1.0, 3.0])
    assert auc(c) == pytest.approx((10 * (-1 + 1) / 2 + 10 * (1 + 3) / 2) / 20)


def test_gradient_step_axis_compares_at_equal_updates():
    # PPO-M takes 2 gradient steps per env step, the filter 1; per gradient step the filter
    # gains more (y = g / 10 + 1 vs g / 10). At equal env steps PPO-M is ahead (P = 0);
    # at equal gradient steps the filter is (P = 1).
    steps = [0, 10, 20, 30, 40]
    curves = []
    for s in range(4):
        g2, g1 = [2 * t for t in steps], list(steps)
        curves.append(_curve("PPO-M", s, steps, g2, [g / 10 + 0.01 * s for g in g2]))
        curves.append(_curve("BR", s, steps, g1, [g / 10 + 1 + 0.01 * s for g in g1]))
    out = rliable_summary(curves, ["PPO-M"], None, last=3, resamples=50)
    imp = out["per_column"]["T (n)"]["BR"]["improvement"]["PPO-M"]
    assert imp["step"]["value"] == pytest.approx(0.0)
    assert imp["gradient_steps"]["value"] == pytest.approx(1.0)
    assert imp["step"]["n_runs"] == 4
    # final = mean of the last 3 evaluations: BR's g = 20, 30, 40 -> 3 + 1 + 0.01 s
    assert out["per_column"]["T (n)"]["BR"]["final"]["value"] == pytest.approx(4.015)


def test_oracle_under_one_noise_anchors_every_column_and_pooled_normalised():
    curves = []
    for s in range(3):
        for col in ("T (a)", "T (b)"):
            curves.append(_curve("PPO-M", s, [0, 10], [0, 10], [0, s], column=col))
            curves.append(_curve("BR", s, [0, 10], [0, 10], [0, 5 + s], column=col))
        curves.append(_curve("oracle", s, [0, 10], [0, 10], [0, 10 + s], "true", "T (a)"))
    out = rliable_summary(curves, ["PPO-M"], "oracle", last=1, resamples=50)
    assert set(out["per_column"]["T (b)"]) == {"PPO-M", "BR", "oracle"}
    # anchors: PPO-M mean 1, oracle mean 11 -> BR (5, 6, 7) normalises to (0.4, 0.5, 0.6)
    assert out["per_column"]["T (b)"]["BR"]["normalised"]["value"] == pytest.approx(0.5)
    assert out["all_columns"]["BR"]["normalised"]["value"] == pytest.approx(0.5)
    assert "final" not in out["all_columns"]["BR"]  # raw scores are not pooled over columns


def test_summary_errors():
    c = [_curve("a", 0, [0, 1], [0, 1], [0, 1])]
    with pytest.raises(ValueError, match="not among the methods"):
        rliable_summary(c, ["PPO-M"], None)
    with pytest.raises(ValueError, match="'axes' parameter"):
        rliable_summary(c, ["a"], None, axes=("episodes",))
    with pytest.raises(ValueError, match="lacks"):
        curves_from_rows([{"method": "a", "seed": 0, "score": 1.0}])


def test_cli_on_a_table_of_final_scores(tmp_path, capsys):
    # per-family final scores (the code study's post hoc table): no axis, final vs final
    rows = [
        {
            "method": m,
            "column": fam,
            "seed": s,
            "score": base + 0.1 * s + (0.05 if fam == "f2" else 0),
        }
        for m, base in (("PPO-M", 0.2), ("BR", 0.5), ("oracle", 0.9))
        for fam in ("f1", "f2")
        for s in range(3)
    ]
    table = tmp_path / "scores.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        main([str(table), "--baseline", "PPO-M", "--resamples", "50", "--out", str(tmp_path / "o")])
        == 0
    )
    summary = json.loads((tmp_path / "o" / "rliable.json").read_text())
    assert summary["per_column"]["f1"]["BR"]["improvement"]["PPO-M"]["step"]["value"] == 1.0
    assert summary["all_columns"]["BR"]["normalised"]["value"] == pytest.approx(3 / 7)
    md = (tmp_path / "o" / "rliable.md").read_text()
    assert "## All 2 columns" in md and "P(> PPO-M), gradient steps" in md
    # pass@1 per family shares one scale: --pool-raw pools the raw IQM over the families
    out = tmp_path / "p"
    assert (
        main(
            [
                str(table),
                "--baseline",
                "PPO-M",
                "--resamples",
                "20",
                "--pool-raw",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    pooled = json.loads((out / "rliable.json").read_text())["all_columns"]["BR"]["final"]
    assert pooled["value"] == pytest.approx(0.625) and pooled["n_runs"] == 3  # IQM of 0.5..0.75
    assert main([str(tmp_path / "missing.csv")]) == 2
    assert "No run folder or table" in capsys.readouterr().err


def test_without_the_report_extra_the_command_names_it(tmp_path):
    import subprocess
    import sys

    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"method": "a", "column": "c", "seed": 0, "score": 1.0}) + "\n")
    code = (
        "import sys\nsys.modules['rliable'] = None\n"
        "from rewardfilter.cli import main\n"
        f"sys.exit(main(['rliable', {str(table)!r}, '--baseline', 'a']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "pip install 'rewardfilter[report]'" in res.stderr and "Traceback" not in res.stderr
