"""The control domain: SB3's PPO on the noisy-reward Gymnasium tasks of ``rewardfilter.envs``.

One run trains PPO with :class:`~rewardfilter.adapters.sb3.FilteredRolloutBuffer`
on ``n_envs`` env copies arranged in groups of N that share start states (the
control analogue of N responses per prompt), and evaluates the *true* return of
the deterministic policy every ``eval_every`` environment steps, *after* the
update those steps fed (the last update is always evaluated). Each point is
labelled with the environment steps (``step``), kept transitions
(``samples_used``) and minibatch gradient steps (``gradient_steps``) behind it.

Method -> training setup:

* ``reward: true`` (the oracle): the task with noise model ``none``;
* ``reward: noisy``: the run's noise model;
* ``group_size`` N: ``n_envs / N`` groups (PPO-S is N = 1);
* ``filter``: the buffer's filter spec (``none`` for PPO-S / PPO-M).

The logged ``filtered_r2`` is pooled over the finished episodes of every
rollout since the previous evaluation (see :func:`pooled_r2`); ``adaptive``
is refitted on the last ``hparams.adaptive_window`` rollouts (default 8).

Every method sees the same number of environment steps unless it has a budget
of its own (``methods[].budget``: e.g. a filter that samples N = 8 on 4x the
envs and keeps 2 runs 4x the steps of PPO-M at N = 2, so both make as many
updates on as many kept samples); filters train on fewer of them, which
``samples_used`` (cumulative kept transitions) records so the report can also
compare at equal numbers of gradient samples.

Hyperparameters (``run["hparams"]``): ``n_envs`` (default 8), ``env_kwargs``
(extra ``gymnasium.make`` arguments, e.g. ``episode_level``), ``policy`` (default
``MlpPolicy``), ``lr_schedule`` (``constant``, the default, or ``linear``: the
learning rate falls linearly to 0 over the run), ``rank_by`` (``observed``, the default, or ``true``: the filter
ranks episodes by their true return while PPO still trains on the noisy reward,
the ceiling of what ranking can give), ``checkpoints`` (fractions of the budget,
e.g. ``[0.25, 0.5, 0.75]``: the policy after the update that crosses each is
saved as ``checkpoint_<percent>.zip`` in the run's scratch folder, for the
offline R² pool of :mod:`rewardfilter.adapters.sb3.pool`) and any other key is passed to SB3's ``PPO`` (``n_steps``,
``batch_size``, ``learning_rate``, ``gamma``, ``policy_kwargs`` ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: hparams consumed here (experiments/domains/checks.py lists them too); the rest go to PPO
_OWN_KEYS = (
    "n_envs",
    "env_kwargs",
    "policy",
    "adaptive_window",
    "rank_by",
    "lr_schedule",
    "checkpoints",
)

#: start states of the evaluation episodes: fixed, so every evaluation of every method
#: sees the same episodes (common random numbers: less variance between methods)
EVAL_SEED_BASE = 1_000_000


def _evaluate(model, env, episodes: int) -> tuple[float, float]:
    """Mean true and noisy return of the deterministic policy over fixed start states."""
    true_returns, noisy_returns = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + i)
        done, true_ret, noisy_ret = False, 0.0, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            true_ret += float(info["true_reward"])
            noisy_ret += float(reward)
            done = terminated or truncated
        true_returns.append(true_ret)
        noisy_returns.append(noisy_ret)
    return sum(true_returns) / episodes, sum(noisy_returns) / episodes


def learning_rate(value: float, hp: dict[str, Any]) -> Any:
    """PPO's ``learning_rate``: constant, or annealed linearly to 0 with ``lr_schedule: linear``."""
    schedule = hp.get("lr_schedule", "constant")
    if schedule not in ("constant", "linear"):
        raise ValueError(
            f"The 'lr_schedule' parameter of the control domain must be 'constant' or 'linear'; "
            f"got {schedule!r}."
        )
    if schedule == "constant":
        return value
    start = float(value)
    return lambda progress_remaining: start * progress_remaining


def pooled_r2(episodes: list[dict[str, Any]]) -> tuple[float, float]:
    """Filtered R² (kept episodes, filter weights) and R² of all episodes, pooled over rollouts.

    One rollout holds few episodes (Pendulum: 8 in 2 groups, of which ``bon``
    keeps 2, and the R² of 2 points is 1 by construction), so the R² of an
    evaluation window is computed on all its rollouts' finished episodes at once.
    """
    import numpy as np

    import rewardfilter as rf

    if not episodes:
        return math.nan, math.nan
    pooled = {k: np.concatenate([e[k] for e in episodes]) for k in ("noisy", "true", "weights")}
    if pooled["noisy"].size == 0:
        return math.nan, math.nan
    groups = np.concatenate([e["groups"] for e in episodes])
    stats = rf.filter_stats(pooled["noisy"], pooled["weights"], groups, scores=pooled["true"])
    return stats.filtered_r2, stats.r2  # the core's one statistics record


def run_control(run: dict[str, Any], log: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Train and evaluate one method on one noisy control task (see the module docstring)."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    import rewardfilter.envs  # noqa: F401  (registers the tasks)
    from rewardfilter.adapters.sb3 import (
        FilteredRolloutBuffer,
        FilterStatsCallback,
        make_grouped_vec_env,
    )

    hp = dict(run["hparams"])
    method, noise, budget, seed = run["method"], run["noise"], run["budget"], int(run["seed"])
    n_envs = int(hp.get("n_envs", 8))
    group_size = int(method["group_size"])
    if n_envs % group_size:
        raise ValueError(
            f"hparams.n_envs={n_envs} must be a multiple of the group size N={group_size} of method {method['name']!r}."
        )
    noisy_kwargs = {
        "noise": noise["model"],
        "noise_kwargs": dict(noise["kwargs"]),
        **hp.get("env_kwargs", {}),
    }
    train_kwargs = dict(noisy_kwargs)
    if method["reward"] == "true":
        train_kwargs.update(noise="none", noise_kwargs={})

    venv = make_grouped_vec_env(
        run["task"],
        n_groups=n_envs // group_size,
        group_size=group_size,
        seed=seed,
        env_kwargs=train_kwargs,
    )
    eval_env = gym.make(run["task"], **noisy_kwargs)
    ppo_kwargs = {k: v for k, v in hp.items() if k not in _OWN_KEYS}
    ppo_kwargs["learning_rate"] = learning_rate(ppo_kwargs.get("learning_rate", 3e-4), hp)
    model = PPO(
        hp.get("policy", "MlpPolicy"),
        venv,
        rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={
            "filter": method["filter"],
            "adaptive_window": int(hp.get("adaptive_window", 8)),
            "rank_by": hp.get("rank_by", "observed"),
        },
        seed=seed,
        device="cpu",
        verbose=0,
        **ppo_kwargs,
    )

    state = {
        "samples_used": 0,
        "next_eval": int(budget["eval_every"]),
        "last": {},
        "stats": [],
        "episodes": [],
    }

    def evaluate() -> None:
        true_ret, noisy_ret = _evaluate(model, eval_env, int(budget["eval_episodes"]))
        recent = state["stats"] or [{}]

        # filter statistics averaged over the rollouts since the last evaluation (one rollout is noisy)
        def mean_of(key: str) -> float:
            vals = [s.get(key, math.nan) for s in recent]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            return sum(vals) / len(vals) if vals else math.nan

        filtered_r2, all_r2 = pooled_r2(state["episodes"])
        state["last"] = {
            "step": int(model.num_timesteps),
            "samples_used": int(state["samples_used"]),
            # gradient steps (minibatches) of every update so far: the x axis at equal updates
            "gradient_steps": int(model.rollout_buffer.n_minibatches),
            "true_return": true_ret,
            "start_true_return": state["start_true_return"],
            "noisy_return": noisy_ret,
            "kept_fraction": mean_of("kept_fraction"),
            "filtered_r2": filtered_r2,
            "r2": all_r2,
            "n_episodes": sum(len(e["noisy"]) for e in state["episodes"]),
            "train_true_return": mean_of("score_mean"),
            "train_noisy_return": mean_of("reward_mean"),
            "ensemble_std": mean_of("ensemble_std_mean"),
            # episodes per ranked group: below N when episodes straddle rollouts and groups split
            "group_size_mean": mean_of("group_size_mean"),
            # share of ranked contexts whose noisy best episode is the true best
            "top1_correct": mean_of("top1_correct"),
            # steps waiting for their context to complete (see FilteredRolloutBuffer)
            "held_transitions": mean_of("n_held_transitions"),
        }
        state["stats"], state["episodes"] = [], []
        log(state["last"])

    # policies saved (after their update) at these fractions of the budget, for the offline R² pool
    pending = sorted(float(f) for f in hp.get("checkpoints", []))
    if pending and not all(0 < f <= 1 for f in pending):
        raise ValueError(
            "The 'checkpoints' parameter of the control domain must be a list of fractions of "
            f"the budget in (0, 1]; got {hp['checkpoints']!r}."
        )

    def save_checkpoints() -> None:
        while pending and model.num_timesteps >= pending[0] * int(budget["steps"]):
            folder = Path(run.get("out_dir") or ".")
            folder.mkdir(parents=True, exist_ok=True)
            model.save(folder / f"checkpoint_{round(100 * pending.pop(0))}.zip")

    class EvalCallback(BaseCallback):
        """Counts kept samples after each rollout; evaluates on schedule *after* the update.

        SB3 calls ``train()`` between one rollout's end and the next one's start, so
        evaluating at a rollout's start (and once more after ``learn``) measures the
        policy that the labelled steps, samples and gradient steps produced.
        """

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            stats = dict(self.model.rollout_buffer.last_stats)
            state["stats"].append(stats)
            state["episodes"].append(dict(self.model.rollout_buffer.last_episodes))
            kept = stats.get("n_kept_transitions", math.nan)
            if kept is None or not math.isfinite(kept):  # no statistics: every transition is used
                kept = self.model.n_steps * self.model.n_envs
            state["samples_used"] += int(kept)

        def _on_rollout_start(self) -> None:
            save_checkpoints()
            if state["stats"] and self.model.num_timesteps >= state["next_eval"]:
                evaluate()
                while state["next_eval"] <= self.model.num_timesteps:
                    state["next_eval"] += int(budget["eval_every"])

    # the untrained policy's true return: the "start" anchor of a task's gain (oracle - start)
    state["start_true_return"] = _evaluate(model, eval_env, int(budget["eval_episodes"]))[0]
    model.learn(
        total_timesteps=int(budget["steps"]),
        callback=CallbackList([FilterStatsCallback(), EvalCallback()]),
    )
    save_checkpoints()
    if not state["last"] or state["last"]["step"] != model.num_timesteps:
        evaluate()  # the last update is always evaluated
    venv.close()
    eval_env.close()
    return dict(state["last"])
