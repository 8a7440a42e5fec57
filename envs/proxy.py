"""A learned proxy reward fitted on random *and* near-expert data, scored as the study needs.

Issue 16's regime 3 asks for a proxy reward that is reliable where a good
policy goes, with errors partly independent across a group's episodes. Noise
model ``proxy`` is the ``learned`` ensemble (:mod:`rewardfilter.envs.learned`)
with two additions:

* **data**: a share ``expert_fraction`` of its ``n_transitions`` is collected
  by a saved SB3 policy (``expert``: the path of a ``.zip``, e.g. an oracle
  checkpoint, sampling its actions), the rest by a uniformly random policy; the
  expert file's SHA-256 enters the cache key, so a new checkpoint refits;
* **score**: how the members' values (per step, or an episode's sums in
  episode-level mode) become the reward the agent sees:

  - ``mean``: the ensemble mean (as ``learned``);
  - ``member``: one member drawn at random per call -- per episode in
    episode-level mode, from the episode's own noise stream, so the N episodes
    of a group are scored by independently drawn members;
  - ``uwo``: mean - ``uwo_lambda`` x the members' variance (uncertainty-weighted
    optimisation, Coste et al., ICLR 2024; the variance, as there);
  - ``wco``: the smallest member value (worst-case optimisation, ibid.).

Every step's info still carries all members' values in ``reward_ensemble``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardfilter.envs.learned import LearnedRewardConfig, LearnedRewardModel
from rewardfilter.validation import check_choice, check_scalar, param_error

__all__ = ["SCORES", "ProxyRewardConfig", "ProxyRewardModel", "aggregate_members"]

SCORES = ("mean", "member", "uwo", "wco")


@dataclass(frozen=True)
class ProxyRewardConfig(LearnedRewardConfig):
    """A ``learned`` ensemble fitted on random plus expert data, with a scoring rule."""

    expert: str | None = field(
        default=None,
        metadata={"help": "Path of a saved SB3 PPO policy (.zip) that collects expert data."},
    )
    expert_fraction: float = field(
        default=0.5,
        metadata={"help": "Share of n_transitions collected by the expert (with 'expert' set)."},
    )
    score: str = field(
        default="mean", metadata={"help": "Reward from the members: mean, member, uwo or wco."}
    )
    uwo_lambda: float = field(
        default=1.0, metadata={"help": "UWO's weight of the members' variance (score 'uwo')."}
    )

    def __post_init__(self):
        super().__post_init__()
        owner = "proxy noise"
        check_choice(self.score, "score", owner, SCORES)
        check_scalar(self.uwo_lambda, "uwo_lambda", owner, min_val=0)
        check_scalar(self.expert_fraction, "expert_fraction", owner, min_val=0, max_val=1)
        if self.expert is not None and (
            not isinstance(self.expert, str) or not Path(self.expert).expanduser().is_file()
        ):
            raise param_error("expert", owner, "the path of a saved SB3 policy (.zip)", self.expert)

    def key_fields(self) -> dict[str, Any]:
        """The scoring rule is not in the weights; the expert file's content is."""
        fields = super().key_fields()
        for name in ("score", "uwo_lambda"):
            del fields[name]
        if self.expert is not None:
            data = Path(self.expert).expanduser().read_bytes()
            fields["expert_sha256"] = hashlib.sha256(data).hexdigest()
        return fields


def aggregate_members(
    values: np.ndarray, score: str, rng: np.random.Generator, uwo_lambda: float = 1.0
) -> float:
    """The reward from the members' values under ``score`` (see the module docstring)."""
    if score == "mean":
        return float(values.mean())
    if score == "member":
        return float(values[rng.integers(values.shape[0])])
    if score == "uwo":
        return float(values.mean() - uwo_lambda * values.var())
    if score == "wco":
        return float(values.min())
    raise param_error("score", "proxy noise", f"one of {SCORES}", score)


class ProxyRewardModel(LearnedRewardModel):
    """The ``learned`` ensemble on random plus expert data, scored by ``config.score``."""

    name = "proxy"

    def aggregate(self, values: np.ndarray, rng: np.random.Generator) -> float:
        return aggregate_members(values, self.config.score, rng, self.config.uwo_lambda)

    def collect(self, policy: Any = None, n: int | None = None, seed: int | None = None):
        """Random-policy transitions, then (with ``expert``) the expert's share."""
        c = self.config
        if policy is not None or c.expert is None:
            return super().collect(policy, n, seed)
        n_expert = int(round(c.expert_fraction * c.n_transitions))
        collect = super().collect
        parts = [
            collect(policy, count, part_seed)
            for policy, count, part_seed in (
                (None, c.n_transitions - n_expert, c.seed),
                (load_expert(c.expert) if n_expert else None, n_expert, c.seed + 1_000_003),
            )
            if count > 0
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_expert(path: str) -> Any:
    """``obs -> action`` of a saved SB3 PPO policy, sampling its actions (near-expert data)."""
    from stable_baselines3 import PPO

    model = PPO.load(str(Path(path).expanduser()), device="cpu")
    return lambda obs: model.predict(obs, deterministic=False)[0]
