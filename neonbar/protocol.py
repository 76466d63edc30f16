"""The wire protocol: message schemas, codec and validation (spec: docs/protocol.md).

Every frame is one WebSocket binary message holding one MessagePack map whose "t" key names the
message type. This module is sans-I/O: it turns bytes into validated dicts and back, and never
touches a socket. Inbound data is bounded before it is parsed (frame size, string, array and map
lengths), then checked field by field against the schema of its type, so nothing unvalidated
reaches the server's state or the client's scene.

Snapshot bodies are compact columnar binary sections (see `pack_delta` / `pack_absolute`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from neonbar.looks import shipped_looks
from neonbar.text import TextRefused, check_chat, check_name

PROTOCOL_VERSION = 2

# Client -> server frame cap; the server tells clients in `welcome.limits`.
MAX_CLIENT_FRAME_BYTES = 4096
# Server -> client frames are larger (a full snapshot of 4,000 avatars is ~32 KB).
MAX_SERVER_FRAME_BYTES = 1 << 20

TICK_HZ = 20
MAX_NAME_CHARS = 32
MAX_CHAT_CHARS = 500
MAX_ROOM_CHARS = 64
MAX_TOKEN_CHARS = 1024
YAW_UNITS = 65536  # one full turn
CM_PER_M = 100.0

EMOTES = ("cheers", "wave", "clap", "dance")
GARNISHES = ("none", "olive", "neural_olive", "lime", "cherry", "umbrella", "orange_peel")
ROLES = ("host", "collaborator", "viewer")
LEAVE_REASONS = ("left", "timeout", "kicked", "shutdown")


class ErrorCode(IntEnum):
    """Codes carried by `error` messages. The connection stays open after each of them."""

    BAD_FRAME = 4000  # not MessagePack, not a map, or a text frame
    UNKNOWN_TYPE = 4001  # "t" names no message type (for this direction)
    INVALID_FIELD = 4002  # a field is missing, of the wrong type, out of range or too long
    TOO_LARGE = 4003  # frame exceeds limits.max_frame_bytes
    RATE_LIMITED = 4004  # message dropped: over limits.msgs_per_s
    NOT_ALLOWED = 4005  # your role may not do this (viewer chatting, non-host kicking)
    BAD_STATE = 4006  # e.g. a second hello, or an input before welcome
    MUTED = 4007  # a host muted you: chat is refused
    NO_SUCH_AVATAR = 4008  # kick/mute target is not in the room
    NAME_TAKEN = 4009  # profile: someone in the room has that name (or one that looks like it)
    HISTORY_PRUNED = 4010  # resume: events after your `since` were pruned; replay starts later


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (1000-1011 are RFC 6455's own)."""

    NORMAL = 1000  # you said bye
    GOING_AWAY = 1001  # server shutting down; reconnect later with your resume token
    POLICY = 1008  # abuse: repeated invalid frames
    TOO_BIG = 1009  # a frame above twice the frame limit
    INTERNAL = 1011
    PROTOCOL = 4400  # first message was not a valid hello, or the protocol version differs
    AUTH_FAILED = 4401  # invite token forged or malformed
    TOKEN_EXPIRED = 4402
    KICKED = 4403  # a host removed you; do not reconnect automatically
    WRONG_ROOM = 4404  # the token is for another room
    TOO_SLOW = 4408  # you stopped reading; resume with your token
    REPLACED = 4409  # another connection resumed your avatar
    INVITE_FULL = 4410  # this invite already holds its limit of avatars in the room
    ROOM_FULL = 4413
    FLOOD = 4429  # far over the rate limit (messages or ping/pong frames), or joining too fast


class ProtocolError(Exception):
    """A frame that cannot be accepted; `code` is the ErrorCode to report."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref  # the offending message's type, when known


# ---------------------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class F:
    """One field of a message schema.

    kind: "int", "float", "str", "bool", "bytes", "color", "ints" (list of ints), "any".
    """

    kind: str
    required: bool = True
    lo: float | None = None
    hi: float | None = None
    max_len: int | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    pattern: str | None = None


_U32 = 2**32 - 1
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

# client -> server
CLIENT_MESSAGES: dict[str, dict[str, F]] = {
    "hello": {
        "v": F("int", lo=0, hi=65535),
        "room": F("str", max_len=MAX_ROOM_CHARS, pattern=r"^[A-Za-z0-9_.-]+$"),
        "name": F("str", max_len=MAX_NAME_CHARS),
        "token": F("str", required=False, nullable=True, max_len=MAX_TOKEN_CHARS),
        "resume": F("str", required=False, nullable=True, max_len=128),
        "since": F("int", required=False, lo=0, hi=2**53),  # last event seq received
        "color": F("color", required=False),
        "client": F("str", required=False, max_len=64),
    },
    "input": {
        "seq": F("int", lo=0, hi=_U32),
        "ack": F("int", lo=-1, hi=_U32),  # last snapshot tick received, -1 for none
        "x": F("int", lo=-32768, hi=32767),  # centimetres
        "y": F("int", lo=-32768, hi=32767),
        "yaw": F("int", lo=0, hi=YAW_UNITS - 1),
    },
    "ping": {"ct": F("float", lo=-1e12, hi=1e12)},
    "chat": {"text": F("str", max_len=MAX_CHAT_CHARS)},
    "emote": {"emote": F("str", choices=EMOTES)},
    "drink": {
        "drink": F("str", max_len=32),
        "color": F("color"),
        "glow": F("float", lo=0.0, hi=1.0),
        "garnish": F("str", choices=GARNISHES),
    },
    "profile": {
        "name": F("str", required=False, max_len=MAX_NAME_CHARS),
        "color": F("color", required=False),
    },
    "kick": {"avatar": F("int", lo=0, hi=65535)},
    "mute": {"avatar": F("int", lo=0, hi=65535), "muted": F("bool")},
    "look": {"look": F("str", choices=shipped_looks())},
    "bye": {},
}

_AVATAR = F("int", lo=0, hi=65535)


@dataclass(frozen=True)
class EventKind:
    """One kind of reliable event: a typed record the server, the client and the bots share.

    `fields` is the schema of the event's own fields (besides t, seq, st and kind); `kept`
    says whether the room's storage keeps it for later reading (exports, reports, replays).
    The server builds events with `record()`, which checks them against the schema, so what
    is sent is what every peer validates.
    """

    name: str
    fields: Mapping[str, F]
    kept: bool = False
    doc: str = ""

    def record(self, **fields: Any) -> dict[str, Any]:
        """The event's fields, checked: raises ValueError for a field the schema refuses."""
        try:
            checked = _check_fields(f"event {self.name}", self.fields, fields)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        unknown = fields.keys() - self.fields.keys()
        if unknown:
            raise ValueError(f"event {self.name}: no field {', '.join(sorted(unknown))}")
        return checked


# Registries: a feature adds its client messages and event kinds here (docs/room.md).
EVENT_KINDS: dict[str, EventKind] = {}


def event_kind(
    name: str, fields: Mapping[str, F], *, kept: bool = False, doc: str = ""
) -> EventKind:
    """Register (or return the identical registration of) one event kind."""
    kind = EventKind(name, dict(fields), kept, doc)
    known = EVENT_KINDS.get(name)
    if known is not None and (known.fields != kind.fields or known.kept != kind.kept):
        raise ValueError(f"event kind {name!r} is already registered differently")
    return EVENT_KINDS.setdefault(name, kind)


def client_message(name: str, fields: Mapping[str, F]) -> str:
    """Register one client -> server message type (its schema); returns its name."""
    known = CLIENT_MESSAGES.get(name)
    if known is not None and known != dict(fields):
        raise ValueError(f"client message {name!r} is already registered differently")
    CLIENT_MESSAGES[name] = dict(fields)
    return name


def server_message(name: str, fields: Mapping[str, F]) -> str:
    """Register one server -> client message type other than an event; returns its name."""
    known = SERVER_MESSAGES.get(name)
    if known is not None and known != dict(fields):
        raise ValueError(f"server message {name!r} is already registered differently")
    SERVER_MESSAGES[name] = dict(fields)
    return name


def welcome_field(name: str, spec: F) -> str:
    """Register a field a feature adds to `welcome` (optional: older servers omit it)."""
    if spec.required:
        raise ValueError(f"welcome field {name!r} must be optional (required=False)")
    fields = SERVER_MESSAGES["welcome"]
    known = fields.get(name)
    if known is not None and known != spec:
        raise ValueError(f"welcome field {name!r} is already registered differently")
    fields[name] = spec
    return name


JOIN = event_kind(
    "join",
    {
        "avatar": _AVATAR,
        "name": F("str", max_len=MAX_NAME_CHARS),
        "color": F("color"),
        "role": F("str", choices=ROLES),
    },
    doc="an avatar entered the room",
)
LEAVE = event_kind(
    "leave",
    {"avatar": _AVATAR, "reason": F("str", choices=LEAVE_REASONS)},
    doc="an avatar is gone for good",
)
CHAT = event_kind("chat", {"avatar": _AVATAR, "text": F("str", max_len=MAX_CHAT_CHARS)}, kept=True)
EMOTE = event_kind("emote", {"avatar": _AVATAR, "emote": F("str", choices=EMOTES)}, kept=True)
CLINK = event_kind(
    "clink",
    {"avatar": _AVATAR, "with": F("ints", max_len=64)},
    doc="glasses touch: decided by the server from positions when someone cheers",
)
DRINK = event_kind(
    "drink",
    {
        "avatar": _AVATAR,
        "drink": F("str", max_len=32),
        "color": F("color"),
        "glow": F("float", lo=0.0, hi=1.0),
        "garnish": F("str", choices=GARNISHES),
        "tipsy": F("float", lo=0.0, hi=1.0),
    },
    kept=True,
)
PROFILE = event_kind(
    "profile",
    {
        "avatar": _AVATAR,
        "name": F("str", required=False, max_len=MAX_NAME_CHARS),
        "color": F("color", required=False),
    },
)
MUTE = event_kind("mute", {"avatar": _AVATAR, "muted": F("bool"), "by": _AVATAR}, kept=True)
KICK = event_kind("kick", {"avatar": _AVATAR, "by": _AVATAR}, kept=True)
LOOK = event_kind("look", {"look": F("str", choices=shipped_looks()), "by": _AVATAR}, kept=True)
SYSTEM = event_kind("system", {"text": F("str", max_len=MAX_CHAT_CHARS)})

# server -> client
SERVER_MESSAGES: dict[str, dict[str, F]] = {
    "welcome": {
        "v": F("int", lo=0, hi=65535),
        "you": _AVATAR,
        "room": F("str", max_len=MAX_ROOM_CHARS),
        "role": F("str", choices=ROLES),
        "name": F("str", max_len=MAX_NAME_CHARS),
        "resume": F("str", max_len=128),
        "resumed": F("bool"),
        "st": F("float"),
        "tick": F("int", lo=0, hi=_U32),
        "seq": F("int", lo=0, hi=2**53),
        "pos": F("ints", max_len=3),
        "avatars": F("any"),  # list of roster entries, see docs/protocol.md
        "limits": F("any"),  # map of limit name -> number
        "look": F("str", choices=shipped_looks()),
        "layout": F("str", max_len=128),
    },
    "snap": {
        "tick": F("int", lo=0, hi=_U32),
        "base": F("int", lo=-1, hi=_U32),
        "st": F("float"),
        "you": F("ints", max_len=4),  # [x_cm, y_cm, yaw, last input seq applied]
        "d": F("bytes", max_len=6 * 65536),
        "a": F("bytes", max_len=8 * 65536),
    },
    "event": {
        "seq": F("int", lo=1, hi=2**53),
        "st": F("float"),
        "kind": F("str", max_len=32),
        # the remaining fields depend on kind (EVENT_KINDS) and are checked there
    },
    "pong": {"ct": F("float"), "st": F("float")},
    "error": {
        "code": F("int", lo=0, hi=65535),
        "message": F("str", max_len=500),
        "ref": F("str", required=False, nullable=True, max_len=32),
    },
}


def _fail(msg_type: str, text: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_FIELD, f"{msg_type}: {text}", ref=msg_type)


def _check_field(msg_type: str, name: str, spec: F, value: Any) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise _fail(msg_type, f"{name} must not be null")
    kind = spec.kind
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(msg_type, f"{name} must be an integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(msg_type, f"{name} must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise _fail(msg_type, f"{name} must be finite")
    elif kind == "str":
        if not isinstance(value, str):
            raise _fail(msg_type, f"{name} must be a string")
        if not value.strip():
            raise _fail(msg_type, f"{name} must not be empty")
        try:
            # Fields called "name" follow the name rules, all other text the chat rules
            # (neonbar/text.py): nothing that hides or reorders text, no invisible names.
            (check_name if name == "name" else check_chat)(value)
        except TextRefused as exc:
            raise _fail(msg_type, f"{name}: {exc}") from None
        if spec.choices is not None and value not in spec.choices:
            raise _fail(msg_type, f"{name} must be one of {', '.join(spec.choices)}")
        if spec.pattern is not None and not re.match(spec.pattern, value):
            raise _fail(msg_type, f"{name} has characters that are not allowed")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _fail(msg_type, f"{name} must be true or false")
    elif kind == "bytes":
        if not isinstance(value, bytes):
            raise _fail(msg_type, f"{name} must be binary")
    elif kind == "color":
        if not isinstance(value, str) or not _COLOR.match(value):
            raise _fail(msg_type, f"{name} must be a colour '#rrggbb'")
        value = value.lower()
    elif kind == "ints":
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        if not ok:
            raise _fail(msg_type, f"{name} must be a list of integers")
    too_long = spec.max_len is not None and isinstance(value, (str, bytes, list))
    if too_long and len(value) > spec.max_len:  # type: ignore[operator]
        raise _fail(msg_type, f"{name} is longer than {spec.max_len}")
    if spec.lo is not None and isinstance(value, (int, float)) and value < spec.lo:
        raise _fail(msg_type, f"{name} must be at least {spec.lo:g}")
    if spec.hi is not None and isinstance(value, (int, float)) and value > spec.hi:
        raise _fail(msg_type, f"{name} must be at most {spec.hi:g}")
    return value


def _check_fields(msg_type: str, schema: Mapping[str, F], msg: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name in msg:
            out[name] = _check_field(msg_type, name, spec, msg[name])
        elif spec.required:
            raise _fail(msg_type, f"missing field {name}")
    return out


def _validate(msg: Any, schemas: Mapping[str, Mapping[str, F]]) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "a frame must hold one MessagePack map")
    msg_type = msg.get("t")
    if not isinstance(msg_type, str) or msg_type not in schemas:
        shown = msg_type if isinstance(msg_type, str) and len(msg_type) <= 32 else "?"
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown!r}")
    out: dict[str, Any] = {"t": msg_type, **_check_fields(msg_type, schemas[msg_type], msg)}
    if msg_type == "event":
        kind = EVENT_KINDS.get(out["kind"])
        if kind is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "event: unknown kind", ref="event")
        out.update(_check_fields(f"event {kind.name}", kind.fields, msg))
    # Unknown keys are dropped, not refused: newer peers may add optional fields.
    return out


# ---------------------------------------------------------------------------------------- codec


def encode(msg: Mapping[str, Any]) -> bytes:
    """Serialize one message (a dict with "t") to a frame."""
    frame: bytes = msgpack.packb(msg, use_bin_type=True)
    return frame


def _unpack(data: bytes, max_bytes: int) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frames must be binary, not text")
    if len(data) > max_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"frame of {len(data)} bytes exceeds the {max_bytes}-byte limit"
        )
    try:
        # Bounds stop a 4 KB frame from declaring a billion-element array.
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=64,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types for garbage; all mean the same here
        reason = f"not a MessagePack frame ({type(exc).__name__})"
        raise ProtocolError(ErrorCode.BAD_FRAME, reason) from None


# Feature modules in neonbar/ that register schemas (client messages, event kinds, server
# messages, welcome fields) when imported. Every peer that decodes loads them first, so the
# server, the client and the bots always know the same messages (docs/room.md).
SCHEMA_MODULES: tuple[str, ...] = (
    "neonbar.playback",  # timeline messages and the timeline event
    "neonbar.beats",  # beat messages and the beat event
    "neonbar.reaction",  # reactions, faces, branch events
)
_schemas_loaded = False


def load_schemas() -> None:
    """Import every schema module once (they register themselves)."""
    global _schemas_loaded
    if _schemas_loaded:
        return
    _schemas_loaded = True
    import importlib

    for name in SCHEMA_MODULES:
        importlib.import_module(name)


def decode_client(data: bytes, max_bytes: int = MAX_CLIENT_FRAME_BYTES) -> dict[str, Any]:
    """Decode and validate a client -> server frame. Raises only ProtocolError."""
    if not _schemas_loaded:
        load_schemas()
    return _validate(_unpack(data, max_bytes), CLIENT_MESSAGES)


def decode_server(data: bytes, max_bytes: int = MAX_SERVER_FRAME_BYTES) -> dict[str, Any]:
    """Decode and validate a server -> client frame. Raises only ProtocolError."""
    if not _schemas_loaded:
        load_schemas()
    return _validate(_unpack(data, max_bytes), SERVER_MESSAGES)


def validate_client(msg: Any) -> dict[str, Any]:
    load_schemas()
    return _validate(msg, CLIENT_MESSAGES)


def validate_server(msg: Any) -> dict[str, Any]:
    load_schemas()
    return _validate(msg, SERVER_MESSAGES)


# ------------------------------------------------------------------------- snapshot sections
#
# Delta section "d": for n avatars, little-endian columns
#   u16 id[n] | i8 dx_cm[n] | i8 dy_cm[n] | i16 dyaw[n]          (6 bytes per avatar)
# each value is the change since the same avatar's state in the base snapshot (yaw wraps mod 2^16).
# Absolute section "a": u16 id[n] | i16 x_cm[n] | i16 y_cm[n] | u16 yaw[n]   (8 bytes per avatar)

DELTA_RECORD_BYTES = 6
ABS_RECORD_BYTES = 8


def pack_delta(
    ids: npt.NDArray[np.integer[Any]],
    dx: npt.NDArray[np.integer[Any]],
    dy: npt.NDArray[np.integer[Any]],
    dyaw: npt.NDArray[np.integer[Any]],
) -> bytes:
    return b"".join(
        (
            ids.astype("<u2").tobytes(),
            dx.astype("i1").tobytes(),
            dy.astype("i1").tobytes(),
            dyaw.astype("<i2").tobytes(),
        )
    )


def unpack_delta(
    blob: bytes,
) -> tuple[
    npt.NDArray[np.uint16], npt.NDArray[np.int8], npt.NDArray[np.int8], npt.NDArray[np.int16]
]:
    n, rest = divmod(len(blob), DELTA_RECORD_BYTES)
    if rest:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "snap: delta section has a partial record")
    ids = np.frombuffer(blob, "<u2", n, 0)
    dx = np.frombuffer(blob, "i1", n, 2 * n)
    dy = np.frombuffer(blob, "i1", n, 3 * n)
    dyaw = np.frombuffer(blob, "<i2", n, 4 * n)
    return ids, dx, dy, dyaw


def pack_absolute(
    ids: npt.NDArray[np.integer[Any]],
    x: npt.NDArray[np.integer[Any]],
    y: npt.NDArray[np.integer[Any]],
    yaw: npt.NDArray[np.integer[Any]],
) -> bytes:
    return b"".join(
        (
            ids.astype("<u2").tobytes(),
            x.astype("<i2").tobytes(),
            y.astype("<i2").tobytes(),
            yaw.astype("<u2").tobytes(),
        )
    )


def unpack_absolute(
    blob: bytes,
) -> tuple[
    npt.NDArray[np.uint16], npt.NDArray[np.int16], npt.NDArray[np.int16], npt.NDArray[np.uint16]
]:
    n, rest = divmod(len(blob), ABS_RECORD_BYTES)
    if rest:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "snap: absolute section has a partial record")
    ids = np.frombuffer(blob, "<u2", n, 0)
    x = np.frombuffer(blob, "<i2", n, 2 * n)
    y = np.frombuffer(blob, "<i2", n, 4 * n)
    yaw = np.frombuffer(blob, "<u2", n, 6 * n)
    return ids, x, y, yaw


# ------------------------------------------------------------------------------ quantization


def yaw_to_units(yaw_rad: float) -> int:
    """Radians (0 = facing +y, counter-clockwise) -> 16-bit yaw."""
    return round(yaw_rad / (2 * math.pi) * YAW_UNITS) % YAW_UNITS


def units_to_yaw(units: int | npt.NDArray[np.integer[Any]]) -> Any:
    """16-bit yaw -> radians in [0, 2π)."""
    return np.asarray(units, dtype=np.float64) * (2 * math.pi / YAW_UNITS)


def m_to_cm(value_m: float) -> int:
    return round(value_m * CM_PER_M)


def error_message(exc: ProtocolError) -> dict[str, Any]:
    """The `error` message that reports a ProtocolError to its sender."""
    return {"t": "error", "code": int(exc.code), "message": exc.message, "ref": exc.ref}


Validator = Callable[[Any], dict[str, Any]]


# ------------------------------------------------------------------------------- fast path


def fast_decoder(msg_type: str) -> Callable[[Any], dict[str, Any] | None]:
    """A short decoder for a frequent message whose fields are all required integers.

    Derived from the message's schema (its fields, ranges and the size of its largest frame),
    so it cannot drift from `decode_client`: it returns a message only for a frame that
    `decode_client` would return unchanged, and None for anything else, which then takes the
    full path and gets the proper error.
    """
    schema = CLIENT_MESSAGES[msg_type]
    if not all(spec.kind == "int" and spec.required for spec in schema.values()):
        raise ValueError(f"{msg_type}: only messages of required integers have a fast path")
    keys = frozenset(("t", *schema))
    bounds = tuple(
        (name, int(spec.lo if spec.lo is not None else -(2**63)),
         int(spec.hi if spec.hi is not None else 2**64 - 1))
        for name, spec in schema.items()
    )  # fmt: skip
    # The largest valid frame: a map header, "t" and its value, every key and a 9-byte integer.
    max_bytes = len(encode({"t": msg_type})) + sum(len(msgpack.packb(k)) + 9 for k in schema)
    unpackb = msgpack.unpackb
    map_len = len(keys)

    def decode(raw: Any) -> dict[str, Any] | None:
        if type(raw) is not bytes or len(raw) > max_bytes:
            return None
        try:
            msg = unpackb(raw, raw=False, strict_map_key=True, max_map_len=map_len, max_ext_len=0)
        except Exception:  # garbage: the full path reports it
            return None
        if type(msg) is not dict or msg.keys() != keys or msg["t"] != msg_type:
            return None
        for name, lo, hi in bounds:
            value = msg[name]
            if type(value) is not int or not lo <= value <= hi:
                return None
        return msg

    return decode
