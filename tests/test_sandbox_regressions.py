"""Regressions: honest partial passes keep their exact score; the degraded mode leaves no folders."""

from __future__ import annotations

import glob
import os
import tempfile

import pytest

from rewardfilter.adapters.code.sandbox import SandboxPool, build_program, score_completions
from rewardfilter.adapters.code.tasks import CodeTask

ADD = CodeTask(
    task_id="Toy/add",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    entry_point="add",
    test=(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert candidate(100, 1) == 101\n"
    ),
    canonical_solution="    return a + b\n",
)

#: Every line boundary ``str.splitlines`` knows.
SEPARATORS = [
    "\n",
    "\r",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
]


def test_every_separator_is_covered():
    assert all(len(("a" + s + "b").splitlines()) == 2 for s in SEPARATORS)


def test_line_separators_in_exception_messages_keep_the_partial_score():
    completions = [
        f"    if a == 100:\n        raise ValueError({('bad' + sep + 'input')!r})\n    return a + b\n"
        for sep in SEPARATORS
    ]
    results = score_completions([ADD] * len(completions), completions)
    got = [(r.status, r.tests_passed, r.tests_total) for r in results]
    assert got == [("failed", 2, 3)] * len(SEPARATORS)
    assert all("ValueError" in r.detail for r in results)


def test_line_separators_in_a_crash_outside_the_tests_are_an_error():
    completions = [
        f"    return a + b\nraise ValueError({('x' + sep + 'y')!r})\n" for sep in SEPARATORS
    ]
    results = score_completions([ADD] * len(completions), completions)
    assert [(r.status, r.tests_passed) for r in results] == [("error", 0)] * len(SEPARATORS)


def _dirs_of(uids: set[int]) -> set[str]:
    """``rf-sandbox-*`` folders in the temp directory owned by one of ``uids`` (the pool's own)."""
    found = set()
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "rf-sandbox-*")) + glob.glob(
        "/tmp/rf-sandbox-*"
    ):
        try:
            if os.stat(path).st_uid in uids:
                found.add(path)
        except OSError:
            pass
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="the degraded mode is started as root here")
def test_degraded_mode_leaves_no_folders_behind():
    uids: set[int] = set()
    for _ in range(2):
        with SandboxPool(1, namespaces=False) as pool:
            results = pool.map([build_program(ADD, ADD.canonical_solution)] * 3)
            assert all(r.passed for r in results)
            uids |= set(pool._uids)
    assert _dirs_of(uids) == set()
