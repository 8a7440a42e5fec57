"""``trainer: pfgrpo`` in the code domain: PF-GRPO through TRL on the PPO runs' tasks and reward.

A run with ``hparams.trainer: pfgrpo`` trains the same SFT policy on the same
training tasks with :class:`~rewardfilter.adapters.trl.PFGRPOTrainer` (TRL's
``GRPOTrainer`` with the core's filter applied within each prompt's group) and
logs the same evaluation records as a PF-PPO run (:func:`.code.evaluate_policy`).

What maps to what:

* the reward: the reward model's members, one TRL reward function each, declared
  as one ensemble (``ensemble_reward_funcs``: TRL ranks and normalises their mean;
  ``uncertainty:Q`` sees their spread); the oracle (``reward: true`` or noise
  ``none``): the unit tests' score. The unit tests (the sandbox) are always the
  ``true_score_func`` (logged, and what ``adaptive`` is fitted on; never in the loss);
* N (the method's ``group_size``) -> ``num_generations``; one iteration is one
  generation batch of ``prompts_per_iteration`` x N completions, split into
  minibatches of ``minibatch_size`` (``per_device_train_batch_size``, with
  ``steps_per_generation`` = the batch / ``minibatch_size``) and reused ``ppo_epochs``
  times (``num_iterations``): the same optimiser steps per iteration as PF-PPO;
  ``steps`` iterations -> ``max_steps``; ``policy_lr`` -> ``learning_rate``;
  ``kl_coef`` -> ``beta``; ``max_new_tokens`` -> ``max_completion_length``;
  ``temperature``, ``top_p``, ``max_grad_norm``, ``adam_beta1``/``adam_beta2``;
  ``lr_schedule`` (cosine / constant) with ``warmup_ratio``; ``seed``; ``dtype`` (as
  PF-PPO resolves it: float32 on a CPU, not TRL's default bf16);
* any other :class:`~rewardfilter.adapters.trl.PFGRPOConfig` field through the
  ``grpo`` mapping (e.g. ``{loss_type: grpo, filter_advantages: kept}``).

PPO-only hyper-parameters (``critic_lr``, ``realisation``, ``reward_norm``, ...)
are ignored: in PF-GRPO a filtered completion leaves the loss (the ``drop``
realisation). Completions are scored (reward model and unit tests) on the text
before HumanEval's stop sequences, as the PPO trainer's sampler cuts them.

Records: ``step`` = iterations; ``gradient_steps`` = TRL's ``global_step``;
``samples_used`` counts kept completions; ``kept_fraction``, ``filtered_r2``
(``filter/r2_kept``), ``train_reward``, ``train_pass_rate``, ``kl`` and
``response_len`` are means over the iterations since the last evaluation. TRL
checkpoints into ``out_dir/grpo`` at every evaluation and a restarted run resumes
from the last one; the final policy is saved to ``out_dir/grpo/policy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the domain's hyper-parameters that PF-GRPO reads, and the PFGRPOConfig field each sets
_MAPPED = {
    "policy_lr": "learning_rate",
    "kl_coef": "beta",
    "max_new_tokens": "max_completion_length",
    "temperature": "temperature",
    "top_p": "top_p",
    "max_grad_norm": "max_grad_norm",
    "adam_beta1": "adam_beta1",
    "adam_beta2": "adam_beta2",
}
#: set from the run itself: a ``grpo`` mapping may not give them
SET_BY_DOMAIN = (
    "output_dir",
    "filter",
    "num_generations",
    "per_device_train_batch_size",
    "steps_per_generation",
    "num_iterations",
    "max_steps",
    "seed",
    "true_score_func",
    "ensemble_reward_funcs",
    *_MAPPED.values(),
)


def check_grpo_options(options: Any, path: str = "hparams.grpo") -> list[tuple[str, str]]:
    """Problems of a ``grpo`` mapping as (key path, reason); [] when fine or TRL is absent."""
    if options is None:
        return []
    if not isinstance(options, dict):
        return [(path, f"must be a mapping of PFGRPOConfig fields; got {options!r}.")]
    try:
        import dataclasses

        from rewardfilter.adapters.trl import PFGRPOConfig
    except ImportError:
        return []  # cannot tell: the run reports the missing TRL
    fields = {f.name for f in dataclasses.fields(PFGRPOConfig) if f.init}
    out = []
    for key in options:
        if key in SET_BY_DOMAIN:
            out.append((f"{path}.{key}", "is set by the code domain from the run; give it there."))
        elif key not in fields:
            out.append((f"{path}.{key}", "unknown field of PFGRPOConfig."))
    return out


def _config(run: dict[str, Any], setup: dict[str, Any], score_func: Callable, members: list[str]):
    """The run's PFGRPOConfig (see the module docstring) and its optimiser steps per iteration."""
    from rewardfilter.adapters.code.config import PFPPOConfig
    from rewardfilter.adapters.trl import LOCAL_RUN, PFGRPOConfig

    hp = setup["hp"]
    defaults = PFPPOConfig()
    value = {k: hp.get(k, getattr(defaults, k)) for k in (*_MAPPED, "lr_schedule", "warmup_ratio")}
    n = int(run["method"]["group_size"])
    rows, minibatch = int(hp["prompts_per_iteration"]) * n, int(hp["minibatch_size"])
    if rows % minibatch:
        raise ValueError(
            f"The 'minibatch_size' hyper-parameter of the code domain must divide "
            f"prompts_per_iteration x group_size ({rows}) with trainer 'pfgrpo'; got {minibatch}."
        )
    per_iteration = rows // minibatch * int(hp["ppo_epochs"])  # optimiser steps, as PF-PPO's
    steps = setup["steps"] * per_iteration
    device = hp.get("device", "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    from rewardfilter.adapters.code.device import select_dtype

    # PF-PPO's precision (float32 on a CPU); TRL's own default would be bf16
    dtype = str(select_dtype(hp.get("dtype", defaults.dtype), device)).removeprefix("torch.")
    kwargs = {
        **LOCAL_RUN,
        "bf16": dtype == "bfloat16",
        "fp16": dtype == "float16",
        **{field: value[key] for key, field in _MAPPED.items()},
        "output_dir": str(Path(run["out_dir"]) / "grpo"),
        "use_cpu": device == "cpu",
        "seed": int(run["seed"]),
        "filter": run["method"]["filter"],
        "num_generations": n,
        "per_device_train_batch_size": minibatch,
        "steps_per_generation": rows // minibatch,
        "num_iterations": int(hp["ppo_epochs"]),
        "max_steps": steps,
        "lr_scheduler_type": "constant" if value["lr_schedule"] == "constant" else "cosine",
        "warmup_steps": math.ceil(float(value["warmup_ratio"]) * steps),
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": setup["eval_every"] * per_iteration,
        "save_total_limit": 1,
        "disable_dropout": True,
        "true_score_func": score_func,
        "ensemble_reward_funcs": members or None,
        **(hp.get("grpo") or {}),
    }
    return PFGRPOConfig(**kwargs), per_iteration


def run_code_grpo(
    run: dict[str, Any], log: Callable[[dict[str, Any]], None], setup: dict[str, Any]
) -> dict[str, Any]:
    """One PF-GRPO run of the code domain (``setup`` from :func:`.code._setup`)."""
    import transformers
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint

    from rewardfilter.adapters.code.sampling import truncate_at_stop
    from rewardfilter.adapters.trl import PFGRPOTrainer

    from .code import add_record, evaluate_policy, final_record, start_records

    problems = check_grpo_options(setup["hp"].get("grpo"))
    if problems:
        raise ValueError("; ".join(f"{p}: {reason}" for p, reason in problems))
    hp, out = setup["hp"], Path(run["out_dir"])
    unit_tests = UnitTests(setup["train_tasks"], float(hp["eval_timeout"]))
    ensemble = None
    reward_funcs: list[Callable] = []
    if setup["rm_path"]:
        from rewardfilter.adapters.code.reward import RewardEnsemble

        ensemble = RewardEnsemble.from_pretrained(setup["rm_path"], device=hp["device"])
    if setup["oracle"]:
        reward_funcs = [unit_tests]
    else:
        for k, member in enumerate(ensemble.members):
            reward_funcs.append(_member_reward(member, f"rm_member_{k}", truncate_at_stop))
    members = [] if setup["oracle"] else [f.__name__ for f in reward_funcs]
    config, per_iteration = _config(run, setup, unit_tests, members)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hp["model"], padding_side="left")
    tasks = setup["train_tasks"]
    data = Dataset.from_dict(
        {"prompt": [t.prompt for t in tasks], "task_id": [t.task_id for t in tasks]}
    )
    trainer = PFGRPOTrainer(
        model=hp["model"],
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
    )
    trainer.remove_callback(transformers.PrinterCallback)

    sampling = {k: getattr(config, _MAPPED[k]) for k in ("temperature", "top_p", "max_new_tokens")}

    def evaluation() -> dict[str, Any]:  # trainer.model is read at each call
        return evaluate_policy(
            trainer.model, tokenizer, setup, ensemble, int(run["seed"]), sampling
        )

    last = get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
    resumed = int(Path(last).name.split("-")[-1]) // per_iteration if last else None
    records = start_records(out, resumed, log, evaluation)
    state = {"samples_used": records[-1]["samples_used"], "last": records[-1]["step"]}
    window: list[dict[str, Any]] = []  # TRL's logs of this window's generation batches

    class Evaluate(transformers.TrainerCallback):
        """After the log of the last optimiser step of every ``eval_every``-th iteration (before
        TRL's checkpoint of it): one record."""

        def on_log(self, args, train_state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                window.append(dict(logs))
            step = train_state.global_step
            iteration = step // per_iteration
            if step % per_iteration or iteration == state["last"]:
                return control
            if iteration % setup["eval_every"] and iteration != setup["steps"]:
                return control
            kept = [h.get("filter/kept_fraction", 1.0) for h in window]
            rows = config.per_device_train_batch_size * config.steps_per_generation
            state["samples_used"] += int(round(sum(kept) * rows))
            state["last"] = iteration
            rec = {
                "step": iteration,
                "samples_used": state["samples_used"],
                "gradient_steps": step,
                "kept_fraction": _mean(kept),
                "filtered_r2": _mean([h.get("filter/r2_kept") for h in window]),
                "train_reward": _mean([h["reward"] for h in window]),
                "train_pass_rate": _mean(unit_tests.passed),
                "kl": _mean([h.get("kl") for h in window]),
                "response_len": _mean([h.get("completions/mean_length") for h in window]),
                **evaluation(),
            }
            window.clear()
            unit_tests.passed = []
            add_record(records, out, rec, log)  # before TRL's checkpoint of this step
            return control

    try:
        if resumed is None or resumed < setup["steps"]:
            trainer.add_callback(Evaluate())
            trainer.train(resume_from_checkpoint=last)
            trainer.save_model(str(Path(config.output_dir) / "policy"))
            tokenizer.save_pretrained(str(Path(config.output_dir) / "policy"))
    finally:
        # Accelerate's state is process-wide: leave none behind for the next run in this
        # worker (a PF-PPO trainer would read its mixed precision as its compute dtype)
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    return final_record(records)


class UnitTests:
    """The sandbox's unit-test score as a TRL reward function (a picklable object: TRL saves its
    config, this included, in every checkpoint); ``passed`` collects pass/fail since last read."""

    __name__ = "unit_tests"

    def __init__(self, tasks: list[Any], timeout: float) -> None:
        self.by_id = {t.task_id: t for t in tasks}
        self.timeout = timeout
        self.passed: list[float] = []

    def __call__(self, prompts, completions, task_id, **kwargs) -> list[float]:
        from rewardfilter.adapters.code import score_completions
        from rewardfilter.adapters.code.sampling import truncate_at_stop

        cut = [truncate_at_stop(c) for c in completions]
        results = score_completions([self.by_id[t] for t in task_id], cut, timeout=self.timeout)
        self.passed += [float(r.passed) for r in results]
        return [r.score for r in results]


def _member_reward(member: Any, name: str, cut: Callable[[str], str]) -> Callable:
    """One reward-model member as a TRL reward function named ``name``."""

    def reward(prompts, completions, **kwargs):
        return member.predict(list(prompts), [cut(c) for c in completions]).tolist()

    reward.__name__ = reward.__qualname__ = name
    return reward


def _mean(values: list[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(sum(finite) / len(finite)) if finite else math.nan
