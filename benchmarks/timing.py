"""Timing that holds still on a shared machine: interleaved rounds, paired ratios, spread.

A benchmark on a machine other jobs share sees its speed change from minute to
minute. Comparing the median of A's runs with the median of B's runs mixes that
drift into the ratio. Here every round times each variant once, in an order that
rotates from round to round, and the ratio of a variant to the reference is
taken *within* each round (the two ran seconds apart, under the same load); the
result is the median of those paired ratios with their interquartile range. Both
wall time and process CPU time are measured: for single-threaded work CPU time
is the honest measure (time the process was not running is not counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Timings:
    """Per-round wall and CPU seconds of each variant."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def ratio(self, name: str, reference: str, kind: str = "cpu") -> tuple[float, float, float]:
        """Median and interquartile range (q25, q75) of the per-round ratio name / reference."""
        table = self.cpu if kind == "cpu" else self.wall
        r = np.asarray(table[name]) / np.asarray(table[reference])
        q25, med, q75 = np.quantile(r, [0.25, 0.5, 0.75])
        return float(med), float(q25), float(q75)

    def describe(self, name: str, reference: str, kind: str = "cpu") -> str:
        med, q25, q75 = self.ratio(name, reference, kind)
        return f"{med:.3f} [IQR {q25:.3f}-{q75:.3f}]"


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> Timings:
    """Time every variant once per round, the order rotating by one each round."""
    names = list(variants)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for k in range(rounds):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            start, cpu_start = time.perf_counter(), time.process_time()
            variants[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return Timings(wall=wall, cpu=cpu)
