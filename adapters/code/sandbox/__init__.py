"""Execute untrusted, model-written programs: fast, contained, and unforgeable verdicts.

PF-PPO's true score for a generated program is the fraction of its unit
tests it passes, and under RL a policy is optimised against that verdict,
so the verdict must not be forgeable. The package has one job per module:

- ``pool``: the public entry points and a pool of warm sandbox workers;
- ``worker``: one worker process seen from the parent (start, protocol, stop);
- ``programs``: program layout, per-task compiled tests, choice of mode;
- ``zygote``: the worker process (forks and watches each run);
- ``verdict``: decides a run's verdict from what the worker observed;
- ``isolation``: namespaces, hidden paths and removed modules;
- ``seccomp``: the system-call filter;
- ``runner``: the untrusted side, the process holding prompt + completion;
- ``evaluator``: the trusted side, the judge process running the tests;
- ``codec``: the plain-data encoding between the two;
- ``instrument``: the test as syntax (find, count, instrument, split).

``SANDBOX.md`` next to this package is the threat model.
"""

from .pool import (
    STATUSES,
    ExecResult,
    SandboxPool,
    execute,
    execute_many,
    sandbox_capabilities,
    score_completions,
)
from .programs import MODES, build_program, count_tests, task_mode

__all__ = [
    "MODES",
    "STATUSES",
    "ExecResult",
    "SandboxPool",
    "build_program",
    "count_tests",
    "execute",
    "execute_many",
    "sandbox_capabilities",
    "score_completions",
    "task_mode",
]
