"""The trusted evaluator: runs a task's test apart from the program it judges (strong mode).

Runs in the worker's persistent judge process (forked by ``zygote.py``, one
evaluation after another, see :func:`serve`), next to each program's process
``R`` (``runner.py``); standard library only.
The test comes from the data set and is trusted; the completion is not, and
never runs here: ``E``'s namespace holds the prompt's helpers (compiled from
the prompt's text, not the program's), the test's module-level code and the
instrumented ``check``, fresh for every program. The candidate ``check`` receives is a stand-in that
sends each call's arguments to ``R`` and gets back plain data
(``codec.py``), an exception's type name, message and plain ``args``, or
a refusal; in-place changes of flat arguments come back (:func:`_give_back`).
So the program cannot reach the test's frames, names, modules, builtins or result
channel: they live in another process it cannot see.

Records written to the worker (one line each, behind a per-run nonce):
``S <total>``, ``U <i> <1|0> [<exception>]``, ``E <exception> <message>``
(the test could not run: the program does not compile, raises, exits or
lacks the entry point), ``X`` (the program's process ended during the
tests; the worker then looks at how) and ``D`` (``check`` returned).
"""

from __future__ import annotations

import base64
import builtins
import marshal
import os
import resource
import signal
import struct
import sys

try:
    from . import codec, instrument, isolation, runner
except ImportError:  # run inside the worker, where these are top-level modules
    import codec
    import instrument
    import isolation
    import runner

ONE_LINE = instrument.ONE_LINE
#: Address-space limit of the evaluator (it holds only the test and plain data).
EVAL_MEMORY_MB = 1024
#: Programs one judge process evaluates before the worker replaces it with a fresh one.
RUNS_PER_JUDGE = 500
PR_SET_DUMPABLE = 4


class NotPlainData(BaseException):
    """The candidate returned a value that is not plain data (or sent a malformed reply).

    A ``BaseException``, so a test's ``except Exception`` cannot mistake it
    for the exception the test expects the candidate to raise.
    """


class CandidateError(Exception):
    """An exception of a type that is not a builtin, raised by the candidate (named in the message)."""


_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes)


def _immutable(v) -> bool:
    t = type(v)
    return t in _IMMUTABLE or (t in (tuple, frozenset) and all(_immutable(e) for e in v))


def _flat(v) -> bool:
    """A list, dict or set whose items (keys and values) are all immutable plain data."""
    t = type(v)
    if t is dict:
        return all(_immutable(k) and _immutable(x) for k, x in v.items())
    return t in (list, set) and all(_immutable(e) for e in v)


def _owned(args: tuple, kwargs: dict) -> dict:
    """``{index or keyword: ids of the lists, dicts and sets inside that argument}``."""
    out = {}
    for key, value in (*enumerate(args), *kwargs.items()):
        ids, stack = set(), [value]
        while stack:
            v = stack.pop()
            t = type(v)
            if t in (list, tuple, dict, set) and id(v) not in ids:
                if t is not tuple:
                    ids.add(id(v))
                stack.extend(v.values() if t is dict else () if t is set else v)
        out[key] = ids
    return out


def _give_back(args: tuple, kwargs: dict, owned: dict, changes) -> None:
    """Write the arguments the candidate changed into the test's own objects, or fail the unit.

    Faithful only for a flat list, dict or set (:func:`_flat`, before and
    after) that shares nothing with the call's other arguments: ``old[:] =
    new``, or ``clear()`` and ``update()`` (a dict keeps the new order).
    Any other change (a list inside a tuple or a list, an aliased argument)
    raises :class:`NotPlainData`: that unit fails, stricter than in-process.
    """
    if not (type(changes) is list and len(changes) == 2 and all(type(c) is list for c in changes)):
        raise NotPlainData("malformed reply")
    todo = []
    for entry in (*changes[0], *changes[1]):
        if not (type(entry) is list and len(entry) == 2):
            raise NotPlainData("malformed reply")
        key, new = entry
        if type(key) is int and 0 <= key < len(args):
            old = args[key]
        elif type(key) is str and key in kwargs:
            old = kwargs[key]
        else:
            raise NotPlainData("malformed reply")
        shared = any(owned[key] & ids for k, ids in owned.items() if k != key)
        if shared or type(new) is not type(old) or not (_flat(old) and _flat(new)):
            why = "shares a list, dict or set with another argument" if shared else "is nested"
            raise NotPlainData(
                f"the candidate changed argument {key!r} in place, which {why}: the sandbox "
                "writes back only flat, unshared list, dict and set arguments (SANDBOX.md)"
            )
        todo.append((old, new))
    for old, new in todo:
        if type(old) is list:
            old[:] = new
        else:
            old.clear()
            old.update(new)


#: Exceptions whose meaning is control flow: raised inside the test's ``map``/``zip``/``for``
#: they would end its iteration; like PEP 479, they arrive as a RuntimeError.
_STOPS = ("StopIteration", "StopAsyncIteration")


def _exception(name: str, message: str, ancestry, args=None) -> BaseException:
    """A real exception for one the candidate raised, from its real builtin ancestry.

    ``ancestry`` (the runner's ``_make_ancestry``) names the builtin classes
    the exception's class derives from, most derived first. The first that
    is a builtin ``Exception`` subclass is raised: itself when the class is
    that builtin, else a subclass of it named ``name`` (an honest ``class
    NegativeInput(ValueError)`` satisfies ``except ValueError``; a
    completion's own ``class ValueError(Exception)`` does not). StopIteration
    and StopAsyncIteration become RuntimeError; a class with no builtin
    ancestor below ``Exception`` becomes :class:`CandidateError`. The
    exception is built from the candidate's ``args`` when they came (a tuple
    of plain data: ``KeyError("x").args == ("x",)``), else from the message.
    """
    base = None
    for anc in ancestry if type(ancestry) is list else ():
        cls = getattr(builtins, anc, None) if type(anc) is str else None
        if isinstance(cls, type) and issubclass(cls, Exception):
            base = cls
            break
    if base is not None and base.__name__ in _STOPS:
        return RuntimeError(f"the candidate raised {name}: {message}".rstrip(": "))
    if base is not None and (base is not Exception or name == "Exception"):
        cls = base
        if name != base.__name__:
            try:
                cls = type(name, (base,), {"__module__": "candidate"})
            except Exception:
                cls = base
        if type(args) is tuple:
            try:
                return cls(*args)
            except Exception:
                pass
        try:
            return cls(message) if message else cls()
        except Exception:
            pass
    return CandidateError(f"{name}: {message}" if message else name)


def _clean(text, limit: int = 300) -> str:
    """A string from the program, made safe for one record line."""
    if type(text) is not str:
        return "?"
    return text[:limit].translate(ONE_LINE)


class _Done(BaseException):
    """Ends one evaluation (the judge then waits for the next); never caught by the test."""


def setup() -> None:
    """Limits of the judge process, once: memory, no core dumps, not inspectable, own group."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()
    for which, value in ((resource.RLIMIT_AS, EVAL_MEMORY_MB << 20), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass
    if isolation._libc is not None:  # where ctypes is loaded anyway (see isolation.py)
        try:
            isolation._prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
            # Not dumpable: a program running under the same uid (the modes without a
            # dropped uid) cannot open /proc/<E>/fd or /proc/<E>/mem.
            isolation._prctl(PR_SET_DUMPABLE, 0)
        except OSError:
            pass


def read_exact(fd: int, n: int, buf: bytearray | None = None) -> bytes | None:
    """``n`` bytes: those already in ``buf``, then from ``fd``; None at end of file.

    No read-ahead: a reader after this one starts at a message boundary (the
    zygote reads its requests with it too).
    """
    buf = bytearray() if buf is None else buf
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_trusted(fd: int, seq) -> dict | None:
    """The parent's message for run ``seq`` on the tests' pipe (older ones skipped), or None."""
    import json

    while True:
        head = read_exact(fd, 4)
        body = read_exact(fd, struct.unpack(">I", head)[0]) if head else None
        if body is None:
            return None
        part = json.loads(body)
        if part.get("seq") == seq:
            return part
        if not isinstance(part.get("seq"), int) or part["seq"] > seq:
            return None


def serve(ctl, trusted_fd: int, own_pidns: bool) -> None:
    """The judge's loop: one evaluation per request from the worker, until the worker is gone.

    A request is a JSON object (the job's test parts, the nonce) with four
    file descriptors: the call pipe to the program, the reply pipe from it,
    the result pipe and the output pipe. After each evaluation the judge
    ends the program's whole process tree (``kill(-1)`` in the pid
    namespace: everything but the judge and its pid 1) and answers ``d``.
    Staying alive saves a fork, and the copy-on-write faults and teardown
    of a process, per program; the worker forks a new judge when one dies
    or is killed (a timeout), and after :data:`RUNS_PER_JUDGE` programs.
    """
    import json
    import socket

    null = os.open("/dev/null", os.O_RDWR)
    while True:
        try:  # a 4-byte length with the four fds, then that many bytes of JSON
            head, fds, _, _ = socket.recv_fds(ctl, 4, 4)
            while head and len(head) < 4:
                more = ctl.recv(4 - len(head))
                if not more:
                    return
                head += more
            if not head or len(fds) != 4:
                return
            (n,) = struct.unpack(">I", head)
            buf = bytearray()
            while len(buf) < n:
                more = ctl.recv(min(n - len(buf), 1 << 20))
                if not more:
                    return
                buf += more
        except OSError:
            return
        job = json.loads(bytes(buf))
        del buf
        req_w, rep_r, res_w, out_w = fds
        try:
            part = _read_trusted(trusted_fd, job["seq"])
        except (ValueError, OSError):
            part = None
        if part is None:  # out of step with the parent's stream of tests: the worker restarts
            for fd in fds:
                os.close(fd)
            try:
                ctl.sendall(b"x")
            except OSError:
                pass
            return
        job.update(part)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        emit = runner._make_emitter([job.pop("nonce")], res_w)
        try:
            evaluate(job, emit, req_w, rep_r)
        except _Done:
            pass
        except BaseException as exc:  # a bug here must not look like a verdict
            try:
                emit("E HarnessError " + _clean(repr(exc)))
            except BaseException:
                pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os.dup2(null, 1)
        os.dup2(null, 2)
        for fd in fds:
            os.close(fd)
        runner._PENDING.pop(rep_r, None)
        if own_pidns:
            try:
                os.kill(-1, signal.SIGKILL)  # the program and all it started; not us, not pid 1
            except OSError:
                pass
        del job, emit
        try:
            ctl.sendall(b"d")
        except OSError:
            return


def evaluate(job: dict, emit, req_w: int, rep_r: int) -> None:
    """Run the test of ``job`` against the program behind ``req_w`` / ``rep_r``; raises _Done."""
    gone = []

    def finish() -> None:
        raise _Done

    def describe(exc) -> str:
        return (type(exc).__name__ + " " + _clean(str(exc))).strip()

    def receive():
        try:
            msg = runner.read_message(rep_r, codec.MAX_BYTES)
        except (ValueError, OSError):
            raise NotPlainData("the reply is larger than allowed") from None
        if msg is None:  # the program's process is gone: the worker looks at how it ended
            if not gone:
                emit("X")
                gone.append(True)
            finish()
        try:
            return codec.decode(msg)
        except codec.CodecError as exc:
            raise NotPlainData(f"malformed reply ({exc})") from None

    total = int(job["total"])
    emit(f"S {total}")
    g = {"__builtins__": builtins, "__name__": "__sandbox_test__"}
    try:
        for part in ("helpers", "test", "factory"):
            if job.get(part):
                exec(marshal.loads(base64.b64decode(job[part])), g)
    except _Done:
        raise
    except BaseException as exc:
        emit("E HarnessError the task's prompt or test failed: " + describe(exc))
        finish()
    hello = receive()
    if type(hello) is list and hello[:1] == ["err"] and len(hello) == 2:
        emit("E " + _clean(hello[1]))
        finish()
    if hello != ["ok"]:
        emit("E HarnessError malformed greeting from the program")
        finish()

    # Calls the test is certain to make first (instrument.prefetchable_calls) go to the program
    # in one message; it answers them in order, and each actual call below is matched
    # against the list before taking the next answer.
    expected = [base64.b64decode(c) for c in job.get("calls") or ()]
    if expected:
        batch = codec.encode(["b", [codec.decode(c) for c in expected]])
        try:
            runner.write_message(req_w, batch)
        except OSError:
            emit("X")
            gone.append(True)
            finish()
    pending = list(reversed(expected))

    def candidate(*args, **kwargs):
        if gone:
            finish()
        back = False
        try:
            request = codec.encode([args, kwargs])
        except codec.CodecError as exc:
            raise NotPlainData(f"an argument is not plain data ({exc})") from None
        if pending:
            if pending[-1] != request and codec.decode(pending[-1]) != [args, kwargs]:
                emit("E HarnessError the test's calls differ from the prefetched ones")
                finish()
            pending.pop()
        else:
            owned = _owned(args, kwargs)
            back = any(owned.values())  # a list, dict or set at any depth: ask what changed
            try:
                runner.write_message(req_w, codec.encode(["C" if back else "c", args, kwargs]))
            except OSError:
                emit("X")
                gone.append(True)
                finish()
        reply = receive()
        kind, n = (reply[0], len(reply)) if type(reply) is list and reply else (None, 0)
        if kind == "r" and n == (4 if back else 2):
            if back:
                _give_back(args, kwargs, owned, reply[3])
                relation = reply[2]
                if relation is True:
                    raise NotPlainData(
                        "the return value shares a list, dict or set with an argument"
                    )
                if type(relation) is int and 0 <= relation < len(args):
                    return args[relation]  # the candidate returned the argument itself
                if type(relation) is str and relation in kwargs:
                    return kwargs[relation]
                if relation is not None:
                    raise NotPlainData("malformed reply")
            return reply[1]
        if kind == "x" and n == (6 if back else 5):
            if back:
                _give_back(args, kwargs, owned, reply[5])
            raise _exception(_clean(reply[1], 60), _clean(reply[2]), reply[3], reply[4])
        if kind == "n" and n == 2:
            raise NotPlainData(_clean(reply[1]))
        raise NotPlainData("malformed reply")

    def rec(i, exc) -> None:
        if gone or isinstance(exc, _Done):
            finish()  # raised from the unit's except clause: the test cannot swallow it
        emit(f"U {i} 1" if exc is None else f"U {i} 0 {describe(exc)}")

    try:
        check = g.pop("__rf_factory")(rec, BaseException, lambda a, b: a == b)
        g["check"] = check
        g[job["entry"]] = candidate
        check(candidate)
    except _Done:
        raise
    # Deliberately runner.py's handler shape (the program's own process): the two processes
    # share no code at run time by design, and the runner's copy uses captured builtins.
    except MemoryError:
        emit("E MemoryError")
        finish()
    except BaseException as exc:
        emit("E " + describe(exc))
        finish()
    if gone:
        finish()
    emit("D")
    finish()
