"""PFPPOTrainer on micro models built in-process (no download): masking, filtering, checkpoints, smoke runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from micro import micro_llama, micro_tokenizer  # noqa: E402

import rewardfilter as rf  # noqa: E402
from rewardfilter.adapters.code.trainer import PFPPOConfig, PFPPOTrainer, Rollout  # noqa: E402

torch.set_num_threads(1)

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def sub(a, b):\n    return a - b\n",
    "def first(xs):\n    return xs[0]\n",
    "def double(x):\n    return 2 * x\n",
]


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str


TASKS = [
    Task("t0", "def add(a, b):\n"),
    Task("t1", "def first(xs):\n    "),
    Task("t2", "def f(x):"),
    Task("t3", "def double(x):\n    return"),
]


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer trained here on a few lines (vocabulary ~300)."""
    return micro_tokenizer(CORPUS)


make_policy = micro_llama


class TinyCritic(torch.nn.Module):
    """A transformer body with a scalar head: one value per token."""

    def __init__(self, tokenizer, seed=1):
        super().__init__()
        self.body = make_policy(tokenizer, seed).model
        self.head = torch.nn.Linear(32, 1)

    def forward(self, input_ids, attention_mask, position_ids=None):
        h = self.body(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        return self.head(h).squeeze(-1)


def reward_fn(prompts, completions):
    """A fake reward model: prefers longer completions with spaces."""
    return np.array([len(c) / 10 + c.count(" ") for c in completions], dtype=float)


class FakeEnsemble:
    """Three members that disagree by a completion-dependent amount."""

    def predict_members(self, prompts, completions):
        base = reward_fn(prompts, completions)
        spread = np.array([len(c) % 3 for c in completions], dtype=float)
        return np.stack([base, base + spread, base - spread])


def true_score(tasks, completions):
    """A fake sandbox: the fraction of characters that are letters."""
    return np.array([sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions])


def make_trainer(tokenizer, *, seed=0, reward=reward_fn, tasks=TASKS, **overrides):
    kw = dict(
        samples_per_prompt=5,
        prompts_per_iteration=2,
        max_new_tokens=8,
        minibatch_size=4,
        ppo_epochs=2,
        policy_lr=1e-3,
        critic_lr=1e-3,
        seed=seed,
        device="cpu",
        progress=False,
        realisation="drop",
    )
    kw.update(overrides)
    return PFPPOTrainer(
        PFPPOConfig(**kw),
        make_policy(tokenizer, seed),
        tokenizer,
        TinyCritic(tokenizer, seed + 1),
        tasks,
        reward,
        true_score=true_score,
    )


# ---------------------------------------------------------------------------
# configuration and bad input
# ---------------------------------------------------------------------------
def test_config_defaults_follow_the_authors_and_every_field_has_help():
    cfg = PFPPOConfig()
    assert (cfg.samples_per_prompt, cfg.gamma, cfg.lam, cfg.clip, cfg.value_clip) == (
        5,
        1.0,
        0.95,
        0.2,
        0.2,
    )
    assert (cfg.kl_coef, cfg.temperature, cfg.top_p, cfg.filter) == (0.01, 1.0, 0.9, "br")
    assert all(text for text in PFPPOConfig.help().values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"samples_per_prompt": 0},
            "'samples_per_prompt' parameter of PFPPOConfig must be an int >= 1",
        ),
        ({"samples_per_prompt": 1, "filter": "br"}, "needs groups of at least 2"),
        ({"samples_per_prompt": 4, "filter": "rank:0.4,0.1,0.1,0.1,0.1"}, "one weight per sampled"),
        ({"samples_per_prompt": 2, "filter": "random:3"}, "needs groups of at least 3"),
        ({"filter": "best"}, "Unknown filter spec 'best'"),
        ({"top_p": 0.0}, "'top_p' parameter"),
        ({"reward_norm": "zscore"}, "'reward_norm' parameter"),
        ({"dtype": "float8"}, "'dtype' parameter"),
        ({"gamma": 1.5}, "'gamma' parameter"),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PFPPOConfig(**kwargs)


def test_checkpoint_dir_that_is_a_file_is_rejected(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="must be a directory"):
        PFPPOConfig(checkpoint_dir=str(f))


def test_bad_trainer_input_fails_before_any_work(tokenizer):
    with pytest.raises(ValueError, match="task set is empty"):
        make_trainer(tokenizer, tasks=[])
    with pytest.raises(ValueError, match="needs a reward-model ensemble"):
        make_trainer(tokenizer, filter="uncertainty:0.2")
    with pytest.raises(ValueError, match="reward must have"):
        make_trainer(tokenizer, reward=42)
    with pytest.raises(ValueError, match="causal LM with generate"):
        PFPPOTrainer(
            PFPPOConfig(device="cpu"),
            torch.nn.Linear(2, 2),
            tokenizer,
            TinyCritic(tokenizer),
            TASKS,
            reward_fn,
            true_score=true_score,
        )
    with pytest.raises(FileNotFoundError, match="No PF-PPO checkpoint"):
        make_trainer(tokenizer).load_checkpoint("/nonexistent/checkpoint")


# ---------------------------------------------------------------------------
# masking of prompt and padding tokens
# ---------------------------------------------------------------------------
def hand_rollout(tokenizer, pad_fill=None, prompt_pad_fill=None):
    """Two samples: a short prompt (left padded) with a long response, a long prompt with a short one."""
    tokenizer.padding_side = "left"
    enc = tokenizer([TASKS[2].prompt, TASKS[3].prompt], return_tensors="pt", padding=True)
    ids, attn = enc["input_ids"], enc["attention_mask"]
    assert (attn == 0).any(), "the test needs left padding"
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    r = torch.tensor([[5, 6, 7, 8, eos], [9, eos, pad, pad, pad]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.float32)
    if pad_fill is not None:  # garbage after the EOS
        r = torch.where(mask.bool(), r, torch.full_like(r, pad_fill))
    if prompt_pad_fill is not None:  # garbage in the prompt's left padding
        ids = torch.where(attn.bool(), ids, torch.full_like(ids, prompt_pad_fill))
    return Rollout(
        tasks=[TASKS[2], TASKS[3]],
        groups=np.array([0, 1]),
        input_ids=torch.cat([ids, r], 1),
        attention_mask=torch.cat([attn, mask.long()], 1),
        response_mask=mask,
        prompt_len=ids.shape[1],
        completions=["a", "b"],
    )


def test_masked_tokens_change_nothing(tokenizer):
    trainer = make_trainer(tokenizer, filter="none", samples_per_prompt=1)
    rewards, weights = np.array([1.0, -0.5]), np.ones(2)
    base = trainer.make_experience(hand_rollout(tokenizer), rewards, weights)
    other = trainer.make_experience(
        hand_rollout(tokenizer, pad_fill=17, prompt_pad_fill=23), rewards, weights
    )
    m = base.mask
    for name in ("logprobs", "ref_logprobs", "values", "advantages", "returns", "kl"):
        a, b = getattr(base, name) * m, getattr(other, name) * m
        assert torch.allclose(a, b, atol=1e-5), name
    # and the losses of the update see the same numbers
    assert torch.equal(base.advantages * (1 - m), torch.zeros_like(m))
    assert torch.equal(base.returns * (1 - m), torch.zeros_like(m))


def test_left_padding_does_not_change_log_probs(tokenizer):
    """A padded sample scores as it would alone: positions skip the pad columns."""
    trainer = make_trainer(tokenizer, filter="none", samples_per_prompt=1)
    roll = hand_rollout(tokenizer)
    padded = trainer._logprobs(
        trainer.policy, roll.input_ids[:1], roll.attention_mask[:1], roll.prompt_len
    )
    n_pad = int((roll.attention_mask[0, : roll.prompt_len] == 0).sum())
    alone = trainer._logprobs(
        trainer.policy,
        roll.input_ids[:1, n_pad:],
        roll.attention_mask[:1, n_pad:],
        roll.prompt_len - n_pad,
    )
    assert torch.allclose(padded, alone, atol=1e-5)


def test_generated_rollout_masks_after_first_eos(tokenizer):
    trainer = make_trainer(tokenizer)
    roll = trainer.generate(TASKS[:2])
    eos = tokenizer.eos_token_id
    resp, mask = roll.response_ids, roll.response_mask
    assert resp.shape[0] == 10 and list(roll.groups) == [0] * 5 + [1] * 5
    for row, m in zip(resp, mask, strict=True):
        n = int(m.sum())
        assert torch.all(m[:n] == 1) and torch.all(m[n:] == 0)  # a prefix
        assert eos not in row[: max(n - 1, 0)].tolist()  # no EOS before the last kept token
        assert torch.all(row[n:] == tokenizer.pad_token_id)


# ---------------------------------------------------------------------------
# filtering: exactly the samples the core chose
# ---------------------------------------------------------------------------
class SpyFilter(rf.BestRandom):
    """BR, recording what it was given and what it returned."""

    def _weights(self, rewards, groups, rng, ensemble):
        out = super()._weights(rewards, groups, rng, ensemble)
        self.seen = (rewards.copy(), groups.copy(), out.copy())
        return out


def test_training_uses_exactly_the_samples_the_core_kept(tokenizer):
    trainer = make_trainer(tokenizer, filter="br", ppo_epochs=3)
    trainer.filter = spy = SpyFilter()
    record = trainer.step()
    rewards, groups, weights = spy.seen
    assert np.array_equal(weights, trainer.last_weights)
    kept = np.flatnonzero(weights > 0)
    assert trainer.last_trained == kept.tolist()
    assert len(kept) == 2 * 2  # BR keeps 2 of each group of 5
    for g in np.unique(groups):  # the best of each group is among them
        members = np.flatnonzero(groups == g)
        best = members[np.argmax(rewards[members])]
        if np.sum(rewards[members] == rewards[best]) == 1:
            assert best in kept
    assert record["kept_fraction"] == pytest.approx(0.4)
    assert record["samples_used"] == len(kept)


def test_filter_ranks_the_reward_models_scores(tokenizer):
    trainer = make_trainer(tokenizer, filter="bon")
    trainer.filter = spy = SpyFilter()
    trainer.step()
    rewards, _, _ = spy.seen
    # the rewards ranked are the reward model's scores of the decoded completions
    roll_rewards = trainer.history[-1]["reward_mean"]
    assert rewards.mean() == pytest.approx(roll_rewards)


@pytest.mark.parametrize(
    "spec, reward",
    [
        ("none", reward_fn),
        ("random:2", reward_fn),
        ("bon", reward_fn),
        ("bw", reward_fn),
        ("rank:0.4,0.1,0.1,0.1,0.1", reward_fn),
        ("uncertainty:0.4", FakeEnsemble()),
        ("adaptive", reward_fn),
        ("br", "true"),
    ],
)
def test_every_filter_runs_one_iteration(tokenizer, spec, reward):
    trainer = make_trainer(tokenizer, filter=spec, reward=reward, ppo_epochs=1)
    record = trainer.step()
    weights = trainer.last_weights
    expected_kept = {"none": 10, "random:2": 4, "bon": 2, "bw": 4, "uncertainty:0.4": 6}
    if spec in expected_kept:
        assert int((weights > 0).sum()) == expected_kept[spec]
    assert set(trainer.last_trained) <= set(np.flatnonzero(weights > 0).tolist())
    assert np.isfinite(record["policy_loss"]) and np.isfinite(record["value_loss"])
    if spec == "adaptive":
        assert record["filter"].startswith("adaptive->")


def test_reweight_as_loss_weights_trains_every_positive_weight_once(tokenizer):
    trainer = make_trainer(
        tokenizer, filter="rank:0.4,0.1,0.1,0.1,0.1", reweight="loss", ppo_epochs=1
    )
    trainer.step()
    assert trainer.last_trained == list(range(10))


# ---------------------------------------------------------------------------
# smoke run, log, checkpoint round trip and resume
# ---------------------------------------------------------------------------
def test_two_iteration_smoke_run_logs_and_learns(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, checkpoint_dir=str(tmp_path / "ckpt"), reward_norm="batch")
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    records = trainer.train(2)
    assert [r["iteration"] for r in records] == [1, 2]
    lines = (tmp_path / "ckpt" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2]
    for key in (
        "reward_mean",
        "true_pass_rate",
        "kl",
        "filtered_r2",
        "kept_fraction",
        "tokens_per_s",
        "policy_loss",
        "value_loss",
    ):
        assert key in records[-1]
    assert records[-1]["tokens_per_s"] > 0
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters(), strict=True)
    )
    assert all(p.requires_grad is False for p in trainer.reference.parameters())
    # the exported policy loads like any model
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "policy")
    assert isinstance(loaded, transformers.LlamaForCausalLM)


def test_checkpoint_round_trip_continues_identically(tokenizer, tmp_path):
    a = make_trainer(tokenizer, filter="br", seed=3)
    a.step()
    a.save_checkpoint(tmp_path)
    reference_state = {k: v.clone() for k, v in a.reference.state_dict().items()}
    # torch's sampling RNG is global: run a first, then b from the restored state
    ra = a.step()
    b = make_trainer(
        tokenizer, filter="br", seed=99
    )  # different init and seed: all must come from the file
    b.reference.load_state_dict(reference_state)  # the caller rebuilds the same reference
    b.load_checkpoint(tmp_path)
    saved = torch.load(tmp_path / "state.pt", weights_only=False)
    for x, y in zip(saved["policy"].values(), b.policy.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    for x, y in zip(saved["critic"].values(), b.critic.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert b.iteration == 1 and b.samples_used == saved["samples_used"]
    rb = b.step()
    for key in ("reward_mean", "kept_fraction", "policy_loss", "value_loss", "kl", "filtered_r2"):
        assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-7), key


def test_train_resumes_from_checkpoint_dir(tokenizer, tmp_path):
    ckpt = str(tmp_path / "run")
    make_trainer(tokenizer, checkpoint_dir=ckpt, checkpoint_every=1).train(2)
    resumed = make_trainer(tokenizer, checkpoint_dir=ckpt)
    records = resumed.train(3)
    assert [r["iteration"] for r in records] == [3]
    assert resumed.iteration == 3


# ---------------------------------------------------------------------------
# loading from a local model directory (the CLI's and the runner's path)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-policy")
    make_policy(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_from_pretrained_runs_with_the_projects_value_model(saved_model, tmp_path):
    cfg = PFPPOConfig(
        samples_per_prompt=3,
        prompts_per_iteration=2,
        max_new_tokens=6,
        filter="bw",
        device="cpu",
        progress=False,
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    trainer = PFPPOTrainer.from_pretrained(
        saved_model, TASKS, reward_fn, cfg, true_score=true_score
    )
    assert type(trainer.critic).__name__ == "ValueModel"
    record = trainer.train(1)[0]
    assert np.isfinite(record["value_loss"]) and record["kept_fraction"] == pytest.approx(4 / 6)


def test_from_pretrained_rejects_bad_input_before_loading(saved_model, tmp_path):
    cfg = PFPPOConfig(device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PFPPOTrainer.from_pretrained(tmp_path / "missing", TASKS, reward_fn, cfg)
    transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        architectures=["BertForSequenceClassification"],
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="does not hold a causal language model"):
        PFPPOTrainer.from_pretrained(tmp_path / "bert", TASKS, reward_fn, cfg)
    with pytest.raises(ValueError, match="task set is empty"):  # checked before the path
        PFPPOTrainer.from_pretrained(tmp_path / "missing", [], reward_fn, cfg)


# ---------------------------------------------------------------------------
# the code domain of the experiment runner
# ---------------------------------------------------------------------------
def code_run(model_dir, out_dir, steps=2):
    from rewardfilter.adapters.code import FAMILIES

    return {
        "domain": "code",
        "task": "curriculum:" + ",".join(FAMILIES[:2]),
        "noise": {"name": "exact", "model": "none", "kwargs": {}},
        "method": {"name": "PF-PPO (BR)", "reward": "noisy", "group_size": 3, "filter": "br"},
        "seed": 0,
        "budget": {"steps": steps, "eval_every": 1, "eval_episodes": 2},
        "hparams": {
            "model": str(model_dir),
            "train_per_family": 2,
            "heldout_per_family": 1,
            "prompts_per_iteration": 2,
            "max_new_tokens": 6,
            "device": "cpu",
        },
        "run_id": "test",
        "out_dir": str(out_dir),
    }


def test_code_domain_runs_logs_and_resumes(saved_model, tmp_path):
    from rewardfilter.experiments.domains import RECORD_KEYS, resolve

    run_code = resolve("code")
    logged = []
    final = run_code(code_run(saved_model, tmp_path), logged.append)
    assert [r["step"] for r in logged] == [0, 1, 2]
    assert all(key in r for r in logged for key in RECORD_KEYS)
    assert 0.0 <= final["true_return"] <= 1.0 and final["step"] == 2
    assert final["kept_fraction"] == pytest.approx(2 / 3)
    # 6 samples, minibatches of 8, 1 epoch: one optimiser step per iteration
    assert [r["gradient_steps"] for r in logged] == [0, 1, 2]
    # a finished run started again trains no more and logs its records again
    again = []
    run_code(code_run(saved_model, tmp_path), again.append)
    assert [r["step"] for r in again] == [0, 1, 2]
    # a longer budget continues from the checkpoint
    more = []
    run_code(code_run(saved_model, tmp_path, steps=3), more.append)
    assert [r["step"] for r in more] == [0, 1, 2, 3]
    assert more[-1]["gradient_steps"] == 3  # the count survives the checkpoint


def test_code_domain_evaluates_sampled_and_unseen_families(saved_model, tmp_path):
    from rewardfilter.adapters.code import FAMILIES
    from rewardfilter.experiments.domains.code import run_code

    run = code_run(saved_model, tmp_path, steps=1)
    run["hparams"].update(eval_sampled=5, eval_families=FAMILIES[2], temperature=1.0, top_p=0.9)
    logged = []
    final = run_code(run, logged.append)
    for rec in logged:  # the start and the end: greedy, sampled at the training settings, unseen
        for key in ("true_return", "sampled_pass@1", "sampled_pass@5", "unseen_pass@1"):
            assert 0.0 <= rec[key] <= 1.0, key
    assert logged[1]["response_len"] > 0 and "response_len" not in logged[0]
    for key in ("sampled_pass@1", "sampled_pass@5", "unseen_pass@1"):
        assert final[f"start_{key}"] == logged[0][key]
    # without the options the records hold none of those keys
    plain = []
    run_code(code_run(saved_model, tmp_path / "plain", steps=1), plain.append)
    assert not {"sampled_pass@1", "unseen_pass@1"} & set(plain[-1])


@pytest.mark.parametrize(
    "key, value, match",
    [("eval_sampled", -1, "eval_sampled"), ("eval_sampled", 2.5, "eval_sampled")],
)
def test_code_domain_rejects_bad_eval_options(saved_model, tmp_path, key, value, match):
    from rewardfilter.adapters.code import FAMILIES
    from rewardfilter.experiments.domains.code import run_code

    run = code_run(saved_model, tmp_path)
    run["hparams"][key] = value
    with pytest.raises(ValueError, match=match):
        run_code(run, print)
    run = code_run(saved_model, tmp_path)
    run["hparams"]["eval_families"] = f"{FAMILIES[0]}, {FAMILIES[3]}"  # FAMILIES[0] is trained
    with pytest.raises(ValueError, match="eval_families.*" + FAMILIES[0]):
        run_code(run, print)


def test_code_domain_rejects_bad_runs_before_work(saved_model, tmp_path):
    from rewardfilter.experiments.domains.code import run_code

    run = code_run(saved_model, tmp_path)
    run["noise"] = {"name": "rm", "model": "learned", "kwargs": {}}
    with pytest.raises(ValueError, match="needs a reward model"):
        run_code(run, print)
    run = code_run(saved_model, tmp_path)
    run["hparams"]["model"] = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        run_code(run, print)
    run = code_run(saved_model, tmp_path)
    run["task"] = "humaneval"
    with pytest.raises(ValueError, match="Code task ids"):
        run_code(run, print)


def space_reward(prompts, completions):
    """Reward the fraction of spaces: an easy target that only a correct policy gradient climbs."""
    return np.array([sum(ch == " " for ch in c) / max(len(c), 1) for c in completions])


@pytest.mark.parametrize("spec, realisation", [("none", "drop"), ("br", "resample")])
def test_ppo_climbs_an_easy_reward(tokenizer, spec, realisation):
    """End to end: a sign or indexing error anywhere in the update makes this flat."""
    trainer = make_trainer(
        tokenizer,
        reward=space_reward,
        filter=spec,
        realisation=realisation,
        lr_schedule="constant",
        samples_per_prompt=4,
        prompts_per_iteration=4,
        ppo_epochs=4,
        policy_lr=1e-2,
        kl_coef=0.0,
    )
    rewards = [trainer.step()["reward_mean"] for _ in range(12)]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.2, rewards
