"""Rollout buffers that train only on the episodes a filter keeps (PF-PPO for SB3).

Use::

    venv = make_grouped_vec_env("rewardfilter/Pendulum-v1", n_groups=4, group_size=4)
    PPO("MlpPolicy", venv, rollout_buffer_class=FilteredRolloutBuffer,
        rollout_buffer_kwargs={"filter": "br"})

(A2C too.) One rollout reads like the paper's algorithm box:

1. *sample*: SB3 fills the buffer; for every step the buffer also records the
   episode's group (start state), the reward the env returned (before SB3
   adds value bootstraps on truncation), the true reward and the reward-model
   ensemble, all read from the step infos (see "Where the infos come from");
2. *advantages*: GAE runs over the *whole* buffer, exactly as in SB3, so
   values and advantages of kept steps are those of unfiltered PPO;
3. *score and filter*: each episode that ended in this rollout is ranked by
   its observed (noisy) return within its group, and the filter gives it a
   weight; its steps inherit the weight;
4. *update*: :meth:`get` yields only steps with weight > 0.

Rules
-----
What is ranked
    Whole episodes, by their observed (noisy) return, so ``threshold:T``
    compares T with episode returns and ``rank:`` weights go by return rank.
Cut episodes
    An episode is ranked in the rollout in which it *ends*, by its full noisy
    return (steps of earlier rollouts included, carried over), against the
    members of its group that end in the same rollout. Steps of an episode
    that has not ended when the rollout stops cannot be ranked: they are kept
    with weight 1 and counted in ``last_stats["n_unranked_transitions"]``.
    Every step is thus used in exactly one rollout, never dropped because it
    was cut and never duplicated. Choose ``n_steps`` of a few episode lengths
    so that most steps are ranked.
Non-binary weights (``rank:w1,...,wN``)
    As the PF-PPO authors' "reweight" version: :meth:`get` draws as many
    steps as the buffer holds, with replacement, with probability
    proportional to their weights (steps of unranked episodes count with
    weight 1), anew at every epoch.
Nothing kept
    :meth:`get` never yields an empty batch: if a filter keeps no step (e.g.
    ``threshold`` above every return) the rollout is used unfiltered, with a
    warning and ``last_stats["fallback"] = 1``.
``adaptive``
    Needs labelled data: before filtering, it is refitted on the (noisy return,
    true return) pairs of the episodes that ended in the last ``adaptive_window``
    rollouts, this one included (the true returns only choose the filter; they
    never enter the loss). One rollout alone is too little: with 8 episodes in
    2 groups, ``bon`` keeps 2 and the R² of 2 points is 1 by construction, so
    the selection rule would always pick it. Pass ``refit_adaptive=False`` to
    use a filter fitted beforehand. Until a fit succeeds the rollout is used
    unfiltered.

Where the infos come from
-------------------------
SB3's ``RolloutBuffer.add`` does not receive the step infos. The buffer's
:meth:`add` accepts them as a keyword (``add(..., infos=infos)``) for custom
loops; when it is not given, it takes the ``infos`` variable of its caller,
SB3's ``OnPolicyAlgorithm.collect_rollouts`` (shared by PPO and A2C), which
has just received them from ``env.step``. The infos are those written by
:class:`~rewardfilter.adapters.sb3.GroupMember` (``group_id``,
``observed_reward``) and :class:`~rewardfilter.envs.NoisyReward`
(``true_reward``, ``reward_ensemble``); they pass unchanged through SB3's
``VecEnvWrapper``s such as ``VecNormalize``. With filter ``none`` and no
group infos the buffer behaves exactly as SB3's own.
"""

from __future__ import annotations

import sys
import warnings
from collections import deque
from collections.abc import Generator
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

import rewardfilter as rf
from rewardfilter.adapters.sb3.grouping import GROUP_ID_KEY, OBSERVED_REWARD_KEY

STAT_KEYS = (
    "kept_fraction",
    "filtered_r2",
    "noisy_return_mean",
    "true_return_mean",
    "ensemble_std_mean",
    "n_episodes",
    "n_kept_transitions",
)


def _nan_stats() -> dict[str, float]:
    stats = dict.fromkeys(STAT_KEYS, float("nan"))
    stats.update(
        n_episodes=0,
        n_kept_transitions=0,
        n_unranked_transitions=0,
        r2=float("nan"),
        group_size_mean=float("nan"),
        fallback=0,
    )
    return stats


def _pool_episodes(history) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Concatenate the finished episodes of several rollouts; groups stay apart per rollout.

    Group ids repeat from one rollout to the next (they name env groups), so each
    rollout's groups are renumbered after the previous rollouts'.
    """
    noisy, true, groups, ensembles = [], [], [], []
    offset = 0
    for ep in history:
        _, inverse = np.unique(ep["groups"], return_inverse=True)
        noisy.append(ep["noisy"])
        true.append(ep["true"])
        groups.append(inverse.reshape(-1) + offset)
        offset += int(inverse.max()) + 1 if inverse.size else 0
        ensembles.append(ep["ensemble"])
    same_k = all(e is not None for e in ensembles) and len({e.shape[0] for e in ensembles}) == 1
    ensemble = np.concatenate(ensembles, axis=1) if ensembles and same_k else None
    return np.concatenate(noisy), np.concatenate(true), np.concatenate(groups), ensemble


class _FilterMixin:
    """The filtering logic shared by the flat and the Dict rollout buffer.

    Subclasses combine it with an SB3 rollout buffer and implement
    :meth:`_flatten_once` (SB3's own data preparation in ``get``).
    """

    buffer_size: int
    n_envs: int
    full: bool
    episode_starts: np.ndarray
    generator_ready: bool

    def _init_filter(
        self,
        filter: str | rf.Filter,
        seed: int | None,
        refit_adaptive: bool,
        group_size: int | None,
        n_envs: int,
        adaptive_window: int = 8,
    ) -> None:
        self.filter = rf.make_filter(filter)
        self.refit_adaptive = bool(refit_adaptive)
        if isinstance(adaptive_window, bool) or not isinstance(adaptive_window, int | np.integer):
            raise ValueError(
                f"adaptive_window must be an int >= 1 (rollouts); got {adaptive_window!r}."
            )
        if adaptive_window < 1:
            raise ValueError(f"adaptive_window must be >= 1 (rollouts); got {adaptive_window}.")
        # the finished episodes of the last `adaptive_window` rollouts: what `adaptive` is fitted on
        self._fit_history: deque[dict[str, Any]] = deque(maxlen=int(adaptive_window))
        self.seed = seed
        self.group_size = group_size
        if group_size is not None:
            from rewardfilter.adapters.sb3.grouping import check_grouping

            check_grouping(n_envs, group_size)
            self.filter.check_group_size(group_size)
        self._needs_groups = not isinstance(self.filter, rf.NoFilter)
        self._rng: np.random.Generator | None = (
            None if seed is None else np.random.default_rng(seed)
        )
        self._checked_group_size = group_size is not None
        # episodes cut by the previous rollout's end, per env
        self._carry_valid = np.zeros(n_envs, dtype=bool)
        self._carry_group = np.full(n_envs, -1, dtype=np.int64)
        self._carry_noisy = np.zeros(n_envs)
        self._carry_true = np.zeros(n_envs)
        self._carry_ensemble: np.ndarray | None = None
        self.last_stats: dict[str, float] = _nan_stats()
        #: the last rollout's finished episodes: noisy and true returns, groups and filter weights
        self.last_episodes: dict[str, np.ndarray] = {
            k: np.zeros(0) for k in ("noisy", "true", "groups", "weights")
        }

    @property
    def last_episode_weights(self) -> np.ndarray:
        """The filter's weight per finished episode of the last rollout."""
        return self.last_episodes["weights"]

    # -- per-step records ------------------------------------------------------

    def _reset_records(self) -> None:
        # the infos list of every step, parsed once at the end of the rollout (see _parse_infos):
        # appending a reference is the only per-step cost, which keeps the buffer as fast as SB3's
        self._step_infos: list[list[dict[str, Any]] | None] = []
        shape = (self.buffer_size, self.n_envs)
        self.group_ids = np.full(shape, -1, dtype=np.int64)
        self.observed_rewards = np.zeros(shape)
        self.true_rewards = np.zeros(shape)
        self.reward_ensembles: np.ndarray | None = None
        self._flat_weights: np.ndarray | None = None

    def _record(self, infos: Any) -> None:
        """Keep this step's infos; check the first step's thoroughly."""
        if infos is not None and len(infos) != self.n_envs:
            infos = None
        if self.pos == 0:  # type: ignore[attr-defined]
            self._check_infos(infos)
        self._step_infos.append(None if infos is None else list(infos))

    def _check_infos(self, infos: list[dict[str, Any]] | None) -> None:
        """Fail at the first step (not after a whole rollout) when the filter cannot work."""
        if infos is None:
            if self._needs_groups:
                raise ValueError(
                    f"Filter {self.filter.spec!r} needs each step's infos (group ids, observed rewards), "
                    "but FilteredRolloutBuffer.add got none: use PPO/A2C's collect_rollouts, or pass "
                    "add(..., infos=infos) in a custom loop, with an env built by make_grouped_vec_env."
                )
            return
        if self._needs_groups and any(GROUP_ID_KEY not in info for info in infos):
            raise ValueError(
                f"Filter {self.filter.spec!r} needs group ids in the step infos ('{GROUP_ID_KEY}'); "
                "build the env with rewardfilter.adapters.sb3.make_grouped_vec_env (or wrap each copy "
                "in GroupMember)."
            )
        if not self._checked_group_size and all("group" in info for info in infos):
            # learn the group size from the infos and check the filter can serve it
            groups = np.array([info["group"] for info in infos])
            self.filter.check_group_size(int(np.bincount(groups).max()))
            self._checked_group_size = True

    def _parse_infos(self) -> None:
        """Turn the rollout's infos into (step, env) arrays of group ids and rewards."""
        T, E = self.buffer_size, self.n_envs
        rows = self._step_infos
        sb3_rewards = self.rewards.astype(np.float64)  # type: ignore[attr-defined]
        if len(rows) != T or any(row is None for row in rows):
            if self._needs_groups:
                self._check_infos(None)
            # no infos: SB3's rewards (which include bootstraps on truncation) are all there is
            self.observed_rewards = sb3_rewards
            self.true_rewards = sb3_rewards
            return
        flat = [info for row in rows for info in row]  # type: ignore[union-attr]
        observed = [info.get(OBSERVED_REWARD_KEY) for info in flat]
        if None in observed:
            fallback = sb3_rewards.reshape(-1)
            observed = [fallback[k] if o is None else o for k, o in enumerate(observed)]
        true = [info.get("true_reward") for info in flat]
        if None in true:
            true = [o if t is None else t for o, t in zip(observed, true, strict=True)]
        gids = [info.get(GROUP_ID_KEY) for info in flat]
        if None in gids:
            if self._needs_groups:
                self._check_infos(
                    next(row for row in rows if any(GROUP_ID_KEY not in i for i in row))
                )
            gids = [-1 if g is None else g for g in gids]
        self.observed_rewards = np.asarray(observed, dtype=np.float64).reshape(T, E)
        self.true_rewards = np.asarray(true, dtype=np.float64).reshape(T, E)
        self.group_ids = np.asarray(gids, dtype=np.int64).reshape(T, E)
        if all("reward_ensemble" in info for info in flat):
            self.reward_ensembles = np.asarray(
                [info["reward_ensemble"] for info in flat], dtype=np.float64
            ).reshape(T, E, -1)

    # -- filtering -------------------------------------------------------------

    def _filter_rng(self) -> np.random.Generator:
        if self._rng is None:
            # drawn from numpy's global RNG, which SB3's ``seed=`` sets: runs stay reproducible
            self._rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
        return self._rng

    def _episodes(self, dones: np.ndarray) -> dict[str, Any]:
        """Split the buffer into episode segments and total each finished episode.

        Works on SB3's env-major flattening (index ``env * buffer_size + step``)
        so that segments are contiguous and totals are one ``reduceat``.
        """
        T, E = self.buffer_size, self.n_envs
        ends = np.zeros((T, E), dtype=bool)
        ends[:-1] = self.episode_starts[1:] > 0.5
        ends[-1] = np.asarray(dones, dtype=bool).reshape(-1)
        starts = self.episode_starts > 0.5
        begins = starts.copy()
        begins[0] = True  # each env's first step opens a segment (maybe continuing an episode)
        seg_start = np.flatnonzero(begins.T.reshape(-1))
        seg_stop = np.append(seg_start[1:], T * E)
        seg_env = seg_start // T
        finished = ends.T.reshape(-1)[seg_stop - 1]
        noisy = np.add.reduceat(self.observed_rewards.T.reshape(-1), seg_start)
        true = np.add.reduceat(self.true_rewards.T.reshape(-1), seg_start)
        groups = self.group_ids.T.reshape(-1)[seg_start]
        ens = self.reward_ensembles
        ens_sums = None
        if ens is not None:
            ens_sums = np.add.reduceat(ens.transpose(1, 0, 2).reshape(T * E, -1), seg_start, axis=0)
            if self._carry_ensemble is None or self._carry_ensemble.shape[1] != ens_sums.shape[1]:
                self._carry_ensemble = np.zeros((E, ens_sums.shape[1]))
        # segments that continue an episode of the previous rollout: add what it earned there
        head = (seg_start % T == 0) & ~starts[0][seg_env]
        head &= self._carry_valid[seg_env] & (self._carry_group[seg_env] == groups)
        head_envs = seg_env[head]
        noisy[head] += self._carry_noisy[head_envs]
        true[head] += self._carry_true[head_envs]
        if ens_sums is not None:
            ens_sums[head] += self._carry_ensemble[head_envs]
        # the last segment of an env not done at the buffer's end is carried to the next rollout
        last = np.append(seg_env[1:] != seg_env[:-1], True)
        self._carry_valid[:] = False
        cut = last & ~finished
        cut_envs = seg_env[cut]
        self._carry_valid[cut_envs] = True
        self._carry_group[cut_envs] = groups[cut]
        self._carry_noisy[cut_envs] = noisy[cut]
        self._carry_true[cut_envs] = true[cut]
        if ens_sums is not None:
            self._carry_ensemble[cut_envs] = ens_sums[cut]
        return {
            "finished": finished,
            "lengths": seg_stop - seg_start,
            "noisy": noisy[finished],
            "true": true[finished],
            "groups": groups[finished],
            "ensemble": None if ens_sums is None else ens_sums[finished].T,  # (K, n_episodes)
            "n_unranked": int((seg_stop - seg_start)[~finished].sum()),
        }

    def _episode_weights(self, ep: dict[str, Any]) -> np.ndarray | None:
        """The filter's weight per finished episode, or None to keep the rollout unfiltered."""
        n = ep["noisy"].shape[0]
        if n == 0 or isinstance(self.filter, rf.NoFilter):
            return np.ones(n)
        ensemble = ep["ensemble"]
        if self.filter.needs_ensemble and ensemble is None:
            raise ValueError(
                f"Filter {self.filter.spec!r} needs a reward-model ensemble ('reward_ensemble' in the step "
                "infos): use noise='learned'."
            )
        rng = self._filter_rng()
        if isinstance(self.filter, rf.AdaptiveFilter):
            if self.refit_adaptive:
                self._fit_history.append(ep)
                noisy, true, groups, ens = _pool_episodes(self._fit_history)
                if noisy.shape[0] >= 2:
                    try:
                        self.filter.fit(noisy, true, groups, rng=rng, ensemble=ens)
                    except ValueError:
                        pass  # too little signal in the window: keep the previous choice
            if self.filter.chosen_ is None:
                return None
        use_ensemble = (
            ensemble
            if self.filter.needs_ensemble or isinstance(self.filter, rf.AdaptiveFilter)
            else None
        )
        if use_ensemble is not None and use_ensemble.shape[0] < 2:
            use_ensemble = None
        return self.filter.weights(ep["noisy"], ep["groups"], rng=rng, ensemble=use_ensemble)

    def _apply_filter(self, dones: np.ndarray) -> None:
        """Rank finished episodes, weight every step, and update ``last_stats``."""
        self._parse_infos()
        ep = self._episodes(dones)
        w_ep = self._episode_weights(ep)
        fallback = 0
        if w_ep is None:
            w_ep = np.ones(ep["noisy"].shape[0])
        seg_weights = np.ones(ep["finished"].shape[0])
        seg_weights[ep["finished"]] = w_ep
        # SB3 flattens (step, env) arrays env-major, index = env * buffer_size + step: segments are runs
        weights = np.repeat(seg_weights, ep["lengths"])
        if not (weights > 0).any():
            warnings.warn(
                f"Filter {self.filter.spec!r} kept no step of this rollout; using it unfiltered.",
                stacklevel=3,
            )
            weights[:] = 1.0
            fallback = 1
        self.last_episodes = {
            "noisy": ep["noisy"],
            "true": ep["true"],
            "groups": ep["groups"],
            "weights": w_ep,
        }
        self._flat_weights = weights
        self.last_stats = self._stats(ep, w_ep, weights, fallback)

    def _stats(
        self, ep: dict[str, Any], w_ep: np.ndarray, weights: np.ndarray, fallback: int
    ) -> dict[str, float]:
        stats = _nan_stats()
        n = ep["noisy"].shape[0]
        kept = weights > 0
        stats.update(
            kept_fraction=float(kept.mean()),
            n_kept_transitions=int(kept.sum()),
            n_unranked_transitions=ep["n_unranked"],
            n_episodes=n,
            fallback=fallback,
        )
        if n:
            stats["noisy_return_mean"] = float(ep["noisy"].mean())
            stats["true_return_mean"] = float(ep["true"].mean())
            stats["r2"] = rf.r2(ep["noisy"], ep["true"])
            stats["group_size_mean"] = float(np.unique(ep["groups"], return_counts=True)[1].mean())
            stats["filtered_r2"] = (
                rf.r2(ep["noisy"], ep["true"], weights=w_ep) if (w_ep > 0).any() else float("nan")
            )
            if ep["ensemble"] is not None and ep["ensemble"].shape[0] >= 2:
                stats["ensemble_std_mean"] = float(rf.ensemble_std(ep["ensemble"]).mean())
        return stats

    # -- sampling --------------------------------------------------------------

    def _sample_indices(self) -> np.ndarray:
        """Indices (into the flattened buffer) of the steps one epoch trains on."""
        n = self.buffer_size * self.n_envs
        w = self._flat_weights
        if w is None or (w == 1.0).all():
            return np.random.permutation(n)  # noqa: NPY002  (exactly SB3's draw)
        if np.isin(w, (0.0, 1.0)).all():
            return np.random.permutation(np.flatnonzero(w))  # noqa: NPY002
        return np.random.choice(n, size=n, replace=True, p=w / w.sum())  # noqa: NPY002

    def _flatten_once(self) -> None:
        raise NotImplementedError

    def _filtered_get(self, batch_size: int | None) -> Generator[Any, None, None]:
        assert self.full, "the rollout buffer is not full"
        indices = self._sample_indices()
        self._flatten_once()
        if batch_size is None:
            batch_size = indices.shape[0]
        for start in range(0, indices.shape[0], batch_size):
            yield self._get_samples(indices[start : start + batch_size])  # type: ignore[attr-defined]


class FilteredRolloutBuffer(_FilterMixin, RolloutBuffer):
    """SB3's ``RolloutBuffer`` that yields only the transitions of kept episodes.

    See the module docstring for the rules (cut episodes, reweighting,
    fallback, adaptive) and for how group ids reach the buffer.

    Parameters
    ----------
    buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs
        As SB3's ``RolloutBuffer`` (the algorithm passes them).
    filter : str or rewardfilter.Filter
        The filtration policy (``rf.make_filter`` spec): ``none``, ``random:K``,
        ``bon``, ``br``, ``bw``, ``topk:K``, ``threshold:T``,
        ``rank:w1,...,wN``, ``uncertainty:Q`` (needs ``noise="learned"``),
        ``adaptive``.
    seed : int, optional
        Seed of the filter's own randomness (ties, ``br``'s random pick). By
        default it is drawn from numpy's global RNG, which SB3's ``seed=``
        sets. The order of minibatches uses numpy's global RNG, as in SB3.
    refit_adaptive : bool
        Refit an ``adaptive`` filter at every rollout (True), or use it as
        fitted beforehand (False).
    adaptive_window : int
        Rollouts whose finished episodes the ``adaptive`` filter is refitted
        on (default 8).
    group_size : int, optional
        Envs per group; when given, checked up front against ``n_envs`` and the
        filter (otherwise learned from the infos at the first step).

    Attributes
    ----------
    last_stats : dict
        Updated at the end of every rollout: ``kept_fraction``,
        ``filtered_r2`` (R² between noisy and true returns of the kept
        finished episodes), ``noisy_return_mean``, ``true_return_mean``,
        ``ensemble_std_mean`` (NaN without an ensemble), ``n_episodes``
        (finished in this rollout), ``n_kept_transitions``; also ``r2`` (all
        finished episodes), ``n_unranked_transitions``, ``group_size_mean``
        (episodes per ranked group: below the env group size when members'
        episodes end in different rollouts) and ``fallback``. ``filtered_r2``
        of one rollout rests on few episodes (2 for ``bon`` with 2 groups,
        where it is 1 by construction): pool ``last_episodes`` over several
        rollouts to compare filters.
    last_episodes : dict
        The last rollout's finished episodes: ``noisy`` and ``true`` returns,
        ``groups`` and the filter's ``weights``.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Any = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        filter: str | rf.Filter = "none",
        seed: int | None = None,
        refit_adaptive: bool = True,
        group_size: int | None = None,
        adaptive_window: int = 8,
    ):
        self._init_filter(filter, seed, refit_adaptive, group_size, n_envs, adaptive_window)
        super().__init__(
            buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs
        )

    def reset(self) -> None:
        super().reset()
        self._reset_records()

    def add(self, *args: Any, infos: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        """SB3's ``add``, plus the step's ``infos`` (taken from the caller when not given)."""
        if infos is None:
            infos = sys._getframe(1).f_locals.get("infos")
        self._record(infos)
        super().add(*args, **kwargs)

    def compute_returns_and_advantage(self, last_values: Any, dones: np.ndarray) -> None:
        """GAE over the whole buffer (SB3), then rank and filter the finished episodes."""
        super().compute_returns_and_advantage(last_values, dones)
        self._apply_filter(dones)

    def _flatten_once(self) -> None:
        if not self.generator_ready:
            for name in ("observations", "actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        """Minibatches of the kept transitions (all of them per epoch; never an empty batch)."""
        yield from self._filtered_get(batch_size)


class FilteredDictRolloutBuffer(_FilterMixin, DictRolloutBuffer):
    """The Dict-observation variant of :class:`FilteredRolloutBuffer` (same parameters)."""

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: Any = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        filter: str | rf.Filter = "none",
        seed: int | None = None,
        refit_adaptive: bool = True,
        group_size: int | None = None,
        adaptive_window: int = 8,
    ):
        self._init_filter(filter, seed, refit_adaptive, group_size, n_envs, adaptive_window)
        super().__init__(
            buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs
        )

    def reset(self) -> None:
        super().reset()
        self._reset_records()

    def add(self, *args: Any, infos: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        """SB3's ``add``, plus the step's ``infos`` (taken from the caller when not given)."""
        if infos is None:
            infos = sys._getframe(1).f_locals.get("infos")
        self._record(infos)
        super().add(*args, **kwargs)

    def compute_returns_and_advantage(self, last_values: Any, dones: np.ndarray) -> None:
        """GAE over the whole buffer (SB3), then rank and filter the finished episodes."""
        super().compute_returns_and_advantage(last_values, dones)
        self._apply_filter(dones)

    def _flatten_once(self) -> None:
        if not self.generator_ready:
            for key, obs in self.observations.items():
                self.observations[key] = self.swap_and_flatten(obs)
            for name in ("actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        """Minibatches of the kept transitions (all of them per epoch; never an empty batch)."""
        yield from self._filtered_get(batch_size)
