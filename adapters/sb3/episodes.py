"""Episodes, their ranking contexts, and the steps that wait for a context to complete.

The bookkeeping behind :class:`~rewardfilter.adapters.sb3.FilteredRolloutBuffer`,
kept apart from SB3 so that it reads (and is tested) as plain numpy:

* a rollout buffer of T steps x E envs is cut into *segments*: runs of steps of
  one env that belong to one episode (SB3 flattens ``(step, env)`` arrays
  env-major, index ``env * T + step``, so a segment is a contiguous range);
* a segment either opens an episode or continues the one its env had running
  when the previous rollout stopped; episode totals (noisy, true, ensemble)
  add up over segments;
* a *context* (group id: one start state) is complete when all N of its
  episodes have ended, possibly in different rollouts; only complete contexts
  are ranked, so every ranking compares N episodes, never a lone survivor;
* the steps of episodes whose context is not complete yet are *held*: copied
  out of the buffer, and released (trained on, with the weight their ranking
  gave them) in the rollout in which the context completes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episode:
    """One episode's running totals."""

    uid: int
    context: int
    env: int
    noisy: float = 0.0
    true: float = 0.0
    ensemble: np.ndarray | None = None
    done: bool = False
    length: int = 0


@dataclass
class Segments:
    """Runs of one env's steps within one episode, in SB3's env-major flat order."""

    start: np.ndarray
    stop: np.ndarray
    env: np.ndarray
    finished: np.ndarray
    continues: np.ndarray  # the segment continues an episode of the previous rollout

    @property
    def lengths(self) -> np.ndarray:
        return self.stop - self.start


def split_segments(episode_starts: np.ndarray, dones: np.ndarray) -> Segments:
    """Cut a ``(T, E)`` buffer into episode segments (env-major flat indices).

    ``episode_starts[t, e]`` is SB3's flag that step t of env e opens an episode;
    ``dones[e]`` whether env e's episode ended with the buffer's last step.
    """
    T, E = episode_starts.shape
    starts = episode_starts > 0.5
    ends = np.zeros((T, E), dtype=bool)
    ends[:-1] = starts[1:]
    ends[-1] = np.asarray(dones, dtype=bool).reshape(-1)
    begins = starts.copy()
    begins[0] = True  # each env's first step opens a segment (maybe continuing an episode)
    start = np.flatnonzero(begins.T.reshape(-1))
    stop = np.append(start[1:], T * E)
    env = start // T
    finished = ends.T.reshape(-1)[stop - 1]
    continues = (start % T == 0) & ~starts[0][env]
    return Segments(start, stop, env, finished, continues)


@dataclass
class EpisodeLedger:
    """Open episodes across rollouts, and the held steps of incomplete contexts."""

    n_envs: int
    episodes: dict[int, Episode] = field(default_factory=dict)
    held: dict[str, np.ndarray] = field(default_factory=dict)
    held_uid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    held_age: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _open: np.ndarray | None = None
    _next_uid: int = 0

    def __post_init__(self) -> None:
        self._open = np.full(self.n_envs, -1, dtype=np.int64)

    def add_rollout(
        self,
        seg: Segments,
        noisy: np.ndarray,
        true: np.ndarray,
        contexts: np.ndarray,
        ensemble: np.ndarray | None,
    ) -> np.ndarray:
        """Add the rollout's segment totals; return the episode uid of every segment."""
        assert self._open is not None
        uids = np.empty(seg.start.shape[0], dtype=np.int64)
        for s in range(seg.start.shape[0]):
            env, ctx = int(seg.env[s]), int(contexts[s])
            uid = int(self._open[env]) if seg.continues[s] else -1
            if uid < 0 or uid not in self.episodes or self.episodes[uid].context != ctx:
                uid = self._next_uid
                self._next_uid += 1
                self.episodes[uid] = Episode(uid=uid, context=ctx, env=env)
            ep = self.episodes[uid]
            ep.noisy += float(noisy[s])
            ep.true += float(true[s])
            ep.length += int(seg.lengths[s])
            if ensemble is not None:
                ep.ensemble = (
                    ensemble[s].copy() if ep.ensemble is None else ep.ensemble + ensemble[s]
                )
            ep.done = bool(seg.finished[s])
            uids[s] = uid
        self._open[:] = -1
        last = np.append(seg.env[1:] != seg.env[:-1], True)
        for s in np.flatnonzero(last & ~seg.finished):
            self._open[seg.env[s]] = uids[s]
        return uids

    def pop_finished(self) -> list[Episode]:
        """Remove and return every ended episode (no ranking: filter ``none``)."""
        done = [ep for ep in self.episodes.values() if ep.done]
        for ep in done:
            del self.episodes[ep.uid]
        return done

    def pop_complete(self, group_size: int) -> list[Episode]:
        """Remove and return the ended episodes of every context with ``group_size`` of them ended."""
        counts: dict[int, int] = {}
        for ep in self.episodes.values():
            if ep.done:
                counts[ep.context] = counts.get(ep.context, 0) + 1
        ready = {ctx for ctx, n in counts.items() if n >= group_size}
        out = [ep for ep in self.episodes.values() if ep.done and ep.context in ready]
        for ep in out:
            del self.episodes[ep.uid]
        return out

    # -- held steps ------------------------------------------------------------

    def hold(self, fields: dict[str, np.ndarray], mask: np.ndarray, step_uid: np.ndarray) -> None:
        """Copy the masked steps of ``fields`` (flat arrays) into the held store."""
        self.held_age += 1
        if not mask.any():
            return
        for name, arr in fields.items():
            part = arr[mask]
            self.held[name] = (
                part if name not in self.held else np.concatenate([self.held[name], part])
            )
        self.held_uid = np.concatenate([self.held_uid, step_uid[mask]])
        self.held_age = np.concatenate([self.held_age, np.zeros(int(mask.sum()), dtype=np.int64)])

    def release(self, uids: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Remove and return the held steps of the episodes ``uids`` (fields, uid per step)."""
        take = np.isin(self.held_uid, uids)
        out = {name: arr[take] for name, arr in self.held.items()}
        out_uid = self.held_uid[take]
        if take.any():
            self.held = {name: arr[~take] for name, arr in self.held.items()}
            self.held_uid = self.held_uid[~take]
            self.held_age = self.held_age[~take]
        return out, out_uid

    @property
    def n_held(self) -> int:
        return int(self.held_uid.shape[0])
