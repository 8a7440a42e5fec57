"""The seccomp filter of the sandbox's worker and programs (Linux, standard library only).

:func:`seccomp_program` builds a classic-BPF filter; :func:`restrict`
installs it in the calling process (after ``PR_SET_NO_NEW_PRIVS``). The
worker installs it on itself before it re-executes (see
``isolation.setup``), so every judge and program inherits it.
"""

from __future__ import annotations

import os
import struct

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
#: (clone, clone3, unshare) per architecture: filtered on their flags (see seccomp_program).
_CLONE_CALLS = {"x86_64": (56, 435, 272), "aarch64": (220, 435, 97)}
#: Calls refused outright (EPERM), per architecture: setns, memfd_create; ptrace,
#: process_vm_readv, process_vm_writev (reading or rewriting another process:
#: the gdb route to native code); personality; shmget, msgget, semget (SysV IPC:
#: memory outside RLIMIT_AS, a channel between programs).
_DENIED = {
    "x86_64": {
        "setns": 308,
        "memfd_create": 319,
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "personality": 135,
        "shmget": 29,
        "msgget": 68,
        "semget": 64,
    },
    "aarch64": {
        "setns": 268,
        "memfd_create": 279,
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "personality": 92,
        "shmget": 194,
        "msgget": 186,
        "semget": 190,
    },
}
CLONE_NEWUSER = 0x10000000
_EPERM, _ENOSYS = 1, 38
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
SECCOMP_MODE_FILTER = 2


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _assemble(prog: list[tuple]) -> bytes:
    """Classic BPF from ``(code, k, jt, jf)`` rows whose jump targets are labels (str) or None.

    A row ``("label", name)`` names the next instruction. Jumps go forward only.
    """
    labels, rows = {}, []
    for row in prog:
        if row[0] == "label":
            labels[row[1]] = len(rows)
        else:
            rows.append(row)
    out = []
    for i, (code, k, jt, jf) in enumerate(rows):
        off = [0 if t is None else labels[t] - i - 1 for t in (jt, jf)]
        if min(off) < 0 or max(off) > 255:
            raise ValueError(f"bad jump in the seccomp program at {i}")
        out.append(_bpf(code, off[0], off[1], k))
    return b"".join(out)


def seccomp_program() -> bytes | None:
    """The classic-BPF filter :func:`restrict` installs (None on an unknown architecture).

    - a call through another architecture's ABI (x86_64's ``int 0x80`` ia32
      entry, or the x32 numbers): the process is killed (an ia32 call has
      other numbers, which this filter does not know);
    - ``clone`` / ``unshare`` with ``CLONE_NEWUSER``: EPERM (no user
      namespace, hence no "root" inside one to mount or unshare with);
    - ``clone3``: ENOSYS (its flags live in memory a filter cannot read;
      the C library then falls back to ``clone``);
    - the calls of :data:`_DENIED` (``setns``, ``memfd_create``, ``ptrace``,
      ``process_vm_readv``/``writev``, ``personality``, SysV ``shmget``/
      ``msgget``/``semget``): EPERM;
    - anything else: allowed.
    """
    arch = os.uname().machine
    if arch not in _CLONE_CALLS:
        return None
    clone, clone3, unshare = _CLONE_CALLS[arch]
    prog: list[tuple] = [
        (_LD_W_ABS, 4, None, None),  # arch
        (_JEQ_K, _AUDIT_ARCH[arch], "native", None),
        (_RET_K, _RET_KILL_PROCESS, None, None),  # a foreign ABI (ia32 on x86_64)
        ("label", "native"),
        (_LD_W_ABS, 0, None, None),  # syscall number
        (_JGE_K, 0x40000000, "deny", None),  # x32 ABI numbers
        (_JEQ_K, clone, "flags", None),
        (_JEQ_K, unshare, "flags", None),
        (_JEQ_K, clone3, "enosys", None),
    ]
    prog += [(_JEQ_K, nr, "deny", None) for nr in _DENIED[arch].values()]
    prog += [
        (_RET_K, _RET_ALLOW, None, None),
        ("label", "enosys"),
        (_RET_K, _RET_ERRNO | _ENOSYS, None, None),
        ("label", "deny"),
        (_RET_K, _RET_ERRNO | _EPERM, None, None),
        ("label", "flags"),
        (_LD_W_ABS, 16, None, None),  # low word of the first argument (the flags)
        (_JSET_K, CLONE_NEWUSER, "new_user", None),
        (_RET_K, _RET_ALLOW, None, None),
        ("label", "new_user"),
        (_RET_K, _RET_ERRNO | _EPERM, None, None),
    ]
    return _assemble(prog)


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
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
