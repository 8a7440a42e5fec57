"""How much does filtering cost next to sorting the batch once?

For 1,000,000 samples in 200,000 groups of 5, time ``br``, ``bw``, ``topk:2``
and ``rank:`` weights, and print each as a ratio to

* the floor: one ``np.lexsort`` of the same (rewards, groups) arrays, and
* a straightforward per-group Python loop (what one would write first).

Target: within 3x of the lexsort. The filters and the lexsort are timed in
interleaved rounds (see ``timing.py``); each ratio is the median over rounds of
the ratio measured within one round, with its interquartile range, in CPU time
(numpy's sort and the filters are single-threaded here, so CPU time is the
honest measure on a shared machine; wall time is printed beside it).

    python benchmarks/core_filters.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from timing import interleaved  # benchmarks/timing.py (this folder is on sys.path)

import rewardfilter as rf


def python_loop_bon_like(rewards: np.ndarray, groups: np.ndarray, keep_per_group) -> np.ndarray:
    """The first version anyone writes: a dict of indices per group, then a loop."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        members.setdefault(g, []).append(i)
    weights = np.zeros(rewards.shape[0])
    for idx in members.values():
        ordered = sorted(idx, key=lambda i: -rewards[i])
        keep_per_group(ordered, weights)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    groups = rng.permutation(np.arange(args.samples) % args.groups)
    rewards = rng.normal(size=args.samples)
    size = args.samples // args.groups

    loops = {
        "br": lambda o, w: w.__setitem__(
            [o[0], o[1 + rng.integers(len(o) - 1)]] if len(o) > 1 else [o[0]], 1.0
        ),
        "bw": lambda o, w: w.__setitem__([o[0], o[-1]], 1.0),
        "topk:2": lambda o, w: w.__setitem__(o[:2], 1.0),
        "rank:" + ",".join(["0.4"] + ["0.1"] * (size - 1)): lambda o, w: w.__setitem__(
            o, [0.4] + [0.1] * (len(o) - 1)
        ),
    }
    variants = {"lexsort": lambda: np.lexsort((rewards, groups))}
    for spec in loops:
        filt = rf.make_filter(spec)
        variants[spec] = lambda f=filt: f.weights(rewards, groups, rng=rng)
    timings = interleaved(variants, args.rounds)
    floor = float(np.median(timings.cpu["lexsort"]))
    print(
        f"{args.samples:,} samples in {args.groups:,} groups; lexsort floor {floor * 1e3:.1f} ms "
        f"CPU; {args.rounds} interleaved rounds, ratios within rounds: median [IQR]\n"
    )
    print(f"{'filter':>26} {'CPU x lexsort':>28} {'wall x lexsort':>28} {'x python loop':>14}")
    worst = 0.0
    headline = []
    for spec, loop in loops.items():
        start = time.process_time()
        python_loop_bon_like(rewards, groups, loop)  # seconds: timed once
        t_loop = time.process_time() - start
        med = timings.ratio(spec, "lexsort")[0]
        worst = max(worst, med)
        short = spec.split(":")[0] + ":" if spec.startswith("rank:") else spec
        headline.append(f"{short} {med:.2f}")
        print(
            f"{spec[:26]:>26} {timings.describe(spec, 'lexsort'):>28} "
            f"{timings.describe(spec, 'lexsort', 'wall'):>28} "
            f"{float(np.median(timings.cpu[spec])) / t_loop:14.3f}"
        )
    verdict = "meets" if worst <= 3.0 else "misses"
    print(f"\nworst median CPU-time ratio to lexsort: {worst:.2f} ({verdict} the 3x target)")
    print("README: " + ", ".join(headline) + " (target <= 3)")


if __name__ == "__main__":
    main()
