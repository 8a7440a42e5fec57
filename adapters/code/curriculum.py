"""A synthetic curriculum of tiny Python functions for CPU-scale PF-PPO runs.

HumanEval is far beyond what a few-million-parameter language model trained
on a CPU for minutes can solve, so the code-domain experiments train on this
curriculum instead. Each *family* (arithmetic, strings, lists, ...) is a
template with integer or string parameters; each parameter value yields one
task: a ``def`` line plus a one-line docstring as the prompt, a 1-3 line
canonical body, and a ``check(candidate)`` with several asserts, exactly in
HumanEval's shape so the same sandbox and evaluator serve both.

Difficulty varies on purpose (``constants`` only needs the number copied
from the docstring into ``return``; ``loops`` and ``dicts`` need the model to
produce a loop or a ``get`` call), so that the learning curve has a slope
and the per-assert score spreads across [0, 1], which is what makes reward
reliability (R²) measurable.

No leak between splits: every task is assigned to ``train`` or ``heldout``
by a hash of its prompt text, independently of the seed. The same prompt
therefore can never appear in both splits, whatever the seeds of the two
calls; the seed only chooses *which* tasks of a split are drawn and the test
inputs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from functools import cache

from rewardfilter.validation import Interval, param_error

from .curriculum_families import BUILDERS as _BUILDERS
from .curriculum_families import Variant as _Variant
from .tasks import CodeTask

__all__ = [
    "FAMILIES",
    "HELDOUT_FRACTION",
    "make_curriculum",
    "available",
    "family_of",
]

#: Fraction of each family's parameter space reserved for the held-out split.
HELDOUT_FRACTION = 0.25
#: Number of distinct test inputs (asserts) per task, for families with inputs.
N_ASSERTS = 4


#: Family names, roughly from easiest to hardest.
FAMILIES: tuple[str, ...] = tuple(_BUILDERS)

_SPLITS = ("train", "heldout")


def _prompt(v: _Variant) -> str:
    return f'def {v.name}({v.args}):\n    """{v.doc}"""\n'


def _split_of(prompt: str) -> str:
    """Assign a prompt to a split by hashing its text (seed-independent: no leak)."""
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") / 2.0**64
    return "heldout" if h < HELDOUT_FRACTION else "train"


@cache
def _pool(family: str, split: str) -> tuple[_Variant, ...]:
    variants = _BUILDERS[family]()
    names = [v.name for v in variants]
    assert len(set(names)) == len(names), f"duplicate entry points in family {family}"
    return tuple(v for v in variants if _split_of(_prompt(v)) == split)


def _check_args(split: str, families: Iterable[str] | None) -> tuple[str, ...]:
    if split not in _SPLITS:
        raise ValueError(
            f"The 'split' parameter of make_curriculum must be one of {_SPLITS}; got {split!r}"
        )
    if families is None:
        return FAMILIES
    if isinstance(families, str):
        families = (families,)
    families = tuple(families)
    unknown = [f for f in families if f not in _BUILDERS]
    if unknown or not families:
        raise ValueError(
            "The 'families' parameter of make_curriculum must be a non-empty subset of "
            f"{FAMILIES}; got {families!r}"
        )
    return families


def available(split: str = "train", families: Iterable[str] | None = None) -> dict[str, int]:
    """Number of distinct tasks each family offers in ``split`` (the cap on ``n_per_family``)."""
    return {f: len(_pool(f, split)) for f in _check_args(split, families)}


def _build_task(family: str, v: _Variant, seed: int) -> CodeTask:
    prompt = _prompt(v)
    namespace: dict = {}
    exec(
        compile(prompt + v.body, f"<curriculum {v.name}>", "exec"), namespace
    )  # trusted, our own template
    fn = namespace[v.name]
    rng = random.Random(f"{seed}:{family}:{v.name}")
    cases: list[tuple] = []
    n_wanted = 1 if not v.args else N_ASSERTS
    outputs: list[str] = []
    for attempt in range(
        40 * n_wanted
    ):  # draw until enough distinct inputs (small spaces may repeat)
        args = v.inputs(rng)
        if args in cases:
            continue
        out = repr(fn(*args))
        # Tests whose expected values are all equal let a constant answer pass:
        # keep the last slot for an input with a new output while attempts remain.
        if (
            len(cases) == n_wanted - 1
            and n_wanted > 1
            and set(outputs) == {out}
            and attempt < 30 * n_wanted
        ):
            continue
        cases.append(args)
        outputs.append(out)
        if len(cases) == n_wanted:
            break
    lines = ["def check(candidate):"]
    for args, out in zip(cases, outputs, strict=True):
        call = ", ".join(repr(a) for a in args)
        lines.append(f"    assert candidate({call}) == {out}")
    return CodeTask(
        task_id=f"curriculum/{family}/{v.name}",
        prompt=prompt,
        entry_point=v.name,
        test="\n".join(lines) + "\n",
        canonical_solution=v.body,
    )


def make_curriculum(
    split: str = "train",
    n_per_family: int | None = 50,
    seed: int = 0,
    families: Sequence[str] | None = None,
) -> list[CodeTask]:
    """Draw a deterministic set of curriculum tasks.

    Parameters
    ----------
    split : {"train", "heldout"}
        Which side of the hash split to draw from. The two sides never share
        a prompt, for any seeds.
    n_per_family : int or None
        Tasks drawn per family, without replacement; ``None`` takes the
        whole pool. See :func:`available` for the caps (every family offers
        at least 70 held-out and 225 training tasks).
    seed : int
        Chooses which tasks are drawn, their order and their test inputs.
        The same arguments always return the same list.
    families : sequence of str, optional
        Subset of :data:`FAMILIES` (default: all).

    Returns
    -------
    list of CodeTask
        Grouped by family in the order of ``families``, shuffled within a
        family. ``task_id`` is ``curriculum/<family>/<entry_point>``.

    Raises
    ------
    ValueError
        On an unknown split or family, a non-positive ``n_per_family``, or
        one larger than a family's pool.
    """
    fams = _check_args(split, families)
    if n_per_family is not None and n_per_family not in Interval("int", 1):
        raise param_error("n_per_family", "make_curriculum", "an int >= 1 or None", n_per_family)
    tasks: list[CodeTask] = []
    for family in fams:
        pool = list(_pool(family, split))
        if n_per_family is not None and n_per_family > len(pool):
            raise ValueError(
                f"The 'n_per_family' parameter of make_curriculum must be at most {len(pool)} for "
                f"family {family!r} in split {split!r}; got {n_per_family}"
            )
        rng = random.Random(f"{seed}:{split}:{family}")
        rng.shuffle(pool)
        chosen = pool if n_per_family is None else pool[:n_per_family]
        tasks.extend(_build_task(family, v, seed) for v in chosen)
    return tasks


def family_of(task: CodeTask) -> str:
    """Family name of a curriculum task (from its ``task_id``)."""
    from .evaluate import task_family  # the one parser of task ids; this is its strict form

    family = task_family(task.task_id)
    if not task.task_id.startswith("curriculum/") or family not in _BUILDERS:
        raise ValueError(f"{task.task_id!r} is not a curriculum task id")
    return family
