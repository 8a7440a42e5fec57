"""The reward model: Bradley-Terry loss, pairs, training, ensemble, save/load, reliability."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardfilter.adapters.code.reward_model import (  # noqa: E402
    RewardData,
    RewardEnsemble,
    RewardModelConfig,
    bradley_terry_loss,
    evaluate_reward_model,
    make_pairs,
    pairwise_accuracy,
    train_reward_ensemble,
    train_reward_model,
)


@pytest.fixture(scope="module")
def data():
    """Per prompt: the canonical body passes, two wrong bodies fail (hand-labelled, no sandbox)."""
    from rewardfilter.adapters.code.curriculum import make_curriculum

    tasks = make_curriculum("train", 3, seed=0, families=["constants", "arithmetic"])
    rows = []
    for t in tasks:
        rows += [
            (t, t.canonical_solution, 1.0),
            (t, "    return None\n", 0.0),
            (t, "    pass\n", 0.0),
        ]
    return RewardData(
        [t.task_id for t, _, _ in rows],
        [t.prompt for t, _, _ in rows],
        [c for _, c, _ in rows],
        np.array([s for _, _, s in rows]),
        np.array([s == 1.0 for _, _, s in rows]),
    )


# --------------------------------------------------------------- hand-checkable


def test_bradley_terry_loss_by_hand():
    zero = torch.zeros(3)
    assert math.isclose(bradley_terry_loss(zero, zero).item(), math.log(2), rel_tol=1e-6)
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(2.0))) / 2
    assert math.isclose(bradley_terry_loss(chosen, rejected).item(), expected, rel_tol=1e-6)
    # large margins stay finite
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0])).item() == pytest.approx(
        200.0
    )


def test_make_pairs_by_hand():
    groups = np.array([0, 0, 0, 1, 1, 2])
    scores = np.array([1.0, 0.5, 0.0, 1.0, 1.0, 0.0])
    pf = make_pairs(groups, scores, rule="pass_fail")
    assert sorted(map(tuple, pf.tolist())) == [(0, 1), (0, 2)]  # group 1 all pass, group 2 alone
    sc = make_pairs(groups, scores, rule="score")
    assert sorted(map(tuple, sc.tolist())) == [(0, 1), (0, 2), (1, 2)]
    capped = make_pairs(groups, scores, rule="score", max_pairs_per_prompt=1, rng=0)
    assert len(capped) == 1
    assert make_pairs(np.array([0, 0]), np.array([0.0, 0.0])).shape == (0, 2)
    with pytest.raises(ValueError, match="'rule'"):
        make_pairs(groups, scores, rule="nope")


def test_pairwise_accuracy_by_hand():
    groups = np.array([0, 0, 1, 1])
    scores = np.array([1.0, 0.0, 1.0, 0.0])
    assert pairwise_accuracy(np.array([2.0, 1.0, 0.0, 1.0]), groups, scores) == 0.5
    assert pairwise_accuracy(np.array([1.0, 1.0, 3.0, 1.0]), groups, scores) == 0.75  # tie = 1/2
    assert math.isnan(pairwise_accuracy(np.zeros(2), np.array([0, 0]), np.zeros(2)))


def test_bad_config_and_empty_data_fail_before_work(micro, data):
    with pytest.raises(ValueError, match="'objective'"):
        RewardModelConfig(objective="ranking")
    with pytest.raises(ValueError, match="'ensemble_size'"):
        RewardModelConfig(ensemble_size=0)
    with pytest.raises(ValueError, match="empty"):
        train_reward_model(micro, data.subset([]))
    all_fail = data.subset(np.flatnonzero(~data.passed))
    with pytest.raises(ValueError, match="No \\(pass_fail\\) pair"):
        train_reward_model(micro, all_fail, RewardModelConfig(device="cpu"))
    with pytest.raises(FileNotFoundError):
        train_reward_model(micro.parent / "missing", data)


# --------------------------------------------------------------- training


def test_training_reduces_the_bradley_terry_loss(micro, data):
    cfg = RewardModelConfig(epochs=8, batch_size=4, device="cpu", seed=0, learning_rate=1e-3)
    model, losses = train_reward_model(micro, data, cfg, progress=False)
    assert len(losses) == 8 * math.ceil(12 / 4)  # 6 prompts x 2 (pass, fail) pairs
    assert losses[0] == pytest.approx(math.log(2), abs=0.1)  # small head init: rewards near equal
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    report = evaluate_reward_model(model, data)
    assert report["pairwise_accuracy"] > 0.9  # on its own training data
    assert report["r2"] < 1.0


def test_pointwise_objective_fits_the_scores(micro, data):
    cfg = RewardModelConfig(
        objective="pointwise", epochs=10, batch_size=6, device="cpu", learning_rate=1e-3
    )
    model, losses = train_reward_model(micro, data, cfg, progress=False)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_ensemble_scores_save_and_load(micro, data, tmp_path):
    cfg = RewardModelConfig(ensemble_size=2, epochs=2, batch_size=4, device="cpu")
    ens = train_reward_ensemble(micro, data, cfg, heldout=data, progress=False)
    members = ens.predict_members(data.prompts, data.completions)
    assert members.shape == (2, len(data))
    assert not np.allclose(members[0], members[1])  # seeds / bootstrap differ
    np.testing.assert_allclose(ens.predict(data.prompts, data.completions), members.mean(axis=0))
    assert set(ens.report["heldout"]) >= {"pairwise_accuracy", "r2", "mean_std", "member_accuracy"}
    ens.save_pretrained(tmp_path / "rm")
    loaded = RewardEnsemble.from_pretrained(tmp_path / "rm", device="cpu")
    assert len(loaded) == 2 and loaded.config == cfg
    # the training rewards' mean and std are stored for PPO's reward_norm="model"
    rewards = ens.predict(data.prompts, data.completions)
    assert loaded.reward_stats["mean"] == pytest.approx(rewards.mean(), abs=1e-5)
    assert loaded.reward_stats["std"] == pytest.approx(rewards.std(), abs=1e-5)
    np.testing.assert_allclose(
        loaded.predict_members(data.prompts, data.completions), members, atol=1e-5
    )
    # a single member directory loads as an ensemble of one
    single = RewardEnsemble.from_pretrained(tmp_path / "rm" / "member_0", device="cpu")
    np.testing.assert_allclose(
        single.predict(data.prompts, data.completions), members[0], atol=1e-5
    )
    with pytest.raises(ValueError, match="one prompt per completion"):
        ens.predict(data.prompts[:2], data.completions[:3])
    with pytest.raises(FileNotFoundError):
        RewardEnsemble.from_pretrained(tmp_path / "nope")


def test_the_former_score_names_warn_and_give_the_same_rewards(micro, data):
    from rewardfilter.adapters.code.reward.model import predict_rewards

    cfg = RewardModelConfig(ensemble_size=2, epochs=1, batch_size=4, device="cpu")
    ens = train_reward_ensemble(micro, data, cfg, progress=False)
    with pytest.warns(DeprecationWarning, match="use predict"):
        old = ens.score(data.prompts, data.completions)
    np.testing.assert_array_equal(old, ens.predict(data.prompts, data.completions))

    class Legacy:  # an outside reward object written against the former names
        def score_members(self, prompts, completions):
            return ens.predict_members(prompts, completions)

    with pytest.warns(DeprecationWarning, match="name the method predict_members"):
        rewards, members = predict_rewards(Legacy(), data.prompts, data.completions)
    np.testing.assert_array_equal(members, ens.predict_members(data.prompts, data.completions))

    class Wrong:
        def predict_members(self, prompts, completions):
            return np.zeros((2, len(prompts) + 1))

    with pytest.raises(ValueError, match=r"predict_members must return a \(K, n=3\)"):
        predict_rewards(Wrong(), data.prompts[:3], data.completions[:3])


def test_reward_data_jsonl_round_trip(data, tmp_path):
    data.save_jsonl(tmp_path / "d.jsonl")
    back = RewardData.load_jsonl(tmp_path / "d.jsonl")
    assert back.task_ids == data.task_ids and back.completions == data.completions
    np.testing.assert_array_equal(back.scores, data.scores)
    assert data.summary()["prompts_with_pass_and_fail"] == 6
