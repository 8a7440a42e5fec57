"""The runner: expand a config into runs, execute the unfinished ones, record results.

The output folder (its layout, the integrity of its records, its lock) is
:mod:`rewardfilter.experiments.outdir`'s job. A run is done when its records
and stamped final record are committed, so a SIGKILL at any moment loses no
finished run and counts none twice; a run killed half-way is redone from a
clean slate. Workers of the local pool die with the driver (``PR_SET_PDEATHSIG`` plus a
parent watchdog), so a killed runner leaves no orphans computing stale runs.

One folder, one sweep, one runner: an OUT holding a different config is refused
(naming what differs) unless ``--restart``; a second runner on the same OUT is
refused while the first holds the lock; a finished sweep in a read-only OUT
re-runs as a no-op, and any write it would need fails with one clear message.

Determinism: each run seeds Python, numpy and torch from its own seed and
uses one torch thread, in a fresh worker, so the same run gives the same
records on the local pool and on Ray.
"""

from __future__ import annotations

import errno
import os
import random
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardfilter.experiments.config import ExperimentConfig, load_config
from rewardfilter.experiments.outdir import (  # noqa: F401  (re-exported: the runner's API)
    RunnerError,
    check_same_config,
    commit,
    finished_runs,
    folder_lock,
    pending,
    prepare,
    read_final,
    start_over,
    unwritable_message,
)
from rewardfilter.io import append_jsonl, atomic_write_text, jsonable, read_jsonl

#: environment every worker gets before torch or numpy's BLAS start their thread pools
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass
class RunOptions:
    """How to execute a config; each field's help is also the command line's help."""

    backend: str = field(
        default="local",
        metadata={
            "help": "'local': a pool of processes on this machine; 'ray': one Ray task per run.",
            "choices": ("local", "ray"),
        },
    )
    address: str | None = field(
        default=None,
        metadata={
            "help": "Ray cluster address (e.g. 'auto' or 'ray://host:10001'); default: start a local Ray. "
            "A cluster needs OUT on a filesystem its nodes share."
        },
    )
    workers: int | None = field(
        default=None,
        metadata={
            "help": "Runs at a time; default one per CPU core. With --backend ray, the CPUs of the "
            "local Ray it starts (a cluster given by --address uses all of its CPUs)."
        },
    )
    out: str | None = field(
        default=None, metadata={"help": "Output folder; default runs/<config name>."}
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})
    restart: bool = field(
        default=False,
        metadata={
            "help": "Start over: delete the runs, config and manifest already in OUT. Without it, "
            "an OUT holding a sweep of a different config is refused, naming what differs."
        },
    )


@dataclass
class RunSummary:
    """What a call to :func:`run_experiment` did."""

    out: Path
    total: int
    skipped: int
    completed: list[str]
    failed: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.failed


# --------------------------------------------------------------------------- worker side


def _die_with_parent() -> None:
    """Make this worker exit when the driver dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def _worker_init() -> None:
    os.environ.update(THREAD_ENV)
    _die_with_parent()


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (if the domain loaded it) torch; one torch thread for determinism."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- third-party code (SB3, gym) still reads the global state
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        torch.set_num_threads(1)


def execute_run(run: dict[str, Any]) -> dict[str, Any]:
    """Run one grid cell in this process and return its records and final record.

    Called in a pool worker or a Ray task. It appends each record to the run's
    ``progress.jsonl`` (for the progress bar, best effort) and returns
    everything, so the driver alone commits results.
    """
    from rewardfilter.experiments.domains import RECORD_KEYS, resolve

    os.environ.update(THREAD_ENV)
    fn = resolve(run["domain"])  # imports the domain (and torch, if it uses it) before seeding
    seed_everything(int(run["seed"]))
    progress = None
    if run.get("out_dir"):
        Path(run["out_dir"]).mkdir(parents=True, exist_ok=True)
        progress = Path(run["out_dir"]).parent / "progress.jsonl"
        progress.write_text("")
    records: list[dict[str, Any]] = []

    def log(record: dict[str, Any]) -> None:
        missing = [k for k in ("step", "true_return") if k not in record]
        if missing:
            raise ValueError(f"An evaluation record needs {missing}; got keys {sorted(record)}.")
        rec = {k: float("nan") for k in RECORD_KEYS} | jsonable(dict(record))
        records.append(rec)
        if progress is not None:
            append_jsonl(progress, rec)

    start, cpu_start = time.perf_counter(), time.process_time()
    final = fn(run, log)
    final = {k: float("nan") for k in RECORD_KEYS} | jsonable(
        dict(final or (records[-1] if records else {}))
    )
    final["wall_s"] = round(time.perf_counter() - start, 3)
    final["cpu_s"] = round(time.process_time() - cpu_start, 3)  # wall time on an idle core
    return {"run_id": run["run_id"], "records": records, "final": final}


# --------------------------------------------------------------------------- driver side


class _Progress:
    """A tqdm bar of finished runs whose postfix shows how far the current runs are."""

    def __init__(self, out: Path, runs: list[dict[str, Any]], total: int, done: int, enabled: bool):
        from tqdm.auto import tqdm

        self.out = out
        self.pending = {r["run_id"]: r for r in runs}
        self.bar = tqdm(
            total=total,
            initial=done,
            unit="run",
            desc="runs",
            disable=not enabled,
            dynamic_ncols=True,
        )

    def finished(self, run_id: str) -> None:
        self.pending.pop(run_id, None)
        self.bar.update(1)
        self.refresh()

    def refresh(self) -> None:
        if self.bar.disable:
            return
        current = []
        for run_id, run in self.pending.items():
            path = self.out / "runs" / run_id / "progress.jsonl"
            if not path.exists():
                continue
            recs = read_jsonl(path, errors="skip")  # a worker may be appending right now
            step = recs[-1]["step"] if recs else 0
            label = f"{run['task_label']}|{run['method']['name']}|s{run['seed']}"
            current.append(f"{label} {100 * step / max(1, run['budget']['steps']):.0f}%")
        self.bar.set_postfix_str(
            "; ".join(current[:4]) + (" ..." if len(current) > 4 else ""), refresh=True
        )

    def close(self) -> None:
        self.bar.close()


def _run_local(todo, workers, on_done, on_error, progress) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    before = set(mp.active_children())
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
    )
    try:
        futures = {pool.submit(execute_run, run): run["run_id"] for run in todo}
        while futures:
            done, _ = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in done:
                run_id = futures.pop(fut)
                try:
                    on_done(fut.result())
                except Exception as exc:  # a failed run must not stop the others
                    on_error(run_id, exc)
            progress.refresh()
    except BaseException:
        # Ctrl-C (or any error here): stop now. A plain shutdown would first run every queued
        # run; the workers are ours, so end them (unfinished runs are redone next time).
        for proc in set(mp.active_children()) - before:  # the pool's workers (public API only)
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail within ``timeout`` seconds, naming ``address``, if no Ray cluster can be there.

    Ray itself retries an unreachable address for minutes with warnings only.
    ``auto`` (a cluster started on this machine) is left to Ray, which answers
    at once; ``host:port`` and ``ray://host:port`` must accept a TCP connection.
    """
    import socket

    if address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"The 'address' option must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT'; got {address!r}."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"No Ray cluster reachable at --address {address!r} ({exc}); start one with "
            "'ray start --head' or check the host and port."
        ) from None


def _run_ray(todo, workers, address, on_done, on_error, progress) -> None:
    from rewardfilter.extras import check_modules

    check_modules(("ray",), "ray", "The 'ray' backend")
    import ray

    if address:
        check_ray_address(address)

    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": "warning",
            "runtime_env": {"env_vars": dict(THREAD_ENV)},
        }
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise ConnectionError(
                f"Cannot connect to Ray at --address {address!r}: {exc}"
            ) from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        refs = {remote.remote(run): run["run_id"] for run in todo}
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in ready:
                    run_id = refs.pop(ref)
                    try:
                        on_done(ray.get(ref))
                    except Exception as exc:
                        on_error(run_id, exc)
                progress.refresh()
        except BaseException:
            for ref in refs:  # on a cluster the tasks would otherwise run on without us
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


def run_experiment(
    config: ExperimentConfig | str | Path,
    options: RunOptions | None = None,
    **overrides: Any,
) -> RunSummary:
    """Execute every unfinished run of ``config``; return what was done.

    Parameters
    ----------
    config : ExperimentConfig or path
        The experiment; a path is loaded and validated first, so an invalid
        config fails before anything runs.
    options : RunOptions, optional
        Backend, workers, output folder; keyword ``overrides`` set its fields.
    """
    options = options or RunOptions()
    for key, value in overrides.items():
        setattr(options, key, value)
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    if options.backend not in ("local", "ray"):
        raise ValueError(f"The 'backend' option must be 'local' or 'ray'; got {options.backend!r}.")
    if options.workers is not None and options.workers < 1:
        raise ValueError(f"The 'workers' option must be an int >= 1; got {options.workers!r}.")
    from rewardfilter.experiments.domains import check_requirements

    check_requirements(config.domain)  # a missing extra: one message, before anything is written
    if options.backend == "ray":
        from rewardfilter.extras import check_modules

        check_modules(("ray",), "ray", "The 'ray' backend")
        if options.address:
            check_ray_address(options.address)
    out = Path(options.out or Path("runs") / config.name)
    if not options.restart:
        check_same_config(config, out)
        runs = config.expand(out)
        if out.is_dir() and not pending(runs, out):  # nothing to write: works read-only too
            return RunSummary(out=out, total=len(runs), skipped=len(runs), completed=[], failed={})
    try:
        out.mkdir(parents=True, exist_ok=True)
        with folder_lock(out):
            if options.restart:
                start_over(out)
            return _execute(config, out, options)
    except PermissionError as exc:  # also EROFS, as OSError below
        raise RunnerError(unwritable_message(out, exc)) from None
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES):
            raise RunnerError(unwritable_message(out, exc)) from None
        raise


def _execute(config: ExperimentConfig, out: Path, options: RunOptions) -> RunSummary:
    """Prepare ``out`` and run what is unfinished (the caller holds the folder's lock)."""
    runs, todo = prepare(config, out)
    skipped = len(runs) - len(todo)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = options.workers or cores or 1
    completed: list[str] = []
    failed: dict[str, str] = {}
    progress = _Progress(out, todo, len(runs), skipped, options.progress)

    def on_done(result: dict[str, Any]) -> None:
        commit(out, result)
        completed.append(result["run_id"])
        progress.finished(result["run_id"])

    def on_error(run_id: str, exc: BaseException) -> None:
        failed[run_id] = f"{type(exc).__name__}: {exc}"
        # the worker's traceback travels as the exception's cause; keep all of it for debugging
        trace = "".join(traceback.format_exception(exc))
        atomic_write_text(out / "runs" / run_id / "error.txt", trace)
        progress.finished(run_id)

    try:
        if todo:
            if options.backend == "local":
                _run_local(todo, min(workers, len(todo)), on_done, on_error, progress)
            else:
                _run_ray(todo, workers, options.address, on_done, on_error, progress)
    finally:
        progress.close()
    return RunSummary(out=out, total=len(runs), skipped=skipped, completed=completed, failed=failed)
