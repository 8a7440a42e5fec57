"""Wall-time overhead of FilteredRolloutBuffer against SB3's own RolloutBuffer.

Trains PPO on the same grouped task, with the same steps and seed, three ways
in the same process, interleaved over several repeats so that a busy machine
slows all three alike:

* SB3's ``RolloutBuffer`` (the reference);
* ``FilteredRolloutBuffer(filter="none")``: the bookkeeping alone (target <= 1.05);
* ``FilteredRolloutBuffer(filter="br")``: bookkeeping plus ranking and filtering
  (also trains on fewer steps, so it may even be faster).

Also prints the time spent in the filtered buffer's own bookkeeping (the
overhead itself, which machine load does not blur). Prints the median and the
minimum wall time of each and their ratios to the
reference (the minimum is the less noisy on a shared machine).

    python benchmarks/sb3_overhead.py [--timesteps 16384] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch as th
from rewardfilter.adapters.sb3 import FilteredRolloutBuffer, make_grouped_vec_env
from stable_baselines3 import PPO


class TimedFilteredRolloutBuffer(FilteredRolloutBuffer):
    """FilteredRolloutBuffer that adds up the time spent in its own bookkeeping.

    On a shared machine wall-time ratios are noisy; this time is not: it is
    the overhead itself (per-step info capture, end-of-rollout ranking).
    """

    own_seconds = 0.0

    def _record(self, infos):
        start = time.perf_counter()
        super()._record(infos)
        TimedFilteredRolloutBuffer.own_seconds += time.perf_counter() - start

    def _apply_filter(self, dones):
        start = time.perf_counter()
        super()._apply_filter(dones)
        TimedFilteredRolloutBuffer.own_seconds += time.perf_counter() - start


def train_seconds(buffer_kwargs: dict, args: argparse.Namespace) -> float:
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
    start = time.perf_counter()
    model.learn(args.timesteps)
    elapsed = time.perf_counter() - start
    venv.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="rewardfilter/CartPole-v1")
    parser.add_argument("--timesteps", type=int, default=16384)
    parser.add_argument("--n-steps", type=int, default=256)
    parser.add_argument("--n-groups", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
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
    train_seconds(
        {},
        argparse.Namespace(
            **{**vars(args), "timesteps": args.n_steps * args.n_groups * args.group_size}
        ),
    )
    times: dict[str, list[float]] = {name: [] for name in variants}
    own: dict[str, float] = dict.fromkeys(variants, 0.0)
    for _ in range(args.repeats):
        for name, kwargs in variants.items():  # interleaved: load on the machine hits all alike
            TimedFilteredRolloutBuffer.own_seconds = 0.0
            times[name].append(train_seconds(kwargs, args))
            own[name] += TimedFilteredRolloutBuffer.own_seconds
    reference = statistics.median(times["sb3 RolloutBuffer"])
    print(
        f"PPO on {args.task}, {args.timesteps} steps, {args.n_groups}x{args.group_size} envs, "
        f"median of {args.repeats} interleaved runs"
    )
    best_reference = min(times["sb3 RolloutBuffer"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"  {name:30s} median {median:7.2f} s  ratio {median / reference:5.3f}   "
            f"min {min(values):7.2f} s  ratio {min(values) / best_reference:5.3f}"
        )
    for name in list(variants)[1:]:
        share = own[name] / sum(times[name])
        print(
            f"  {name:30s} time in the buffer's own bookkeeping: {100 * share:.2f}% of its wall time"
        )
    none_ratio = statistics.median(times["FilteredRolloutBuffer(none)"]) / reference
    print(f"filter=none overhead ratio: {none_ratio:.3f} (target <= 1.05)")
    print(
        f"filter=br   ratio:          {statistics.median(times['FilteredRolloutBuffer(br)']) / reference:.3f}"
    )


if __name__ == "__main__":
    main()
