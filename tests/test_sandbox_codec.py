"""The plain-data codec: exact round trips, and nothing else gets through either way."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardfilter.adapters.code.sandbox.codec import (
    MAX_BYTES,
    MAX_DEPTH,
    CodecError,
    decode,
    encode,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.complex_numbers(allow_nan=False)
    | st.text()
    | st.binary()
)
hashables = st.none() | st.booleans() | st.integers() | st.text() | st.binary()
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=20,
)


def _same(a, b) -> bool:
    """Equal, and of exactly the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=200, deadline=None)
@given(plain)
def test_round_trip_is_exact(value):
    assert _same(decode(encode(value)), value)


def test_special_floats_and_types_survive():
    for v in (-0.0, math.inf, -math.inf, 1e-320, 0.1, 2**200, True, (1,), [1], {1: (2.0, b"x")}):
        assert _same(decode(encode(v)), v)
    assert math.copysign(1, decode(encode(-0.0))) == -1
    assert math.isnan(decode(encode(math.nan)))
    assert decode(encode("\u2028\x00\ud800")) == "\u2028\x00\ud800"


class _Int(int):
    pass


class _Str(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        object(),
        _Int(3),
        _Str("x"),
        [_Int(3)],
        {"k": object()},
        bytearray(b"3"),
        (i for i in range(3)),
        range(3),
        len,
        ValueError("x"),
        {(1, [2]): 3} if False else {1: [object()]},
    ],
)
def test_non_plain_values_are_refused(value):
    with pytest.raises(CodecError):
        encode(value)


def test_self_referencing_too_deep_and_too_large_are_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(CodecError):
        encode(loop)
    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CodecError):
        encode(deep)
    ok: list = []
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    assert decode(encode(ok)) == ok
    with pytest.raises(CodecError):
        encode("x" * (MAX_BYTES + 1))
    with pytest.raises(CodecError):
        encode([b"x" * (MAX_BYTES // 2)] * 2)
    with pytest.raises(CodecError):
        encode(10**5000)  # more digits than int -> str allows


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{}",
        b'{"a": 1}',
        b"[]",
        b'["z", 1]',
        b'["d", 1]',
        b'["s", ["l"]]',  # an unhashable set member
        b'["d", ["l"], 1]',  # an unhashable key
        b'["b", "***"]',
        b'["c", "1", 2]',
        b'["l", [1]]',  # an untagged array inside
        b"[" * 100_000 + b"]" * 100_000,
        b'["l",' * 1000 + b"1" + b"]" * 1000,
        b"\xff\xfe",
        b"nan",
        pickle.dumps(object()),
    ],
)
def test_malformed_messages_are_refused_without_running_anything(data):
    with pytest.raises(CodecError):
        decode(data)


def test_decode_refuses_oversized_input_and_non_bytes():
    with pytest.raises(CodecError):
        decode(b" " * (MAX_BYTES + 1))
    with pytest.raises(CodecError):
        decode("[]")  # type: ignore[arg-type]
