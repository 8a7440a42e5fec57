"""The reward model's data: sampled responses labelled by executing their unit tests.

:func:`collect_reward_data` samples N responses per prompt from the starting
policy and labels each by its task's tests (the true score is the fraction of
asserts passed); :func:`make_pairs` draws the same-prompt (chosen, rejected)
pairs the Bradley-Terry loss trains on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.io import read_jsonl, write_jsonl

__all__ = ["RewardData", "collect_reward_data", "make_pairs"]


@dataclass
class RewardData:
    """Sampled responses with their execution labels, one row per response.

    Attributes
    ----------
    task_ids, prompts, completions : list of str
        Row-aligned; rows of one task share ``task_id`` (the group).
    scores : np.ndarray of float
        True score: fraction of the task's asserts the response passes.
    passed : np.ndarray of bool
        True when every assert passes.
    """

    task_ids: list[str]
    prompts: list[str]
    completions: list[str]
    scores: np.ndarray
    passed: np.ndarray

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=float)
        self.passed = np.asarray(self.passed, dtype=bool)
        n = len(self.task_ids)
        if not (
            len(self.prompts) == len(self.completions) == len(self.scores) == len(self.passed) == n
        ):
            raise ValueError("RewardData fields must all have one entry per response.")

    def __len__(self) -> int:
        return len(self.task_ids)

    @property
    def groups(self) -> np.ndarray:
        """Dense integer id of each row's task (the core's ``groups``)."""
        _, inv = np.unique(np.asarray(self.task_ids), return_inverse=True)
        return inv

    def subset(self, rows: Sequence[int] | np.ndarray) -> RewardData:
        rows = np.asarray(rows, dtype=int)
        return RewardData(
            [self.task_ids[i] for i in rows],
            [self.prompts[i] for i in rows],
            [self.completions[i] for i in rows],
            self.scores[rows],
            self.passed[rows],
        )

    def save_jsonl(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(
            p,
            (
                {
                    "task_id": self.task_ids[i],
                    "prompt": self.prompts[i],
                    "completion": self.completions[i],
                    "score": float(self.scores[i]),
                    "passed": bool(self.passed[i]),
                }
                for i in range(len(self))
            ),
        )
        return p

    @classmethod
    def load_jsonl(cls, path: str | os.PathLike) -> RewardData:
        rows = read_jsonl(path, missing_ok=False)
        return cls(
            [r["task_id"] for r in rows],
            [r["prompt"] for r in rows],
            [r["completion"] for r in rows],
            np.array([r["score"] for r in rows], dtype=float),
            np.array([r["passed"] for r in rows], dtype=bool),
        )

    def summary(self) -> dict:
        g = self.groups
        n_groups = int(g.max()) + 1 if len(g) else 0
        mixed = sum(1 for k in range(n_groups) if 0 < self.passed[g == k].sum() < (g == k).sum())
        return {
            "n_responses": len(self),
            "n_prompts": n_groups,
            "pass_rate": float(self.passed.mean()) if len(self) else 0.0,
            "mean_score": float(self.scores.mean()) if len(self) else 0.0,
            "prompts_with_pass_and_fail": mixed,
        }


def collect_reward_data(
    policy,
    tasks: Sequence,
    n_samples: int = 8,
    *,
    tokenizer=None,
    timeout: float = 3.0,
    device: str | None = "auto",
    **sampling: Any,
) -> RewardData:
    """Sample ``n_samples`` responses per task from the policy and label them by execution.

    Parameters
    ----------
    policy : path-like or causal LM
        The starting policy (a directory, or a loaded model with ``tokenizer``).
    tasks : sequence of CodeTask
        Non-empty; the training prompts of the reward model.
    n_samples : int
        Responses per prompt: several per prompt is what gives same-prompt
        (pass, fail) pairs.
    timeout : float
        Sandbox seconds per program.
    **sampling
        Sampling settings of :func:`sampling.generate`: ``temperature``
        (default 1.0), ``top_p`` (0.95), ``max_new_tokens`` (96),
        ``batch_size`` (32), ``seed`` (0), ``progress`` (True).
    """
    from ..models import load_policy
    from ..sampling import sample_and_score

    tasks = list(tasks)
    if not tasks:
        raise ValueError(
            "The 'tasks' parameter of collect_reward_data must be non-empty; got an empty task set."
        )
    if isinstance(policy, (str, os.PathLike)):
        policy, tokenizer = load_policy(policy, device=device)
    elif tokenizer is None:
        raise ValueError(
            "The 'tokenizer' parameter of collect_reward_data is required with a loaded policy."
        )
    sampling = {"temperature": 1.0, "top_p": 0.95, "seed": 0, "progress": True, **sampling}
    samples, results = sample_and_score(
        policy, tokenizer, tasks, n=n_samples, timeout=timeout, **sampling
    )
    row_tasks = [tasks[g] for g in samples.group]
    scores = np.array([r.score for r in results])
    return RewardData(
        [t.task_id for t in row_tasks],
        [t.prompt for t in row_tasks],
        list(samples.completions),
        scores,
        np.array([r.passed for r in results], dtype=bool),
    )


def make_pairs(
    groups: np.ndarray,
    scores: np.ndarray,
    passed: np.ndarray | None = None,
    *,
    rule: str = "pass_fail",
    max_pairs_per_prompt: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """(chosen, rejected) row pairs of the same prompt.

    Parameters
    ----------
    groups : array of int
        Prompt id per row.
    scores : array of float
        True score per row.
    passed : array of bool, optional
        Needed by ``rule="pass_fail"`` (defaults to ``scores == 1``).
    rule : {"pass_fail", "score"}
        ``pass_fail``: chosen passes every test, rejected does not (the
        PF-PPO authors' pairs). ``score``: chosen has a strictly higher true
        score (uses partial credit too).
    max_pairs_per_prompt : int, optional
        Keep at most this many pairs per prompt, drawn at random.

    Returns
    -------
    np.ndarray of int, shape (m, 2)
        Row indices (chosen, rejected). Empty (0, 2) when no prompt has both
        a better and a worse response.
    """
    from rewardfilter.validation import as_generator

    rng = as_generator(rng)
    groups = np.asarray(groups)
    scores = np.asarray(scores, dtype=float)
    passed = scores >= 1.0 if passed is None else np.asarray(passed, dtype=bool)
    out: list[np.ndarray] = []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if rule == "pass_fail":
            good, bad = rows[passed[rows]], rows[~passed[rows]]
            cand = np.array([(i, j) for i in good for j in bad], dtype=int).reshape(-1, 2)
        elif rule == "score":
            cand = np.array(
                [(i, j) for i in rows for j in rows if scores[i] > scores[j]], dtype=int
            ).reshape(-1, 2)
        else:
            raise ValueError(
                f"The 'rule' parameter of make_pairs must be 'pass_fail' or 'score'; got {rule!r}."
            )
        if max_pairs_per_prompt is not None and len(cand) > max_pairs_per_prompt:
            cand = cand[rng.choice(len(cand), max_pairs_per_prompt, replace=False)]
        out.append(cand)
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=int)
