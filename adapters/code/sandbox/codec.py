"""The plain-data codec: the only values that cross between the evaluator and the program.

Plain data is ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``bytes`` and ``list``, ``tuple``, ``dict``, ``set``, ``frozenset`` of plain
data, of these exact types (no subclasses), with a bound on nesting depth
and on encoded size. Anything else is not plain and cannot be encoded.

The encoding is tagged JSON: scalars are JSON scalars (``float`` keeps
``repr`` precision, NaN and infinities included), and every container is a
JSON array whose first item is a one-letter tag (``l`` list, ``t`` tuple,
``s`` set, ``f`` frozenset, ``d`` dict as ``k1, v1, k2, v2, ...``, ``b``
bytes as base64, ``c`` complex as ``re, im``). :func:`decode` builds only
builtin values from it and runs no code of the sender's: there is nothing
like pickle's ``__reduce__`` to call, no attribute is looked up, and a
malformed, too large or too deep message raises :class:`CodecError`.

Standard library only: the sandbox worker imports this file directly.
"""

from __future__ import annotations

import base64
import json

__all__ = ["MAX_BYTES", "MAX_DEPTH", "CodecError", "decode", "encode"]

#: Largest encoded message accepted, in bytes.
MAX_BYTES = 8 << 20
#: Deepest nesting of containers accepted (a flat list has depth 1).
MAX_DEPTH = 64

_SCALARS = (type(None), bool, int, float, str)
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=True, check_circular=False).encode
_loads = json.JSONDecoder().decode


class CodecError(ValueError):
    """A value is not plain data, or a message is not a valid encoding of one."""


def _tree(x, depth: int):
    t = type(x)
    if t in _SCALARS:
        if t is str and len(x) > MAX_BYTES:
            raise CodecError(f"a string of {len(x)} characters is larger than allowed")
        return x
    if depth >= MAX_DEPTH:
        raise CodecError(f"nested deeper than {MAX_DEPTH} levels (or self-referencing)")
    d = depth + 1
    if t is list:
        return ["l", *[_tree(v, d) for v in x]]
    if t is tuple:
        return ["t", *[_tree(v, d) for v in x]]
    if t is dict:
        out = ["d"]
        for k, v in x.items():
            out.append(_tree(k, d))
            out.append(_tree(v, d))
        return out
    if t is set:
        return ["s", *[_tree(v, d) for v in x]]
    if t is frozenset:
        return ["f", *[_tree(v, d) for v in x]]
    if t is bytes:
        if len(x) > MAX_BYTES:
            raise CodecError(f"{len(x)} bytes are more than allowed")
        return ["b", base64.b64encode(x).decode("ascii")]
    if t is complex:
        return ["c", x.real, x.imag]
    raise CodecError(f"a value of type {t.__name__} is not plain data")


def encode(value, *, max_bytes: int = MAX_BYTES) -> bytes:
    """Encode plain data; :class:`CodecError` if it is not plain, too deep or too large."""
    try:
        text = _dumps(_tree(value, 0))
    except RecursionError:
        raise CodecError("nested too deeply") from None
    except ValueError as exc:  # e.g. an int with more digits than int->str allows
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"cannot encode: {exc}") from None
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise CodecError(f"encoded value is {len(data)} bytes, more than {max_bytes}")
    return data


def _build(x, depth: int):
    t = type(x)
    if t in _SCALARS:
        return x
    if t is not list or not x or type(x[0]) is not str:
        raise CodecError("malformed message")
    if depth >= MAX_DEPTH:
        raise CodecError(f"nested deeper than {MAX_DEPTH} levels")
    tag, d = x[0], depth + 1
    if tag == "l":
        return [_build(v, d) for v in x[1:]]
    if tag == "t":
        return tuple(_build(v, d) for v in x[1:])
    if tag == "d":
        if len(x) % 2 == 0:
            raise CodecError("malformed dict")
        return {_build(x[i], d): _build(x[i + 1], d) for i in range(1, len(x), 2)}
    if tag == "s":
        return {_build(v, d) for v in x[1:]}
    if tag == "f":
        return frozenset(_build(v, d) for v in x[1:])
    if tag == "b" and len(x) == 2 and type(x[1]) is str:
        return base64.b64decode(x[1].encode("ascii"), validate=True)
    if tag == "c" and len(x) == 3 and all(type(v) in (int, float) for v in x[1:]):
        return complex(x[1], x[2])
    raise CodecError("malformed message")


def decode(data: bytes, *, max_bytes: int = MAX_BYTES):
    """Decode a message from :func:`encode` into builtin values; :class:`CodecError` if invalid."""
    if type(data) is not bytes or len(data) > max_bytes:
        raise CodecError("message too large or not bytes")
    try:
        return _build(_loads(data.decode("utf-8", "surrogatepass")), 0)
    except CodecError:
        raise
    except (ValueError, TypeError, RecursionError, UnicodeError) as exc:
        # invalid JSON or UTF-8, unhashable set items or dict keys, nesting too deep for the parser
        raise CodecError(f"malformed message: {type(exc).__name__}") from None
