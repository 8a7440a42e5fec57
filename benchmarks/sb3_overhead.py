"""Wall-time overhead of FilteredRolloutBuffer against SB3's own RolloutBuffer.

Trains PPO on the same grouped task, with the same steps and seed, three ways
in the same process, interleaved over several repeats so that a busy machine
slows all three alike:

* SB3's ``RolloutBuffer`` (the reference);
* ``FilteredRolloutBuffer(filter="none")``: the bookkeeping alone (target <= 1.05);
* ``FilteredRolloutBuffer(filter="br")``: bookkeeping plus ranking and filtering
  (also trains on fewer steps, so it may even be faster).

For each it prints the median and minimum wall time, the median CPU time
(process time: on a shared machine the least blurred by other load) and their
ratios to the reference, and for the filtered buffer the share of time spent
in its own bookkeeping: the overhead itself, measured directly. ``br`` trains a
different policy on other episodes, so its ratio is not overhead alone.

    python benchmarks/sb3_overhead.py [--timesteps 16384] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch as th
from stable_baselines3 import PPO

from rewardfilter.adapters.sb3 import (
    FilteredRolloutBuffer,
    FilterStatsCallback,
    make_grouped_vec_env,
)


class TimedFilteredRolloutBuffer(FilteredRolloutBuffer):
    """FilteredRolloutBuffer that adds up the time spent in its own bookkeeping.

    On a shared machine wall-time ratios are noisy; this time is not: it is
    the overhead itself (per-step info capture, end-of-rollout ranking).
    """

    own_seconds = 0.0

    def _record(self, infos, sb3_rewards):
        start = time.perf_counter()
        super()._record(infos, sb3_rewards)
        TimedFilteredRolloutBuffer.own_seconds += time.perf_counter() - start

    def _rank_and_weight(self, dones):
        start = time.perf_counter()
        super()._rank_and_weight(dones)
        TimedFilteredRolloutBuffer.own_seconds += time.perf_counter() - start


def train_seconds(buffer_kwargs: dict, args: argparse.Namespace) -> tuple[float, float]:
    """Wall and CPU seconds of one PPO run (CPU time is what a loaded machine blurs least)."""
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
    start, cpu_start = time.perf_counter(), time.process_time()
    # the filtered buffer receives each step's infos from FilterStatsCallback (part of the overhead)
    model.learn(args.timesteps, callback=FilterStatsCallback() if buffer_kwargs else None)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    venv.close()
    return elapsed, cpu


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
    cpu_times: dict[str, list[float]] = {name: [] for name in variants}
    own: dict[str, float] = dict.fromkeys(variants, 0.0)
    for _ in range(args.repeats):
        for name, kwargs in variants.items():  # interleaved: load on the machine hits all alike
            TimedFilteredRolloutBuffer.own_seconds = 0.0
            wall, cpu = train_seconds(kwargs, args)
            times[name].append(wall)
            cpu_times[name].append(cpu)
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
    cpu_reference = statistics.median(cpu_times["sb3 RolloutBuffer"])
    for name, values in cpu_times.items():
        median = statistics.median(values)
        print(f"  {name:30s} CPU    {median:7.2f} s  ratio {median / cpu_reference:5.3f}")
    for name in list(variants)[1:]:
        share = own[name] / sum(times[name])
        print(
            f"  {name:30s} time in the buffer's own bookkeeping: {100 * share:.2f}% of its wall time"
        )
    for name, label in (
        ("FilteredRolloutBuffer(none)", "none"),
        ("FilteredRolloutBuffer(br)", "br  "),
    ):
        wall_ratio = statistics.median(times[name]) / reference
        cpu_ratio = statistics.median(cpu_times[name]) / cpu_reference
        target = "  (target <= 1.05)" if label == "none" else ""
        print(
            f"filter={label} wall-time ratio {wall_ratio:.3f}, CPU-time ratio {cpu_ratio:.3f}{target}"
        )


if __name__ == "__main__":
    main()
