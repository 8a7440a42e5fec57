"""How much does filtering cost next to sorting the batch once?

For 1,000,000 samples in 200,000 groups of 5, time ``br``, ``bw``, ``topk:2``
and ``rank:`` weights, and print each as a ratio to

* the floor: one ``np.lexsort`` of the same (rewards, groups) arrays, and
* a straightforward per-group Python loop (what one would write first).

Target: within 3x of the lexsort. Timings are medians of repeats measured in
this one run, so the ratios hold on a busy machine better than raw seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rewardfilter as rf


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


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
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    groups = rng.permutation(np.arange(args.samples) % args.groups)
    rewards = rng.normal(size=args.samples)
    size = args.samples // args.groups

    floor = median_time(lambda: np.lexsort((rewards, groups)), args.repeats)
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
    loop_repeats = 1
    print(
        f"{args.samples:,} samples in {args.groups:,} groups; lexsort floor {floor * 1e3:.1f} ms\n"
    )
    print(f"{'filter':>26} {'time (ms)':>10} {'x lexsort':>10} {'x python loop':>14}")
    worst = 0.0
    for spec, loop in loops.items():
        filt = rf.make_filter(spec)
        t = median_time(lambda f=filt: f.weights(rewards, groups, rng=rng), args.repeats)
        t_loop = median_time(
            lambda lp=loop: python_loop_bon_like(rewards, groups, lp), loop_repeats
        )
        worst = max(worst, t / floor)
        print(f"{spec:>26} {t * 1e3:10.1f} {t / floor:10.2f} {t / t_loop:14.3f}")
    verdict = "meets" if worst <= 3.0 else "misses"
    print(f"\nworst ratio to lexsort: {worst:.2f} ({verdict} the 3x target)")


if __name__ == "__main__":
    main()
