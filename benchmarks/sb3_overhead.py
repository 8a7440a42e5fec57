"""Wall-time overhead of FilteredRolloutBuffer against SB3's own RolloutBuffer.

Trains PPO on the same grouped task, with the same steps and seed, three ways
in the same process, in interleaved rounds whose order rotates (``timing.py``),
so that a busy machine slows all three alike; each ratio is the median over
rounds of the ratio within a round, with its interquartile range:

* SB3's ``RolloutBuffer`` (the reference);
* ``FilteredRolloutBuffer(filter="none")``: the bookkeeping alone (target <= 1.05);
* ``FilteredRolloutBuffer(filter="br")``: bookkeeping plus ranking and filtering
  (also trains on fewer steps, so it may even be faster).

It prints the CPU-time ratio (torch runs one thread, so process time is the
honest measure on a shared machine: time spent waiting for a core is not
counted) and the wall-time ratio, and for the filtered buffer the share of its
CPU time spent in its own bookkeeping: the overhead itself, measured directly.
``br`` trains a different policy on other episodes, so its ratio is not
overhead alone. The last line is what the README quotes.

    python benchmarks/sb3_overhead.py [--timesteps 8192] [--rounds 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch as th
from stable_baselines3 import PPO
from timing import interleaved  # benchmarks/timing.py (this folder is on sys.path)

from rewardfilter.adapters.sb3 import (
    FilteredRolloutBuffer,
    FilterStatsCallback,
    make_grouped_vec_env,
)

#: the buffer's own bookkeeping steps, timed where the buffer defines them
BOOKKEEPING = ("_record", "_parse_infos", "_apply_filter", "_rank_and_weight")


class TimedFilteredRolloutBuffer(FilteredRolloutBuffer):
    """FilteredRolloutBuffer that adds up the CPU time spent in its own bookkeeping.

    On a shared machine wall-time ratios are noisy; this time is not: it is
    the overhead itself (per-step info capture, end-of-rollout ranking).
    """

    own_seconds = 0.0
    depth = 0  # the hooks call each other (_apply_filter -> _parse_infos): count the outermost


def _timed(name: str):
    inner = getattr(FilteredRolloutBuffer, name)

    def method(self, *args, **kwargs):
        cls = TimedFilteredRolloutBuffer
        cls.depth += 1
        start = time.process_time()
        try:
            return inner(self, *args, **kwargs)
        finally:
            cls.depth -= 1
            if cls.depth == 0:
                cls.own_seconds += time.process_time() - start

    return method


TIMED = [n for n in BOOKKEEPING if hasattr(FilteredRolloutBuffer, n)]
for _name in TIMED:
    setattr(TimedFilteredRolloutBuffer, _name, _timed(_name))


def train(buffer_kwargs: dict, args: argparse.Namespace) -> None:
    """One PPO run on the grouped task."""
    venv = make_grouped_vec_env(
        args.task,
        n_groups=args.n_groups,
        group_size=args.group_size,
        seed=0,
        env_kwargs={"noise": "gaussian"},
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=256,
        n_epochs=4,
        seed=0,
        device="cpu",
        **buffer_kwargs,
    )
    # the filtered buffer receives each step's infos from FilterStatsCallback (part of the overhead)
    model.learn(args.timesteps, callback=FilterStatsCallback() if buffer_kwargs else None)
    venv.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="rewardfilter/CartPole-v1")
    parser.add_argument("--timesteps", type=int, default=8192)
    parser.add_argument("--n-steps", type=int, default=256)
    parser.add_argument("--n-groups", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    th.set_num_threads(1)

    variants = {
        "sb3 RolloutBuffer": {},
        "FilteredRolloutBuffer(none)": {
            "rollout_buffer_class": TimedFilteredRolloutBuffer,
            "rollout_buffer_kwargs": {"filter": "none"},
        },
        "FilteredRolloutBuffer(br)": {
            "rollout_buffer_class": TimedFilteredRolloutBuffer,
            "rollout_buffer_kwargs": {"filter": "br"},
        },
    }
    warm = argparse.Namespace(**{**vars(args), "timesteps": args.n_steps * args.n_groups})
    train({}, warm)  # imports and first-call costs out of the timed runs
    own: dict[str, list[float]] = {name: [] for name in variants}

    def run(name: str, kwargs: dict):
        def go() -> None:
            TimedFilteredRolloutBuffer.own_seconds = 0.0
            train(kwargs, args)
            own[name].append(TimedFilteredRolloutBuffer.own_seconds)

        return go

    timings = interleaved({n: run(n, kw) for n, kw in variants.items()}, args.rounds)
    ref = "sb3 RolloutBuffer"
    print(
        f"PPO on {args.task}, {args.timesteps} steps, {args.n_groups}x{args.group_size} envs, "
        f"{args.rounds} interleaved rounds; ratio to {ref} within a round: median [IQR]"
    )
    for name in variants:
        print(
            f"  {name:30s} CPU {np.median(timings.cpu[name]):6.2f} s  "
            f"ratio {timings.describe(name, ref)}   wall {np.median(timings.wall[name]):6.2f} s  "
            f"ratio {timings.describe(name, ref, 'wall')}"
        )
    shares = {}
    for name in list(variants)[1:]:
        shares[name] = 100 * sum(own[name]) / sum(timings.cpu[name])
        print(
            f"  {name:30s} CPU time in the buffer's own bookkeeping ({', '.join(TIMED)}): "
            f"{shares[name]:.2f}%"
        )
    none = "FilteredRolloutBuffer(none)"
    print(
        f"README: CPU time {timings.describe(none, ref)} (filter `none`, median [IQR] of "
        f"{args.rounds} rounds); filter bookkeeping {shares[none]:.1f}% (none), "
        f"{shares['FilteredRolloutBuffer(br)']:.1f}% (br)"
    )


if __name__ == "__main__":
    main()
