"""PFGRPOTrainer: TRL's GRPOTrainer with rewardfilter's filtration (tiny model, 1-2 steps)."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import rewardfilter as rf  # noqa: E402
from rewardfilter.adapters.trl import LOCAL_RUN, PFGRPOConfig, PFGRPOTrainer  # noqa: E402
from rewardfilter.adapters.trl.filtering import kept_advantages  # noqa: E402

PROMPTS = ["def add(a, b):", "def neg(x):"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from rewardfilter.adapters.code.tiny import build_random_tiny

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    return str(
        build_random_tiny(
            tmp_path_factory.mktemp("tiny"), hidden_size=32, num_layers=1, num_heads=2
        )
    )


def char_reward(completions, **kwargs):
    """A deterministic reward with spread inside every group (ties are rare)."""
    return [float(sum(map(ord, c)) % 97) + len(c) / 100 for c in completions]


def common(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=6,
        temperature=1.0,
        max_steps=1,
        learning_rate=1e-2,
        logging_steps=1,
        **LOCAL_RUN,
    )
    kwargs.update(overrides)
    return kwargs


def make_trainer(tiny_dir, tmp_path, reward_funcs=char_reward, **overrides):
    config = PFGRPOConfig(**common(tmp_path, **overrides))
    return PFGRPOTrainer(
        model=tiny_dir,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": PROMPTS * 8}),
        processing_class=AutoTokenizer.from_pretrained(tiny_dir, padding_side="left"),
    )


def one_generation(trainer):
    """Generate and score one batch: 2 prompts x 4 completions, as TRL's sampler lays them out."""
    trainer.model.train()
    if not hasattr(trainer, "current_gradient_accumulation_steps"):
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
    inputs = [{"prompt": p} for p in PROMPTS for _ in range(4)]
    return trainer._generate_and_score_completions(inputs)


def rewards_of(trainer):
    return trainer._pf_rewards_per_func.sum(dim=1).numpy()


def grpo_advantages(rewards, group_size=4):
    """TRL's default advantages: (r - group mean) / (group std, Bessel-corrected, + 1e-4)."""
    g = rewards.reshape(-1, group_size)
    mean = g.mean(axis=1, keepdims=True)
    std = g.std(axis=1, ddof=1, keepdims=True)
    return ((g - mean) / (std + 1e-4)).ravel()


def direct_loss(trainer, out, kept, loss_type):
    """TRL's loss written out by hand on the ``kept`` rows of ``out`` (beta = 0, one iteration)."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)[kept]
    attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)[kept]
    n_completion = out["completion_ids"].shape[1]
    # TRL's own per-token log-probs (its fused LM head), on the kept completions only
    logps, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, attention, n_completion
    )
    mask = out["completion_mask"][kept].float()
    advantages = out["advantages"][kept].unsqueeze(1)
    ratio = torch.exp(logps - logps.detach())  # 1 in value; its gradient is that of log-prob
    per_token = -(ratio * advantages * mask)
    if loss_type == "dapo":  # TRL's default: a mean over the kept tokens
        return per_token.sum() / mask.sum()
    return (per_token.sum(-1) / mask.sum(-1)).mean()  # "grpo": mean over kept completions


def grads_of(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


# -- filter "none" is GRPOTrainer ---------------------------------------------------------------


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_none_takes_exactly_grpo_trainers_step(tiny_dir, tmp_path, loss_type):
    data = Dataset.from_dict({"prompt": PROMPTS * 8})
    tok = AutoTokenizer.from_pretrained(tiny_dir, padding_side="left")
    runs = {}
    for name, trainer_cls, config_cls in (
        ("grpo", GRPOTrainer, GRPOConfig),
        ("pf", PFGRPOTrainer, PFGRPOConfig),
    ):
        extra = {"filter": "none"} if config_cls is PFGRPOConfig else {}
        config = config_cls(**common(tmp_path / name, loss_type=loss_type), **extra)
        trainer = trainer_cls(
            model=tiny_dir,
            reward_funcs=char_reward,
            args=config,
            train_dataset=data,
            processing_class=tok,
        )
        trainer.train()
        runs[name] = (trainer.state.log_history[0], trainer.model.state_dict())
    (log_g, params_g), (log_p, params_p) = runs["grpo"], runs["pf"]
    assert log_p["loss"] == log_g["loss"]
    assert log_p["grad_norm"] == log_g["grad_norm"] and log_g["grad_norm"] > 0
    assert log_p["filter/kept_fraction"] == 1.0
    for key, value in params_g.items():
        assert torch.equal(value, params_p[key]), key


# -- bon: the gradient comes from each group's best completion only -----------------------------


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_bon_gradient_is_the_loss_on_the_best_completions(tiny_dir, tmp_path, loss_type):
    trainer = make_trainer(
        tiny_dir, tmp_path, filter="bon", filter_advantages="all", loss_type=loss_type
    )
    out = one_generation(trainer)
    rewards = rewards_of(trainer)
    weights = out["pf_weight"].numpy()

    # per-completion loss weights: 1 for each group's best, 0 elsewhere
    for g in range(2):
        w, r = weights[4 * g : 4 * g + 4], rewards[4 * g : 4 * g + 4]
        assert sorted(w.tolist()) == [0.0, 0.0, 0.0, 1.0]
        assert r[w.argmax()] == r.max()
    kept = torch.from_numpy(weights > 0)
    np.testing.assert_allclose(
        out["advantages"][kept].numpy(), grpo_advantages(rewards)[weights > 0], rtol=1e-5
    )

    model = trainer.model
    model.zero_grad()
    trainer.compute_loss(model, out).backward()
    trainer_grads = grads_of(model)

    # the same loss computed directly on the two kept completions, with TRL's advantages
    model.zero_grad()
    direct_loss(trainer, out, kept, loss_type).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(trainer_grads[name], param.grad, rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in trainer_grads.values())


def test_loss_normaliser_counts_kept_completions_across_accumulation_chunks(tiny_dir, tmp_path):
    """Two accumulation chunks, one with both kept completions, one with none: their summed
    loss is the "grpo" mean over the 2 kept completions of the generation batch."""
    from trl.trainer.utils import split_tensor_dict

    trainer = make_trainer(tiny_dir, tmp_path, filter="bon", loss_type="grpo")
    out = one_generation(trainer)
    trainer.current_gradient_accumulation_steps = 2
    weights = out["pf_weight"]
    order = torch.cat([torch.nonzero(weights > 0)[:, 0], torch.nonzero(weights == 0)[:, 0]])
    permuted = {
        k: v[order] if isinstance(v, torch.Tensor) and v.ndim >= 1 else v for k, v in out.items()
    }
    chunks = split_tensor_dict(permuted, 2)
    assert [int((c["pf_weight"] > 0).sum()) for c in chunks] == [2, 0]
    model = trainer.model
    model.zero_grad()
    for chunk in chunks:
        trainer.compute_loss(model, chunk).backward()
    trainer_grads = grads_of(model)
    model.zero_grad()
    direct_loss(trainer, out, weights > 0, "grpo").backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(trainer_grads[name], param.grad, rtol=1e-4, atol=1e-7)


def test_bon_gradient_differs_from_the_unfiltered_one(tiny_dir, tmp_path):
    """The filtered and unfiltered losses really differ (so the test above can fail)."""
    grads = {}
    for spec in ("bon", "none"):
        trainer = make_trainer(tiny_dir, tmp_path / spec, filter=spec)
        out = one_generation(trainer)
        trainer.model.zero_grad()
        trainer.compute_loss(trainer.model, out).backward()
        grads[spec] = torch.cat([p.grad.ravel() for p in trainer.model.parameters()])
    assert not torch.allclose(grads["bon"], grads["none"])


# -- advantages and weights ----------------------------------------------------------------------


def test_kept_advantages_are_normalised_over_kept_completions():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 5.0, 5.0, 0.0, 1.0])
    keep = torch.tensor([False, True, False, True, True, False, False, True])
    adv = kept_advantages(rewards, keep, 4, "group")
    # two kept per group: (r - mean) / std(ddof=1) = +-1/sqrt(2)
    expected = torch.tensor([0, -1, 0, 1, 1, 0, 0, -1]) / math.sqrt(2)
    torch.testing.assert_close(adv, expected.float(), atol=1e-3, rtol=1e-3)
    assert kept_advantages(rewards, keep, 4, "none")[3] == 4.0
    one = torch.tensor([True, False, False, False] * 2)
    assert torch.all(kept_advantages(rewards, one, 4, "group") == 0)


def test_filter_advantages_kept_in_the_trainer(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, filter="bw", filter_advantages="kept")
    out = one_generation(trainer)
    adv, w = out["advantages"].numpy(), out["pf_weight"].numpy()
    rewards = rewards_of(trainer)
    for g in range(2):
        a, k, r = adv[4 * g : 4 * g + 4], w[4 * g : 4 * g + 4] > 0, rewards[4 * g : 4 * g + 4]
        assert k.sum() == 2
        np.testing.assert_allclose(sorted(a[k]), [-1 / math.sqrt(2), 1 / math.sqrt(2)], rtol=1e-3)
        assert a[k][np.argmax(r[k])] > 0
        assert np.all(a[~k] == 0)


def test_rank_weights_scale_the_advantages(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, filter="rank:1,0.5,0.25,0")
    out = one_generation(trainer)
    rewards = rewards_of(trainer)
    expected_w = np.concatenate(
        [np.array([1, 0.5, 0.25, 0])[np.argsort(np.argsort(-r))] for r in rewards.reshape(2, 4)]
    )
    np.testing.assert_array_equal(out["pf_weight"].numpy(), expected_w)
    np.testing.assert_allclose(
        out["advantages"].numpy(), grpo_advantages(rewards) * expected_w, rtol=1e-5
    )


def test_accumulation_reuse_and_evaluation_run(tiny_dir, tmp_path):
    """Gradient accumulation over a generation batch, two iterations per batch, and evaluate()."""
    trainer = make_trainer(
        tiny_dir,
        tmp_path,
        filter="br",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_iterations=2,
        max_steps=2,
        per_device_eval_batch_size=8,
    )
    trainer.eval_dataset = Dataset.from_dict({"prompt": PROMPTS})
    trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert len(steps) == 2 and all(math.isfinite(h["loss"]) for h in steps)
    # one generation batch serves both optimizer steps (2 accumulation chunks x 2 iterations)
    assert [h.get("filter/kept_fraction") for h in steps] == [0.5, None]
    result = trainer.evaluate()
    assert math.isfinite(result["eval_loss"]) and result["eval_filter/kept_fraction"] == 0.5


# -- group-level filters -------------------------------------------------------------------------


def flat_first_prompt(prompts, completions, **kwargs):
    """Every completion of the first prompt gets the same reward; the second prompt's vary."""
    return [
        1.0 if p == PROMPTS[0] else char_reward([c])[0]
        for p, c in zip(prompts, completions, strict=True)
    ]


def test_zero_std_drops_the_identical_reward_group_and_keeps_the_rest(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, reward_funcs=flat_first_prompt, filter="zero_std")
    out = one_generation(trainer)
    assert out["pf_weight"].tolist() == [0.0] * 4 + [1.0] * 4
    metrics = trainer._metrics["train"]
    assert metrics["filter/kept_fraction"] == [0.5] and metrics["filter/groups_dropped"] == [1.0]
    model = trainer.model
    model.zero_grad()
    trainer.compute_loss(model, out).backward()
    trainer_grads = grads_of(model)
    model.zero_grad()
    direct_loss(trainer, out, out["pf_weight"] > 0, "dapo").backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(trainer_grads[name], param.grad, rtol=1e-4, atol=1e-7)


def test_zero_std_composes_with_br(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, reward_funcs=flat_first_prompt, filter="zero_std+br")
    weights = one_generation(trainer)["pf_weight"].numpy()
    assert weights[:4].sum() == 0 and weights[4:].sum() == 2
    rewards = rewards_of(trainer)[4:]
    assert rewards[weights[4:] > 0].max() == rewards.max()


def test_std_top_keeps_the_group_with_the_larger_spread(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, reward_funcs=flat_first_prompt, filter="std_top:0.5")
    assert one_generation(trainer)["pf_weight"].tolist() == [0.0] * 4 + [1.0] * 4


def constant_reward(completions, **kwargs):
    return [1.0] * len(completions)


def test_a_step_with_every_group_dropped_leaves_the_policy_unchanged(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, reward_funcs=constant_reward, filter="zero_std")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["filter/kept_fraction"] == 0.0 and log["filter/groups_dropped"] == 2.0
    assert log["loss"] == 0.0 and log["grad_norm"] == 0.0
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


# -- ensemble and uncertainty --------------------------------------------------------------------


def member_a(completions, **kwargs):
    return [float(len(c)) for c in completions]


def member_b(completions, **kwargs):
    # disagrees with member_a by a completion-dependent amount
    return [float(len(c)) + float(sum(map(ord, c)) % 11) for c in completions]


def test_uncertainty_reads_the_ensemble_members(tiny_dir, tmp_path):
    trainer = make_trainer(
        tiny_dir,
        tmp_path,
        reward_funcs=[member_a, member_b],
        filter="uncertainty:0.5",
        ensemble_reward_funcs=["member_a", "member_b"],
    )
    torch.testing.assert_close(trainer.reward_weights, torch.tensor([0.5, 0.5]))
    out = one_generation(trainer)
    members = trainer._pf_rewards_per_func.T.numpy()
    spread = rf.ensemble_std(members)
    weights = out["pf_weight"].numpy()
    for g in range(2):
        s, w = spread[4 * g : 4 * g + 4], weights[4 * g : 4 * g + 4]
        assert w.sum() == 2
        assert s[w == 0].min() >= s[w == 1].max()  # the 2 most disputed completions are dropped
    assert trainer._metrics["train"]["filter/ensemble_spread"] == [pytest.approx(spread.mean())]


def test_uncertainty_needs_ensemble_members(tmp_path):
    with pytest.raises(ValueError, match="'ensemble_reward_funcs'"):
        PFGRPOConfig(**common(tmp_path, filter="uncertainty:0.25"))


def test_unknown_ensemble_member_fails_at_construction(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="'ensemble_reward_funcs'.*member_c"):
        make_trainer(
            tiny_dir,
            tmp_path,
            reward_funcs=[member_a, member_b],
            ensemble_reward_funcs=["member_a", "member_c"],
        )


# -- true score, adaptive ------------------------------------------------------------------------


def length_score(completions, **kwargs):
    return [float(len(c) % 5) for c in completions]


@pytest.mark.parametrize("spec", ["adaptive", "zero_std+adaptive"])
def test_true_score_logs_filtered_r2_and_fits_adaptive(tiny_dir, tmp_path, spec):
    trainer = make_trainer(
        tiny_dir, tmp_path, filter=spec, true_score_func=length_score, max_steps=2
    )
    assert not trainer.reward_filter.is_fitted
    trainer.train()
    log = trainer.state.log_history[0]
    for key in ("filter/r2_all", "filter/true_score", "filter/kept_fraction"):
        assert key in log
    assert trainer.reward_filter.is_fitted
    assert any(key.startswith("filter/adaptive_r2/") for key in log)


def test_filtered_r2_and_spearman_are_the_cores_on_the_kept_completions(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, filter="br", true_score_func=length_score)
    out = one_generation(trainer)
    rewards, scores = rewards_of(trainer), trainer._pf_scores.numpy().astype(float)
    w = out["pf_weight"].numpy().astype(float)
    metrics = trainer._metrics["train"]
    assert np.ptp(scores) > 0 and np.ptp(scores[w > 0]) > 0  # the test needs varied scores
    assert metrics["filter/r2_all"] == [pytest.approx(rf.r2(rewards, scores))]
    assert metrics["filter/r2_kept"] == [pytest.approx(rf.r2(rewards, scores, w))]
    assert metrics["filter/spearman_kept"] == [
        pytest.approx(rf.spearman(rewards[w > 0], scores[w > 0]))
    ]
    assert metrics["filter/true_score"] == [pytest.approx(scores.mean())]


def test_the_logged_statistics_are_the_cores_one_record(tiny_dir, tmp_path, monkeypatch):
    records = []

    def spy(*args, **kwargs):
        records.append(filter_stats(*args, **kwargs))
        return records[-1]

    filter_stats = rf.filter_stats
    monkeypatch.setattr(rf, "filter_stats", spy)
    trainer = make_trainer(tiny_dir, tmp_path, filter="br", true_score_func=length_score)
    out = one_generation(trainer)
    assert len(records) == 1  # one record per generation batch, computed by the core
    record, metrics = records[0], trainer._metrics["train"]
    w = out["pf_weight"].numpy().astype(float)
    assert record.n_samples == w.shape[0] and record.n_kept == int((w > 0).sum())
    for field, key in [
        ("kept_fraction", "filter/kept_fraction"),
        ("groups_dropped", "filter/groups_dropped"),
        ("score_mean", "filter/true_score"),
        ("r2", "filter/r2_all"),
        ("filtered_r2", "filter/r2_kept"),
        ("filtered_spearman", "filter/spearman_kept"),
    ]:
        assert metrics[key] == [pytest.approx(getattr(record, field))], key


def constant_score(completions, **kwargs):
    return [0.0] * len(completions)


def test_constant_true_scores_log_no_r2(tiny_dir, tmp_path):
    trainer = make_trainer(tiny_dir, tmp_path, filter="br", true_score_func=constant_score)
    one_generation(trainer)
    metrics = trainer._metrics["train"]
    assert metrics["filter/true_score"] == [0.0]
    assert not any(key.startswith(("filter/r2", "filter/spearman")) for key in metrics)


def test_true_score_by_import_path(tiny_dir, tmp_path, monkeypatch):
    # `tests.test_trl` imports from the repository root, whichever way pytest was started
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    trainer = make_trainer(
        tiny_dir, tmp_path, filter="br", true_score_func="tests.test_trl:length_score"
    )
    one_generation(trainer)
    scores = trainer._pf_scores.numpy()
    assert scores.shape == (8,) and np.all(scores == np.floor(scores))


# -- bad configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"filter": "bogus"}, "'filter'"),
        ({"filter": "topk:0"}, "'filter'"),
        ({"filter_advantages": "some"}, "'filter_advantages'"),
        ({"filter": "topk:5"}, "'num_generations'"),
        ({"filter": "rank:1,0,0"}, "'num_generations'"),
        ({"filter": "adaptive"}, "'true_score_func'"),
        ({"true_score_func": "no_colon"}, "'true_score_func'"),
        ({"ensemble_reward_funcs": "member_a"}, "'ensemble_reward_funcs'"),
    ],
)
def test_bad_config_names_the_field(tmp_path, overrides, field):
    with pytest.raises(ValueError, match=field):
        PFGRPOConfig(**common(tmp_path, **overrides))


def test_trainer_wants_a_pfgrpo_config(tiny_dir, tmp_path):
    with pytest.raises(TypeError, match="'args'.*PFGRPOConfig"):
        PFGRPOTrainer(model=tiny_dir, reward_funcs=char_reward, args=GRPOConfig(**common(tmp_path)))


def test_config_fields_carry_help_and_parse_from_the_command_line(tmp_path):
    from trl import TrlParser

    (config,) = TrlParser(PFGRPOConfig).parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--filter",
            "br",
            "--filter_advantages",
            "kept",
            "--ensemble_reward_funcs",
            "a",
            "b",
            "--use_cpu",
            "true",
        ]
    )
    assert (config.filter, config.filter_advantages) == ("br", "kept")
    assert config.ensemble_reward_funcs == ["a", "b"]
    fields = PFGRPOConfig.__dataclass_fields__
    for name in ("filter", "filter_advantages", "ensemble_reward_funcs", "true_score_func"):
        assert fields[name].metadata["help"]
    config.true_score_func = length_score
    assert config.to_dict()["true_score_func"].endswith(":length_score")


def test_import_without_trl_names_the_extra():
    code = (
        "import sys; sys.modules['trl'] = None\n"
        "try:\n    import rewardfilter.adapters.trl\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'rewardfilter[trl]'" in out.stdout


# -- two processes -------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_run_gathers_the_kept_fraction(tiny_dir, tmp_path):
    import json
    import os
    from pathlib import Path

    worker = Path(__file__).with_name("trl_ddp_worker.py")
    # Accelerate 1.16's `--cpu` runs one process unless mpirun is installed; its torchrun
    # launcher (`--multi_gpu`) with ACCELERATE_USE_CPU gives 2 CPU processes over gloo.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["ACCELERATE_USE_CPU"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
    ]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += [str(worker), tiny_dir, str(tmp_path), "threshold:0.5"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["world"] == 2
        steps = [h for h in result["log_history"] if "filter/kept_fraction" in h]
        assert len(steps) == 2
        # process 0 keeps nothing, process 1 everything: gathered, that is half
        assert all(h["filter/kept_fraction"] == 0.5 for h in steps)
        assert all(h["filter/groups_dropped"] == 1.0 for h in steps)
        assert all(math.isfinite(h["loss"]) for h in steps)


@pytest.mark.slow
def test_example_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "trl_pfgrpo.py"
    spec = importlib.util.spec_from_file_location("trl_pfgrpo_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    last = example.main(["--steps", "1", "--prompts", "2", "--max-new-tokens", "8"])
    assert last["filter/kept_fraction"] == 0.5  # br keeps 2 of 4
    assert "filter/ensemble_spread" in last and "filter/true_score" in last
