"""The output folder of a sweep: its layout, its integrity, and one runner at a time.

Layout of an output folder::

    OUT/config.yaml                 the validated config, as run
    OUT/manifest.json               the run ids of the grid (what ``report`` reads)
    OUT/.lock                       flock'ed by the runner writing here (holds its pid)
    OUT/runs/<run_id>/run.json      the run's full definition (one expanded grid cell)
    OUT/runs/<run_id>/progress.jsonl  live evaluation records, appended while it runs
    OUT/runs/<run_id>/records.jsonl the evaluation records, written when the run ends
    OUT/runs/<run_id>/final.json    the final record, stamped with records.jsonl's line count
                                    and SHA-256; it marks the run done
    OUT/runs/<run_id>/scratch/      the domain's ``out_dir`` (checkpoints)

Only the driver writes ``records.jsonl`` and ``final.json``, each atomically
(:func:`rewardfilter.io.atomic_write_text`), records first and the final record
last. A run is finished iff ``final.json`` parses and ``records.jsonl`` matches
its stamp, so a restart skips exactly the finished runs and redoes one killed
half-way or whose files were damaged -- no run is lost and none counted twice.

One folder, one sweep, one runner: an OUT holding a different config is refused
(naming what differs) unless the caller starts over; a second runner is refused
while the first holds the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rewardfilter.experiments.schema import ExperimentConfig
from rewardfilter.io import JSONLError, atomic_write_text, read_jsonl


class RunnerError(RuntimeError):
    """The output folder cannot be used as asked (another config, another runner, read-only)."""


def read_final(run_dir: Path) -> dict[str, Any] | None:
    """The final record of a finished run, or None if the run is not (wholly) finished.

    A run is finished when ``final.json`` parses and its ``records.jsonl``
    is whole: every line parses and, for runs committed with an integrity
    stamp, the file's line count and SHA-256 are those stamped into
    ``final.json``. A corrupt or half-written file makes the run unfinished,
    so it is redone rather than reported with records silently missing.
    """
    try:
        final = json.loads((run_dir / "final.json").read_text())
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(final, dict):
        return None
    try:
        data = (run_dir / "records.jsonl").read_bytes()
        records = read_jsonl(run_dir / "records.jsonl", missing_ok=False)
    except (FileNotFoundError, JSONLError):
        return None
    stamp = final.get("records_sha256")
    if stamp is not None and (
        stamp != hashlib.sha256(data).hexdigest() or final.get("n_records") != len(records)
    ):
        return None
    return final


def config_differences(old: Any, new: Any, path: str = "") -> list[str]:
    """``key.path: old -> new`` for every leaf where two plain-data configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(dict.fromkeys([*old, *new])):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{sub}: {old[key]!r} -> (absent)")
            else:
                out += config_differences(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in config_differences(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [f"{path or '(config)'}: {old!r} -> {new!r}"]


def _snapshot(out: Path) -> Any:
    """The config snapshot of a previous sweep in ``out`` (None if there is none)."""
    import yaml

    try:
        return yaml.safe_load((out / "config.yaml").read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunnerError(
            f"The output folder {str(out)!r} holds an unreadable config.yaml ({exc}); "
            "use --restart to start over there, or choose another --out."
        ) from None


def check_same_config(config: ExperimentConfig, out: Path) -> None:
    """Refuse an ``out`` that holds a sweep of a different config, naming what differs."""
    old = _snapshot(out)
    if old is None:
        return
    diffs = config_differences(old, config.to_dict())
    if diffs:
        shown = "\n".join(f"  {d}" for d in diffs[:12]) + ("\n  ..." if len(diffs) > 12 else "")
        raise RunnerError(
            f"The output folder {str(out)!r} holds a sweep of a different config "
            f"({len(diffs)} difference(s), previous -> this one):\n{shown}\n"
            "Use --restart to delete its runs and start over, or choose another --out."
        )


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``out/.lock`` while a runner writes there.

    A second runner on the same folder fails at once with :class:`RunnerError`
    (naming the first one's pid) instead of computing every run twice and
    deleting records the first one just committed.
    """
    import fcntl

    fh = open(out / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            raise RunnerError(
                f"Another runner (pid {pid}) is running in {str(out)!r}; wait for it to finish "
                "(re-running then skips what it finished), or choose another --out."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()  # releases the lock


def pending(runs: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """The runs of ``runs`` not (wholly) finished in ``out``."""
    return [r for r in runs if read_final(out / "runs" / r["run_id"]) is None]


def prepare(
    config: ExperimentConfig, out: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write the config snapshot and manifest; return (all runs, runs still to do).

    An unfinished run (no final record, or a corrupt one) starts from a clean
    slate: its records, final record, progress and error are removed.
    """
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    runs = config.expand(out)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    atomic_write_text(out / "manifest.json", json.dumps([r["run_id"] for r in runs], indent=1))
    todo = pending(runs, out)
    for run in todo:
        run_dir = out / "runs" / run["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("final.json", "progress.jsonl", "records.jsonl", "error.txt"):
            (run_dir / stale).unlink(missing_ok=True)
        atomic_write_text(run_dir / "run.json", json.dumps(run, indent=1))
    return runs, todo


def commit(out: Path, result: dict[str, Any]) -> None:
    """Write a finished run's results: records first, the final record (the done marker) last."""
    run_dir = out / "runs" / result["run_id"]
    text = "".join(json.dumps(r) + "\n" for r in result["records"])
    atomic_write_text(run_dir / "records.jsonl", text)
    stamp = {"n_records": len(result["records"])}
    stamp["records_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    atomic_write_text(run_dir / "final.json", json.dumps({**result["final"], **stamp}, indent=1))
    (run_dir / "progress.jsonl").unlink(missing_ok=True)


def unwritable_message(out: Path, exc: OSError) -> str:
    return (
        f"Cannot write to the output folder {str(out)!r} ({exc.strerror or exc}); "
        "a finished sweep can still be read ('rewardfilter report DIR --out ELSEWHERE'); "
        "to run, choose a writable --out."
    )


def start_over(out: Path) -> None:
    """``--restart``: delete the previous sweep's runs, config and manifest in ``out``."""
    import shutil

    if (out / "runs").exists():
        shutil.rmtree(out / "runs")
    for name in ("config.yaml", "manifest.json"):
        (out / name).unlink(missing_ok=True)


def runs_dir(folder: str | Path, param: str) -> Path:
    """``folder/runs`` of a sweep folder (``rewardfilter run --out``); FileNotFoundError naming ``param`` if absent."""
    runs = Path(folder) / "runs"
    if not runs.is_dir():
        raise FileNotFoundError(
            f"The {param!r} argument must name a sweep folder (rewardfilter run --out FOLDER); "
            f"{folder} has no runs/ folder."
        )
    return runs


def finished_runs(out: str | Path, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Load every finished run under ``out`` (those of its manifest by default).

    Each item: the run definition plus ``records`` and ``final``.
    """
    out = Path(out)
    if run_ids is None:
        manifest = out / "manifest.json"
        if manifest.exists():
            run_ids = json.loads(manifest.read_text())
        else:
            run_ids = sorted(p.name for p in (out / "runs").glob("*") if p.is_dir())
    loaded = []
    for run_id in run_ids:
        run_dir = out / "runs" / run_id
        final = read_final(run_dir)
        if final is None:
            continue
        run = json.loads((run_dir / "run.json").read_text())
        run["records"] = read_jsonl(run_dir / "records.jsonl", missing_ok=False)
        run["final"] = final
        loaded.append(run)
    return loaded
