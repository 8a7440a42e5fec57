"""Forgers: completions that return a WRONG answer and tamper with the harness to pass anyway.

Each ``tests/hostile/4x..8x_*.txt`` completion computes a wrong value, so
every test it passes is a forged pass. In the strong mode (the default for
both toy tasks) none may pass a single test; the in-process mode is shown to
be fooled by the attacks marked ``# fools: in_process``, which is why it is
only used for tests that cannot be split (see SANDBOX.md).
"""

from __future__ import annotations

import re

import pytest
from test_code_sandbox import HOSTILE, HOSTILE_DIR, RICH, TASKS

from rewardfilter.adapters.code.sandbox import SandboxPool, build_program, task_mode

FORGERS = [c for c in HOSTILE if int(c[0].split("_")[0]) >= 40]


def _fools(name: str) -> bool:
    text = (HOSTILE_DIR / f"{name}.txt").read_text()
    return re.search(r"^# fools: in_process$", text, re.M) is not None


@pytest.fixture(scope="module")
def forged():
    programs = [build_program(task, body) for _, _, _, body, task in FORGERS]
    honest = [build_program(t, t.canonical_solution) for t in TASKS.values()]
    with SandboxPool(2) as pool:
        strong = pool.map(programs + honest, timeout=2.0, memory_mb=256, max_output=256 * 1024)
        weak = pool.map(
            programs, timeout=2.0, memory_mb=256, max_output=256 * 1024, mode="in_process"
        )
    return {
        "strong": dict(zip([c[0] for c in FORGERS], strong, strict=False)),
        "weak": dict(zip([c[0] for c in FORGERS], weak, strict=True)),
        "honest": strong[len(FORGERS) :],
    }


def test_at_least_forty_forgers_and_both_tasks_run_strong():
    assert len(FORGERS) >= 40
    assert {task_mode(t)[0] for t in TASKS.values()} == {"strong"}
    assert RICH.prompt.count("def twice") == 1


def test_honest_solutions_pass_both_tasks_in_strong_mode(forged):
    assert [(r.status, r.tests_passed, r.tests_total, r.mode) for r in forged["honest"]] == [
        ("passed", 3, 3, "strong"),
        ("passed", 5, 5, "strong"),
    ]


@pytest.mark.parametrize(
    "name, expect", [(c[0], c[1]) for c in FORGERS], ids=[c[0] for c in FORGERS]
)
def test_forger_passes_no_test_in_strong_mode(forged, name, expect):
    res = forged["strong"][name]
    assert res.mode == "strong"
    assert res.passed is False
    assert res.tests_passed == 0, f"{name}: forged {res.tests_passed} ({res.status}: {res.detail})"
    assert res.score < 1.0
    assert res.status in expect, f"{name}: {res.status} ({res.detail}) {res.output[-300:]!r}"
    assert "ESCAPED" not in res.output


def test_the_in_process_mode_is_fooled_by_the_marked_forgers(forged):
    fooled = {n for n, r in forged["weak"].items() if r.tests_passed > 0}
    marked = {c[0] for c in FORGERS if _fools(c[0])}
    assert marked, "no forger is marked as fooling the in-process mode"
    assert marked <= fooled, sorted(marked - fooled)
