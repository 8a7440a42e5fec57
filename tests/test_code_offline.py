"""The offline reliability analysis of the code study (experiments/code_offline.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardfilter.experiments.code_offline import (
    OfflineConfig,
    analyse,
    default_filters,
    first_n,
    high_minus_mid_std,
    main,
)


def test_first_n_keeps_the_first_rows_of_every_prompt_in_file_order():
    groups = np.array([0, 1, 0, 1, 0, 2, 2, 1, 2])
    assert first_n(groups, 2).tolist() == [0, 1, 2, 3, 5, 6]
    assert first_n(groups, 0).tolist() == list(range(9))
    with pytest.raises(ValueError, match="'n'.*4.*only 3"):
        first_n(groups, 4)


def test_default_filters_hold_brs_reweight_version_for_the_group_size():
    assert "rank:0.4,0.1,0.1,0.1,0.1" in default_filters(5)
    assert "rank:0.4,0.1,0.1" in default_filters(3)


def _pool(rng, reliable_at="high", prompts=80, n=5):
    """Rewards uniform on [0, 1]; the score is certain in one region (pass above 0.8, or fail
    between 0.3 and 0.7) and a coin flip elsewhere: the reward is reliable there only."""
    from rewardfilter.adapters.code.reward import RewardData

    rewards = rng.uniform(size=prompts * n)
    coin = rng.uniform(size=rewards.shape) < 0.3
    sure = rewards > 0.8 if reliable_at == "high" else (rewards > 0.3) & (rewards < 0.7)
    passed = np.where(sure, reliable_at == "high", coin)
    ids = [f"p{i // n}" for i in range(prompts * n)]
    return RewardData(ids, ids, ["c"] * len(ids), passed.astype(float), passed), rewards


def test_analyse_sees_a_reward_that_is_reliable_where_it_is_high():
    rng = np.random.default_rng(0)
    data, rewards = _pool(rng)
    members = rewards + 0.1 * rng.standard_normal((3, rewards.shape[0]))
    cfg = OfflineConfig(reward_model="rm", out="x", resamples=200, draws=5)
    a = analyse(data, rewards, members, cfg, 5)
    assert a["prompts"] == 80 and a["responses"] == 400
    lo, hi = a["high_minus_mid_std_ci"]
    assert a["high_minus_mid_std"] < 0 and lo <= a["high_minus_mid_std"] <= hi < 0
    # reliable at middling rewards instead: the statistic is positive
    mid = analyse(*_pool(np.random.default_rng(0), "middle"), None, cfg, 5)
    assert mid["high_minus_mid_std_ci"][0] > 0
    rm = a["reward_model"]
    assert rm["pairwise_accuracy"] > 0.6 and rm["top1_pass"] > rm["top1_pass_chance"]
    curve = [c["pass_rate"] for c in a["rank_curve"]]
    assert len(curve) == 5 and curve[0] == max(curve) and curve[0] > curve[-1]
    by = {r["filter"]: r for r in a["filters"]}
    assert set(by) == set(default_filters(5))
    assert by["bon"]["kept_score_mean"] > by["none"]["kept_score_mean"]
    assert by["bon"]["kept_fraction"] == pytest.approx(0.2)
    assert by["adaptive"]["chosen"] in ("bon", "br", "bw", "none")
    low, high = by["br"]["filtered_r2_ci"]
    assert low <= by["br"]["filtered_r2"] <= high
    # the offline choice orders the fixed filters by their filtered R²
    r2s = [by[f]["filtered_r2"] for f in a["offline_choice"]]
    assert "adaptive" not in a["offline_choice"] and r2s == sorted(r2s, reverse=True)


def test_high_minus_mid_std_by_hand():
    # 10 bins of 10 rewards; the score's std is 0 in bins 9-10 and 0.5 in bins 4-7
    rewards = np.arange(100.0)
    scores = np.zeros(100)
    scores[30:70] = np.tile([0.0, 1.0], 20)
    assert high_minus_mid_std(rewards, scores) == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"out": ""}, "'out'"), ({"n": [-1]}, "'n'"), ({"bins": 1}, "'bins'")],
)
def test_bad_config_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OfflineConfig(**{"reward_model": "rm", "out": "x", **kwargs})


def test_cli_end_to_end_on_a_micro_model(tmp_path, capsys):
    """Sample and execute a micro policy's responses, train the ensemble, analyse the pool."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rewardfilter.adapters.code.curriculum import make_curriculum
    from rewardfilter.adapters.code.reward import (
        RewardData,
        RewardModelConfig,
        collect_reward_data,
        train_reward_ensemble,
    )
    from rewardfilter.adapters.code.tiny import build_random_tiny

    torch.set_num_threads(1)
    micro = build_random_tiny(tmp_path / "micro", hidden_size=32, num_layers=2)

    def with_hand_rows(sampled: RewardData, tasks) -> RewardData:
        """Each prompt's sampled responses plus a passing and a failing hand-written one."""
        by = {t.task_id: t for t in tasks}
        rows = [
            (t, c, s, p)
            for t, c, s, p in zip(
                sampled.task_ids, sampled.completions, sampled.scores, sampled.passed, strict=True
            )
        ]
        for t in tasks:
            rows += [
                (t.task_id, t.canonical_solution, 1.0, True),
                (t.task_id, "    pass\n", 0.0, False),
            ]
        return RewardData(
            [r[0] for r in rows],
            [by[r[0]].prompt for r in rows],
            [r[1] for r in rows],
            np.array([r[2] for r in rows]),
            np.array([r[3] for r in rows]),
        )

    kw = dict(n_samples=2, max_new_tokens=8, progress=False, device="cpu")
    train_tasks = make_curriculum("train", 2, seed=0, families=["constants", "arithmetic"])
    held_tasks = make_curriculum("heldout", 2, seed=0, families=["constants", "arithmetic"])
    train = with_hand_rows(collect_reward_data(micro, train_tasks, **kw), train_tasks)
    pool = with_hand_rows(collect_reward_data(micro, held_tasks, seed=1, **kw), held_tasks)
    cfg = RewardModelConfig(ensemble_size=2, epochs=1, batch_size=4, device="cpu")
    train_reward_ensemble(micro, train, cfg, progress=False).save_pretrained(tmp_path / "rm")
    pool.save_jsonl(tmp_path / "rm" / "heldout_data.jsonl")

    out = tmp_path / "offline"
    argv = [str(tmp_path / "rm"), "--out", str(out), "--n", "3", "0", "--resamples", "20"]
    assert main([*argv, "--draws", "3"]) == 0
    result = json.loads((out / "offline.json").read_text())
    assert [a["n"] for a in result["analyses"]] == [3, 0]
    assert [a["responses"] for a in result["analyses"]] == [12, 16]  # 4 prompts x 3, x 4
    for a in result["analyses"]:
        assert {r["filter"] for r in a["filters"]} == set(default_filters(4 if a["n"] == 0 else 3))
        assert 0.0 <= a["reward_model"]["pairwise_accuracy"] <= 1.0
        assert (out / f"reliability_N{a['n']}.png").stat().st_size > 0
    md = (out / "offline.md").read_text()
    assert "## N = 3" in md and "| br |" in md
    assert "## N = 3" in capsys.readouterr().out
    # asking for more responses per prompt than the pool holds fails with the argument named
    assert main([str(tmp_path / "rm"), "--out", str(out), "--n", "9"]) == 2
    assert "'n'" in capsys.readouterr().err
