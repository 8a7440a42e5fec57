# ruff: noqa: F811  (the fixtures imported from test_code_trainer are parameters here)
"""Regression tests of the PF-PPO review's findings (issue 15), one per numbered bug, on micro models."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from test_code_trainer import (  # noqa: E402, F401  (tokenizer is a fixture)
    TASKS,
    TinyCritic,
    hand_rollout,
    make_policy,
    make_trainer,
    reward_fn,
    saved_model,
    tokenizer,
    true_score,
)

import rewardfilter as rf  # noqa: E402
from rewardfilter.adapters.code.ppo.trainer import PFPPOConfig, PFPPOTrainer  # noqa: E402

torch.set_num_threads(1)


class OneMember:
    """A reward model of one member: predict_members gives a (1, n) array."""

    def predict_members(self, prompts, completions):
        return reward_fn(prompts, completions)[None, :]


# (2) ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["br", "bw", "none"])
def test_one_member_reward_model_runs_the_filters(tokenizer, spec):
    trainer = make_trainer(tokenizer, filter=spec, reward=OneMember(), ppo_epochs=1)
    record = trainer.step()
    assert np.isfinite(record["policy_loss"])


# (7) ---------------------------------------------------------------------------
def test_an_iteration_that_keeps_nothing_trains_unfiltered_with_a_warning(tokenizer):
    trainer = make_trainer(tokenizer, filter="threshold:1e9", ppo_epochs=1)
    with pytest.warns(RuntimeWarning, match="kept no sample"):
        record = trainer.step()
    assert record["fallback"] is True
    assert trainer.last_trained == list(range(10))


# (4) ---------------------------------------------------------------------------
def gpt2_with_dropout(tokenizer, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    assert cfg.resid_pdrop == cfg.attn_pdrop == 0.1  # the tiny GPT-2 config has dropout
    return transformers.GPT2LMHeadModel(cfg)


def test_dropout_is_off_so_the_on_policy_ratio_is_one(tokenizer):
    from rewardfilter.adapters.code.models import ValueModel

    torch.manual_seed(0)
    policy = gpt2_with_dropout(tokenizer)
    critic = ValueModel(gpt2_with_dropout(tokenizer, 1).transformer)
    cfg = PFPPOConfig(device="cpu", progress=False, samples_per_prompt=2, filter="none")
    trainer = PFPPOTrainer(cfg, policy, tokenizer, critic, TASKS, reward_fn, true_score=true_score)
    roll = hand_rollout(tokenizer)
    exp = trainer.make_experience(roll, np.array([1.0, 0.0]), np.ones(2))
    trainer.policy.train()  # the mode of the update
    trainer.critic.train()
    new = trainer._logprobs(trainer.policy, exp.input_ids, exp.attention_mask, roll.prompt_len)
    values = trainer._values(trainer.critic, exp.input_ids, exp.attention_mask, roll.prompt_len)
    assert torch.allclose(new * exp.mask, exp.logprobs * exp.mask, atol=1e-6)
    assert torch.allclose(values * exp.mask, exp.values * exp.mask, atol=1e-6)


# (3) ---------------------------------------------------------------------------
def test_ppo_trains_exactly_the_scored_tokens_and_credits_the_last(tokenizer):
    trainer = make_trainer(tokenizer, filter="none", samples_per_prompt=1, kl_coef=0.0, lam=1.0)
    text = "    return a + b\n# a comment past the stop sequence"
    resp = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    def fake_generate(input_ids, attention_mask, **kwargs):
        n = kwargs.get("num_return_sequences", 1)
        r = torch.tensor([resp] * input_ids.shape[0]).repeat_interleave(n, 0)
        return torch.cat([input_ids.repeat_interleave(n, 0), r], 1)

    trainer.policy.generate = fake_generate
    roll = trainer.generate([TASKS[0]])
    assert roll.completions == ["    return a + b"]
    k = int(roll.response_mask[0].sum())
    assert 0 < k < len(resp)  # the comment and EOS are not trained
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    assert decode(resp[:k]).startswith("    return a + b")
    assert len(decode(resp[: k - 1])) < len("    return a + b")
    exp = trainer.make_experience(roll, np.array([2.0]), np.ones(1))
    # gamma = lambda = 1, no KL: the return of every trained token is the reward, credited at token k-1
    assert torch.allclose(exp.returns[0, :k], torch.full((k,), 2.0))
    assert float(exp.mask[0, k:].sum()) == 0.0


# (1) ---------------------------------------------------------------------------
def changed_fraction(dtype, tokenizer):
    trainer = make_trainer(
        tokenizer, filter="none", samples_per_prompt=1, dtype=dtype, policy_lr=5e-7, ppo_epochs=1
    )
    trainer.config.lr_schedule = "constant"
    from rewardfilter.adapters.code.ppo.build import schedule

    trainer.policy_sched = schedule(trainer.policy_opt, trainer.config, 1)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    exp = trainer.make_experience(hand_rollout(tokenizer), np.array([1.0, -1.0]), np.ones(2))
    trainer.update(exp)
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())  # fp32 masters
    changed = [
        (a != b).float().mean() for a, b in zip(before, trainer.policy.parameters(), strict=True)
    ]
    return float(torch.stack(changed).mean())


def test_a_bf16_autocast_step_changes_the_weights_like_the_fp32_step(tokenizer):
    fp32 = changed_fraction("float32", tokenizer)
    bf16 = changed_fraction("bfloat16", tokenizer)
    assert fp32 > 0.5
    assert bf16 > 0.9 * fp32, (fp32, bf16)


# (6) ---------------------------------------------------------------------------
def test_logged_filtered_r2_is_pooled_over_the_window(tokenizer):
    trainer = make_trainer(tokenizer, filter="br", adaptive_window=3, ppo_epochs=1)
    seen = []
    for _ in range(4):
        record = trainer.step()
        seen.append(trainer.window.items[-1])
    last = seen[-3:]
    cat = lambda k: np.concatenate([x[k] for x in last])  # noqa: E731
    assert record["filtered_r2_window"] == 3
    expected = rf.r2(cat("rewards"), cat("scores"), cat("weights"))
    assert record["filtered_r2"] == pytest.approx(expected)


def test_the_record_is_the_cores_filter_stats_of_the_iteration(tokenizer):
    trainer = make_trainer(tokenizer, filter="br", ppo_epochs=1)
    record = trainer.step()
    it = trainer.window.items[-1]
    stats = rf.filter_stats(it["rewards"], it["weights"], it["groups"], scores=it["scores"])
    assert 0 < stats.kept_fraction < 1
    assert record["kept_fraction"] == stats.kept_fraction
    assert record["reward_mean"] == stats.reward_mean
    assert record["reward_kept_mean"] == stats.kept_reward_mean
    assert record["true_score_mean"] == stats.score_mean
    assert record["samples"] == stats.n_samples and record["fallback"] is stats.fallback


def test_adaptive_is_refitted_every_iteration_on_the_window(tokenizer, monkeypatch):
    trainer = make_trainer(tokenizer, filter="adaptive", adaptive_window=2, ppo_epochs=1)
    sizes = []
    original = rf.AdaptiveFilter.fit

    def spy(self, rewards, scores, groups, **kw):
        sizes.append(len(rewards))
        return original(self, rewards, scores, groups, **kw)

    monkeypatch.setattr(rf.AdaptiveFilter, "fit", spy)
    for _ in range(3):
        trainer.step()
    assert sizes == [10, 20, 20]


# (5) ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reward_model(saved_model, tokenizer):
    from rewardfilter.adapters.code.reward import RewardEnsemble, RewardModel

    torch.manual_seed(5)
    backbone = transformers.AutoModel.from_pretrained(saved_model)
    rm = RewardModel(backbone, head_init_std=0.1, tokenizer=tokenizer, max_length=64)
    return RewardEnsemble([rm])


@pytest.mark.parametrize("init", ["reward_model", "policy"])
def test_critic_starts_from_the_reward_model_or_the_policy(saved_model, reward_model, init):
    cfg = PFPPOConfig(
        device="cpu", progress=False, samples_per_prompt=2, prompts_per_iteration=2,
        max_new_tokens=4, critic_init=init,
    )  # fmt: skip
    trainer = PFPPOTrainer.from_pretrained(
        saved_model, TASKS, reward_model, cfg, true_score=true_score
    )
    rm = reward_model.members[0]
    head_same = torch.equal(trainer.critic.head.weight, rm.head.weight.float())
    body = dict(trainer.critic.backbone.named_parameters())
    source = rm.backbone if init == "reward_model" else trainer.policy.model
    body_same = all(torch.equal(body[n], p.float()) for n, p in source.named_parameters())
    assert body_same
    assert head_same is (init == "reward_model")
    assert np.isfinite(trainer.step()["value_loss"])  # and a one-member ensemble trains


# (8) ---------------------------------------------------------------------------
def test_lora_checkpoint_loads_in_eval_and_from_pretrained(saved_model, tmp_path, capsys):
    from rewardfilter.adapters.code.models import load_policy
    from rewardfilter.cli import main

    cfg = PFPPOConfig(
        device="cpu", progress=False, samples_per_prompt=2, prompts_per_iteration=2,
        max_new_tokens=4, filter="bw", checkpoint_dir=str(tmp_path / "run"), save_merged=True,
        policy_lr=1e-2, lr_schedule="constant",
    )  # fmt: skip
    trainer = PFPPOTrainer.from_pretrained(
        saved_model, TASKS, reward_fn, cfg, lora={"r": 4}, critic_lora={"r": 4},
        true_score=true_score,
    )  # fmt: skip
    assert trainer.reference is None  # the base with the adapter disabled, not a copy
    roll = trainer.generate(TASKS[:1])
    base = transformers.AutoModelForCausalLM.from_pretrained(saved_model)
    ref = trainer._ref_logprobs(roll.input_ids, roll.attention_mask, roll.prompt_len)
    alone = trainer._logprobs(base, roll.input_ids, roll.attention_mask, roll.prompt_len)
    assert torch.allclose(ref, alone, atol=1e-5)
    trainer.train(1)
    policy_dir = tmp_path / "run" / "policy"
    assert (policy_dir / "adapter_config.json").is_file()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(policy_dir)
    mine, _ = load_policy(policy_dir, device="cpu")
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "policy_merged")
    x = roll.input_ids[:1]
    want = trainer.policy(input_ids=x).logits
    for model in (loaded, mine, merged):
        assert torch.allclose(model(input_ids=x).logits, want, atol=1e-4)
    assert not torch.allclose(base(input_ids=x).logits, want, atol=1e-4)  # the adapter trained
    code = main(
        ["code", "eval", str(policy_dir), "--n-per-family", "1", "--limit", "1", "--device", "cpu"]
    )
    assert code == 0, capsys.readouterr().err


def test_adaptive_does_not_pick_a_filter_whose_kept_scores_are_constant(tokenizer):
    """Every group's best-reward sample fails: BoN's kept scores are constant (R² NaN, excluded)."""
    trainer = make_trainer(tokenizer, filter="adaptive", ppo_epochs=1)
    rewards = np.tile([5.0, 4.0, 3.0, 2.0, 1.0], 2)
    scores = np.tile([0.0, 1.0, 0.75, 0.5, 0.0], 2)
    groups = np.repeat([0, 1], 5)
    trainer.filter_weights(rewards, groups, None, scores)
    assert np.isnan(trainer.filter.r2_["bon"])
    assert trainer.filter.chosen_.spec != "bon"


# (9) ---------------------------------------------------------------------------
def test_benchmark_reports_generated_samples_trained_tokens_and_phases(tmp_path):
    import importlib.util
    import types
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "code_trainer.py"
    spec = importlib.util.spec_from_file_location("bench_code_trainer", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    prompts = [f"def f{i}(x):\n    return" for i in range(4)]
    model = bench.build_model(prompts, str(tmp_path / "m"), hidden=32, layers=1)
    args = types.SimpleNamespace(n=3, prompts=2, max_new_tokens=6, warmup=0, iters=2)
    drop = bench.time_pfppo(model, prompts, args, "br", "drop")
    resample = bench.time_pfppo(model, prompts, args, "br", "resample")
    for row in (drop, resample):
        assert set(row) == {
            "time_s", "generated_per_s", "trained_tokens_per_s", "generate_s", "score_s", "train_s",
        }  # fmt: skip
        assert row["generated_per_s"] > 0 and row["trained_tokens_per_s"] > 0
        assert row["generate_s"] + row["score_s"] + row["train_s"] <= row["time_s"] * 1.01
