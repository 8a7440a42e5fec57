"""The synthetic curriculum: many small, deterministic, leak-free, correct tasks."""

from __future__ import annotations

import ast
import dataclasses
import re

import pytest

from rewardfilter.adapters.code.curriculum import FAMILIES, available, family_of, make_curriculum
from rewardfilter.adapters.code.tasks import CodeTask


@pytest.fixture(scope="module")
def train_all() -> list[CodeTask]:
    return make_curriculum("train", n_per_family=None)


@pytest.fixture(scope="module")
def heldout_all() -> list[CodeTask]:
    return make_curriculum("heldout", n_per_family=None)


def _run_in_process(task: CodeTask, body: str) -> bool:
    """Run our own trusted template code directly (the sandbox has its own tests)."""
    ns: dict = {}
    exec(task.prompt + body + "\n" + task.test, ns)
    try:
        ns["check"](ns[task.entry_point])
    except AssertionError:
        return False
    return True


def test_at_least_ten_families_with_large_pools():
    assert len(FAMILIES) >= 10
    for name in ("arithmetic", "strings", "lists", "conditionals", "loops"):
        assert name in FAMILIES
    assert min(available("train").values()) >= 225
    assert min(available("heldout").values()) >= 70


def test_deterministic_from_seed():
    a = make_curriculum("train", n_per_family=5, seed=3)
    b = make_curriculum("train", n_per_family=5, seed=3)
    c = make_curriculum("train", n_per_family=5, seed=4)
    assert a == b
    assert a != c
    assert len(a) == 5 * len(FAMILIES)
    assert [family_of(t) for t in a] == [f for f in FAMILIES for _ in range(5)]


def test_train_and_heldout_never_share_a_task(train_all, heldout_all):
    for field in ("task_id", "prompt", "entry_point"):
        assert not {getattr(t, field) for t in train_all} & {getattr(t, field) for t in heldout_all}
    # any seeds: the split is by prompt, not by draw
    tr = make_curriculum("train", n_per_family=50, seed=11)
    ho = make_curriculum("heldout", n_per_family=50, seed=12)
    assert not {t.prompt for t in tr} & {t.prompt for t in ho}
    assert len({t.task_id for t in train_all}) == len(train_all)


def test_tasks_are_small_and_humaneval_shaped(train_all):
    for t in train_all[::7]:
        lines = t.prompt.splitlines()
        assert len(lines) == 2 and lines[0].startswith(f"def {t.entry_point}(")
        assert lines[1].strip().startswith('"""') and lines[1].strip().endswith('"""')
        assert 1 <= len(t.canonical_solution.splitlines()) <= 4
        tree = ast.parse(t.test)
        (check,) = tree.body
        assert isinstance(check, ast.FunctionDef) and check.name == "check"
        assert all(isinstance(s, ast.Assert) for s in check.body)
        assert len(t.prompt) < 120


def test_canonical_solutions_pass_and_wrong_bodies_fail(train_all, heldout_all):
    tasks = train_all[::3] + heldout_all[::3]
    for t in tasks:
        assert _run_in_process(t, t.canonical_solution), t.task_id
        assert not _run_in_process(t, "    return None\n"), t.task_id


def test_tests_discriminate_constant_answers(train_all):
    degenerate = []
    for t in train_all:
        outs = re.findall(r"== (.*)$", t.test, re.M)
        if len(outs) > 1 and len(set(outs)) == 1:
            degenerate.append(t.task_id)
    assert len(degenerate) <= len(train_all) // 200, degenerate[:10]


def test_asserts_are_several_except_for_constants(train_all):
    for t in train_all[::11]:
        n = t.test.count("assert ")
        assert n == (1 if family_of(t) == "constants" else 4), t.task_id


def test_family_subset_and_none():
    tasks = make_curriculum("heldout", n_per_family=3, families=["loops", "strings"])
    assert [family_of(t) for t in tasks] == ["loops"] * 3 + ["strings"] * 3
    assert len(make_curriculum("heldout", None, families="dicts")) == available("heldout")["dicts"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "test"}, "split"),
        ({"families": ["nope"]}, "families"),
        ({"families": []}, "families"),
        ({"n_per_family": 0}, "n_per_family"),
        ({"n_per_family": -2}, "n_per_family"),
        ({"n_per_family": 2.5}, "n_per_family"),
        ({"n_per_family": 10**6}, "at most"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_curriculum(**kwargs)


def test_family_of_rejects_foreign_ids():
    with pytest.raises(ValueError):
        family_of(CodeTask("HumanEval/0", "", "f", "", ""))


def test_family_of_is_the_strict_form_of_the_one_task_id_parser():
    from rewardfilter.adapters.code.evaluate import task_family

    tasks = make_curriculum("train", 2, seed=0)
    assert [family_of(t) for t in tasks] == [task_family(t.task_id) for t in tasks]
    for bad in ("HumanEval/0", "curriculum/nofamily/0", "curriculum/lists/0/extra"):
        task = dataclasses.replace(tasks[0], task_id=bad)
        assert isinstance(task, CodeTask)
        with pytest.raises(ValueError, match="not a curriculum task id"):
            family_of(task)
