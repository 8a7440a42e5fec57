"""The verdict of one run, from what the worker observed (never from the program's word alone).

Standard library only: the sandbox worker imports this file directly.
"""

from __future__ import annotations

import os
import signal

__all__ = ["MAX_RECORDS", "status_of"]

#: Bytes of result records accepted before the run counts as tampered.
MAX_RECORDS = 1 << 20


def status_of(
    job, timed_out, overflow, records_raw, nonce, status, cpu, prog_status=None, strong=False
) -> dict:
    """Decide the verdict from what the zygote observed (never from the program's word alone).

    ``status`` is the exit status of the process that wrote the records
    (the evaluator in strong mode, the program itself in-process);
    ``prog_status`` the program's, when it ended by itself.
    """
    total, units, passed_units, done, error, tampered, failures = 0, {}, 0, False, None, False, []
    started = gone = False
    if len(records_raw) >= MAX_RECORDS:
        tampered = True
    prefix = nonce + " "
    lines = records_raw.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        if not line.startswith(prefix):
            tampered = True
            break
        kind, _, rest = line[len(prefix) :].partition(" ")
        if kind in ("S", "U") and not rest.split(" ", 1)[0].isdigit():
            tampered = True
            break
        if kind == "S" and not started:
            started = True
            total = int(rest)
        elif kind == "U" and started and not done and error is None:
            i_s, _, tail = rest.partition(" ")
            ok, _, why = tail.partition(" ")
            i = int(i_s)
            if i in units or not 0 <= i < total:
                tampered = True
                break
            units[i] = ok == "1"
            passed_units += ok == "1"
            if ok != "1":
                failures.append((i, why))
        elif kind == "E" and error is None and not done:
            error = rest
        elif kind == "D" and started and not done and error is None:
            done = True
        elif kind == "X" and strong and started and not done and error is None:
            gone = True
        elif kind == "T":
            tampered = True
            break
        else:
            tampered = True
            break
    exited_ok = (
        status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and not gone
    )
    detail = ""
    if tampered:
        verdict, detail = "tampered", "unexpected record on the result channel"
    elif timed_out:
        verdict, detail = "timeout", f"wall-clock limit of {job['timeout']} s"
    elif overflow:
        verdict, detail = "output", "output limit exceeded"
    elif done and exited_ok and passed_units == total and len(units) == total:
        verdict = "passed"
    elif done and exited_ok:
        mem = any(why.startswith("MemoryError") for _, why in failures)
        verdict = "memory" if mem else "failed"
        detail = "; ".join(f"test {i}: {why or 'failed'}" for i, why in failures[:5])
    elif error is not None:
        kind = error.split(" ", 1)[0]
        verdict = {"SystemExit": "exited", "MemoryError": "memory"}.get(kind, "error")
        detail = error
    elif gone and prog_status is None:
        verdict, detail = "killed", "the program's process ended during the tests"
    elif (status := prog_status if gone else status) is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu >= int(job["timeout"]) + 0.5:
            verdict, detail = "timeout", f"CPU-time limit ({cpu:.1f} s used)"
        else:
            verdict, detail = "killed", f"killed by signal {signal.Signals(sig).name}"
    elif status is not None and os.WIFEXITED(status):
        verdict = "exited"
        detail = f"exited with code {os.WEXITSTATUS(status)} before the tests finished"
    else:
        verdict, detail = "killed", "the sandbox lost track of the program"
    if tampered:
        passed_units = 0  # a forged channel earns nothing, not even the tests reported before
    return {
        "passed": verdict == "passed",
        "status": verdict,
        "tests_passed": passed_units,
        "tests_total": total,
        "detail": detail,
    }
