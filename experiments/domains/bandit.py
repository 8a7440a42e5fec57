"""A fast built-in domain: contextual bandits with a noisy reward model (numpy only).

It exists so that the runner, the report and their tests exercise the real
pipeline -- group sampling, a noisy reward, filtration by the core, policy
gradient, periodic evaluation of the *true* return -- in milliseconds and
without torch or gymnasium. It is also a clean toy of PF-PPO's setting.

Each context (prompt) has ``n_arms`` responses with true scores in [0, 1].
The reward model sees the true score through noise whose scale depends on the
noise model (``rewardfilter.noise``; ``heteroscedastic``: large at moderate
scores, small at high ones, as PF-PPO observed on code; see :data:`NOISE_DEFAULTS`). Every iteration the policy samples N
responses for each of ``batch_contexts`` contexts, scores them with the
reward (noisy or true), filters each group with the method's filter, and
takes one REINFORCE step with a group-mean baseline on the kept samples.

Task ids: ``bandit/<n_contexts>x<n_arms>``, e.g. ``bandit/32x8``. The budget
``steps`` counts iterations.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rewardfilter.noise import NUMPY_NOISE_MODELS, NoiseModel, make_noise

DEFAULTS: dict[str, Any] = {
    "lr": 0.5,  # step size on the softmax logits
    "batch_contexts": 16,  # contexts (groups) per iteration
    "ensemble_size": 4,  # reward-model members (their disagreement feeds 'uncertainty:Q')
    "adaptive_groups": 64,  # labelled groups used to fit an 'adaptive' filter
    "sleep": 0.0,  # seconds per iteration: lets tests interrupt a run half-way
}


#: The domain's noise models (the shared ones of ``rewardfilter.noise``, on the
#: score range [0, 1]) and its defaults for the parameters a config leaves out:
#: the heteroscedastic default is a step, reliable above a score of 0.8. With
#: the Gymnasium tasks' names (``std``, ``min_std``, ``reliable``, ``threshold``);
#: ``threshold: null`` gives the tasks' ramp profile instead of the step.
NOISE_DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "gaussian": {"std": 0.3},
    "heteroscedastic": {"std": 0.5, "min_std": 0.05, "threshold": 0.8},
}
#: earlier names of the bandit's heteroscedastic parameters, still accepted
NOISE_ALIASES = {"std_low": "std", "std_high": "min_std"}
#: the parameters each noise model accepts here (for up-front config checks)
NOISE_KWARGS: dict[str, tuple[str, ...]] = {
    model: tuple(f.name for f in dataclasses.fields(NUMPY_NOISE_MODELS[model][1]))
    + (tuple(NOISE_ALIASES) if model == "heteroscedastic" else ())
    for model in NOISE_DEFAULTS
}


def noise_model(model: str, kwargs: dict[str, Any] | None = None) -> NoiseModel:
    """The bandit's noise model; an unknown model or parameter raises ``ValueError`` naming it."""
    if model not in NOISE_DEFAULTS:
        raise ValueError(
            f"The bandit domain has no noise model {model!r}; use {', '.join(NOISE_DEFAULTS)}."
        )
    kw = dict(kwargs or {})
    if model == "heteroscedastic":
        for old, new in NOISE_ALIASES.items():
            if old in kw:
                if new in kw:
                    raise ValueError(
                        f"heteroscedastic noise got both {old!r} and {new!r}, one parameter "
                        f"under two names; give {new!r} only."
                    )
                kw[new] = kw.pop(old)
    return make_noise(model, {**NOISE_DEFAULTS[model], **kw})


def run_bandit(run: dict[str, Any], log: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Train a softmax policy per context with filtered REINFORCE; see the module docstring."""
    import rewardfilter as rf

    match = re.fullmatch(r"bandit/(\d+)x(\d+)", run["task"])
    if not match:
        raise ValueError(f"Bandit task ids look like 'bandit/32x8'; got {run['task']!r}.")
    n_contexts, n_arms = int(match.group(1)), int(match.group(2))
    hp = {**DEFAULTS, **run["hparams"]}
    method, noise, budget = run["method"], run["noise"], run["budget"]
    n = int(method["group_size"])
    rng = np.random.default_rng(run["seed"])

    # the task instance is fixed by the task, not the seed: every seed solves the same problem
    task_rng = np.random.default_rng(n_contexts * 1000 + n_arms)
    arm_scores = task_rng.beta(2.0, 2.0, size=(n_contexts, n_arms))  # the true scores
    logits = np.zeros((n_contexts, n_arms))
    filt = rf.make_filter(method["filter"])
    k = int(hp["ensemble_size"])
    noise_std = noise_model(noise["model"], noise["kwargs"]).scale

    def sample(ctx: np.ndarray, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True scores, the reward model's rewards (its members' mean) and the members'."""
        scores = arm_scores[ctx, arms]
        std = noise_std(scores, 0.0, 1.0)  # scores lie in [0, 1]
        members = scores[None, :] + rng.normal(size=(k, scores.shape[0])) * std[None, :]
        return scores, members.mean(axis=0), members

    if filt.requires_fit:  # fit on labelled samples from the initial (uniform) policy
        g = int(hp["adaptive_groups"])
        ctx = np.repeat(rng.integers(n_contexts, size=g), n)
        arms = rng.integers(n_arms, size=ctx.shape[0])
        scores, rewards, members = sample(ctx, arms)
        filt.fit(rewards, scores, np.repeat(np.arange(g), n), rng=rng, ensemble=members)

    def policy() -> np.ndarray:
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    samples_used = 0
    last: dict[str, Any] = {}
    baseline = 0.0
    for it in range(1, int(budget["steps"]) + 1):
        # sample: N responses for each context of the batch
        groups = np.repeat(np.arange(int(hp["batch_contexts"])), n)
        ctx = np.repeat(rng.integers(n_contexts, size=int(hp["batch_contexts"])), n)
        p = policy()
        arms = (rng.random(ctx.shape[0])[:, None] > np.cumsum(p[ctx], axis=1)).sum(axis=1)
        arms = np.minimum(arms, n_arms - 1)
        # reward: the reward model's, or the true score for the oracle
        scores, rewards, members = sample(ctx, arms)
        ranked = scores if method["reward"] == "true" else rewards
        # filter
        w = filt.weights(ranked, groups, rng=rng, ensemble=members if filt.needs_ensemble else None)
        # advantages: group-mean baseline for N > 1, a running mean for N = 1 (PPO-S)
        if n > 1:
            adv = ranked - np.repeat(ranked.reshape(-1, n).mean(axis=1), n)
        else:
            adv = ranked - baseline
            baseline = 0.9 * baseline + 0.1 * float(ranked.mean())
        # update: REINFORCE on the kept samples
        grad = -p[ctx] * (w * adv)[:, None]
        grad[np.arange(ctx.shape[0]), arms] += w * adv
        np.add.at(logits, ctx, float(hp["lr"]) * grad / max(1, int(hp["batch_contexts"])))
        samples_used += int((w > 0).sum())
        if hp["sleep"]:
            time.sleep(float(hp["sleep"]))
        # log
        if it % int(budget["eval_every"]) == 0 or it == int(budget["steps"]):
            stats = rf.filter_stats(rewards, w, groups, scores=scores)
            last = {
                "step": it,
                "samples_used": samples_used,
                "true_return": float((policy() * arm_scores).sum(axis=1).mean()),
                "noisy_return": stats.reward_mean,
                "kept_fraction": stats.kept_fraction,
                "filtered_r2": stats.filtered_r2,
            }
            log(last)
    return dict(last)
