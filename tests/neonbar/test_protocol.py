"""The wire codec: round trips for every message kind, and garbage never escapes ProtocolError."""

from __future__ import annotations

import math
import re
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonbar.protocol import (
    CLIENT_MESSAGES,
    EVENT_KINDS,
    SERVER_MESSAGES,
    ErrorCode,
    F,
    ProtocolError,
    decode_client,
    decode_server,
    encode,
    error_message,
    pack_absolute,
    pack_delta,
    unpack_absolute,
    unpack_delta,
    validate_server,
)
from neonbar.text import TextRefused, check_name
from server.room import fast_input

# Text the rules of neonbar/text.py accept (no controls, format characters, separators; plain
# letters only, so the same strings pass as names).
_TEXT_CHARS = st.characters(
    min_codepoint=32,
    max_codepoint=0x2FFF,
    exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Zs", "Mn", "Me"),
)


def field_values(spec: F) -> st.SearchStrategy[Any]:
    """Values a schema field accepts (already in canonical form)."""
    if spec.kind == "int":
        lo = int(spec.lo) if spec.lo is not None else -(2**31)
        hi = int(spec.hi) if spec.hi is not None else 2**31
        return st.integers(lo, hi)
    if spec.kind == "float":
        lo = spec.lo if spec.lo is not None else -1e9
        hi = spec.hi if spec.hi is not None else 1e9
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind == "color":
        return st.from_regex(r"\A#[0-9a-f]{6}\Z")
    if spec.kind == "bytes":
        return st.binary(max_size=min(spec.max_len or 64, 64))
    if spec.kind == "ints":
        return st.lists(st.integers(-(2**31), 2**31), max_size=spec.max_len or 8)
    if spec.kind == "any":
        return st.just([])
    if spec.choices:
        return st.sampled_from(spec.choices)
    max_len = min(spec.max_len or 64, 64)
    if spec.pattern:
        alphabet = "ABCxyz019_.-" if "_.-" in spec.pattern else "abc"
        strategy = st.text(alphabet, min_size=1, max_size=max_len)
        return strategy.filter(lambda s: re.match(spec.pattern or "", s) is not None)
    return st.text(_TEXT_CHARS, min_size=1, max_size=max_len).filter(_shows_as_a_name)


def _shows_as_a_name(text: str) -> bool:
    try:
        check_name(text)
    except TextRefused:
        return False
    return True


def message(msg_type: str, schema: dict[str, F], extra: dict[str, F] | None = None):
    fields = {**schema, **(extra or {})}
    required = {k: field_values(v) for k, v in fields.items() if v.required}
    optional = {k: field_values(v) for k, v in fields.items() if not v.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda d: {"t": msg_type, **d})


CLIENT = st.one_of(*(message(t, s) for t, s in CLIENT_MESSAGES.items()))
SERVER_EVENTS = st.one_of(
    *(message("event", SERVER_MESSAGES["event"], s).map(lambda m, k=k: {**m, "kind": k})
      for k, s in ((k, e.fields) for k, e in EVENT_KINDS.items()))
)  # fmt: skip
SERVER = st.one_of(
    *(message(t, s) for t, s in SERVER_MESSAGES.items() if t != "event"), SERVER_EVENTS
)


@settings(max_examples=200, deadline=None)
@given(CLIENT)
def test_every_client_message_round_trips(msg: dict[str, Any]):
    assert decode_client(encode(msg)) == msg


@settings(max_examples=150, deadline=None)
@given(SERVER)
def test_every_server_message_round_trips(msg: dict[str, Any]):
    assert decode_server(encode(msg), max_bytes=1 << 20) == msg


def test_strategies_cover_every_kind():
    assert set(CLIENT_MESSAGES) >= {"hello", "input", "chat", "drink", "bye"}
    assert {"join", "leave", "chat", "drink"} <= set(EVENT_KINDS)


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes):
    for decode in (decode_client, decode_server):
        try:
            decode(data)
        except ProtocolError as exc:
            assert isinstance(exc.code, ErrorCode) and exc.message
            validate_server(error_message(exc))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=250, deadline=None)
@given(
    st.sampled_from(sorted(CLIENT_MESSAGES)),
    st.dictionaries(
        st.sampled_from(["v", "room", "name", "seq", "ack", "x", "yaw", "text", "ct", "avatar"]),
        msgpack_values,
        max_size=6,
    ),
)
def test_well_formed_maps_with_wrong_fields_raise_only_protocol_errors(kind, fields):
    data = msgpack.packb({"t": kind, **fields}, use_bin_type=True)
    try:
        msg = decode_client(data)
    except ProtocolError:
        return
    for name, value in msg.items():
        if isinstance(value, float):
            assert math.isfinite(value), name


def test_text_frames_and_oversize_frames_have_their_codes():
    with pytest.raises(ProtocolError) as info:
        decode_client("a text frame")  # type: ignore[arg-type]
    assert info.value.code == ErrorCode.BAD_FRAME
    with pytest.raises(ProtocolError) as info:
        decode_client(encode({"t": "chat", "text": "x" * 5000}))
    assert info.value.code == ErrorCode.TOO_LARGE


@given(
    st.lists(
        st.tuples(
            st.integers(0, 65535), st.integers(-128, 127), st.integers(-128, 127),
            st.integers(-32768, 32767),
        ),
        max_size=50,
    )
)  # fmt: skip
def test_delta_sections_round_trip(rows):
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows, strict=True)] or [np.zeros(0)] * 4
    out = unpack_delta(pack_delta(*cols))
    for a, b in zip(out, cols, strict=True):
        assert a.tolist() == b.tolist()


@given(
    st.lists(
        st.tuples(
            st.integers(0, 65535), st.integers(-32768, 32767), st.integers(-32768, 32767),
            st.integers(0, 65535),
        ),
        max_size=50,
    )
)  # fmt: skip
def test_absolute_sections_round_trip(rows):
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows, strict=True)] or [np.zeros(0)] * 4
    out = unpack_absolute(pack_absolute(*cols))
    for a, b in zip(out, cols, strict=True):
        assert a.tolist() == b.tolist()


def test_partial_sections_are_protocol_errors():
    with pytest.raises(ProtocolError):
        unpack_delta(b"\x00" * 7)
    with pytest.raises(ProtocolError):
        unpack_absolute(b"\x00" * 9)


# The server's fast path for `input` frames must agree with decode_client wherever it answers.

INPUT_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "t": st.sampled_from(["input", "chat", 3]),
        "seq": st.integers(-2, 2**32 + 1) | st.booleans() | st.floats(allow_nan=False),
        "ack": st.integers(-3, 2**32 + 1) | st.none(),
        "x": st.integers(-33000, 33000),
        "y": st.integers(-33000, 33000) | st.text(max_size=2),
        "yaw": st.integers(-2, 65537),
        "extra": st.integers(-100, 100),
    },
)


@settings(max_examples=500, deadline=None)
@given(INPUT_FIELDS)
def test_fast_input_agrees_with_decode_client(fields):
    data = msgpack.packb(fields, use_bin_type=True)
    fast = fast_input(data)
    try:
        full = decode_client(data)
    except ProtocolError:
        full = None
    if fast is not None:
        assert fast == full
    elif full is not None:
        assert set(fields) != {"t", "seq", "ack", "x", "y", "yaw"} or any(
            isinstance(v, bool) for v in fields.values()
        )
