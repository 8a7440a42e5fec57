"""The families of the synthetic code curriculum: input generators and task templates.

Each builder returns the :class:`Variant` (one parameter setting) of its
family; :mod:`rewardfilter.adapters.code.curriculum` turns them into tasks,
splits them without leaks and draws test inputs.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BUILDERS", "Variant"]


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

BUILDERS = _BUILDERS
Variant = _Variant
