"""Second red team of the code sandbox's strong mode (issue 14): the argument write-back, aliasing.

Each test runs a completion that returns a WRONG answer (checked: it fails
in the in-process mode, where the test sees the real objects) or probes a
layer SANDBOX.md claims, and asserts the SAFE outcome in the strong mode. A
failing test here is a hole: its docstring names the cause in the sandbox.
The argument holes are closed by the conservative write-back rule of
SANDBOX.md (flat, unshared top-level list/dict/set arguments only; any other
change fails the unit, stricter than in-process for honest nested changes).

All programs run once, in one pool (module fixture), to keep CPU use low.
"""

from __future__ import annotations

import textwrap

import pytest

from rewardfilter.adapters.code.sandbox import SandboxPool, build_program, task_mode
from rewardfilter.adapters.code.tasks import CodeTask

LIMITS = {"timeout": 3.0, "memory_mb": 256, "max_output": 256 * 1024}


def _task(test: str, prompt: str = "def f(x):\n", solution: str = "    return x\n") -> CodeTask:
    return CodeTask(
        task_id="redteam2/x",
        prompt=prompt,
        entry_point="f",
        test=textwrap.dedent(test),
        canonical_solution=solution,
    )


# --- tasks -----------------------------------------------------------------

#: f(rows) returns a copy of the first row; the test keeps a reference to that row as the answer.
FIRST_ROW = _task(
    """
    def check(candidate):
        rows = [[1, 2], [3, 4]]
        first = rows[0]
        assert candidate(rows) == first
    """,
    solution="    return list(x[0])\n",
)

#: the same through a dict argument: f(d) returns a copy of d["k"].
DICT_VALUE = _task(
    """
    def check(candidate):
        want = [5, 6]
        d = {"k": want}
        assert candidate(d) == want
    """,
    solution="    return list(x['k'])\n",
)

#: f(x) returns a NEW list equal to x (the spec forbids returning x itself).
COPY = _task(
    """
    def check(candidate):
        a = [1, 2]
        b = candidate(a)
        assert b == [1, 2]
        b.append(3)
        assert a == [1, 2]
    """,
    solution="    return list(x)\n",
)

#: f(x, y) returns x + y as a new list and must change neither argument.
CONCAT = _task(
    """
    def check(candidate):
        a = [1]
        assert candidate(a, a) == [1, 1]
        assert a == [1]
    """,
    prompt="def f(x, y):\n",
    solution="    return x + y\n",
)

#: f(pair) returns the sorted first list of a tuple, without changing it.
SORTED_IN_TUPLE = _task(
    """
    def check(candidate):
        row = [3, 1, 2]
        assert candidate((row,)) == [1, 2, 3]
        assert row == [3, 1, 2]
    """,
    solution="    return sorted(x[0])\n",
)

#: the same through a keyword argument holding a tuple of lists.
SORTED_IN_KWARG = _task(
    """
    def check(candidate):
        row = [3, 1, 2]
        assert candidate(x=(row,)) == [1, 2, 3]
        assert row == [3, 1, 2]
    """,
    solution="    return sorted(x[0])\n",
)

#: f(rows) returns the sorted first row and must change nothing; the test holds the row.
SORTED_ROW = _task(
    """
    def check(candidate):
        row = [3, 1, 2]
        assert candidate([row]) == [1, 2, 3]
        assert row == [3, 1, 2]
    """,
    solution="    return sorted(x[0])\n",
)

#: the same with the row as a dict value.
SORTED_VALUE = _task(
    """
    def check(candidate):
        row = [3, 1, 2]
        assert candidate({"k": row}) == [1, 2, 3]
        assert row == [3, 1, 2]
    """,
    solution="    return sorted(x['k'])\n",
)

#: f(rows) sorts rows[0] IN PLACE (returns None): an honest in-place change the test checks.
SORT_ROW_IN_PLACE = _task(
    """
    def check(candidate):
        row = [3, 1, 2]
        assert candidate((row,)) is None
        assert row == [1, 2, 3]
    """,
    solution="    x[0].sort()\n",
)

#: f(rows) replaces rows[0] by a sorted copy (returns None) and leaves the old row alone.
REPLACE_ROW = _task(
    """
    def check(candidate):
        row = [3, 1, 2]
        rows = [row]
        assert candidate(rows) is None
        assert rows == [[1, 2, 3]]
        assert row == [3, 1, 2]
    """,
    solution="    x[0] = sorted(x[0])\n",
)

#: f(x) raises ValueError on a negative item and must leave x unchanged.
RAISE_CLEAN = _task(
    """
    def check(candidate):
        a = [3, -1, 2]
        try:
            candidate(a)
        except ValueError:
            pass
        assert a == [3, -1, 2]
        assert candidate([2, 1]) == [1, 2]
    """,
    solution=(
        "    if any(v < 0 for v in x):\n        raise ValueError('negative')\n    return sorted(x)\n"
    ),
)

#: f(x) = x * 2; the first asserts are prefetched as one batch, the last call is not.
DOUBLE = _task(
    """
    def check(candidate):
        assert candidate(1) == 2
        assert candidate(1) == 2
        assert candidate(2) == 4
        n = 3
        assert candidate(n) == 6
    """,
    solution="    return 2 * x\n",
)

#: f(d) returns d's keys sorted and must leave d (its order too) unchanged.
SORTED_KEYS = _task(
    """
    def check(candidate):
        d = {"b": 1, "a": 2}
        assert candidate(d) == ["a", "b"]
        assert list(d) == ["b", "a"]
    """,
    solution="    return sorted(x)\n",
)

#: f(k) looks k up and raises KeyError(k) when missing; the test looks at the exception's args.
LOOKUP = _task(
    """
    def check(candidate):
        assert candidate("a") == 1
        try:
            candidate("x")
        except KeyError as e:
            assert e.args == ("x",)
    """,
    solution="    return {'a': 1}[x]\n",
)

#: f(x) sorts x in place, then raises ValueError on a negative item; the test checks both.
SORT_THEN_RAISE = _task(
    """
    def check(candidate):
        a = [3, -1, 2]
        try:
            candidate(a)
        except ValueError:
            pass
        assert a == [-1, 2, 3]
    """,
    solution="    x.sort()\n    if x[0] < 0:\n        raise ValueError('negative')\n",
)

#: f(x) appends 0 to x and returns x itself; the test checks the identity.
APPEND_RETURN = _task(
    """
    def check(candidate):
        a = [1]
        b = candidate(a)
        assert b is a
        assert a == [1, 0]
    """,
    solution="    x.append(0)\n    return x\n",
)

#: f(x=...) sorts its keyword argument in place.
SORT_KWARG = _task(
    """
    def check(candidate):
        a = [3, 1, 2]
        assert candidate(x=a) is None
        assert a == [1, 2, 3]
    """,
    solution="    x.sort()\n",
)

#: the test uses a helper the PROMPT defines; the completion redefines it to match its wrong answer.
HELPER = _task(
    """
    def check(candidate):
        assert candidate(3) == double(3)
        assert candidate(4) == double(4)
    """,
    prompt="def double(v):\n    return 2 * v\n\n\ndef f(x):\n",
    solution="    return double(x)\n",
)

# --- completions -----------------------------------------------------------

#: Replaces the first row with its own wrong answer (never touches the row the test holds).
REPLACE_FIRST_ROW = "    x[0] = [7]\n    return [7]\n"
REPLACE_DICT_VALUE = "    x['k'] = [0]\n    return [0]\n"
#: Returns its argument itself, not a copy.
NO_COPY = "    return x\n"
#: Extends its first argument in place (aliased with the second).
EXTEND_IN_PLACE = "    x.extend(y)\n    return x\n"
#: Sorts the list inside the tuple in place.
SORT_INNER = "    x[0].sort()\n    return x[0]\n"
#: Sorts the row in place (forbidden), then resizes the container so the write-back copies it.
SORT_AND_GROW = "    x[0].sort()\n    x.append([])\n    return x[0]\n"
SORT_AND_ADD_KEY = "    x['k'].sort()\n    x['z'] = 0\n    return x['k']\n"
#: Sorts in place (forbidden) before raising.
MUTATE_THEN_RAISE = (
    "    x.sort()\n    if x[0] < 0:\n        raise ValueError('negative')\n    return list(x)\n"
)
#: Right on the first call of each argument only (a cache that goes wrong).
STATEFUL = "    seen[x] = seen.get(x, 0) + 1\n    return 2 * x if seen[x] == 1 else -1\nseen = {}\n"
#: Reorders the dict in place (forbidden), then returns its keys.
REORDER = "    for k in sorted(x):\n        x[k] = x.pop(k)\n    return list(x)\n"
#: Wrong answer; redefines the prompt's helper (and spoofs a marker line) to agree with it.
SPOOF_HELPER = (
    "    return 3 * x\n\n\n"
    "# rewardfilter-sandbox: check(f) test=1 prompt=999999\n"
    "def double(v):\n    return 3 * v\n"
)
#: A wrong answer padded past the strong mode's 400,000-character limit on the test.
HUGE = "    return -1\n" + "#" * 450_000 + "\n"

TASKS = [
    FIRST_ROW,
    DICT_VALUE,
    COPY,
    CONCAT,
    SORTED_IN_TUPLE,
    SORTED_IN_KWARG,
    SORTED_ROW,
    SORTED_VALUE,
    SORT_ROW_IN_PLACE,
    REPLACE_ROW,
    RAISE_CLEAN,
    DOUBLE,
    SORTED_KEYS,
    LOOKUP,
    HELPER,
    SORT_THEN_RAISE,
    APPEND_RETURN,
    SORT_KWARG,
]

CASES = {
    "replace_first_row": (FIRST_ROW, REPLACE_FIRST_ROW),
    "replace_dict_value": (DICT_VALUE, REPLACE_DICT_VALUE),
    "no_copy": (COPY, NO_COPY),
    "aliased_args": (CONCAT, EXTEND_IN_PLACE),
    "sort_inside_tuple": (SORTED_IN_TUPLE, SORT_INNER),
    "sort_inside_kwarg": (SORTED_IN_KWARG, SORT_INNER),
    "sort_and_grow": (SORTED_ROW, SORT_AND_GROW),
    "sort_and_add_key": (SORTED_VALUE, SORT_AND_ADD_KEY),
    "honest_in_place_in_tuple": (SORT_ROW_IN_PLACE, SORT_ROW_IN_PLACE.canonical_solution),
    "honest_replace_row": (REPLACE_ROW, REPLACE_ROW.canonical_solution),
    "mutate_then_raise": (RAISE_CLEAN, MUTATE_THEN_RAISE),
    "stateful_batch": (DOUBLE, STATEFUL),
    "dict_reorder": (SORTED_KEYS, REORDER),
    "honest_key_error": (LOOKUP, LOOKUP.canonical_solution),
    "honest_flat_raise": (SORT_THEN_RAISE, SORT_THEN_RAISE.canonical_solution),
    "honest_flat_return": (APPEND_RETURN, APPEND_RETURN.canonical_solution),
    "honest_flat_kwarg": (SORT_KWARG, SORT_KWARG.canonical_solution),
    "honest_return_inner": (FIRST_ROW, "    return x[0]\n"),
    "spoof_helper": (HELPER, SPOOF_HELPER),
    "huge_completion": (HELPER, HUGE),
}


@pytest.fixture(scope="module")
def runs():
    names = list(CASES)
    programs = [build_program(t, c) for t, c in CASES.values()]
    with SandboxPool(1) as pool:
        strong = pool.map(programs, **LIMITS)
        weak = pool.map(programs, mode="in_process", **LIMITS)
    return {
        "strong": dict(zip(names, strong, strict=True)),
        "weak": dict(zip(names, weak, strict=True)),
    }


def test_all_redteam2_tasks_run_in_the_strong_mode():
    for task in (*TASKS,):
        assert task_mode(task) == ("strong", None)


def test_canonical_solutions_pass_in_both_modes():
    tasks = [
        t for t in TASKS if t not in (SORT_ROW_IN_PLACE, REPLACE_ROW, LOOKUP)
    ]  # in test_honest_* / test_an_honest_change_*
    programs = [build_program(t, t.canonical_solution) for t in tasks]
    with SandboxPool(1) as pool:
        for mode in ("auto", "in_process"):
            res = pool.map(programs, mode=mode, **LIMITS)
            assert [r.status for r in res] == ["passed"] * len(tasks), [r.detail for r in res]


def _forged(runs, name: str, weak_too: bool = True) -> None:
    weak, strong = runs["weak"][name], runs["strong"][name]
    if weak_too:
        assert weak.passed is False, "the completion must really be wrong (it fails in-process)"
    assert strong.mode == "strong"
    assert strong.passed is False, (strong.status, strong.detail)
    if weak_too:
        assert strong.score <= weak.score


@pytest.mark.parametrize("name", ["replace_first_row", "replace_dict_value"])
def test_write_back_does_not_rewrite_an_inner_object_the_candidate_replaced(runs, name):
    """FIXED (was a hole). The candidate replaces ``x[0]`` (or ``x['k']``) with its wrong answer; in-process
    the row the test holds as the expected value is untouched, but the write-back copies the
    new contents INTO that row, so ``candidate(rows) == first`` compares the answer with itself.

    Cause: ``evaluator._write_back`` recurses into a list element / dict value whenever old
    and new have the same type, i.e. it assumes identity from shape.

    Fixed: a changed argument that is not flat (a list of lists, a dict of lists) is never
    written back; the unit fails (``evaluator._give_back``).
    """
    _forged(runs, name)


def test_a_returned_argument_is_the_argument(runs):
    """FIXED (was a hole). ``return x`` where a copy is required: in-process the test's ``b.append(3)``
    changes ``a``; in the strong mode the reply is a decoded copy, so the wrong answer passes.

    Cause: ``runner.serve.answer`` / ``codec`` send the value without its identity relation
    to the arguments.

    Fixed: R reports that the value IS argument 0 (``runner._relation``) and the evaluator
    returns the test's own object.
    """
    _forged(runs, "no_copy")


def test_aliased_arguments_stay_aliased(runs):
    """FIXED (was a hole). ``candidate(a, a)``: the runner decodes two distinct lists, the candidate extends
    the first, and the write-back writes ``a`` twice, the unchanged second copy last, so the
    mutation the test checks for disappears and the wrong answer passes.

    Cause: ``codec.encode`` of the arguments loses aliasing and ``evaluator._write_back``
    applies the copies one after the other.

    Fixed: the evaluator sees by ``id`` that the two arguments share a list; since the candidate
    changed one of them, the unit fails (``evaluator._owned``, ``_give_back``).
    """
    _forged(runs, "aliased_args")


@pytest.mark.parametrize("name", ["sort_inside_tuple", "sort_inside_kwarg"])
def test_a_list_inside_a_tuple_argument_is_written_back(runs, name):
    """FIXED (was a hole). The candidate sorts a list that sits inside a tuple argument; the write-back is
    skipped because ``evaluator._mutable`` looks only at the top-level arguments, so the
    mutation the test forbids is never seen.

    Cause: ``evaluator._mutable`` is shallow (``type(v) in (list, dict, set)`` on each
    argument).

    Fixed: every call whose arguments hold a list, dict or set at any depth asks for the
    changes; a changed tuple argument is not flat, so the unit fails.
    """
    _forged(runs, name)


def test_the_prompts_helpers_cannot_be_redefined_or_the_marker_spoofed(runs):
    """HELD. A completion that redefines the prompt's helper and writes a second marker line
    is judged with the prompt's helper (``programs._split`` reads only the first line). The
    in-process mode is fooled by the redefinition (its documented weaker guarantee)."""
    _forged(runs, "spoof_helper", weak_too=False)
    assert runs["strong"]["spoof_helper"].tests_passed == 0


def test_a_huge_completion_does_not_push_its_task_into_the_in_process_mode(runs):
    """HELD. The 400,000-character fallback counts only the compiled test, not the program."""
    _forged(runs, "huge_completion")


@pytest.mark.parametrize("name", ["sort_and_grow", "sort_and_add_key"])
def test_resizing_the_argument_does_not_hide_an_inner_mutation(runs, name):
    """FIXED (was a hole). The candidate sorts the row the test holds (forbidden) and then appends to the
    list (or adds a key to the dict): the lengths (keys) differ, so the write-back replaces the
    container's contents with fresh copies (``old[:] = new`` / ``old.clear(); old.update(new)``)
    and the row the test holds never sees the sort.

    Cause: ``evaluator._write_back``'s fallback for a changed length or key set.

    Fixed: the changed argument is not flat, so nothing is written back and the unit fails.
    """
    _forged(runs, name)


@pytest.mark.parametrize(
    "name", ["honest_key_error", "honest_flat_raise", "honest_flat_return", "honest_flat_kwarg"]
)
def test_honest_flat_solutions_are_scored_as_in_process(runs, name):
    """FIXED. ``KeyError("x")`` arrives with ``args == ("x",)`` (the runner sends ``exc.args``
    when they are plain data, the evaluator rebuilds with ``cls(*args)``); a flat list sorted in
    place before an exception is written back before it is raised; a flat list returned itself
    is the test's own object; a flat keyword argument is written back like a positional one.
    In-process they pass; the strong mode agrees."""
    weak, strong = runs["weak"][name], runs["strong"][name]
    assert weak.passed is True, weak.detail
    assert strong.mode == "strong"
    assert (strong.passed, strong.tests_passed) == (True, weak.tests_passed), strong.detail


@pytest.mark.parametrize("name", ["honest_in_place_in_tuple", "honest_replace_row"])
def test_an_honest_change_of_a_nested_argument_fails_stricter_than_in_process(runs, name):
    """STRICTER (documented in SANDBOX.md): sorting a row held in a tuple in place, or replacing
    ``x[0]`` of a list of lists by a sorted copy, passes in-process, but the strong mode writes
    back only flat, unshared top-level list/dict/set arguments: any change of a nested one fails
    that unit (``NotPlainData``), like a return value that is not plain data."""
    weak, strong = runs["weak"][name], runs["strong"][name]
    assert weak.passed is True, weak.detail
    assert strong.mode == "strong"
    assert strong.passed is False
    assert strong.detail.startswith("test 0: NotPlainData the candidate changed argument 0"), (
        strong.detail
    )


def test_a_mutation_before_an_exception_is_written_back(runs):
    """FIXED (was a hole). The candidate sorts its argument in place and then raises the expected
    ValueError; in-process the test sees the sorted list, in the strong mode the "x" reply
    carries no arguments, so the forbidden mutation is invisible and the wrong answer passes.

    Cause: ``runner.serve.answer`` sends ``["x", name, message, ancestry]`` without the
    arguments on a "C" call, and ``evaluator.evaluate.candidate`` writes back only after an
    ``"r"`` reply.

    Fixed: the "x" reply of a "C" call carries the changed arguments; the evaluator writes them
    back (flat list) before raising the exception.
    """
    _forged(runs, "mutate_then_raise")


def test_prefetched_answers_stay_with_their_calls(runs):
    """HELD. A candidate whose second answer for the same argument is wrong fails exactly the
    second unit: the batch of prefetched calls is answered in order, one reply per call."""
    res = runs["strong"]["stateful_batch"]
    assert (res.passed, res.tests_passed, res.tests_total) == (False, 3, 4), res.detail
    assert res.detail.startswith("test 1:"), res.detail


def test_reordering_a_dict_argument_is_written_back(runs):
    """FIXED (was a hole). The candidate re-inserts every key of its dict argument (same keys, same values,
    new order) and returns the keys; in-process the test sees the new order, in the strong mode
    ``_write_back`` assigns value by value into the old dict (equal key sets), keeping its old
    order, so the forbidden change is invisible.

    Cause: ``evaluator._write_back``'s dict branch compares ``keys()`` as sets.

    Fixed: R compares canonical encodings (order included); the flat dict is rebuilt in the new
    order (``old.clear(); old.update(new)``).
    """
    _forged(runs, "dict_reorder")


def test_a_return_value_sharing_a_row_with_the_arguments_fails_stricter_than_in_process(runs):
    """STRICTER (documented in SANDBOX.md): ``return x[0]`` for a list of lists is honest
    in-process (the test compares equal values), but a return value that shares a list, dict or
    set with the arguments without being one of them fails that unit (``NotPlainData``)."""
    weak, strong = runs["weak"]["honest_return_inner"], runs["strong"]["honest_return_inner"]
    assert weak.passed is True, weak.detail
    assert (strong.mode, strong.passed) == ("strong", False)
    assert "shares a list, dict or set with an argument" in strong.detail, strong.detail
