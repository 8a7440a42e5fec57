"""The test side of a program, as syntax: find, count, instrument and split ``check``.

Pure AST work, standard library only: imported by the parent (to count
tests, compile each task's test once and choose its mode) and by the
sandbox worker.
"""

from __future__ import annotations

import ast
import builtins
import marshal
import re

#: Every line boundary ``str.splitlines`` knows, mapped to a space: a record stays one line.
ONE_LINE = dict.fromkeys(map(ord, "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), " ")

MARKER = "# rewardfilter-sandbox: check("
#: ``build_program``'s first line: the entry point, the length of the test suffix and of the prompt.
MARKER_RE = re.compile(
    r"# rewardfilter-sandbox: check\((\w+)\)(?: test=(\d+))?(?: prompt=(\d+))?[ \t]*\n"
)


# ---------------------------------------------------------------------------
# test instrumentation
# ---------------------------------------------------------------------------


def _contains_assert(node: ast.AST) -> bool:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Assert):
            return True
        for child in ast.iter_child_nodes(n):
            if not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
            ):
                stack.append(child)
    return False


def find_check(tree: ast.Module) -> ast.FunctionDef | None:
    """The last top-level ``def check`` (the test's, since tests follow completions)."""
    found = None
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "check":
            found = stmt
    return found


def count_units(check: ast.FunctionDef) -> int:
    """Number of separately counted tests: top-level statements of check holding an assert."""
    return sum(1 for stmt in check.body if _contains_assert(stmt))


class _StrictEq(ast.NodeTransformer):
    """Rewrite ``assert a == b`` into ``assert __rf_eq(a, b)`` (see ``_strict_eq``)."""

    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        t = node.test
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
            node.test = ast.Call(
                func=ast.Name("__rf_eq", ast.Load()), args=[t.left, t.comparators[0]], keywords=[]
            )
        return node

    def visit_FunctionDef(self, node):  # do not descend into nested defs
        return node

    visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = visit_FunctionDef


def instrument(check: ast.FunctionDef) -> tuple[ast.Module, int]:
    """Build ``def __rf_factory(__rf_rec, __rf_BE, __rf_eq): <check>; return check``.

    Each top-level statement of ``check`` that holds an assert becomes::

        try:
            <statement>
        except __rf_BE as __rf_e:
            __rf_rec(i, __rf_e)
        else:
            __rf_rec(i, None)

    so every test runs and is counted separately even if an earlier one
    fails. The recorder, ``BaseException`` and the equality guard are closure
    variables, not globals, so the program cannot rebind them by name.
    """
    body: list[ast.stmt] = []
    unit = 0
    for stmt in check.body:
        if not _contains_assert(stmt):
            body.append(stmt)
            continue
        stmt = _StrictEq().visit(stmt)

        def rec(arg: ast.expr, i: int = unit) -> ast.stmt:
            return ast.Expr(ast.Call(ast.Name("__rf_rec", ast.Load()), [ast.Constant(i), arg], []))

        body.append(
            ast.Try(
                body=[stmt],
                handlers=[
                    ast.ExceptHandler(
                        type=ast.Name("__rf_BE", ast.Load()),
                        name="__rf_e",
                        body=[rec(ast.Name("__rf_e", ast.Load()))],
                    )
                ],
                orelse=[rec(ast.Constant(None))],
                finalbody=[],
            )
        )
        unit += 1
    new_check = ast.FunctionDef(
        name="check",
        args=check.args,
        body=body or [ast.Pass()],
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    factory = ast.FunctionDef(
        name="__rf_factory",
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg("__rf_rec"), ast.arg("__rf_BE"), ast.arg("__rf_eq")],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=[new_check, ast.Return(ast.Name("check", ast.Load()))],
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    module = ast.Module(body=[factory], type_ignores=[])
    return ast.fix_missing_locations(ast.copy_location(module, check)), unit


def split_program(src: str) -> tuple[ast.Module, ast.FunctionDef | None, str | None, str | None]:
    """Parse a program and separate the test harness call from the rest.

    Returns ``(module_without_check_and_call, check_def, entry_point, error)``.
    A program whose first line is the marker written by ``build_program``
    *must* end in ``check(<entry_point>)`` after a top-level ``def check``;
    otherwise a trailing ``check(<name>)`` call is recognised when present,
    and anything else runs as a plain script.
    """
    tree = ast.parse(src, "<program>", "exec")
    m = MARKER_RE.match(src)
    declared = m.group(1) if m else None
    last = tree.body[-1] if tree.body else None
    call = None
    if (
        isinstance(last, ast.Expr)
        and isinstance(last.value, ast.Call)
        and isinstance(last.value.func, ast.Name)
        and last.value.func.id == "check"
        and len(last.value.args) == 1
        and not last.value.keywords
        and isinstance(last.value.args[0], ast.Name)
    ):
        call = last.value.args[0].id
    check = find_check(tree)
    if declared is not None and (call != declared or check is None):
        return (
            tree,
            None,
            None,
            "the program does not end with the test call check(" + declared + ")",
        )
    if call is None or check is None:
        return tree, None, None, None
    tree.body = [s for s in tree.body[:-1] if s is not check]
    return tree, check, call, None


def prepare_test(suffix: str, entry: str, prompt: str | None = None) -> dict:
    """Compile the test part of a marked program once, for many programs.

    ``suffix`` is ``"\\n" + test + "\\ncheck(<entry>)\\n"``, the part of a
    ``build_program`` program after the completion, whose length the marker
    records. The parent caches the result per test text, so a program only
    has to compile its own prompt + completion.

    Returns
    -------
    dict
        ``test``: the marshalled code of the test's module-level statements
        (without ``def check`` and the call); ``factory``: the marshalled
        instrumented ``check`` factory; ``total``: the number of tests;
        ``helpers``: the marshalled code of what the *prompt* defines
        besides the entry point (imports, helper functions such as
        HumanEval/32's ``poly``), or None; ``in_process``: None when the
        test can run in the trusted evaluator (strong mode), otherwise why
        not (see :func:`strong_mode_problem`).

    Raises
    ------
    SyntaxError, ValueError
        If the suffix is not a test followed by ``check(<entry>)``.
    """
    tree = ast.parse(suffix, "<test>", "exec")
    last = tree.body[-1] if tree.body else None
    check = find_check(tree)
    if not (
        isinstance(last, ast.Expr)
        and isinstance(last.value, ast.Call)
        and isinstance(last.value.func, ast.Name)
        and last.value.func.id == "check"
        and [getattr(a, "id", None) for a in last.value.args] == [entry]
        and not last.value.keywords
        and check is not None
    ):
        raise ValueError(f"the test does not define check() and end with check({entry})")
    tree.body = [s for s in tree.body[:-1] if s is not check]
    helpers = prompt_helpers(prompt, entry) if prompt is not None else None
    reason = (
        "the program was built without its prompt's length"
        if prompt is None
        else "the prompt does not parse on its own"
        if helpers is None
        else strong_mode_problem(tree, check, helpers, entry)
    )
    factory, total = instrument(check)  # rewrites check's asserts in place: after the analysis
    rest = compile(tree, "<test>", "exec", dont_inherit=True, optimize=0)
    fact = compile(factory, "<test>", "exec", dont_inherit=True, optimize=0)
    help_code = (
        compile(helpers, "<prompt>", "exec", dont_inherit=True, optimize=0)
        if helpers is not None
        else None
    )
    return {
        "test": marshal.dumps(rest),
        "factory": marshal.dumps(fact),
        "total": total,
        "helpers": marshal.dumps(help_code) if help_code is not None else None,
        "in_process": reason,
    }


# ---------------------------------------------------------------------------
# choosing the mode: can the test run apart from the program?
# ---------------------------------------------------------------------------


def prompt_helpers(prompt: str, entry: str) -> ast.Module | None:
    """What the prompt defines besides the entry point, as a module (None if it does not parse).

    A prompt is imports, helper definitions and the entry point's ``def``
    line with its docstring. The evaluator runs these helpers from the
    prompt's own text, so a test that calls HumanEval/32's ``poly`` or
    HumanEval/38's ``encode_cyclic`` gets the data set's version, never a
    completion's redefinition. The entry point itself is left out.
    """
    for text in (prompt, prompt + "    pass\n"):
        try:
            tree = ast.parse(text, "<prompt>", "exec")
        except (SyntaxError, ValueError):
            continue
        tree.body = [
            s
            for s in tree.body
            if not (isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == entry)
        ]
        return tree
    return None


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name a piece of code binds anywhere (a deliberate over-approximation)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return bound


def strong_mode_problem(
    test: ast.Module, check: ast.FunctionDef, helpers: ast.Module, entry: str
) -> str | None:
    """Why this test cannot run in the trusted evaluator, or None when it can.

    The strong mode hands the test a stand-in for the candidate that sends
    each call's arguments to the program and gets plain data back. That
    fails for a test that

    - uses a name only the program can define (neither the test, the
      prompt's helpers nor the builtins bind it);
    - passes a function (a ``lambda`` or a function the test or prompt
      defines) to the candidate;
    - looks at the candidate object itself (``candidate.__name__``).
    """
    callee = {"candidate", entry}
    for arg in check.args.args[:1]:
        callee.add(arg.arg)
    known = _bound_names(test) | _bound_names(check) | _bound_names(helpers) | set(dir(builtins))
    functions = {
        n.name
        for tree in (test, check, helpers)
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        and not isinstance(n, ast.Lambda)
    }
    for node in ast.walk(ast.Module(body=[*test.body, check], type_ignores=[])):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in known and node.id not in callee:
                return f"the test uses {node.id!r}, which only the program defines"
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in callee:
                return f"the test reads {node.value.id}.{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in callee
        ):
            for a in [*node.args, *(k.value for k in node.keywords)]:
                for sub in ast.walk(a):
                    if isinstance(sub, ast.Lambda) or (
                        isinstance(sub, ast.Name) and sub.id in functions | callee
                    ):
                        return "the test passes a function to the candidate"
    return None


# ---------------------------------------------------------------------------
# equality guard
# ---------------------------------------------------------------------------

_PLAIN_SCALARS = (int, float, complex, bool, str, bytes, type(None))
_PLAIN_CONTAINERS = (list, tuple, set, frozenset, dict)


def _make_strict_eq():
    """``a == b``, but an object of a user-defined type never equals a plain value.

    Defeats the classic forged pass where the candidate returns an object
    whose ``__eq__`` always answers True: when one side of ``==`` is built
    only from builtin scalars and containers (exact types) and the other is
    not, the comparison is False. Bound to local names so that later
    patching of ``builtins`` cannot change it.
    """
    scalars, containers, _type, _iter = _PLAIN_SCALARS, _PLAIN_CONTAINERS, type, iter
    _dict, _all = dict, all

    def plain(x, depth=0) -> bool:
        t = _type(x)
        if t in scalars:
            return True
        if t not in containers or depth > 20:
            return False
        items = x.items() if t is _dict else _iter(x)
        if t is _dict:
            return _all(plain(k, depth + 1) and plain(v, depth + 1) for k, v in items)
        return _all(plain(v, depth + 1) for v in items)

    def strict_eq(a, b) -> bool:
        pa, pb = plain(a), plain(b)
        if pa != pb:
            return False
        return a == b

    return strict_eq
