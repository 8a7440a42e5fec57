# ruff: noqa: F811  (the fixtures imported from test_code_trainer are parameters here)
"""The PF-PPO authors' options: filter realisation, loss aggregation, reward normalisation, optimiser, BOS."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from test_code_trainer import hand_rollout, make_trainer, tokenizer  # noqa: E402, F401

import rewardfilter as rf  # noqa: E402
from rewardfilter.adapters.code.ppo import losses  # noqa: E402
from rewardfilter.adapters.code.ppo.experience import expected_weights  # noqa: E402
from rewardfilter.adapters.code.ppo.stats import RewardNormaliser  # noqa: E402
from rewardfilter.adapters.code.ppo.trainer import PFPPOConfig  # noqa: E402

torch.set_num_threads(1)

REWARDS = np.array([0.3, 0.9, 0.1, 0.5, 0.2, 1.0, 0.0, 0.4, 0.6, 0.7])
GROUPS = np.repeat([0, 1], 5)


def group_probabilities(weights):
    p = weights / weights.sum()
    return np.concatenate([p[GROUPS == g] / p[GROUPS == g].sum() for g in (0, 1)])


def test_br_resamples_the_best_with_one_half_and_each_other_with_one_eighth():
    p = group_probabilities(expected_weights(rf.make_filter("br"), REWARDS, GROUPS))
    best = np.isin(np.arange(10), [1, 5])
    np.testing.assert_allclose(p[best], 0.5)
    np.testing.assert_allclose(p[~best], 0.125)


def test_expected_weights_of_random_bw_and_rank():
    np.testing.assert_allclose(expected_weights(rf.make_filter("random:2"), REWARDS, GROUPS), 0.4)
    bw = expected_weights(rf.make_filter("bw"), REWARDS, GROUPS)
    assert np.flatnonzero(bw).tolist() == [1, 2, 5, 6]  # best and worst: rank:1,0,0,0,1
    rank = expected_weights(rf.make_filter("rank:0.4,0.1,0.1,0.1,0.1"), REWARDS, GROUPS)
    assert rank[1] == rank[5] == 0.4 and rank[0] == 0.1


def test_resample_takes_the_same_number_of_gradient_steps_for_every_filter(tokenizer):
    steps = {}
    for spec in ("none", "bon", "br", "bw", "random:2"):
        trainer = make_trainer(tokenizer, filter=spec, realisation="resample", ppo_epochs=2)
        record = trainer.step()
        steps[spec] = trainer.policy_sched.last_epoch
        assert record["gradient_steps"] == trainer.gradient_steps == steps[spec]
        assert len(trainer.last_trained) > 0
    assert len(set(steps.values())) == 1 and steps["none"] == 2 * 3  # 2 epochs x ceil(10 / 4)
    drop = {}
    for spec in ("none", "bon"):
        trainer = make_trainer(tokenizer, filter=spec, realisation="drop", ppo_epochs=2)
        drop[spec] = trainer.step()["gradient_steps"]
        assert drop[spec] == trainer.policy_sched.last_epoch
    assert drop["bon"] < drop["none"]  # drop trains fewer steps on fewer samples


def test_seq_mean_averages_each_response_then_the_responses():
    x = torch.tensor([[1.0, 3.0, 0.0], [10.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert losses.aggregate(x, mask, aggregation="seq_mean").item() == pytest.approx((2 + 10) / 2)
    assert losses.aggregate(x, mask, aggregation="token_mean").item() == pytest.approx(14 / 3)
    half = losses.aggregate(x, mask, aggregation="token_mean", normaliser=torch.tensor(28.0))
    assert half.item() == pytest.approx(0.5)


def test_reward_normalised_with_the_models_stats_and_clamped():
    class RM:
        reward_stats = {"mean": 1.0, "std": 0.5}

    norm = RewardNormaliser("model", 10.0, RM())
    out = norm(np.array([1.0, 2.0, 100.0, -50.0]), None, None)
    np.testing.assert_allclose(out, [0.0, 2.0, 10.0, -10.0], atol=1e-6)
    # a reward without stats (the oracle, a callable) is only clamped
    np.testing.assert_allclose(
        RewardNormaliser("model", 10.0, "true")(np.array([0.5, 20.0]), None, None), [0.5, 10.0]
    )


def test_authors_optimiser_settings_are_the_defaults(tokenizer):
    cfg = PFPPOConfig()
    assert (cfg.adam_beta1, cfg.adam_beta2, cfg.lr_schedule, cfg.warmup_ratio) == (
        0.9,
        0.95,
        "cosine",
        0.03,
    )
    assert (cfg.realisation, cfg.loss_aggregation, cfg.reward_norm, cfg.reward_clip) == (
        "resample",
        "seq_mean",
        "model",
        10.0,
    )
    assert cfg.critic_init == "reward_model"
    trainer = make_trainer(tokenizer, iterations=10, ppo_epochs=1, policy_lr=1e-3)
    assert trainer.policy_opt.defaults["betas"] == (0.9, 0.95)
    total = 10 * 3  # iterations x ceil(10 samples / minibatch 4)
    lrs = []
    for _ in range(total):
        lrs.append(trainer.policy_sched.get_last_lr()[0])
        trainer.policy_sched.step()
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-3)  # 1 warm-up step (ceil 3% of 30)
    assert lrs[1] == pytest.approx(1e-3) and lrs[-1] < 0.01 * 1e-3  # cosine decay to ~0


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean"])
def test_gradient_accumulation_equals_one_big_minibatch(tokenizer, aggregation):
    grads = []
    for micro in (0, 1):
        trainer = make_trainer(
            tokenizer, filter="none", samples_per_prompt=1, minibatch_size=2, ppo_epochs=1,
            micro_batch_size=micro, loss_aggregation=aggregation, lr_schedule="constant",
        )  # fmt: skip
        exp = trainer.make_experience(hand_rollout(tokenizer), np.array([1.0, -1.0]), np.ones(2))
        real = trainer.policy_opt.step
        seen = []

        def spy(*a, _real=real, _seen=seen, _t=trainer, **k):
            _seen.extend(p.grad.clone() for p in _t.policy.parameters())
            return _real(*a, **k)

        trainer.policy_opt.step = spy
        trainer.update(exp)
        grads.append(seen)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_bos_is_prepended_when_the_tokenizer_adds_one(tokenizer):
    from tokenizers import processors

    from rewardfilter.adapters.code.sampling import encode_prompts, expects_bos

    assert not expects_bos(tokenizer)
    assert encode_prompts(tokenizer, ["def f():"])[0] == tokenizer("def f():")["input_ids"]
    backend = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
    backend.add_special_tokens(["<s>"])
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    with_bos = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<s>"
    )
    assert expects_bos(with_bos)
    ids = encode_prompts(with_bos, ["def f():"])[0]
    assert ids[0] == bos and ids[1:] == tokenizer("def f():")["input_ids"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"realisation": "keep"}, "'realisation' parameter of PFPPOConfig"),
        ({"loss_aggregation": "sum"}, "'loss_aggregation' parameter"),
        ({"critic_init": "random"}, "'critic_init' parameter"),
        ({"adam_beta2": 1.0}, "'adam_beta2' parameter"),
        ({"lr_schedule": "linear"}, "'lr_schedule' parameter"),
        ({"adaptive_window": 0}, "'adaptive_window' parameter"),
    ],
)
def test_bad_option_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PFPPOConfig(**kwargs)
