"""Shared file and command-line utilities: one copy of each, used by every layer.

* :func:`atomic_write_text` / :func:`atomic_write_json`: readers see the old
  file or the whole new one, never half of it (temporary file, ``fsync``,
  ``os.replace``);
* :func:`read_jsonl` / :func:`write_jsonl` / :func:`append_jsonl`: JSON Lines,
  with a torn or corrupt line either skipped, counted, or raised as
  :class:`JSONLError` naming the file and the line;
* :func:`jsonable`: numpy scalars and arrays to plain Python, recursively;
* :func:`add_dataclass_arguments`: one ``--flag`` per field of a dataclass
  whose ``metadata["help"]`` is the flag's help (TRL's habit: one source of
  truth), with ``%`` escaped so that argparse never chokes on "95% CIs".

Only the standard library is imported here (numpy is duck-typed), so the
module is as light as ``import rewardfilter``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "JSONLError",
    "add_dataclass_arguments",
    "append_jsonl",
    "atomic_write_json",
    "atomic_write_text",
    "escape_help",
    "jsonable",
    "read_jsonl",
    "run_dataclass_cli",
    "write_jsonl",
]


# --------------------------------------------------------------------------- atomic writes


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one.

    The text goes to a temporary file in the same folder, is flushed to disk
    and then ``os.replace``\\ d over ``path`` (atomic on POSIX). The temporary
    file is removed if anything fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> None:
    """:func:`atomic_write_text` of ``json.dumps(jsonable(obj))``."""
    atomic_write_text(path, json.dumps(jsonable(obj), indent=indent))


def jsonable(value: Any) -> Any:
    """numpy scalars and arrays (anything with ``tolist``) to plain Python, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


# --------------------------------------------------------------------------- JSON Lines


class JSONLError(ValueError):
    """A JSON Lines file with a line that is not one JSON object; names the file and line."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{self.path}, line {line}: {reason}")


def read_jsonl(
    path: str | Path, *, errors: str = "raise", missing_ok: bool = True
) -> list[dict[str, Any]]:
    """The records (JSON objects, one a line) of a JSON Lines file.

    Parameters
    ----------
    path : path
        The file. Blank lines are ignored.
    errors : {"raise", "skip"}
        What a line that is not a JSON object does: ``"raise"`` raises
        :class:`JSONLError` naming the file and line (for results that must
        be whole); ``"skip"`` drops it (for live progress, whose last line a
        writer may be appending right now).
    missing_ok : bool
        A missing file reads as no records (else ``FileNotFoundError``).
    """
    if errors not in ("raise", "skip"):
        raise ValueError(
            f"The 'errors' parameter of read_jsonl must be 'raise' or 'skip'; got {errors!r}"
        )
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise
    out = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
        except (UnicodeDecodeError, ValueError) as exc:
            if errors == "skip":
                continue
            raise JSONLError(path, i, f"not a JSON object ({exc})") from None
        out.append(rec)
    return out


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write ``records`` as JSON Lines, atomically (see :func:`atomic_write_text`)."""
    atomic_write_text(path, "".join(json.dumps(jsonable(r)) + "\n" for r in records))


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a line (not atomic: readers use ``errors="skip"``)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(jsonable(record)) + "\n")


# --------------------------------------------------------------------------- dataclass -> argparse


def escape_help(text: str) -> str:
    """Help text made safe for argparse, which %-formats it ("95% CIs" -> "95%% CIs")."""
    return text.replace("%", "%%")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is a list) of a field type: ``int | None`` -> int, ``list[str]`` -> str."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return (args[0] if args else str), True
    return tp, False


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    *,
    skip: Iterable[str] = (),
    suppress_defaults: bool = False,
    show_default: bool = False,
) -> None:
    """Add one ``--flag`` per init field of dataclass ``cls``, with the field's help.

    The help is ``field.metadata["help"]`` (escaped for argparse); a field's
    ``metadata["choices"]`` become the flag's choices. ``bool`` fields get
    ``--flag/--no-flag``, ``list``/``tuple`` fields take several values, and
    ``int``/``float``/``str`` (optional or not) convert their argument.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
    cls : dataclass type
    skip : field names to leave out (e.g. those given as positionals)
    suppress_defaults : bool
        Use ``argparse.SUPPRESS`` as every default, so that a caller can tell a
        typed flag from one left alone (and let a config file fill the latter).
    show_default : bool
        Append "(default: ...)" to the help.
    """
    skip = set(skip)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        tp, is_list = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        help_text = f.metadata.get("help", "")
        if show_default:
            help_text = f"{help_text} (default: {default!r})"
        kwargs: dict[str, Any] = {
            "default": argparse.SUPPRESS if suppress_defaults else default,
            "help": escape_help(help_text),
        }
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if is_list:
            kwargs["nargs"] = "+"
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        else:
            kwargs["metavar"] = f.name.upper()
        parser.add_argument(flag, type=tp if tp in (int, float, str) else str, **kwargs)


def run_dataclass_cli(
    cls: type,
    run: Any,
    argv: list[str] | None,
    *,
    module: str,
    doc: str,
    positional: str,
    metavar: str,
    nargs: str | None = None,
) -> tuple[Any, int]:
    """The ``main`` of a ``python -m module`` tool: parse ``argv`` into dataclass ``cls``, call ``run``.

    Field ``positional`` becomes the positional argument (its help from the
    field's ``metadata["help"]``); every other init field becomes a flag through
    :func:`add_dataclass_arguments`, default shown; the description is the first
    paragraph of ``doc``. Returns ``(run(config), 0)``, or ``(None, 2)`` after
    printing ``error: ...`` to stderr when building ``cls`` (its own checks) or
    ``run`` raises ValueError or FileNotFoundError (bad input, not a crash).
    """
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    field = {f.name: f for f in dataclasses.fields(cls)}[positional]
    parser.add_argument(
        positional, nargs=nargs, metavar=metavar, help=escape_help(field.metadata.get("help", ""))
    )
    add_dataclass_arguments(parser, cls, skip=(positional,), show_default=True)
    args = vars(parser.parse_args(argv))
    try:
        return run(cls(**args)), 0
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 2
