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
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

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

_LETTERS = string.ascii_lowercase


@dataclass(frozen=True)
class _Variant:
    """One parameter setting of a family: everything needed to build a task."""

    name: str  # entry point, encodes the parameters, unique within the family
    args: str  # parameter list of the def line
    doc: str  # one-line docstring
    body: str  # canonical solution, indented, newline-terminated
    inputs: Callable[[random.Random], tuple]  # draws one argument tuple


# ----------------------------------------------------------------------------
# input generators (argument tuples)
# ----------------------------------------------------------------------------


def _no_args(rng: random.Random) -> tuple:
    return ()


def _an_int(rng: random.Random) -> tuple:
    return (rng.randint(-30, 60),)


def _a_small_int(rng: random.Random) -> tuple:
    return (rng.randint(-6, 9),)


def _a_count(rng: random.Random) -> tuple:
    return (rng.randint(0, 40),)


def _int_near(k: int, spread: int = 12) -> Callable[[random.Random], tuple]:
    """Integers around ``k`` so thresholds and divisibility tests discriminate."""

    def draw(rng: random.Random) -> tuple:
        if rng.random() < 0.25:
            return (k * rng.randint(-3, 3),)
        return (rng.randint(k - spread, k + spread),)

    return draw


def _count_upto(k: int) -> Callable[[random.Random], tuple]:
    """Non-negative counts up to a few multiples of ``k`` (loop bounds)."""

    def draw(rng: random.Random) -> tuple:
        return (rng.randint(0, 4 * max(k, 5)),)

    return draw


def _a_word(chars: str = "") -> Callable[[random.Random], tuple]:
    """Strings over a small alphabet that includes ``chars`` often."""

    def draw(rng: random.Random) -> tuple:
        alphabet = chars * 3 + "".join(rng.sample(_LETTERS, 4))
        return ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7))),)

    return draw


def _a_list(around: int = 0, max_len: int = 6) -> Callable[[random.Random], tuple]:
    """Short integer lists whose values straddle ``around`` (so filters bite)."""

    def draw(rng: random.Random) -> tuple:
        return ([rng.randint(around - 10, around + 10) for _ in range(rng.randint(0, max_len))],)

    return draw


def _multiples_list(k: int) -> Callable[[random.Random], tuple]:
    """Lists mixing multiples of ``k`` with other numbers."""

    def draw(rng: random.Random) -> tuple:
        n = rng.randint(0, 6)
        return (
            [
                k * rng.randint(-3, 3) if rng.random() < 0.5 else rng.randint(-20, 60)
                for _ in range(n)
            ],
        )

    return draw


def _a_dict_and_key(rng: random.Random) -> tuple:
    keys = rng.sample("abcdefg", rng.randint(0, 4))
    d = {k: rng.randint(-20, 99) for k in keys}
    return (d, rng.choice("abcdefg"))


def _a_dict_around(k: int) -> Callable[[random.Random], tuple]:
    def draw(rng: random.Random) -> tuple:
        keys = rng.sample("abcdefg", rng.randint(0, 5))
        return ({key: rng.randint(k - 10, k + 10) for key in keys},)

    return draw


def _ret(expr: str) -> str:
    return f"    return {expr}\n"


# ----------------------------------------------------------------------------
# families: each returns its whole (finite, deterministic) parameter space
# ----------------------------------------------------------------------------


def _constants() -> list[_Variant]:
    return [_Variant(f"const_{k}", "", f"Return {k}.", _ret(str(k)), _no_args) for k in range(1000)]


def _arithmetic() -> list[_Variant]:
    out = []
    for k in range(1, 201):
        out.append(_Variant(f"add_{k}", "x", f"Return x plus {k}.", _ret(f"x + {k}"), _an_int))
        out.append(_Variant(f"sub_{k}", "x", f"Return x minus {k}.", _ret(f"x - {k}"), _an_int))
        out.append(_Variant(f"mul_{k}", "x", f"Return x times {k}.", _ret(f"x * {k}"), _an_int))
    return out


def _linear() -> list[_Variant]:
    return [
        _Variant(f"linear_{a}_{b}", "x", f"Return {a} * x + {b}.", _ret(f"{a} * x + {b}"), _an_int)
        for a in range(2, 21)
        for b in range(1, 31)
    ]


def _math() -> list[_Variant]:
    out = [
        _Variant(f"power_{k}", "x", f"Return x to the power {k}.", _ret(f"x ** {k}"), _a_small_int)
        for k in range(2, 6)
    ]
    for k in range(2, 101):
        out.append(
            _Variant(
                f"mod_{k}",
                "x",
                f"Return the remainder of x divided by {k}.",
                _ret(f"x % {k}"),
                _int_near(k, 3 * k),
            )
        )
        out.append(
            _Variant(
                f"div_{k}",
                "x",
                f"Return x divided by {k}, rounded down.",
                _ret(f"x // {k}"),
                _int_near(k, 3 * k),
            )
        )
    for k in range(0, 201):
        out.append(
            _Variant(
                f"dist_{k}",
                "x",
                f"Return the absolute difference between x and {k}.",
                _ret(f"abs(x - {k})"),
                _int_near(k),
            )
        )
    return out


def _conditionals() -> list[_Variant]:
    out = []
    for k in range(-10, 101):
        out.append(
            _Variant(
                f"cap_{k}".replace("-", "m"),
                "x",
                f"Return x, but at most {k}.",
                f"    if x > {k}:\n        return {k}\n    return x\n",
                _int_near(k),
            )
        )
        out.append(
            _Variant(
                f"floor_{k}".replace("-", "m"),
                "x",
                f"Return x, but at least {k}.",
                f"    if x < {k}:\n        return {k}\n    return x\n",
                _int_near(k),
            )
        )
        out.append(
            _Variant(
                f"label_{k}".replace("-", "m"),
                "x",
                f"Return 'big' if x is greater than {k}, else 'small'.",
                _ret(f"'big' if x > {k} else 'small'"),
                _int_near(k),
            )
        )
    return out


def _booleans() -> list[_Variant]:
    out = []
    for k in range(-10, 101):
        out.append(
            _Variant(
                f"is_above_{k}".replace("-", "m"),
                "x",
                f"Return True if x is greater than {k}.",
                _ret(f"x > {k}"),
                _int_near(k),
            )
        )
    for k in range(2, 101):
        out.append(
            _Variant(
                f"is_multiple_of_{k}",
                "x",
                f"Return True if x is a multiple of {k}.",
                _ret(f"x % {k} == 0"),
                _int_near(k, 2),
            )
        )
    for a in range(0, 21):
        for w in range(1, 21):
            b = a + w
            out.append(
                _Variant(
                    f"in_range_{a}_{b}",
                    "x",
                    f"Return True if x is between {a} and {b} inclusive.",
                    _ret(f"{a} <= x <= {b}"),
                    _int_near((a + b) // 2, w + 6),
                )
            )
    return out


def _strings() -> list[_Variant]:
    out = []
    for a in _LETTERS:
        for b in _LETTERS:
            p = a + b
            out.append(
                _Variant(
                    f"prefix_{p}",
                    "s",
                    f"Return s with '{p}' added to the front.",
                    _ret(f"'{p}' + s"),
                    _a_word(),
                )
            )
            out.append(
                _Variant(
                    f"suffix_{p}",
                    "s",
                    f"Return s with '{p}' added to the end.",
                    _ret(f"s + '{p}'"),
                    _a_word(),
                )
            )
    for k in range(2, 10):
        out.append(
            _Variant(
                f"repeat_{k}", "s", f"Return s repeated {k} times.", _ret(f"s * {k}"), _a_word()
            )
        )
    return out


def _string_ops() -> list[_Variant]:
    out = [
        _Variant(
            f"count_{c}",
            "s",
            f"Return how many times '{c}' occurs in s.",
            _ret(f"s.count('{c}')"),
            _a_word(c),
        )
        for c in _LETTERS
    ]
    for a in _LETTERS:
        for b in _LETTERS:
            if a != b:
                out.append(
                    _Variant(
                        f"replace_{a}_{b}",
                        "s",
                        f"Return s with every '{a}' replaced by '{b}'.",
                        _ret(f"s.replace('{a}', '{b}')"),
                        _a_word(a),
                    )
                )
    return out


def _lists() -> list[_Variant]:
    out = []
    for k in range(1, 10):
        out.append(
            _Variant(
                f"take_{k}",
                "xs",
                f"Return the first {k} elements of xs.",
                _ret(f"xs[:{k}]"),
                _a_list(0, k + 4),
            )
        )
        out.append(
            _Variant(
                f"drop_{k}",
                "xs",
                f"Return xs without its first {k} elements.",
                _ret(f"xs[{k}:]"),
                _a_list(0, k + 4),
            )
        )
    for k in range(1, 101):
        out.append(
            _Variant(
                f"add_each_{k}",
                "xs",
                f"Return a list with {k} added to each element of xs.",
                _ret(f"[x + {k} for x in xs]"),
                _a_list(),
            )
        )
        out.append(
            _Variant(
                f"append_{k}",
                "xs",
                f"Return xs with {k} appended at the end.",
                _ret(f"xs + [{k}]"),
                _a_list(),
            )
        )
    for k in range(2, 101):
        out.append(
            _Variant(
                f"scale_each_{k}",
                "xs",
                f"Return a list with each element of xs multiplied by {k}.",
                _ret(f"[x * {k} for x in xs]"),
                _a_list(),
            )
        )
    return out


def _aggregates() -> list[_Variant]:
    out = []
    for k in range(0, 101):
        out.append(
            _Variant(
                f"sum_plus_{k}",
                "xs",
                f"Return the sum of xs plus {k}.",
                _ret(f"sum(xs) + {k}"),
                _a_list(),
            )
        )
        out.append(
            _Variant(
                f"max_or_{k}",
                "xs",
                f"Return the largest element of xs, or {k} if xs is empty.",
                _ret(f"max(xs, default={k})"),
                _a_list(),
            )
        )
        out.append(
            _Variant(
                f"min_or_{k}",
                "xs",
                f"Return the smallest element of xs, or {k} if xs is empty.",
                _ret(f"min(xs, default={k})"),
                _a_list(),
            )
        )
    for k in range(2, 51):
        out.append(
            _Variant(
                f"len_times_{k}",
                "xs",
                f"Return the length of xs times {k}.",
                _ret(f"len(xs) * {k}"),
                _a_list(),
            )
        )
    return out


def _filtering() -> list[_Variant]:
    out = []
    for k in range(-30, 71):
        tag = str(k).replace("-", "m")
        out.append(
            _Variant(
                f"keep_above_{tag}",
                "xs",
                f"Return the elements of xs greater than {k}, in order.",
                _ret(f"[x for x in xs if x > {k}]"),
                _a_list(k),
            )
        )
        out.append(
            _Variant(
                f"count_above_{tag}",
                "xs",
                f"Return how many elements of xs are greater than {k}.",
                _ret(f"sum(1 for x in xs if x > {k})"),
                _a_list(k),
            )
        )
        out.append(
            _Variant(
                f"remove_{tag}",
                "xs",
                f"Return xs without the elements equal to {k}.",
                _ret(f"[x for x in xs if x != {k}]"),
                _a_list(k),
            )
        )
    for k in range(2, 51):
        out.append(
            _Variant(
                f"keep_multiples_of_{k}",
                "xs",
                f"Return the elements of xs that are multiples of {k}.",
                _ret(f"[x for x in xs if x % {k} == 0]"),
                _multiples_list(k),
            )
        )
    return out


def _loops() -> list[_Variant]:
    out = []
    for k in range(2, 101):
        out.append(
            _Variant(
                f"sum_multiples_{k}",
                "n",
                f"Return the sum of the multiples of {k} below n.",
                "    total = 0\n"
                f"    for i in range(0, n, {k}):\n"
                "        total += i\n"
                "    return total\n",
                _count_upto(k),
            )
        )
    for k in range(1, 101):
        out.append(
            _Variant(
                f"multiples_{k}",
                "n",
                f"Return the list of the multiples of {k} below n.",
                _ret(f"list(range(0, n, {k}))"),
                _count_upto(k),
            )
        )
    for k in range(0, 101):
        out.append(
            _Variant(
                f"sum_from_{k}",
                "n",
                f"Return the sum of the integers from {k} to n inclusive.",
                "    total = 0\n"
                f"    for i in range({k}, n + 1):\n"
                "        total += i\n"
                "    return total\n",
                _count_upto(k),
            )
        )
    return out


def _dicts() -> list[_Variant]:
    out = []
    for k in range(-50, 201):
        tag = str(k).replace("-", "m")
        out.append(
            _Variant(
                f"get_or_{tag}",
                "d, key",
                f"Return d[key] if key is in d, else {k}.",
                _ret(f"d.get(key, {k})"),
                _a_dict_and_key,
            )
        )
    for k in range(-10, 101):
        tag = str(k).replace("-", "m")
        out.append(
            _Variant(
                f"count_values_above_{tag}",
                "d",
                f"Return how many values in d are greater than {k}.",
                _ret(f"sum(1 for v in d.values() if v > {k})"),
                _a_dict_around(k),
            )
        )
    return out


_BUILDERS: dict[str, Callable[[], list[_Variant]]] = {
    "constants": _constants,
    "arithmetic": _arithmetic,
    "linear": _linear,
    "math": _math,
    "conditionals": _conditionals,
    "booleans": _booleans,
    "strings": _strings,
    "string_ops": _string_ops,
    "lists": _lists,
    "aggregates": _aggregates,
    "filtering": _filtering,
    "loops": _loops,
    "dicts": _dicts,
}

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
    if n_per_family is not None and (
        isinstance(n_per_family, bool) or not isinstance(n_per_family, int) or n_per_family < 1
    ):
        raise ValueError(
            f"The 'n_per_family' parameter of make_curriculum must be a positive int or None; got {n_per_family!r}"
        )
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
    parts = task.task_id.split("/")
    if len(parts) != 3 or parts[0] != "curriculum" or parts[1] not in _BUILDERS:
        raise ValueError(f"{task.task_id!r} is not a curriculum task id")
    return parts[1]
