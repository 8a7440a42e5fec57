"""Rollout buffers that train only on the episodes a filter keeps (PF-PPO for SB3).

Use::

    venv = make_grouped_vec_env("rewardfilter/Pendulum-v1", n_groups=4, group_size=4)
    model = PPO("MlpPolicy", venv, rollout_buffer_class=FilteredRolloutBuffer,
                rollout_buffer_kwargs={"filter": "br"})
    model.learn(20_000, callback=FilterStatsCallback())

(A2C too.) One rollout reads like the paper's algorithm box:

1. *sample*: SB3 fills the buffer; before each ``add``,
   :class:`~rewardfilter.adapters.sb3.FilterStatsCallback` hands the buffer
   that step's infos (SB3's documented channel: a callback's ``_on_step`` runs
   after ``env.step`` and before ``rollout_buffer.add``), from which the buffer
   records the episode's group (start state), the reward the env returned
   (before SB3 adds value bootstraps on truncation), the true reward and the
   reward-model ensemble;
2. *advantages*: GAE runs over the *whole* buffer, exactly as in SB3, so
   values and advantages of kept steps are those of unfiltered PPO;
3. *score and filter*: every context (start state) whose N episodes have all
   ended is ranked by the episodes' observed (noisy) returns, and the filter
   gives each episode a weight; its steps inherit the weight;
4. *update*: :meth:`get` yields only steps with weight > 0, in minibatches of
   equal size.

Rules
-----
What is ranked
    Whole episodes, by their observed (noisy) return, so ``threshold:T``
    compares T with episode returns and ``rank:`` weights go by return rank.
Contexts complete across rollouts
    A context is ranked only once all N of its episodes have ended, whatever
    rollouts they ended in (N is ``group_size``, or learned from the first
    step's group ids). Until then the steps of its episodes (finished ones and
    the running one's steps so far) are *held*: copied out of the buffer and
    trained on in the rollout in which the context completes, with the weight
    the ranking gave them (their ``log_probs`` and advantages are those of the
    rollout that collected them; PPO's ratio corrects for the policy change).
    So BoN keeps exactly 1 episode of N, BR and BW 2, ``random:K`` K, and every
    step is trained at most once. Filter ``none`` ranks nothing and holds
    nothing: it trains on every step of the rollout, as SB3 does.
Nothing complete
    If no context completes in a rollout (episodes longer than ``n_steps``),
    its steps are trained on unranked, all with the same weight (the mean rank
    weight), with a warning; ``last_stats["fallback"] = 1`` and
    ``n_unranked_transitions`` count them. Choose ``n_steps`` of a few episode
    lengths so that this does not happen.
Non-binary weights (``rank:w1,...,wN``)
    As the PF-PPO authors' "reweight" version: within each context the rank
    weights are normalised to mean 1, and :meth:`get` draws as many steps as
    the ranked episodes hold, with replacement, with probability proportional
    to their weights, anew at every epoch.
Nothing kept
    If the filter gives every ranked episode weight 0 (e.g. ``threshold``
    above every return) the ranked episodes are used unfiltered, with a
    warning and ``last_stats["fallback"] = 1``.
Minibatches
    The kept steps of an epoch are cut into ``round(n / batch_size)`` (at
    least one) minibatches of equal size (sizes differ by at most one), never
    into full batches plus a tiny tail that would be stepped like a full one.
    When ``batch_size`` divides the count, this is exactly SB3's split.
``adaptive``
    Needs labelled data: before ranking, it is refitted on the (noisy return,
    true return) pairs of the episodes ranked in the last ``adaptive_window``
    rollouts, this one included (the true returns only choose the filter; they
    never enter the loss). Pass ``refit_adaptive=False`` to use a filter fitted
    beforehand. Until a fit succeeds the ranked episodes are used unfiltered.
Bad rewards
    A NaN or infinite observed reward raises ``ValueError`` in :meth:`add`,
    naming the env and the step; a non-finite ``true_reward`` (statistics
    only) gives a warning, and its episode is left out of the statistics.

Where the infos come from
-------------------------
SB3's ``RolloutBuffer.add`` does not receive the step infos. They reach the
buffer through :meth:`record_infos`, which
:class:`~rewardfilter.adapters.sb3.FilterStatsCallback` calls with SB3's
``locals["infos"]`` before every ``add`` (so pass that callback to ``learn``);
custom loops pass ``add(..., infos=infos)``. Without infos :meth:`add`
raises, whatever the filter: otherwise the noisy reward would pass for the
true one. The infos are those written by
:class:`~rewardfilter.adapters.sb3.GroupMember` (``group_id``,
``observed_reward``) and :class:`~rewardfilter.envs.NoisyReward`
(``true_reward``, ``reward_ensemble``); they pass unchanged through SB3's
``VecEnvWrapper``s such as ``VecNormalize``.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Generator
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

import rewardfilter as rf
from rewardfilter.adapters.sb3.episodes import Episode, EpisodeLedger, split_segments
from rewardfilter.adapters.sb3.grouping import GROUP_ID_KEY, OBSERVED_REWARD_KEY, check_grouping
from rewardfilter.adapters.sb3.stats import STAT_KEYS, episode_stats, pool_episodes, pool_history
from rewardfilter.validation import check_bool, check_choice, check_scalar

__all__ = ["STAT_KEYS", "FilteredDictRolloutBuffer", "FilteredRolloutBuffer", "FilterMixin"]

#: SB3's per-step arrays that ``get`` flattens and ``_get_samples`` reads (observations aside)
_FIELDS = ("actions", "values", "log_probs", "advantages", "returns")


class FilterMixin:
    """Filtering for an SB3 rollout buffer: the whole of both filtered buffer classes.

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
    group_size : int, optional
        Envs per group N; when given, checked up front against ``n_envs`` and
        the filter (otherwise learned from the first step's group ids).
    adaptive_window : int
        Rollouts whose ranked episodes the ``adaptive`` filter is refitted on
        (default 8).
    rank_by : {"observed", "true"}
        What episodes are ranked by: the observed (noisy) return (default, the
        method), or the true return (a ceiling for experiments: training still
        uses the noisy reward; only the ranking sees the true one).

    Attributes
    ----------
    last_stats : dict
        Updated at the end of every rollout (see
        :func:`rewardfilter.adapters.sb3.stats.episode_stats`).
    last_episodes : dict
        The episodes ranked in the last rollout: ``noisy`` and ``true``
        returns, ``groups`` (contexts) and the filter's ``weights``.
    n_minibatches : int
        Minibatches yielded by :meth:`get` since construction (the gradient
        steps of PPO/A2C).
    """

    buffer_size: int
    n_envs: int
    pos: int
    full: bool
    generator_ready: bool
    episode_starts: np.ndarray
    observations: Any

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
        rank_by: str = "observed",
    ):
        self.filter = rf.make_filter(filter)
        owner = "FilteredRolloutBuffer"
        self.rank_by = check_choice(rank_by, "rank_by", owner, ("observed", "true"))
        self.refit_adaptive = check_bool(refit_adaptive, "refit_adaptive", owner)
        window = check_scalar(adaptive_window, "adaptive_window", owner, "int", min_val=1)
        self._fit_history: deque[dict[str, Any]] = deque(maxlen=window)
        if seed is not None:
            check_scalar(seed, "seed", owner, "int", min_val=0)
        self.seed = seed
        self.group_size = group_size
        if group_size is not None:
            check_grouping(n_envs, group_size)
            self.filter.check_group_size(group_size)
        self._ranks = not isinstance(self.filter, rf.NoFilter)
        self._rng = None if seed is None else np.random.default_rng(seed)
        self._ledger = EpisodeLedger(n_envs)
        self._pending_infos: list[dict[str, Any]] | None = None
        self._warned_true_nan = False
        self.n_minibatches = 0
        self.last_stats: dict[str, float] = episode_stats([], 0)
        self.last_episodes: dict[str, np.ndarray] = pool_episodes([])
        super().__init__(  # type: ignore[call-arg]
            buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs
        )

    @property
    def last_episode_weights(self) -> np.ndarray:
        """The filter's weight per episode ranked in the last rollout."""
        return self.last_episodes["weights"]

    # -- 1. sample: SB3 adds a step, the callback hands over its infos ------------

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self._step_infos: list[list[dict[str, Any]]] = []
        self.reward_ensembles: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        self._pool = 0

    def record_infos(self, infos: Any) -> None:
        """Hand over the infos of the step that the next :meth:`add` stores."""
        if infos is None or len(infos) != self.n_envs:
            got = None if infos is None else f"{len(infos)} infos"
            raise ValueError(
                f"The 'infos' parameter of FilteredRolloutBuffer must hold one dict per env "
                f"({self.n_envs}); got {got}."
            )
        self._pending_infos = list(infos)

    def add(self, *args: Any, infos: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        """SB3's ``add``, plus the step's ``infos`` (given, or handed over by the callback)."""
        if infos is not None:
            self.record_infos(infos)
        if self._pending_infos is None:
            raise ValueError(
                "FilteredRolloutBuffer.add got no step infos (group ids, observed and true "
                "rewards): pass callback=FilterStatsCallback() to learn(), or call "
                "add(..., infos=infos) in a custom loop."
            )
        infos, self._pending_infos = self._pending_infos, None
        rewards = args[2] if len(args) > 2 else kwargs["reward"]
        self._record(infos, np.asarray(rewards, dtype=np.float64).reshape(-1))
        super().add(*args, **kwargs)  # type: ignore[misc]

    def _record(self, infos: list[dict[str, Any]], sb3_rewards: np.ndarray) -> None:
        """Check the step's reward now; keep its infos, parsed once at the rollout's end."""
        t = self.pos
        for e, info in enumerate(infos):
            value = info.get(OBSERVED_REWARD_KEY, sb3_rewards[e])
            if not math.isfinite(value):
                self._bad_reward(e, t, value)
        if t == 0:
            self._check_group_ids(infos, t)
            if self.group_size is None and self._ranks:
                # every member is at its first episode: the most frequent id counts the members
                gids = [info[GROUP_ID_KEY] for info in infos]
                self.group_size = int(np.unique(gids, return_counts=True)[1].max())
                self.filter.check_group_size(self.group_size)
        # a reference per step is the only per-step cost: the buffer stays as fast as SB3's
        self._step_infos.append(infos)

    @staticmethod
    def _bad_reward(env: int, step: int, value: float) -> None:
        raise ValueError(
            f"The observed reward of env {env} at step {step} of the rollout is {value}: "
            "rewards must be finite (check the env or its noise model)."
        )

    def _check_group_ids(self, infos: list[dict[str, Any]], step: int) -> None:
        if self._ranks and any(GROUP_ID_KEY not in info for info in infos):
            raise ValueError(
                f"Filter {self.filter.spec!r} needs group ids in the step infos "
                f"('{GROUP_ID_KEY}'; missing at step {step} of the rollout): build the env with "
                "rewardfilter.adapters.sb3.make_grouped_vec_env (or wrap each copy in GroupMember)."
            )

    def _parse_infos(self) -> None:
        """Turn the rollout's infos into (step, env) arrays of group ids and rewards."""
        T, E = self.buffer_size, self.n_envs
        flat = [info for row in self._step_infos for info in row]
        sb3 = self.rewards.reshape(-1)  # type: ignore[attr-defined]
        observed = np.array(
            [info.get(OBSERVED_REWARD_KEY, r) for info, r in zip(flat, sb3, strict=True)], float
        )
        bad = np.flatnonzero(~np.isfinite(observed))
        if bad.size:
            self._bad_reward(int(bad[0] % E), int(bad[0] // E), observed[bad[0]])
        true = np.array(
            [info.get("true_reward", o) for info, o in zip(flat, observed, strict=True)], float
        )
        bad = np.flatnonzero(~np.isfinite(true))
        if bad.size and not self._warned_true_nan:
            self._warned_true_nan = True
            k = int(bad[0])
            warnings.warn(
                f"The true reward of env {k % E} at step {k // E} of the rollout is {true[k]}; "
                "its episode is left out of the statistics (training goes on).",
                stacklevel=4,
            )
        gids = [info.get(GROUP_ID_KEY) for info in flat]
        if None in gids:
            k = gids.index(None)
            self._check_group_ids([flat[k]], k // E)
            gids = [-1 if g is None else g for g in gids]
        self.observed_rewards = observed.reshape(T, E)
        self.true_rewards = true.reshape(T, E)
        self.group_ids = np.asarray(gids, dtype=np.int64).reshape(T, E)
        if all("reward_ensemble" in info for info in flat):
            ens = np.asarray([info["reward_ensemble"] for info in flat], dtype=np.float64)
            self.reward_ensembles = ens.reshape(T, E, -1)

    # -- 2. advantages, 3. score and filter -------------------------------------

    def compute_returns_and_advantage(self, last_values: Any, dones: np.ndarray) -> None:
        """GAE over the whole buffer (SB3), then rank the complete contexts and weight every step."""
        super().compute_returns_and_advantage(last_values, dones)  # type: ignore[misc]
        self._rank_and_weight(dones)

    def _rank_and_weight(self, dones: np.ndarray) -> None:
        """Add the rollout's episodes to the ledger, rank complete contexts, build the training set."""
        T, E = self.buffer_size, self.n_envs
        self._parse_infos()
        seg = split_segments(self.episode_starts, dones)

        def totals(x: np.ndarray) -> np.ndarray:
            return np.add.reduceat(
                x.transpose(1, 0, *range(2, x.ndim)).reshape(T * E, -1), seg.start
            )

        ens = None if self.reward_ensembles is None else totals(self.reward_ensembles)
        uids = self._ledger.add_rollout(
            seg,
            totals(self.observed_rewards)[:, 0],
            totals(self.true_rewards)[:, 0],
            self.group_ids.T.reshape(-1)[seg.start],
            ens,
        )
        step_uid = np.repeat(uids, seg.lengths)
        fields = self._flat_fields()
        fallback = 0
        if not self._ranks:  # filter none: every step now, nothing held
            ranked = self._ledger.pop_finished()
            ep_w = np.ones(len(ranked))
            self._set_training_set(fields, np.ones(T * E), T * E)
        else:
            ranked = self._ledger.pop_complete(int(self.group_size or 1))
            ep_w, fallback = self._episode_weights(ranked)
            w_of = dict(zip((ep.uid for ep in ranked), ep_w, strict=True))
            ready = np.array(list(w_of), dtype=np.int64)
            now = np.isin(step_uid, ready)
            weights = np.zeros(T * E)
            weights[now] = [w_of[u] for u in step_uid[now]]
            released, released_uid = self._ledger.release(ready)
            if not ranked:
                warnings.warn(
                    f"No context completed in this rollout: its {T * E} steps are trained on "
                    f"unranked (filter {self.filter.spec!r}). Use n_steps of a few episode lengths.",
                    stacklevel=2,
                )
                weights[:], now[:], fallback = 1.0, True, 1
            self._ledger.hold(fields, ~now, step_uid)
            if released_uid.size:
                fields = {k: np.concatenate([fields[k], released[k]]) for k in fields}
                weights = np.concatenate([weights, [w_of[u] for u in released_uid]])
            self._set_training_set(fields, weights, int(now.sum()) + released_uid.size)
        self.last_episodes = pool_episodes(ranked, ep_w)
        self.last_stats = episode_stats(
            ranked,
            self._ledger.n_held,
            weights=ep_w,
            step_weights=self._weights,
            fallback=fallback,
            unranked=T * E if fallback and not ranked else 0,
        )

    def _filter_rng(self) -> np.random.Generator:
        if self._rng is None:
            # drawn from numpy's global RNG, which SB3's ``seed=`` sets: runs stay reproducible
            self._rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
        return self._rng

    def _episode_weights(self, ranked: list[Episode]) -> tuple[np.ndarray, int]:
        """The filter's weight per ranked episode (normalised per context) and the fallback flag."""
        n = len(ranked)
        if n == 0:
            return np.ones(0), 0
        ep = pool_episodes(ranked)
        if self.filter.needs_ensemble and ep["ensemble"] is None:
            raise ValueError(
                f"Filter {self.filter.spec!r} needs a reward-model ensemble ('reward_ensemble' in "
                "the step infos): use noise='learned'."
            )
        rng = self._filter_rng()
        ensemble = (
            ep["ensemble"] if ep["ensemble"] is not None and len(ep["ensemble"]) >= 2 else None
        )
        if self.filter.requires_fit:
            if self.refit_adaptive:
                self._fit_history.append(ep)
                pooled = pool_history(list(self._fit_history))
                if pooled["noisy"].shape[0] >= 2:
                    try:
                        self.filter.fit(
                            pooled["noisy"], pooled["true"], pooled["groups"], rng=rng,
                            ensemble=pooled["ensemble"],
                        )  # fmt: skip
                    except ValueError:
                        pass  # too little signal in the window: keep the previous choice
            if not self.filter.is_fitted:
                return np.ones(n), 0
        by = ep["true"] if self.rank_by == "true" else ep["noisy"]
        w = self.filter.weights(by, ep["groups"], rng=rng, ensemble=ensemble)
        if not (w > 0).any():
            warnings.warn(
                f"Filter {self.filter.spec!r} kept no episode of this rollout; using them unfiltered.",
                stacklevel=3,
            )
            return np.ones(n), 1
        if not self.filter.is_binary:  # reweight: every context carries the same total weight
            _, ctx, size = np.unique(ep["groups"], return_inverse=True, return_counts=True)
            total = np.bincount(ctx.reshape(-1), weights=w)
            ctx = ctx.reshape(-1)
            w = np.where(total[ctx] > 0, w * size[ctx] / np.where(total > 0, total, 1)[ctx], 0.0)
        return w, 0

    # -- 4. update ---------------------------------------------------------------

    def _flat_fields(self) -> dict[str, np.ndarray]:
        """SB3's per-step arrays flattened env-major (as SB3's ``get`` does), by name."""
        if not self.generator_ready:
            if isinstance(self.observations, dict):
                for key, obs in self.observations.items():
                    self.observations[key] = self.swap_and_flatten(obs)  # type: ignore[attr-defined]
            else:
                self.observations = self.swap_and_flatten(self.observations)  # type: ignore[attr-defined]
            for name in _FIELDS:
                setattr(self, name, self.swap_and_flatten(getattr(self, name)))  # type: ignore[attr-defined]
            self.generator_ready = True
        out = {name: getattr(self, name) for name in _FIELDS}
        if isinstance(self.observations, dict):
            out.update({f"observations/{k}": v for k, v in self.observations.items()})
        else:
            out["observations"] = self.observations
        return out

    def _set_training_set(
        self, fields: dict[str, np.ndarray], weights: np.ndarray, pool: int
    ) -> None:
        for name in _FIELDS:
            setattr(self, name, fields[name])
        if isinstance(self.observations, dict):
            for key in self.observations:
                self.observations[key] = fields[f"observations/{key}"]
        else:
            self.observations = fields["observations"]
        self._weights, self._pool = weights, pool

    def _sample_indices(self) -> np.ndarray:
        """Indices (into the training set) of the steps one epoch trains on."""
        w = self._weights
        if w is None or (w == 1.0).all():
            return np.random.permutation(w.shape[0] if w is not None else 0)  # noqa: NPY002  (SB3's draw)
        if np.isin(w, (0.0, 1.0)).all():
            return np.random.permutation(np.flatnonzero(w))  # noqa: NPY002
        return np.random.choice(w.shape[0], size=self._pool, replace=True, p=w / w.sum())  # noqa: NPY002

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        """Equal-size minibatches of the kept transitions (all of them per epoch; never empty)."""
        assert self.full, "the rollout buffer is not full"
        indices = self._sample_indices()
        n_batches = 1 if batch_size is None else max(1, round(indices.shape[0] / batch_size))
        for batch in np.array_split(indices, n_batches):
            self.n_minibatches += 1
            yield self._get_samples(batch)  # type: ignore[attr-defined]


class FilteredRolloutBuffer(FilterMixin, RolloutBuffer):
    """SB3's ``RolloutBuffer`` that yields only the transitions of kept episodes.

    Parameters and rules: see :class:`FilterMixin` and the module docstring.
    """


class FilteredDictRolloutBuffer(FilterMixin, DictRolloutBuffer):
    """SB3's ``DictRolloutBuffer`` that yields only the transitions of kept episodes.

    Parameters and rules: see :class:`FilterMixin` and the module docstring.
    """
