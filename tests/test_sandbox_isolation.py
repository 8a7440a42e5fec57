"""The untrusted side's kernel-level layers: noexec workdir, no user namespaces, removed modules."""

from __future__ import annotations

import os

import pytest

from rewardfilter.adapters.code.sandbox import execute, sandbox_capabilities
from rewardfilter.adapters.code.sandbox.isolation import seccomp_program

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="namespaces, hidden files and the uid drop need root"
)


#: Run a command from a program (subprocess is not importable in the sandbox): (exit code, output).
RUN = """import os
def run(argv):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        os.dup2(w, 2)
        try:
            os.execv(argv[0], argv)
        except OSError as e:
            os.write(2, repr(e).encode())
        os._exit(126)
    os.close(w)
    out = b""
    while True:
        c = os.read(r, 4096)
        if not c:
            break
        out += c
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out.decode()
"""


def _run(body: str):
    res = execute(RUN + body, timeout=5)
    assert res.passed, f"{res.status}: {res.detail}\n{res.output}"
    return res


def test_workdir_is_noexec():
    _run(
        "import shutil\n"
        "shutil.copy('/bin/true', './t')\n"
        "os.chmod('./t', 0o755)\n"
        "code, out = run(['./t'])\n"
        "assert code == 126 and 'PermissionError' in out, (code, out)\n"
        "assert run(['/bin/true'])[0] == 0  # system binaries still run\n"
    )


def test_new_user_namespaces_and_memfd_are_refused():
    _run(
        "code, out = run(['/usr/bin/unshare', '-U', '-r', '/usr/bin/id', '-u'])\n"
        "assert code != 0 and 'not permitted' in out.lower(), (code, out)\n"
        "try:\n"
        "    os.memfd_create('x')\n"
        "    raise SystemExit('memfd_create worked')\n"
        "except PermissionError:\n"
        "    pass\n"
        "assert os.fork  # plain fork still works (clone without CLONE_NEWUSER)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "assert os.waitpid(pid, 0)[1] == 0\n"
    )
    assert seccomp_program() is not None or os.uname().machine not in ("x86_64", "aarch64")


def test_ctypes_cannot_be_loaded_from_any_python_on_the_machine():
    caps = sandbox_capabilities()
    assert any(p.endswith("/ctypes") for p in caps["removed"]), caps["removed"]
    _run(
        "import glob, sys\n"
        "libs = glob.glob('/usr/lib/python3*') + glob.glob('/usr/local/lib/python3*')\n"
        "libs += glob.glob('/usr/lib/python3*/lib-dynload') + glob.glob('/usr/local/lib/python3*/lib-dynload')\n"
        "sys.path[:0] = libs\n"
        "try:\n"
        "    import ctypes\n"
        "    assert not hasattr(ctypes, 'CDLL'), ctypes\n"
        "except ImportError:\n"
        "    pass\n"
        "for path in glob.glob('/usr/lib/python3*/lib-dynload/_ctypes.*.so'):\n"
        "    assert open(path, 'rb').read() == b''\n"
        "for path in glob.glob('/usr/lib/python3*/ctypes/__init__.py'):\n"
        "    raise SystemExit('ctypes sources visible at ' + path)\n"
    )


def test_ctypes_is_not_even_in_the_interpreter_cache():
    """The worker never loaded ctypes, so ``_imp.create_dynamic`` has no cached copy to hand out."""
    removed = [p for p in sandbox_capabilities()["removed"] if p.endswith(".so")]
    assert removed
    _run(
        "import _imp, sys\n"
        "assert not [m for m in sys.modules if 'ctypes' in m], sorted(sys.modules)\n"
        f"for path in {removed!r}:\n"
        "    class Spec:\n"
        "        name = '_ctypes'\n"
        "        origin = path\n"
        "    try:\n"
        "        _imp.create_dynamic(Spec())\n"
        "        raise SystemExit('got _ctypes from ' + path)\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    assert sandbox_capabilities()["seccomp"] is True


def test_a_reused_workdir_keeps_nothing_of_the_previous_program():
    from rewardfilter.adapters.code.sandbox import SandboxPool

    messy = (
        "import os\n"
        "os.makedirs('a/b/c')\n"
        "open('a/b/c/f', 'w').write('x' * 1000)\n"
        "os.symlink('/etc/passwd', 'link')\n"
        "os.mkfifo('fifo')\n"
        "os.chmod('a/b', 0)\n"
        "os.chmod('.', 0o777)\n"
    )
    check = (
        "import os, stat\n"
        "assert os.listdir('.') == [], os.listdir('.')\n"
        "assert stat.S_IMODE(os.stat('.').st_mode) == 0o700, oct(os.stat('.').st_mode)\n"
    )
    with SandboxPool(1) as pool:
        results = pool.map([messy, check, messy, check])
    assert [r.status for r in results] == ["passed"] * 4, [r.detail for r in results]


def test_a_checkout_under_tmp_still_starts_its_workers(tmp_path, monkeypatch):
    """CI clones under /tmp: the private /tmp of the worker's namespace hid the zygote it re-executes.

    Before the fix every worker of such a checkout exited at start ("sandbox worker exited").
    """
    import shutil
    from pathlib import Path

    from rewardfilter.adapters.code.sandbox import SandboxPool, worker

    assert str(tmp_path).startswith("/tmp/")
    copy = tmp_path / "sandbox"
    copy.mkdir()
    for source in Path(worker.__file__).parent.glob("*.py"):
        shutil.copy(source, copy / source.name)
    monkeypatch.setattr(worker, "_ZYGOTE", copy / "zygote.py")
    with SandboxPool(1) as pool:
        (res,) = pool.map(["print('hi')\n"], timeout=5, memory_mb=512, max_output=1 << 20)
    assert res.passed and res.output.strip() == "hi", (res.status, res.detail, res.output)
