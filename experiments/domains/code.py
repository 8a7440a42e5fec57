"""The code domain of the comparative runner: PF-PPO on the tiny code model.

One run trains a policy with :class:`~rewardfilter.adapters.code.trainer.PFPPOTrainer`
on synthetic-curriculum training tasks and evaluates held-out pass@1 every
``budget.eval_every`` iterations. The method gives the group size N, the
filter and the reward source; the noise model says what the "noisy" reward is:

* ``learned`` (the honest one, PF-PPO's setting): a reward-model ensemble
  trained on the starting policy's samples labelled by unit tests
  (``rewardfilter code train-rm``), loaded from ``noise.kwargs.path`` or
  ``hparams.reward_model``;
* ``none``: the noisy reward is the true score (the fraction of tests passed).

A method with ``reward: true`` (the oracle) trains on the true score whatever
the noise model. The reward model, when there is one, also scores the
evaluation completions, which is the record's ``noisy_return``.

Task ids: ``curriculum`` (every family) or ``curriculum:fam1,fam2``.
Budget: ``steps`` counts PPO iterations, ``eval_episodes`` held-out prompts
per evaluation (capped by the held-out set). Every evaluation record carries
the x axes ``step`` (iterations), ``samples_used`` and ``gradient_steps``
(the policy's optimiser steps so far).

Hyper-parameters (``hparams``): ``model`` (required: the SFT policy's
directory, e.g. from ``rewardfilter code build-tiny``), ``reward_model``,
``train_per_family`` / ``heldout_per_family`` / ``task_seed`` (the task
sets; ``train_offset`` k skips the first k training tasks of each family's
draw, which a start model built with ``max_per_family`` k never saw), ``eval_temperature`` (0: greedy pass@1) and ``eval_samples``, and any
:class:`~rewardfilter.adapters.code.trainer.PFPPOConfig` field
(``prompts_per_iteration``, ``policy_lr``, ``max_new_tokens``, ...).
Two more evaluations ride along at every evaluation point when asked:
``eval_sampled`` (n > 0) samples n responses per held-out task at the
*training* ``temperature`` and ``top_p`` (records ``sampled_pass@1`` and,
for n >= 5, ``sampled_pass@5``), and ``eval_families`` (families PPO does
not train on, a list or comma-separated string) records their held-out
greedy pass@1 as ``unseen_pass@1``. Training windows also record
``response_len`` (mean tokens per sampled response).

``trainer`` picks the trainer: ``pfppo`` (default, :class:`PFPPOTrainer`) or
``pfgrpo`` (TRL's PF-GRPO on the same tasks, reward and evaluation records; the
``grpo`` mapping passes further ``PFGRPOConfig`` fields): see :mod:`.code_grpo`.

Resume: the trainer checkpoints into ``out_dir`` at every evaluation and
the evaluation records are kept in ``out_dir/evals.jsonl``; a resumed run
reloads the checkpoint and logs those records again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardfilter.io import append_jsonl, read_jsonl, write_jsonl
from rewardfilter.validation import is_number

DEFAULTS: dict[str, Any] = {
    "model": None,
    "reward_model": None,
    "train_per_family": 50,
    "heldout_per_family": 10,
    "task_seed": 0,
    "eval_temperature": 0.0,
    "eval_samples": 1,
    "eval_timeout": 3.0,
    "eval_sampled": 0,
    "train_offset": 0,
    "eval_families": None,
    # trainer settings suited to a few-million-parameter model on CPU
    "prompts_per_iteration": 8,
    "max_new_tokens": 64,
    "minibatch_size": 8,
    "ppo_epochs": 1,
    "policy_lr": 1e-5,
    "critic_lr": 1e-4,
    "device": "auto",
    "trainer": "pfppo",
    "grpo": None,
}

#: ``trainer``: PF-PPO (:class:`PFPPOTrainer`) or PF-GRPO through TRL (:mod:`.code_grpo`)
TRAINERS = ("pfppo", "pfgrpo")

_NOISE_MODELS = ("learned", "none")


def _tasks(task_id: str, hp: dict[str, Any]) -> tuple[list, list]:
    from rewardfilter.adapters.code.curriculum import FAMILIES, make_curriculum

    name, _, fams = task_id.partition(":")
    if name != "curriculum":
        raise ValueError(
            f"Code task ids are 'curriculum' or 'curriculum:fam1,fam2'; got {task_id!r}."
        )
    families = [f.strip() for f in fams.split(",") if f.strip()] or None
    unknown = [f for f in families or [] if f not in FAMILIES]
    if unknown:
        raise ValueError(f"Unknown curriculum families {unknown}; known: {', '.join(FAMILIES)}.")
    seed = int(hp["task_seed"])
    offset, n_train = hp["train_offset"], int(hp["train_per_family"])
    if not is_number(offset, "int") or offset < 0:
        raise ValueError(
            f"The 'train_offset' hyper-parameter of the code domain must be an int >= 0; got {offset!r}."
        )
    train = []
    for family in families or FAMILIES:  # tasks offset .. offset + n of each family's draw
        drawn = make_curriculum("train", offset + n_train, seed=seed, families=[family])
        train.extend(drawn[offset:])
    held = make_curriculum("heldout", int(hp["heldout_per_family"]), seed=seed, families=families)
    return train, held


def _unseen_tasks(hp: dict[str, Any], trained: str) -> list:
    """Held-out tasks of ``eval_families`` (families PPO does not train on); [] when none."""
    fams = hp["eval_families"] or []
    if isinstance(fams, str):
        fams = [f.strip() for f in fams.split(",") if f.strip()]
    if not fams:
        return []
    from rewardfilter.adapters.code.evaluate import task_family

    _, held = _tasks("curriculum:" + ",".join(fams), hp)
    overlap = sorted(set(fams) & {task_family(t.task_id) for t in _tasks(trained, hp)[0]})
    if overlap:
        raise ValueError(
            f"The 'eval_families' hyper-parameter of the code domain must name families PPO does "
            f"not train on; got trained families {overlap}."
        )
    return held


def _setup(run: dict[str, Any]) -> dict[str, Any]:
    """Validate a run of the grid before any work; its hparams, reward-model path and task sets."""
    from rewardfilter.adapters.code.models import check_causal_lm_path

    hp = {**DEFAULTS, **run.get("hparams", {})}
    noise, budget = run["noise"], run["budget"]
    if not hp["model"]:
        raise ValueError(
            "The code domain needs hparams.model: the SFT policy directory "
            "(build one with `rewardfilter code build-tiny OUT`)."
        )
    check_causal_lm_path(hp["model"], what="policy")
    if hp["trainer"] not in TRAINERS:
        raise ValueError(
            f"The 'trainer' hyper-parameter of the code domain must be one of {TRAINERS}; "
            f"got {hp['trainer']!r}."
        )
    if noise["model"] not in _NOISE_MODELS:
        raise ValueError(
            f"The code domain has no noise model {noise['model']!r}; use {' or '.join(_NOISE_MODELS)}."
        )
    rm_path = noise.get("kwargs", {}).get("path") or hp["reward_model"]
    if noise["model"] == "learned" and not rm_path:
        raise ValueError(
            "Noise model 'learned' needs a reward model: noise.kwargs.path or hparams.reward_model "
            "(train one with `rewardfilter code train-rm`)."
        )
    if rm_path and not Path(rm_path).exists():
        raise FileNotFoundError(f"The reward model path {str(rm_path)!r} does not exist.")
    train_tasks, held_tasks = _tasks(run["task"], hp)
    unseen_tasks = _unseen_tasks(hp, run["task"])
    n_sampled = hp["eval_sampled"]
    if not is_number(n_sampled, "int") or n_sampled < 0:
        raise ValueError(
            f"The 'eval_sampled' hyper-parameter of the code domain must be an int >= 0; got {n_sampled!r}."
        )
    return {
        "hp": hp,
        "rm_path": rm_path,
        "oracle": run["method"]["reward"] == "true" or noise["model"] == "none",
        "train_tasks": train_tasks,
        "held_tasks": held_tasks[: max(1, int(budget.get("eval_episodes", len(held_tasks))))],
        "unseen_tasks": unseen_tasks,
        "steps": int(budget["steps"]),
        "eval_every": max(1, int(budget["eval_every"])),
    }


def evaluate_policy(
    policy: Any,
    tokenizer: Any,
    setup: dict[str, Any],
    ensemble: Any,
    seed: int,
    sampling: dict[str, Any],
) -> dict[str, Any]:
    """One evaluation point: held-out pass@1 (``eval_temperature``, ``eval_samples``), the
    reward model's mean score of those outputs, and the optional sampled and unseen-family
    evaluations (see the module docstring). ``sampling`` holds the training's
    ``temperature``, ``top_p`` and ``max_new_tokens``."""
    from rewardfilter.adapters.code.evaluate import evaluate

    temperature, top_p = sampling["temperature"], sampling["top_p"]
    max_new_tokens = sampling["max_new_tokens"]

    hp, held_tasks = setup["hp"], setup["held_tasks"]
    common = dict(
        max_new_tokens=max_new_tokens,
        tokenizer=tokenizer,
        seed=seed,
        timeout=float(hp["eval_timeout"]),
    )
    report = evaluate(
        policy,
        held_tasks,
        n_samples=int(hp["eval_samples"]),
        temperature=float(hp["eval_temperature"]),
        return_samples=ensemble is not None,
        **common,
    )
    noisy = math.nan
    if ensemble is not None:
        by_id = {t.task_id: t.prompt for t in held_tasks}
        samples = report["samples"]
        prompts = [by_id[i] for i in samples["task_id"]]
        noisy = float(ensemble.predict(prompts, samples["completion"]).mean())
    out = {
        "true_return": report["pass@1"],
        "noisy_return": noisy,
        "mean_test_fraction": report["mean_test_fraction"],
    }
    n_sampled = hp["eval_sampled"]
    if n_sampled:
        ks = [1, 5] if n_sampled >= 5 else [1]
        sampled = evaluate(
            policy,
            held_tasks,
            n_samples=n_sampled,
            k=ks,
            temperature=temperature,
            top_p=top_p,
            **common,
        )
        out.update({f"sampled_pass@{k}": sampled[f"pass@{k}"] for k in ks})
    if setup["unseen_tasks"]:
        out["unseen_pass@1"] = evaluate(policy, setup["unseen_tasks"], **common)["pass@1"]
    return out


def start_records(
    out: Path,
    resumed_step: int | None,
    log: Callable[[dict[str, Any]], None],
    evaluation: Callable[[], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The evaluation records a (re)started run begins with, logged again.

    Those in ``out/evals.jsonl`` up to the checkpoint's step (a record past it,
    or a torn last line, is dropped); a run with none starts with the step-0
    record of the start policy.
    """
    path = out / "evals.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    if resumed_step is not None and path.is_file():
        records = read_jsonl(path, errors="skip")
        records = [r for r in records if r["step"] <= resumed_step]
    write_jsonl(path, records)
    for rec in records:  # the runner dropped them with the interruption: log them again
        log(rec)
    if not records:  # the starting point: the SFT policy's pass@1
        zero = {"step": 0, "samples_used": 0, "gradient_steps": 0, "kept_fraction": math.nan}
        add_record(records, out, {**zero, "filtered_r2": math.nan, **evaluation()}, log)
    return records


def add_record(
    records: list[dict[str, Any]],
    out: Path,
    rec: dict[str, Any],
    log: Callable[[dict[str, Any]], None],
) -> None:
    """Keep, append to ``out/evals.jsonl`` (before the checkpoint: a record past it is dropped on
    resume) and log one evaluation record."""
    records.append(rec)
    append_jsonl(out / "evals.jsonl", rec)
    log(rec)


def final_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The last evaluation record, with the start's values beside it (``start_<key>``)."""
    final = dict(records[-1])
    for key in ("true_return", "sampled_pass@1", "sampled_pass@5", "unseen_pass@1"):
        if key in records[0]:
            final[f"start_{key}"] = records[0][key]
    return final


def run_code(run: dict[str, Any], log: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Train and evaluate one run of the grid; see the module docstring."""
    from rewardfilter.adapters.code.ppo.trainer import PFPPOConfig, PFPPOTrainer

    setup = _setup(run)
    if setup["hp"]["trainer"] == "pfgrpo":
        from .code_grpo import run_code_grpo

        return run_code_grpo(run, log, setup)
    hp, method, out = setup["hp"], run["method"], Path(run["out_dir"])
    steps, eval_every = setup["steps"], setup["eval_every"]
    set_here = {"samples_per_prompt", "filter", "iterations", "seed", "checkpoint_dir"}
    set_here |= {"checkpoint_every", "log_path", "progress"}
    fields = {f.name for f in dataclasses.fields(PFPPOConfig)} - set_here
    cfg = PFPPOConfig(
        **{k: v for k, v in hp.items() if k in fields},
        samples_per_prompt=int(method["group_size"]),
        filter=method["filter"],
        iterations=steps,
        seed=int(run["seed"]),
        checkpoint_dir=str(out / "pfppo"),
        checkpoint_every=0,  # checkpoints are taken at evaluations, below
        log_path=str(out / "train_log.jsonl"),
        progress=False,
    )

    # ---- models -------------------------------------------------------------
    ensemble = None
    if setup["rm_path"]:
        from rewardfilter.adapters.code.reward import RewardEnsemble

        ensemble = RewardEnsemble.from_pretrained(setup["rm_path"], device=cfg.device)
    reward: Any = "true" if setup["oracle"] else ensemble
    trainer = PFPPOTrainer.from_pretrained(hp["model"], setup["train_tasks"], reward, cfg)

    sampling = {k: getattr(cfg, k) for k in ("temperature", "top_p", "max_new_tokens")}
    # trainer.policy is set once, in __init__
    evaluation = functools.partial(
        evaluate_policy,
        trainer.policy,
        trainer.tokenizer,
        setup,
        ensemble,
        int(run["seed"]),
        sampling,
    )

    # ---- resume or start ------------------------------------------------------
    resumed = None
    if (Path(cfg.checkpoint_dir) / "state.pt").is_file():
        trainer.load_checkpoint(cfg.checkpoint_dir)
        resumed = trainer.iteration
    records = start_records(out, resumed, log, evaluation)

    # ---- train ------------------------------------------------------------------
    window: list[dict[str, Any]] = []
    while trainer.iteration < steps:
        window.append(trainer.step())
        if trainer.iteration % eval_every == 0 or trainer.iteration == steps:
            r2s = [w["filtered_r2"] for w in window if w["filtered_r2"] is not None]
            rec = {
                "step": trainer.iteration,
                "samples_used": trainer.samples_used,
                "gradient_steps": trainer.gradient_steps,
                "kept_fraction": _mean([w["kept_fraction"] for w in window]),
                "filtered_r2": _mean(r2s),
                "train_reward": _mean([w["reward_mean"] for w in window]),
                "train_pass_rate": _mean([w["true_pass_rate"] for w in window]),
                "kl": _mean([w["kl"] for w in window]),
                "response_len": _mean([w["response_len"] for w in window]),
                "tokens_per_s": _mean([w["tokens_per_s"] for w in window]),
                **evaluation(),
            }
            window = []
            add_record(records, out, rec, log)
            trainer.save_checkpoint(cfg.checkpoint_dir)
    return final_record(records)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan
