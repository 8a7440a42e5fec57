"""One sandbox worker process (``zygote.py``) seen from the parent: start, pipe protocol, stop."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Worker", "WorkerDied", "new_uid"]

_ZYGOTE = Path(__file__).with_name("zygote.py")
_ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
#: The parts of a strong-mode request that only the judge may receive.
TRUSTED = ("helpers", "test", "factory", "total", "calls")
#: Capacity asked for the judge's pipe; ``programs`` keeps each request to under half of it.
TRUSTED_PIPE_BYTES = 1 << 20


class WorkerDied(RuntimeError):
    pass


class Worker:
    """One zygote process and the pipe protocol to it."""

    def __init__(
        self, uid: int, hide: Sequence[str], namespaces: bool = True, cpu: int | None = None
    ) -> None:
        self.uid = uid
        args = [sys.executable, "-I", "-S", str(_ZYGOTE), "--uid", str(uid)]
        if cpu is not None:
            args += ["--cpu", str(cpu)]
        if not namespaces:
            args.append("--no-namespaces")
        for path in hide:
            args += ["--hide", str(path)]
        # The tests travel on a pipe of their own, read only by the worker's judge: the zygote,
        # which forks the programs, never reads them, so no program's memory ever held one.
        judge_r, self.judge_w = os.pipe()
        try:
            fcntl.fcntl(self.judge_w, 1031, TRUSTED_PIPE_BYTES)  # F_SETPIPE_SZ
        except OSError:
            pass
        args += ["--judge-fd", str(judge_r)]
        self.seq = 0
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None if os.environ.get("REWARDFILTER_SANDBOX_DEBUG") else subprocess.DEVNULL,
                env=_ZYGOTE_ENV,
                close_fds=True,
                pass_fds=(judge_r,),
                start_new_session=True,
                cwd="/",
            )
        finally:
            os.close(judge_r)
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
                raise WorkerDied("sandbox worker did not answer in time")
            chunk = os.read(fd, need - len(buf))
            if not chunk:
                raise WorkerDied("sandbox worker exited")
            buf += chunk
            if not header_done and len(buf) == 4:
                need = 4 + struct.unpack(">I", bytes(buf))[0]
                header_done = True
        return json.loads(bytes(buf[4:]))

    def send(self, job: dict) -> None:
        job = dict(job)
        trusted = b""
        if job.get("mode") == "strong":
            self.seq += 1
            part = {k: job.pop(k) for k in TRUSTED if k in job}
            part["seq"] = job["seq"] = self.seq
            data = json.dumps(part).encode()
            trusted = struct.pack(">I", len(data)) + data
        data = json.dumps(job).encode()
        try:
            if trusted:
                view = memoryview(trusted)
                while view:
                    view = view[os.write(self.judge_w, view) :]
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerDied(f"sandbox worker unreachable: {exc}") from None

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
        try:
            os.close(self.judge_w)
        except OSError:
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


def new_uid() -> int:
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
