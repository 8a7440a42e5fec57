"""The trusted evaluator: runs a task's test apart from the program it judges (strong mode).

Runs in its own process ``E`` forked by the sandbox worker (``zygote.py``),
next to the program's process ``R`` (``runner.py``), standard library only.
The test comes from the data set and is trusted; the completion is not, and
never runs here: ``E``'s namespace holds the prompt's helpers (compiled from
the prompt's text, not the program's), the test's module-level code and the
instrumented ``check``. The candidate ``check`` receives is a stand-in that
sends each call's arguments to ``R`` and gets back plain data
(``codec.py``), an exception's type name and message, or a refusal. So the
program cannot reach the test's frames, names, modules, builtins or result
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
PR_SET_DUMPABLE = 4


class NotPlainData(BaseException):
    """The candidate returned a value that is not plain data (or sent a malformed reply).

    A ``BaseException``, so a test's ``except Exception`` cannot mistake it
    for the exception the test expects the candidate to raise.
    """


class CandidateError(Exception):
    """An exception of a type that is not a builtin, raised by the candidate (named in the message)."""


def _exception(name: str, message: str) -> BaseException:
    """A real exception for one the candidate raised: the builtin of that name, if there is one."""
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
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


def isolate(job: dict, out_w: int) -> None:
    """Limits of the evaluator process: memory, CPU, no core dumps, not inspectable."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()
    os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    cpu = int(job["timeout"]) + 2
    for which, value in (
        (resource.RLIMIT_AS, EVAL_MEMORY_MB << 20),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_CORE, 0),
    ):
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
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115


def evaluate(job: dict, emit, req_w: int, rep_r: int) -> None:
    """Run the test of ``job`` against the program behind ``req_w`` / ``rep_r``; never returns."""
    exit_ = os._exit

    def finish() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        exit_(0)

    def describe(exc) -> str:
        return (type(exc).__name__ + " " + _clean(str(exc))).strip()

    def receive():
        try:
            msg = runner.read_message(rep_r, codec.MAX_BYTES)
        except (ValueError, OSError):
            raise NotPlainData("the reply is larger than allowed") from None
        if msg is None:  # the program's process is gone: the worker looks at how it ended
            emit("X")
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

    def candidate(*args, **kwargs):
        try:
            request = codec.encode([args, kwargs])
        except codec.CodecError as exc:
            raise NotPlainData(f"an argument is not plain data ({exc})") from None
        try:
            runner.write_message(req_w, request)
        except OSError:
            emit("X")
            finish()
        reply = receive()
        if type(reply) is list and len(reply) == 2 and reply[0] == "r":
            return reply[1]
        if type(reply) is list and len(reply) == 3 and reply[0] == "x":
            raise _exception(_clean(reply[1], 60), _clean(reply[2]))
        if type(reply) is list and len(reply) == 2 and reply[0] == "n":
            raise NotPlainData(_clean(reply[1]))
        raise NotPlainData("malformed reply")

    def rec(i, exc) -> None:
        emit(f"U {i} 1" if exc is None else f"U {i} 0 {describe(exc)}")

    try:
        check = g.pop("__rf_factory")(rec, BaseException, lambda a, b: a == b)
        g["check"] = check
        g[job["entry"]] = candidate
        check(candidate)
    except MemoryError:
        emit("E MemoryError")
        finish()
    except BaseException as exc:
        emit("E " + describe(exc))
        finish()
    emit("D")
    finish()
