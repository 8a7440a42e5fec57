"""Execute untrusted, model-written programs: fast, contained, and unforgeable passes.

PF-PPO's true score for a generated program is the fraction of its unit
tests it passes. Training executes thousands of programs per minute, so this
module keeps a small pool of warm sandbox workers (see ``zygote.py``) and
runs each program in its own freshly forked process tree with:

- wall-clock and CPU-time limits, an address-space limit, a file-size limit;
- no new processes to speak of: as root, an unprivileged uid whose
  ``RLIMIT_NPROC`` is enforced, and a private pid namespace in which
  everything the program started is killed after it;
- a fresh private tmpfs as working directory, ``HOME`` and ``TMPDIR``; a
  minimal environment; stdin from ``/dev/null``; a bounded output tail;
- no network (an empty network namespace) when running as root, and the
  project's own files hidden;
- a verdict decided by the worker from a nonce-tagged result channel, never
  from the program's exit code or output.

``SANDBOX.md`` next to this file states what this protects against and what
it does not. The public entry points are :func:`execute`,
:func:`execute_many`, :func:`build_program` and :func:`score_completions`.
"""

from __future__ import annotations

import atexit
import collections
import json
import math
import numbers
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..tasks import CodeTask
from .programs import MODES, build_program, count_tests, make_job

__all__ = [
    "ExecResult",
    "STATUSES",
    "SandboxPool",
    "build_program",
    "count_tests",
    "execute",
    "execute_many",
    "score_completions",
    "sandbox_capabilities",
]

#: Every status an :class:`ExecResult` can carry, with its meaning.
STATUSES: dict[str, str] = {
    "passed": "the harness saw check() return and every test pass",
    "failed": "the tests ran and at least one failed",
    "error": "the program could not be tested: syntax error, exception outside a test, missing function",
    "timeout": "the wall-clock or CPU-time limit was reached",
    "memory": "the address-space limit was reached (MemoryError)",
    "exited": "the program exited (sys.exit, os._exit, exit code) before the tests finished",
    "output": "the program wrote more output than allowed",
    "killed": "the program died from a signal (e.g. a crash), or the sandbox lost it",
    "tampered": "something other than the harness wrote to the result channel",
}

_ZYGOTE = Path(__file__).with_name("zygote.py")
#: Requests kept in flight per worker: the next one waits in the worker's
#: stdin while the current program runs.
_PIPELINE = 2
_ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class ExecResult:
    """The verdict on one program.

    Attributes
    ----------
    passed : bool
        True only when the harness established, after running every test,
        that all passed (``status == "passed"``).
    status : str
        One of :data:`STATUSES`.
    tests_passed, tests_total : int
        Tests (top-level asserts of ``check``, counted separately) that
        passed, and how many there are. For programs from
        :func:`build_program` the total is known even when the completion
        does not compile; for other programs it is 0 until the harness has
        parsed the program (and :func:`score_completions` fills it in from
        the task).
    output : str
        The last few KiB of the program's stdout and stderr, for debugging.
    detail : str
        Why it did not pass (first failing tests, exception, signal...).
    duration : float
        Seconds from fork to verdict.
    mode : str
        ``"strong"``: the test ran in the trusted evaluator and every call
        of the candidate crossed to the program as plain data;
        ``"in_process"``: the test ran inside the program's interpreter
        (a plain script, or a test that cannot be split; see SANDBOX.md).
        Empty when the sandbox itself failed.
    """

    passed: bool
    status: str
    tests_passed: int = 0
    tests_total: int = 0
    output: str = ""
    detail: str = ""
    duration: float = 0.0
    mode: str = ""

    @property
    def score(self) -> float:
        """Fraction of tests passed, PF-PPO's "actual score" (0/1 without counted tests)."""
        if self.tests_total > 0:
            return self.tests_passed / self.tests_total
        return 1.0 if self.passed else 0.0


# ---------------------------------------------------------------------------
# parameter validation (one place, one message shape)
# ---------------------------------------------------------------------------


def _positive_int(name: str, value, *, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        kind = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"The '{name}' parameter of the sandbox must be {kind}; got {value!r}")
    return int(value)


def _check_mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(
            f"The 'mode' parameter of the sandbox must be one of {', '.join(MODES)}; got {mode!r}"
        )


def _check_params(
    timeout: float, memory_mb: int, workers: int | None = None, max_output: int = 1
) -> tuple[float, int, int | None, int]:
    """Validate the limits in one place; return them as plain Python numbers (JSON-safe)."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, numbers.Real)
        or not (math.isfinite(timeout) and timeout > 0)
    ):
        raise ValueError(
            "The 'timeout' parameter of the sandbox must be a positive finite number of seconds; "
            f"got {timeout!r}"
        )
    return (
        float(timeout),
        _positive_int("memory_mb", memory_mb),
        _positive_int("workers", workers, optional=True),
        _positive_int("max_output", max_output),
    )


# ---------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------


class _WorkerDied(RuntimeError):
    pass


class _Worker:
    """One zygote process and the pipe protocol to it."""

    def __init__(self, uid: int, hide: Sequence[str], namespaces: bool = True) -> None:
        self.uid = uid
        args = [sys.executable, "-I", "-S", str(_ZYGOTE), "--uid", str(uid)]
        if not namespaces:
            args.append("--no-namespaces")
        for path in hide:
            args += ["--hide", str(path)]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("REWARDFILTER_SANDBOX_DEBUG") else subprocess.DEVNULL,
            env=_ZYGOTE_ENV,
            close_fds=True,
            start_new_session=True,
            cwd="/",
        )
        hello = self._recv(30.0)
        if not hello.get("ready"):
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {hello!r}")
        self.caps: dict = hello["caps"]
        self.pid: int = hello["pid"]

    def _recv(self, wait: float) -> dict:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + wait
        buf = bytearray()
        need = 4
        header_done = False
        while len(buf) < need:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0.0))
            if not ready:
                raise _WorkerDied("sandbox worker did not answer in time")
            chunk = os.read(fd, need - len(buf))
            if not chunk:
                raise _WorkerDied("sandbox worker exited")
            buf += chunk
            if not header_done and len(buf) == 4:
                need = 4 + struct.unpack(">I", bytes(buf))[0]
                header_done = True
        return json.loads(bytes(buf[4:]))

    def send(self, job: dict) -> None:
        data = json.dumps(job).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerDied(f"sandbox worker unreachable: {exc}") from None

    def recv(self, job: dict) -> dict:
        # The zygote enforces the limits itself; this is only a safety net.
        return self._recv(float(job["timeout"]) + 15.0)

    def run(self, job: dict) -> dict:
        self.send(job)
        return self.recv(job)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kernel problem
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask politely (EOF on stdin ends the zygote), then make sure."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


_UIDS_PER_PROCESS = 1000
_uid_lock = threading.Lock()
_uid_next = [0]


def _new_uid() -> int:
    """A uid no other live worker uses: programs of different workers never share one.

    Each parent process owns a block of 1000 uids (by pid), handed out in
    turn, so concurrent pools (here or in other processes) do not share
    ``RLIMIT_NPROC`` counts, and killing "every process of this uid" after a
    program (the clean-up without namespaces) cannot reach another worker's
    program.
    """
    with _uid_lock:
        i = _uid_next[0] % _UIDS_PER_PROCESS
        _uid_next[0] += 1
    return 100_000 + (os.getpid() % 4_000_000) * _UIDS_PER_PROCESS + i


class SandboxPool:
    """A pool of warm sandbox workers; thread-safe, reusable, closable.

    Most code uses :func:`execute_many`, which keeps one shared pool alive
    for the process. Create your own to control its lifetime (it is a
    context manager).

    Parameters
    ----------
    workers : int, optional
        Number of programs run in parallel (default: the CPUs this process
        may use).
    hide : sequence of path-like, optional
        Host directories that programs must not see (covered by an empty
        tmpfs in the workers' private mount namespace, root only). Default:
        the current directory, the virtualenv (``sys.prefix``) and ``$HOME``,
        so a program cannot read the project's task files or answers.
        System directories are never hidden.
    namespaces : bool
        Use Linux namespaces when available (default). False runs the
        degraded mode a machine without namespaces gets (limits, uid drop
        and clean-up by uid, but a shared network and filesystem view); it
        exists to test that mode.
    """

    def __init__(
        self,
        workers: int | None = None,
        hide: Sequence[str | os.PathLike] | None = None,
        *,
        namespaces: bool = True,
    ) -> None:
        if not sys.platform.startswith("linux"):
            raise RuntimeError(
                f"the code sandbox needs Linux (process namespaces, prctl, pidfd); got {sys.platform}"
            )
        self.workers = _check_params(1.0, 1, workers)[2] or len(os.sched_getaffinity(0))
        if hide is None:
            hide = [os.getcwd(), sys.prefix, os.path.expanduser("~")]
        self._hide = [os.fspath(p) for p in hide]
        self._namespaces = namespaces
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._slots: list[_Worker | None] = [None] * self.workers
        self._uids = [_new_uid() for _ in range(self.workers)]
        self._closed = False

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def capabilities(self) -> dict:
        """What isolation the workers obtained (``root``, ``net``, ``ns``, ``drop``, ``hidden``)."""
        return dict(self._worker(0).caps)

    @property
    def worker_pids(self) -> list[int]:
        """Pids of the started workers (for tests that try to kill them)."""
        return [w.proc.pid for w in self._slots if w is not None]

    def _worker(self, i: int) -> _Worker:
        w = self._slots[i]
        if w is None or not w.alive():
            if w is not None:
                w.kill()
                self._uids[i] = _new_uid()  # whatever the dead worker left behind keeps its old uid
            w = self._slots[i] = _Worker(self._uids[i], self._hide, self._namespaces)
        return w

    def _retire(self, i: int) -> None:
        w = self._slots[i]
        if w is not None:
            w.kill()
        self._slots[i] = None
        self._uids[i] = _new_uid()

    @staticmethod
    def _result(raw: dict) -> ExecResult:
        return ExecResult(
            passed=bool(raw["passed"]),
            status=raw["status"],
            tests_passed=int(raw["tests_passed"]),
            tests_total=int(raw["tests_total"]),
            output=raw.get("output", ""),
            detail=raw.get("detail", ""),
            duration=float(raw.get("duration", 0.0)),
            mode=str(raw.get("mode", "")),
        )

    def _run_one(self, i: int, job: dict) -> ExecResult:
        try:
            return self._result(self._worker(i).run(job))
        except _WorkerDied as exc:
            self._retire(i)
            return ExecResult(False, "killed", detail=f"sandbox worker failure: {exc}")

    def _run_slot(self, slot: int, next_job, deliver) -> None:
        """Feed one worker, keeping :data:`_PIPELINE` requests in flight.

        The next request waits in the worker's stdin while the current
        program runs, so the round trip to this process is off the critical
        path. Answers come back in order. If the worker is lost, the request
        it was answering is reported as ``killed`` and the queued ones run
        again on a fresh worker.
        """
        inflight: collections.deque = collections.deque()
        while True:
            while len(inflight) < _PIPELINE:
                item = next_job()
                if item is None:
                    break
                try:
                    self._worker(slot).send(item[1])
                except _WorkerDied:
                    self._retire(slot)
                    for j, job in [*inflight, item]:
                        deliver(j, self._run_one(slot, job))
                    inflight.clear()
                    continue
                inflight.append(item)
            if not inflight:
                return
            i, job = inflight.popleft()
            w = self._slots[slot]
            try:
                if w is None:
                    raise _WorkerDied("sandbox worker lost")
                deliver(i, self._result(w.recv(job)))
            except _WorkerDied as exc:
                self._retire(slot)
                deliver(i, ExecResult(False, "killed", detail=f"sandbox worker failure: {exc}"))
                for j, queued in inflight:
                    deliver(j, self._run_one(slot, queued))
                inflight.clear()

    def map(
        self,
        programs: Sequence[str],
        *,
        timeout: float = 3.0,
        memory_mb: int = 512,
        max_output: int = 1 << 20,
        progress: bool = False,
        parallel: int | None = None,
        mode: str = "auto",
    ) -> list[ExecResult]:
        """Run ``programs`` in parallel; results in the same order.

        ``parallel`` caps how many of the pool's workers are used (default
        all); ``mode`` is one of :data:`MODES` (see :func:`execute_many`).
        """
        timeout, memory_mb, _, max_output = _check_params(timeout, memory_mb, None, max_output)
        _check_mode(mode)
        if os.getpid() != self._pid:
            raise RuntimeError("a SandboxPool cannot be used from a forked child; create a new one")
        programs = list(programs)
        for p in programs:
            if not isinstance(p, str):
                raise TypeError(f"programs must be str, got {type(p).__name__}")
        results: list[ExecResult | None] = [None] * len(programs)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(programs), desc="executing", unit="prog")
        todo = iter(range(len(programs)))
        take = threading.Lock()

        def next_job():
            with take:
                i = next(todo, None)
            return (
                None
                if i is None
                else (i, make_job(programs[i], timeout, memory_mb, max_output, mode))
            )

        def deliver(i: int, result: ExecResult) -> None:
            results[i] = result
            if bar is not None:
                bar.update(1)

        failures: list[str] = []

        def loop(slot: int) -> None:
            try:
                self._run_slot(slot, next_job, deliver)
            except Exception as exc:  # a bug here must not leave holes in the results
                failures.append(repr(exc))
                self._retire(slot)

        with self._lock:
            if self._closed:
                raise RuntimeError("this SandboxPool is closed")
            n = min(self.workers, len(programs), parallel or self.workers)
            if n <= 1:
                loop(0)
            else:
                threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        if bar is not None:
            bar.close()
        for i, r in enumerate(results):
            if r is None:
                detail = f"sandbox failure: {failures[0] if failures else 'no answer'}"
                results[i] = ExecResult(False, "killed", detail=detail)
        return results  # type: ignore[return-value]

    def _grow(self, workers: int) -> None:
        """Add worker slots (started lazily) after a batch in flight, if any."""
        with self._lock:
            while self.workers < workers:
                self._slots.append(None)
                self._uids.append(_new_uid())
                self.workers += 1

    def close(self) -> None:
        """Stop every worker (idempotent); waits for a batch in flight to finish."""
        if os.getpid() != self._pid:
            self._closed = True
            return
        with self._lock:
            self._closed = True
            for i, w in enumerate(self._slots):
                if w is not None:
                    w.close()
                    self._slots[i] = None


_default: SandboxPool | None = None
_default_lock = threading.Lock()


def _shared_pool(workers: int | None) -> SandboxPool:
    global _default
    with _default_lock:
        want = workers or len(os.sched_getaffinity(0))
        pool = _default
        if pool is None or pool._pid != os.getpid():
            pool = _default = SandboxPool(want)
        elif pool.workers < want:
            pool._grow(want)  # in place: another thread may be using this pool right now
        return pool


@atexit.register
def _close_shared_pool() -> None:
    if _default is not None:
        _default.close()


def execute_many(
    programs: Iterable[str],
    *,
    timeout: float = 3.0,
    memory_mb: int = 512,
    workers: int | None = None,
    max_output: int = 1 << 20,
    progress: bool = False,
    mode: str = "auto",
) -> list[ExecResult]:
    """Execute programs in parallel sandboxes; results in the same order.

    Parameters
    ----------
    programs : iterable of str
        Complete programs, typically from :func:`build_program`.
    timeout : float
        Wall-clock seconds per program (the CPU-time limit is
        ``int(timeout) + 1``).
    memory_mb : int
        Address-space limit per program, including the interpreter's own
        ~25 MiB.
    workers : int, optional
        Parallel sandboxes; default the CPUs available to this process. A
        shared pool is kept warm between calls.
    max_output : int
        Bytes of stdout+stderr after which the program is stopped
        (``status == "output"``).
    progress : bool
        Show a progress bar.
    mode : {"auto", "in_process"}
        ``"auto"`` (default) runs each program from :func:`build_program`
        in the strong mode whenever its test can be split from it (the test
        in a trusted evaluator, the candidate's calls crossing as plain
        data), otherwise in-process; ``"in_process"`` forces the weaker
        in-process mode (for comparisons). Each result says which ran
        (``ExecResult.mode``).

    Raises
    ------
    ValueError
        On a non-positive or non-finite timeout, or a non-positive memory
        limit, worker count or output limit, or an unknown mode.
    """
    programs = list(programs)
    _, _, workers, _ = _check_params(timeout, memory_mb, workers, max_output)
    _check_mode(mode)
    if not programs:
        return []
    pool = _shared_pool(workers)
    return pool.map(
        programs,
        timeout=timeout,
        memory_mb=memory_mb,
        max_output=max_output,
        progress=progress,
        parallel=workers,
        mode=mode,
    )


def execute(
    program: str,
    *,
    timeout: float = 3.0,
    memory_mb: int = 512,
    max_output: int = 1 << 20,
    mode: str = "auto",
) -> ExecResult:
    """Execute one program in a sandbox (see :func:`execute_many`)."""
    _check_params(timeout, memory_mb, None, max_output)
    return execute_many(
        [program], timeout=timeout, memory_mb=memory_mb, max_output=max_output, mode=mode
    )[0]


def score_completions(
    tasks: Sequence[CodeTask], completions: Sequence[str], **kwargs
) -> list[ExecResult]:
    """Test ``completions[i]`` against ``tasks[i]``; the per-sample true scores for PF-PPO.

    ``tests_total`` is filled in from the task when the program never got to
    its tests (e.g. a syntax error), so ``result.score`` is always the
    fraction of the task's tests passed.

    Keyword arguments go to :func:`execute_many`.
    """
    if len(tasks) != len(completions):
        raise ValueError(
            f"tasks and completions must have the same length; got {len(tasks)} and {len(completions)}"
        )
    results = execute_many(
        [build_program(t, c) for t, c in zip(tasks, completions, strict=True)], **kwargs
    )
    totals: dict[str, int] = {}
    out = []
    for task, res in zip(tasks, results, strict=True):
        if res.tests_total == 0:
            if task.task_id not in totals:
                totals[task.task_id] = count_tests(task.test)
            if totals[task.task_id]:
                res = ExecResult(
                    res.passed,
                    res.status,
                    res.tests_passed,
                    totals[task.task_id],
                    res.output,
                    res.detail,
                    res.duration,
                    res.mode,
                )
        out.append(res)
    return out


def sandbox_capabilities() -> dict:
    """Which protections this machine grants (starts the shared pool if needed).

    Keys: ``root`` (running as root), ``net`` (programs get an empty network
    namespace), ``ns`` (private pid + mount namespaces and tmpfs), ``drop``
    (programs run under an unprivileged uid with an enforced process limit).
    """
    return _shared_pool(None).capabilities
