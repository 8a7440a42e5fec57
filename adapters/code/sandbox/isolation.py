"""Kernel-level isolation of the sandbox worker and its programs (Linux, standard library only).

The worker ("zygote", see ``zygote.py``) calls :func:`setup` once: private
pid + mount + network namespaces when running as root, the standard library
preloaded, host directories and removed modules hidden. Each program's
process then calls :func:`restrict` after dropping its uid: a seccomp
filter that refuses new user namespaces and in-memory executables.
"""

from __future__ import annotations

import glob
import os
import signal
import struct

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
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
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
# process management
# ---------------------------------------------------------------------------

CAPS = {"root": False, "net": False, "ns": False, "drop": False}
UID = 0
WORKDIR_NS = "/tmp/w"
OWN_PIDNS = False  # set only in the child of our own unshare(CLONE_NEWPID)
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
    global OWN_PIDNS
    OWN_PIDNS = os.getpid() == 1
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        # World-writable places become read-only-for-programs tmpfs: the only
        # directory a program can write is its own fresh tmpfs (WORKDIR_NS*).
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=755")
    except OSError:
        return True, False
    _COVERED.append("/tmp")
    for extra in ("/dev/shm", "/var/tmp", "/run/lock", "/dev/mqueue"):
        if os.path.isdir(extra):
            try:
                _mount(
                    "tmpfs", extra, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=755"
                )
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


def setup(hide: list[str], namespaces: bool = True) -> None:
    """Isolate this worker (namespaces as root), preload the stdlib, hide paths and removed modules."""
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
        CAPS["removed"] = hide_removed_modules()
        CAPS["hidden"] = _hide(hide)
    else:
        try:  # orphans of a program come back to us (to be reaped), not to the host's init
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        except OSError:
            pass
    import gc

    gc.freeze()  # keep the warm heap out of the children's collections: fewer copy-on-write faults


# ---------------------------------------------------------------------------
# removed modules: hidden as files, not only dropped from sys.modules
# ---------------------------------------------------------------------------

#: Modules a program must not load: ctypes (raw memory, any C function) and its C part.
REMOVED = ("ctypes", "_ctypes")


def _python_libs() -> list[str]:
    """Every Python library directory on this machine: the running one's and the system's."""
    stdlib = os.path.dirname(os.__file__)
    dirs = {stdlib, os.path.join(stdlib, "lib-dynload")}
    for pattern in (
        "/usr/lib/python3*",
        "/usr/local/lib/python3*",
        "/usr/lib64/python3*",
        "/usr/lib/python3*/lib-dynload",
        "/usr/local/lib/python3*/lib-dynload",
        "/usr/lib64/python3*/lib-dynload",
        "/opt/*/lib/python3*",
        "/opt/*/lib/python3*/lib-dynload",
    ):
        dirs.update(glob.glob(pattern))
    return sorted(d for d in dirs if os.path.isdir(d))


def hide_removed_modules() -> list[str]:
    """Cover every copy of the :data:`REMOVED` modules on this machine, inside our mount namespace.

    Package directories get an empty read-only tmpfs, extension files
    (``_ctypes.cpython-311-x86_64-linux-gnu.so``) a bind mount of
    ``/dev/null``: a program that puts the system's stdlib folders on
    ``sys.path`` (or loads a file by path with ``importlib``) finds nothing
    to load. Called after the zygote has imported what it needs. Returns
    the covered paths.
    """
    covered = []
    for lib in _python_libs():
        for name in REMOVED:
            for path in glob.glob(os.path.join(lib, name)) + glob.glob(
                os.path.join(lib, name + ".*")
            ):
                real = os.path.realpath(path)
                try:
                    if os.path.isdir(real):
                        _mount(
                            "tmpfs",
                            real,
                            "tmpfs",
                            MS_NOSUID | MS_NODEV | MS_NOEXEC | 1,
                            "size=4k,mode=755",
                        )
                    else:
                        _mount("/dev/null", real, None, MS_BIND)
                    covered.append(real)
                except OSError:
                    pass
    return covered


# ---------------------------------------------------------------------------
# seccomp: no new user namespaces, no in-memory executables
# ---------------------------------------------------------------------------

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
#: (clone, clone3, unshare, setns, memfd_create) per architecture.
_SYSCALLS = {"x86_64": (56, 435, 272, 308, 319), "aarch64": (220, 435, 97, 268, 279)}
CLONE_NEWUSER = 0x10000000
_EPERM, _ENOSYS = 1, 38
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
SECCOMP_MODE_FILTER = 2


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_program() -> bytes | None:
    """The classic-BPF filter :func:`restrict` installs (None on an unknown architecture).

    - ``clone`` / ``unshare`` with ``CLONE_NEWUSER``: EPERM (no user
      namespace, hence no "root" inside one to mount or unshare with);
    - ``clone3``: ENOSYS (its flags live in memory a filter cannot read;
      the C library then falls back to ``clone``);
    - ``setns``: EPERM; ``memfd_create``: EPERM (an executable in memory
      would dodge the ``noexec`` working directory);
    - anything else, and any other architecture's calls: allowed.
    """
    arch = os.uname().machine
    if arch not in _SYSCALLS:
        return None
    clone, clone3, unshare, setns, memfd = _SYSCALLS[arch]
    deny = _RET_ERRNO | _EPERM
    prog = [
        _bpf(_LD_W_ABS, 0, 0, 4),  # 0: arch
        _bpf(_JEQ_K, 1, 0, _AUDIT_ARCH[arch]),  # 1
        _bpf(_RET_K, 0, 0, _RET_ALLOW),  # 2: another ABI (ia32): not filtered
        _bpf(_LD_W_ABS, 0, 0, 0),  # 3: syscall number
        _bpf(_JGE_K, 6, 0, 0x40000000),  # 4: x32 ABI numbers -> 11 deny
        _bpf(_JEQ_K, 6, 0, clone),  # 5 -> 12 flags
        _bpf(_JEQ_K, 5, 0, unshare),  # 6 -> 12 flags
        _bpf(_JEQ_K, 2, 0, clone3),  # 7 -> 10 ENOSYS
        _bpf(_JEQ_K, 2, 0, setns),  # 8 -> 11 deny
        _bpf(_JEQ_K, 1, 5, memfd),  # 9 -> 11 deny, else 15 allow
        _bpf(_RET_K, 0, 0, _RET_ERRNO | _ENOSYS),  # 10
        _bpf(_RET_K, 0, 0, deny),  # 11
        _bpf(_LD_W_ABS, 0, 0, 16),  # 12: low word of the first argument (the flags)
        _bpf(_JSET_K, 0, 1, CLONE_NEWUSER),  # 13
        _bpf(_RET_K, 0, 0, deny),  # 14
        _bpf(_RET_K, 0, 0, _RET_ALLOW),  # 15
    ]
    return b"".join(prog)


PR_SET_SECCOMP = 22


def restrict() -> bool:
    """Install :func:`seccomp_program` in this process (needs ``PR_SET_NO_NEW_PRIVS``); True if done."""
    prog = seccomp_program()
    if prog is None:
        return False
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    try:
        _call("prctl", PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0)
    except OSError:
        return False
    return True
