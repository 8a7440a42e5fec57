"""How good is a reward model? Pairwise accuracy, R² and the filtered R² on held-out labelled responses."""

from __future__ import annotations

import numpy as np

from .data import RewardData, make_pairs

__all__ = ["evaluate_reward_model", "pairwise_accuracy"]


def pairwise_accuracy(
    rewards: np.ndarray,
    groups: np.ndarray,
    scores: np.ndarray,
    passed: np.ndarray | None = None,
    rule: str = "pass_fail",
) -> float:
    """Fraction of same-prompt pairs the rewards order like the true scores (ties count 1/2).

    NaN when the data holds no pair.
    """
    pairs = make_pairs(groups, scores, passed, rule=rule)
    if len(pairs) == 0:
        return float("nan")
    diff = np.asarray(rewards)[pairs[:, 0]] - np.asarray(rewards)[pairs[:, 1]]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def evaluate_reward_model(reward, data: RewardData) -> dict:
    """Reliability of a reward model on labelled (held-out) responses.

    Parameters
    ----------
    reward : RewardModel or RewardEnsemble
        Anything with ``predict``; ``predict_members`` adds the ensemble's mean
        disagreement and each member's accuracy.
    data : RewardData
        Responses the model was *not* trained on.

    Returns
    -------
    dict
        ``pairwise_accuracy`` (pass vs fail pairs), ``pairwise_accuracy_score``
        (any two different true scores), ``r2`` (the core's ``rf.r2`` of the
        true score on the reward), ``spearman``, ``bon_pass_rate`` (pass rate
        of each prompt's top-reward response) beside ``pass_rate``, and the
        ensemble's ``mean_std`` and ``member_accuracy`` when available.
    """
    import rewardfilter as rf

    from .model import predict_rewards

    if len(data) == 0:
        raise ValueError("evaluate_reward_model needs labelled responses; got an empty RewardData.")
    groups = data.groups
    rewards, members = predict_rewards(reward, data.prompts, data.completions)
    out = {
        "n_responses": len(data),
        "pairwise_accuracy": pairwise_accuracy(
            rewards, groups, data.scores, data.passed, "pass_fail"
        ),
        "pairwise_accuracy_score": pairwise_accuracy(
            rewards, groups, data.scores, data.passed, "score"
        ),
        "r2": float(rf.r2(rewards, data.scores)),
        "pass_rate": float(data.passed.mean()),
    }
    out["spearman"] = float(rf.spearman(rewards, data.scores))
    # Bradley-Terry fixes rewards only up to a per-prompt offset: R² after
    # removing each prompt's mean says how well it ranks *within* a prompt.
    counts = np.bincount(groups)
    centre = lambda x: x - (np.bincount(groups, weights=x) / counts)[groups]  # noqa: E731
    if np.ptp(centre(data.scores)) > 0:
        out["within_prompt_r2"] = float(rf.r2(centre(rewards), centre(data.scores)))
    if counts.min() >= 2:
        specs = ["none", "bon", "br", "bw", "random:2"]
        out["filtered_r2"] = {
            s: float(rf.filtered_r2(s, rewards, data.scores, groups, rng=0)) for s in specs
        }
    best = [np.flatnonzero(groups == g)[np.argmax(rewards[groups == g])] for g in np.unique(groups)]
    out["bon_pass_rate"] = float(data.passed[best].mean())
    if members is not None and len(members) > 1:
        out["mean_std"] = float(rf.ensemble_std(members).mean())
        out["member_accuracy"] = [
            pairwise_accuracy(m, groups, data.scores, data.passed) for m in members
        ]
        out["member_r2"] = [float(rf.r2(m, data.scores)) for m in members]
    return out
