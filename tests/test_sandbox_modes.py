"""Strong vs in-process mode: chosen per task, labelled, equivalent verdicts; the judge's own limits."""

from __future__ import annotations

import collections

import pytest
from test_code_sandbox import ADD

from rewardfilter.adapters.code.curriculum import FAMILIES, make_curriculum
from rewardfilter.adapters.code.sandbox import (
    MODES,
    build_program,
    execute,
    score_completions,
    task_mode,
)
from rewardfilter.adapters.code.sandbox.instrument import prefetchable_calls, prompt_helpers
from rewardfilter.adapters.code.tasks import CodeTask, load_humaneval


def _task(test: str, prompt: str = ADD.prompt) -> CodeTask:
    return CodeTask("Toy/t", prompt, "add", test, "    return a + b\n")


def test_every_humaneval_task_and_curriculum_family_runs_strong():
    """The README's counts: HumanEval 164/164 strong, curriculum 13/13 families strong."""
    humaneval = collections.Counter(task_mode(t)[0] for t in load_humaneval())
    assert humaneval == {"strong": 164}
    tasks = make_curriculum("train", n_per_family=2, seed=3)
    families = {t.task_id.split("/")[1] for t in tasks}
    assert len(families) == len(FAMILIES) == 13
    assert {task_mode(t)[0] for t in tasks} == {"strong"}


@pytest.mark.parametrize(
    "test, why",
    [
        ("def check(candidate):\n    assert candidate(1, 2) == helper()\n", "only the program"),
        ("def check(candidate):\n    assert candidate(lambda: 1, 2) is not None\n", "function"),
        ("def check(candidate):\n    assert candidate.__name__ == 'add'\n", "candidate.__name__"),
        (
            "def f():\n    return 1\n\ndef check(candidate):\n    assert candidate(f, 1) == 2\n",
            "function",
        ),
    ],
)
def test_tests_that_cannot_be_split_run_in_process_and_say_so(test, why):
    task = _task(test)
    mode, reason = task_mode(task)
    assert mode == "in_process" and why in reason
    completion = (
        "    return a() + b if callable(a) else a + b\n"
        "def helper():\n    return 3\n"
        "add.__name__ = 'add'\n"
    )
    (res,) = score_completions([task], [completion])
    assert res.mode == "in_process"
    assert res.passed, res.detail


def test_mode_argument_forces_in_process_and_is_validated():
    prog = build_program(ADD, ADD.canonical_solution)
    assert execute(prog).mode == "strong"
    assert execute(prog, mode="in_process").mode == "in_process"
    assert execute("x = 1").mode == "in_process"  # a plain script
    assert MODES == ("auto", "in_process")
    with pytest.raises(ValueError, match="'mode'"):
        execute(prog, mode="fast")


def test_honest_results_are_the_same_in_both_modes():
    completions = [
        "    return a + b\n",
        "    return 3\n",
        "    if a == 100:\n        raise ValueError('bad\\u2028input')\n    return a + b\n",
        "    return a +\n",
        "    return (a + b,)\n",  # a tuple is not an int: fails either way
        "    import sys\n    sys.exit(3)\n",
        "    return float(a + b)\n",  # 3.0 == 3
    ]
    strong = score_completions([ADD] * len(completions), completions)
    weak = score_completions([ADD] * len(completions), completions, mode="in_process")
    assert [r.mode for r in strong] == ["strong"] * len(completions)
    key = [(r.status, r.tests_passed, r.tests_total) for r in strong]
    assert key == [(r.status, r.tests_passed, r.tests_total) for r in weak]
    assert [s[:2] for s in key] == [
        ("passed", 3),
        ("failed", 1),
        ("failed", 2),
        ("error", 0),
        ("failed", 0),
        ("failed", 0),  # sys.exit inside a call fails that test (in both modes)
        ("passed", 3),
    ]


def test_exceptions_cross_as_builtin_types_the_test_can_catch():
    task = _task(
        "def check(candidate):\n"
        "    try:\n"
        "        candidate(-1, 0)\n"
        "        raise RuntimeError('no error')\n"
        "    except ValueError as e:\n"
        "        assert str(e) == 'negative'\n"
        "    assert candidate(1, 2) == 3\n"
    )
    completion = "    if a < 0:\n        raise ValueError('negative')\n    return a + b\n"
    (res,) = score_completions([task], [completion])
    assert (res.mode, res.status, res.tests_passed) == ("strong", "passed", 2), res.detail


def test_prompt_helpers_come_from_the_prompt():
    prompt = "def twice(x):\n    return 2 * x\n\n\ndef add(a, b):\n    pass\n"
    helpers = prompt_helpers(prompt, "add")
    assert [n.name for n in helpers.body] == ["twice"]
    task = _task("def check(candidate):\n    assert twice(candidate(1, 2)) == 6\n", prompt)
    honest, forger = score_completions(
        [task, task], ["    return a + b\n", "    return 0\ndef twice(x):\n    return 6\n"]
    )
    assert (honest.status, forger.status) == ("passed", "failed")


def test_prefetch_keeps_call_order_for_stateful_candidates():
    import ast

    test = (
        "def check(candidate):\n"
        "    assert candidate(1, 0) == 1\n"
        "    assert abs(candidate(2, 0) - 3) < 1e-9\n"
        "    x = 5\n"
        "    assert candidate(x, 0) == 8\n"  # not literal: the prefetched prefix ends above
        "    assert candidate(0, 0) == 8\n"
    )
    tree = ast.parse(test)
    empty = ast.Module(body=[], type_ignores=[])
    calls = prefetchable_calls(empty, tree.body[0], empty, "add")
    assert calls == [((1, 0), {}), ((2, 0), {})]
    completion = "    global total\n    total = globals().get('total', 0) + a\n    return total\n"
    res = score_completions([_task(test)] * 2, [completion] * 2, mode="auto")
    weak = score_completions([_task(test)], [completion], mode="in_process")[0]
    assert [(r.mode, r.status, r.tests_passed) for r in res] == [("strong", "passed", 4)] * 2
    assert (weak.status, weak.tests_passed) == ("passed", 4)


def test_the_judge_has_its_own_memory_and_time_limits():
    hungry = _task(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert len(bytearray(8 << 30)) > 0\n"  # the trusted test itself asks too much
    )
    (res,) = score_completions([hungry], ["    return a + b\n"])
    assert (res.mode, res.status, res.tests_passed) == ("strong", "memory", 1), res.detail
    slow = _task(
        "def check(candidate):\n    assert candidate(1, 2) == 3\n    while True:\n        pass\n"
    )
    (res,) = score_completions([slow], ["    return a + b\n"], timeout=0.5)
    assert (res.mode, res.status, res.tests_passed) == ("strong", "timeout", 1)


def test_one_judge_serves_many_programs_and_is_replaced_when_killed():
    from rewardfilter.adapters.code.sandbox import SandboxPool

    good = build_program(ADD, ADD.canonical_solution)
    wrong = build_program(ADD, "    return 3\n")
    hang = build_program(ADD, "    while True:\n        pass\n")
    dies = build_program(ADD, "    import os\n    os._exit(0)\n")
    plain = "print('plain script')"
    programs = [good, wrong, hang, good, dies, plain, good, wrong, good]
    with SandboxPool(1) as pool:
        results = pool.map(programs, timeout=0.5)
    assert [(r.status, r.tests_passed) for r in results] == [
        ("passed", 3),
        ("failed", 1),
        ("timeout", 0),  # the judge is killed with the program's tree, and replaced
        ("passed", 3),
        ("exited", 0),
        ("passed", 0),  # an in-process run (its clean-up also ends the judge)
        ("passed", 3),
        ("failed", 1),
        ("passed", 3),
    ]
    assert [r.mode for r in results] == ["strong"] * 5 + ["in_process"] + ["strong"] * 3


def test_a_large_test_reaches_the_judge_whole_and_an_oversized_one_runs_in_process():
    from rewardfilter.adapters.code.sandbox.programs import MAX_TRUSTED_CHARS

    huge = _task(f"def check(candidate):\n    assert len({'y' * MAX_TRUSTED_CHARS!r}) > 0\n")
    assert task_mode(huge)[0] == "in_process" and "larger" in task_mode(huge)[1]
    big = "x" * 100_000
    test = "def check(candidate):\n" + "".join(
        f"    assert candidate({i}, {len(big)}) == {i + len(big)}\n" for i in range(500)
    )
    test += f"    assert len({big!r}) == {len(big)}\n"
    task = _task(test)
    (res,) = score_completions([task], ["    return a + b\n"], timeout=20)
    assert (res.mode, res.status, res.tests_passed, res.tests_total) == (
        "strong",
        "passed",
        501,
        501,
    )


def test_changes_the_candidate_makes_to_its_arguments_reach_the_test():
    """A copy crosses, and in-place changes of flat list/dict arguments come back into the test's
    objects; a change of a nested argument fails that unit (stricter than in-process)."""
    copy_test = _task(
        "def check(candidate):\n"
        "    a = [3, 1, 2]\n"
        "    assert candidate(a, 0) == [1, 2, 3]\n"
        "    assert a == [3, 1, 2]\n"
    )
    in_place_test = _task(
        "def check(candidate):\n"
        "    a = [9, 3, 1]\n"
        "    d = {'k': 2, 'j': 1}\n"
        "    assert candidate(a, d) is None\n"
        "    assert a == [1, 3, 9] and list(d.items()) == [('j', 1), ('n', 1)]\n"
    )
    nested_test = _task(
        "def check(candidate):\n"
        "    a = [[9, 8], 3, 1]\n"
        "    inner = a[0]\n"
        "    d = {'k': [2, 1]}\n"
        "    assert candidate(a, d) is None\n"
        "    assert a == [[8, 9], 1, 3] and inner == [8, 9] and d == {'k': [1, 2], 'n': 1}\n"
    )
    mutating = "    a.sort(key=str)\n    return sorted(a, key=str) if b == 0 else a\n"
    honest_copy = "    return sorted(a)\n"
    honest_in_place = "    a.sort()\n    del b['k']\n    b['n'] = 1\n"
    honest_nested = (
        "    a[0].sort()\n    a[1:] = sorted(a[1:])\n    b['k'].sort()\n    b['n'] = 1\n"
    )
    tasks = [copy_test, copy_test, in_place_test, nested_test]
    completions = [mutating, honest_copy, honest_in_place, honest_nested]
    res = score_completions(tasks, completions)
    weak = score_completions(tasks, completions, mode="in_process")
    assert [r.mode for r in res] == ["strong"] * 4
    assert [(r.status, r.tests_passed) for r in res] == [
        ("failed", 1),
        ("passed", 2),
        ("passed", 2),
        ("failed", 0),  # stricter than in-process: a nested argument changed (SANDBOX.md)
    ]
    assert "NotPlainData the candidate changed argument 0" in res[3].detail, res[3].detail
    assert [(r.status, r.tests_passed) for r in weak] == [
        (r.status, r.tests_passed) for r in res[:3]
    ] + [("passed", 2)]
