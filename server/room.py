"""A room: its avatars, its 20 Hz tick, its reliable events. Sans-I/O.

The lifecycle reads like a Colyseus room:

    on_create   load the room's record (look, last event seq); features load their state
    on_auth     check a hello: invite token or resume token -> who may enter, as what
    on_join     place the avatar (or reattach it), send `welcome`, announce it
    on_message  one validated client message, handed to the handler registered for its type
    on_leave    the avatar is gone for good (bye, kicked, resume window over)
    on_dispose  nobody left: save the record

A disconnect without `bye` is not a leave: the avatar stays, away, for the resume window.

The room never touches a socket, a clock or an event loop. Time comes in as arguments
(`receive(session, raw, now_s)`, `step(now_s)`) or from the host's clock; everything it sends,
broadcasts or closes goes to the host's outbox (`Outbox`), which the delivery layer
(server/delivery.py) implements over websockets and `RecordingOutbox` (server/recording.py)
implements as lists, so tests and the fuzz target drive a real room with no sockets.

Behaviour comes in features (`Feature`, server/features.py): each registers handlers for its
message types, may add its part to `welcome` and may react to joins, leaves and ticks. How to
add one: docs/room.md.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from neonbar.interest import MAX_AVATAR_IDS, SnapshotEncoder
from neonbar.layout import Layout
from neonbar.protocol import (
    CLIENT_MESSAGES,
    CM_PER_M,
    JOIN,
    LEAVE,
    MAX_CHAT_CHARS,
    MAX_CLIENT_FRAME_BYTES,
    MAX_NAME_CHARS,
    PROTOCOL_VERSION,
    TICK_HZ,
    YAW_UNITS,
    CloseCode,
    ErrorCode,
    EventKind,
    ProtocolError,
    decode_client,
    encode,
    error_message,
    fast_decoder,
)
from neonbar.ratelimit import ConnectionLimits
from neonbar.text import name_key
from neonbar.tokens import TokenError, mint_resume, new_resume_nonce, verify
from server.eventlog import RoomEventLog
from server.identity import Identities, Identity, identity_key
from server.metrics import ServerMetrics
from server.movement import MoveValidator
from server.snapshots import snapshot_head, snapshot_prefix, you_tails
from server.storage import RoomRecord, Storage

log = logging.getLogger("neonbar.server")

PALETTE = ("#ff8a1f", "#ff2d55", "#2de2ff", "#b13dff", "#39ff88", "#ffd23f", "#ff3fb4", "#5b8cff")

# The most frequent message (`input`, 20 Hz per client) takes a short decoder derived from its
# schema; anything it does not take goes through decode_client and gets the proper error.
fast_input = fast_decoder("input")


@dataclass
class RoomConfig:
    """Limits and timings; `welcome.limits` reports the client-facing ones."""

    max_avatars: int = 4000
    msgs_per_s: float = 40.0
    burst: float = 80.0
    input_hz: float = TICK_HZ
    speed_mps: float = 7.0
    move_slack_m: float = 0.25
    resume_window_s: float = 30.0
    hello_timeout_s: float = 10.0
    snapshot_skip_bytes: int = 64 * 1024  # over this, snapshots are skipped
    max_buffer_bytes: int = 1 << 20  # over this, the client is dropped (4408)
    ack_timeout_s: float = 10.0  # no snapshot acked for this long -> dropped (4408)
    event_ring: int = 10_000
    history_ticks: int = 16
    default_look: str = "orange_haze"
    open_rooms: bool = False  # join without an invite token, as collaborator
    # Render a chosen generated scene that has no render yet (`neonbar server` does, unless
    # --no-render); off, such a scene is "missing" with the command that renders it.
    render_scenes: bool = False
    max_frame_bytes: int = MAX_CLIENT_FRAME_BYTES
    # Per invite (server/identity.py): avatars held in the room, joins per minute (burst).
    avatars_per_invite: int = 16
    joins_per_min: float = 20.0
    join_burst: int = 8

    def limits(self) -> dict[str, Any]:
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "msgs_per_s": self.msgs_per_s,
            "burst": self.burst,
            "input_hz": self.input_hz,
            "speed_mps": self.speed_mps,
            "resume_window_s": self.resume_window_s,
            "max_chat_chars": MAX_CHAT_CHARS,
        }


class JoinRefused(Exception):
    """A hello the room will not accept; the connection is closed with `close_code`."""

    def __init__(self, close_code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


# --------------------------------------------------------------------------- host interface


class Link(Protocol):
    """The delivery layer's handle on one connection, as the room sees it."""

    closing: bool  # set once a close was asked for: nothing more is written or handled

    @property
    def peer(self) -> str: ...


class Outbox(Protocol):
    """Where a room's output goes. Frames are MessagePack payloads (one message each).

    Reliable frames (`send`, `broadcast`, `replay`) are never skipped: a link that cannot keep
    up is closed with 4408 by the outbox (the slow-client policy lives there), and the client
    resumes from its last event seq. Snapshots may be skipped.
    """

    def send(self, link: Any, frame: bytes) -> bool: ...
    def broadcast(self, links: Sequence[Any], frame: bytes) -> int: ...
    def replay(self, link: Any, frames: Iterator[bytes]) -> None: ...
    def close(self, link: Any, code: CloseCode, reason: str) -> None: ...
    def snapshot_states(self, links: Sequence[Any]) -> np.ndarray: ...
    def write_snapshots(
        self,
        links: Sequence[Any],
        states: np.ndarray,
        prefixes: Sequence[bytes],
        client_group: np.ndarray,
        tails: np.ndarray,
    ) -> int: ...


class RoomHost(Protocol):
    """What a room needs from the process around it: a clock, storage, metrics, an outbox."""

    layout: Layout
    config: RoomConfig
    secret: bytes
    storage: Storage
    metrics: ServerMetrics
    out: Outbox

    def now_s(self) -> float: ...


# ----------------------------------------------------------------------------------- records


@dataclass
class Grant:
    """What on_auth decided for a hello."""

    role: str
    name: str
    name_fixed: bool
    resume_of: Avatar | None = None
    identity: str | None = None  # the invite's key (server/identity.py); None in open rooms
    allowance: int | None = None  # avatars the invite may hold (None: the room's default)


@dataclass(eq=False)
class Avatar:
    id: int
    name: str
    color: str
    role: str
    resume_token: str
    name_fixed: bool = False
    muted: bool = False
    session: Session | None = None
    away_since_s: float | None = None
    identity: str | None = None
    limits: ConnectionLimits | None = None  # kept across reconnections: a resume resets nothing
    # Features keep their per-avatar state here, under their own name.
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Session:
    """One open connection attached to an avatar; `link` is the delivery layer's handle."""

    link: Any
    avatar: Avatar
    limits: ConnectionLimits
    errors: int = 0
    # The avatar's invite, looked up once: its budget is spent by every message.
    identity: Identity | None = None

    @property
    def closing(self) -> bool:
        return bool(self.link.closing)


# ----------------------------------------------------------------------------------- features

Handler = Callable[[Session, dict[str, Any], float], None]
_H = TypeVar("_H", bound=Callable[..., None])


def handles(msg_type: str) -> Callable[[_H], _H]:
    """Mark a Feature method as the handler of one client message type.

    The method is called as `handler(session, msg, now_s)` with a validated message; it
    refuses with `ProtocolError` (the sender gets an `error`, the connection stays).
    """

    def mark(fn: _H) -> _H:
        fn._handles = msg_type  # type: ignore[attr-defined]
        return fn

    return mark


class Feature:
    """One slice of room behaviour: handlers for its messages, its state, its hooks.

    A room makes one instance of every registered feature (server/features.py). The hooks run
    in registration order; override only the ones you need.
    """

    name: ClassVar[str] = ""

    def __init__(self, room: Room) -> None:
        self.room = room

    def on_create(self) -> None:
        """The room exists (its record is loaded): load this feature's state."""

    def welcome(self, avatar: Avatar, now_s: float) -> Mapping[str, Any]:
        """Fields this feature adds to `welcome` (new keys only)."""
        return {}

    def roster(self, avatar: Avatar, now_s: float) -> Mapping[str, Any]:
        """Fields this feature adds to the avatar's entry in `welcome.avatars`."""
        return {}

    def on_join(self, session: Session, resumed: bool, now_s: float) -> None:
        """After `welcome` went to `session` (and, on a resume, the events it missed)."""

    def on_leave(self, avatar: Avatar, reason: str) -> None:
        """The avatar is gone for good (already out of `room.avatars`)."""

    def on_tick(self, now_s: float) -> None:
        """Once per tick, after movement, before snapshots."""

    def on_dispose(self) -> None:
        """The room is going away: save this feature's state."""


FEATURES: dict[str, type[Feature]] = {}
_HANDLED_BY: dict[str, str] = {}  # message type -> feature name


def register_feature(cls: type[Feature]) -> type[Feature]:
    """Class decorator: every room from now on gets this feature.

    Refuses a feature without a name, a handler for a message type without a schema
    (neonbar.protocol.client_message) and a second handler for the same type.
    """
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    known = FEATURES.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"a feature named {cls.name!r} is already registered")
    for attr in vars(cls).values():
        msg_type = getattr(attr, "_handles", None)
        if msg_type is None:
            continue
        if msg_type not in CLIENT_MESSAGES:
            raise ValueError(f"{cls.name}: no schema for message type {msg_type!r}")
        owner = _HANDLED_BY.get(msg_type)
        if owner is not None and owner != cls.name:
            raise ValueError(f"{msg_type!r} is already handled by feature {owner!r}")
        _HANDLED_BY[msg_type] = cls.name
    FEATURES[cls.name] = cls
    return cls


@register_feature
class Core(Feature):
    """The messages every room speaks: hello (refused once joined), input, ping, bye."""

    name = "core"

    @handles("hello")
    def on_hello(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        raise ProtocolError(ErrorCode.BAD_STATE, "already joined: hello is sent once", "hello")

    @handles("input")
    def on_input(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self.room.on_input(session, msg, now_s)

    @handles("ping")
    def on_ping(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self.room.send(session, {"t": "pong", "ct": msg["ct"], "st": now_s})

    @handles("bye")
    def on_bye(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self.room.on_leave(session.avatar, "left")
        self.room.close_session(session, CloseCode.NORMAL, "bye")


def check_invite(hello: dict[str, Any], room: str, secret: bytes, open_rooms: bool) -> Grant:
    """Who a hello's invite token (or an open server) lets in. Raises JoinRefused."""
    token = hello.get("token")
    if token:
        try:
            invite = verify(secret, token)
        except TokenError as exc:
            raise JoinRefused(exc.close_code, str(exc)) from None
        if invite.room != room:
            raise JoinRefused(CloseCode.WRONG_ROOM, "invite token is for another room")
        key = identity_key(invite)
        if invite.name:
            return Grant(invite.role, invite.name, True, identity=key, allowance=1)
        return Grant(invite.role, hello["name"], False, identity=key, allowance=invite.avatars)
    if open_rooms:
        return Grant("collaborator", hello["name"], False)
    raise JoinRefused(CloseCode.AUTH_FAILED, "an invite token is required")


# --------------------------------------------------------------------------------------- room


class Room:
    def __init__(self, name: str, host: RoomHost) -> None:
        from server.features import load_features

        load_features()
        self.name = name
        self.host = host
        self.config: RoomConfig = host.config
        self.layout = host.layout
        self.metrics = host.metrics
        self.storage = host.storage
        self.out = host.out
        self.avatars: dict[int, Avatar] = {}
        self.sessions: dict[int, Session] = {}  # by avatar id
        self.resume_tokens: dict[str, Avatar] = {}
        self._name_keys: dict[int, tuple[str, str]] = {}  # avatar id -> (name, its name_key)
        config = self.config
        self.identities = Identities(
            config.msgs_per_s, config.burst, config.avatars_per_invite, config.joins_per_min,
            config.join_burst,
        )  # fmt: skip
        self.look = self.config.default_look
        self.events = RoomEventLog(
            name, self.storage, RoomRecord(name, self.look, 0), self._deliver,
            self.config.event_ring,
        )  # fmt: skip
        self.tick = 0
        self.moves = MoveValidator(
            self.layout, speed_mps=self.config.speed_mps, slack_m=self.config.move_slack_m
        )
        self.encoder = SnapshotEncoder(
            self.layout.half_x, self.layout.half_y, history_ticks=self.config.history_ticks
        )
        # Per-avatar state in arrays indexed by avatar id, grown as ids are handed out.
        self.pos_m = np.zeros((0, 2), dtype=np.float64)
        self.yaw = np.zeros(0, dtype=np.uint16)
        # Inputs: the latest claim per avatar waits here for the next tick.
        # avatar id -> (x_cm, y_cm, yaw, seq, arrived at): plain Python per input (cheaper than
        # writes into numpy one scalar at a time), turned into arrays once per tick.
        self.pending: dict[int, tuple[int, int, int, int, float]] = {}
        self.input_seq = np.zeros(0, dtype=np.int64)  # last input seq applied
        self.input_at_s = np.zeros(0, dtype=np.float64)  # ...and when it arrived
        # Snapshots: the newest acknowledged tick (-1: none), when it last advanced, and a ring
        # of the recent snapshots written (slot tick % ring: that tick and the cell it served).
        self.ack_tick = np.zeros(0, dtype=np.int64)
        self.last_ack_s = np.zeros(0, dtype=np.float64)
        ring = self.encoder.sent_slots
        self.sent_tick = np.zeros((0, ring), dtype=np.int64)
        self.sent_cell = np.zeros((0, ring), dtype=np.int64)
        self._grow(256)
        self._ids = np.zeros(0, dtype=np.int64)  # present avatar ids, sorted
        self._free_ids: list[int] = []  # heap of ids free for reuse
        self._cooling_ids: deque[tuple[float, int]] = deque()  # (free again at, id)
        self._next_id = 1
        self._rng = np.random.default_rng()
        self.disposed = False
        self.features: dict[str, Feature] = {name: cls(self) for name, cls in FEATURES.items()}
        self.handlers: dict[str, Handler] = {}
        for feature in self.features.values():
            for attr_name, attr in vars(type(feature)).items():
                msg_type = getattr(attr, "_handles", None)
                if msg_type is not None:
                    self.handlers[msg_type] = getattr(feature, attr_name)
        # Hooks called per tick or per roster entry: only the features that have them.
        self._tickers = [
            f for f in self.features.values() if type(f).on_tick is not Feature.on_tick
        ]
        self._roster_parts = [
            f for f in self.features.values() if type(f).roster is not Feature.roster
        ]

    def now_s(self) -> float:
        return self.host.now_s()

    # --------------------------------------------------------------------------- lifecycle

    def on_create(self) -> None:
        record = self.storage.load_room(self.name, self.config.default_look)
        self.look = record.look
        # Seq continues above the highest committed; events are delivered once stored.
        self.events = RoomEventLog(
            self.name, self.storage, record, self._deliver, self.config.event_ring
        )
        for feature in self.features.values():
            feature.on_create()
        self.metrics.rooms.inc()
        log.info("room %s created (look %s, seq %d)", self.name, self.look, self.events.seq)

    def on_auth(self, hello: dict[str, Any]) -> Grant:
        """Decide who the hello is. Raises JoinRefused with the close code to use."""
        resume = hello.get("resume")
        if resume:
            avatar = self.resume_tokens.get(resume)
            if avatar is not None:
                # The resume token is a capability minted for this avatar: no invite needed.
                return Grant(avatar.role, avatar.name, avatar.name_fixed, avatar, avatar.identity)
        grant = check_invite(hello, self.name, self.host.secret, self.config.open_rooms)
        identity = self.identities.find(grant.identity)
        if identity is not None and identity.kicked:
            raise JoinRefused(CloseCode.KICKED, "a host removed this invite from the room")
        if grant.name_fixed and identity is not None:
            # An invite that names its holder is one person: a second hello takes that
            # avatar over (no resume token needed), it never makes a second one.
            for avatar_id in sorted(identity.avatars):
                held = self.avatars.get(avatar_id)
                if held is not None:
                    grant.resume_of = held
                    break
        return grant

    def on_join(self, link: Any, hello: dict[str, Any], grant: Grant, now_s: float) -> Session:
        avatar = grant.resume_of
        if avatar is not None:
            # The avatar's buckets carry over: reconnecting never refills them.
            if avatar.limits is None:  # restored from storage after a restart
                avatar.limits = self._new_limits(now_s)
            limits = avatar.limits
            old = avatar.session
            if old is not None:
                self._detach(old, now_s)
                self.close_session(
                    old, CloseCode.REPLACED, "another connection resumed this avatar"
                )
            session = self._attach(link, avatar, limits, now_s)
            self._send_welcome(session, True, now_s)
            since = hello.get("since")
            if since is not None:
                self.out.replay(link, self.events.since(int(since)))
            for feature in self.features.values():
                feature.on_join(session, True, now_s)
            log.info(
                "resumed avatar %d %r in %s from %s (since %s)",
                avatar.id, avatar.name, self.name, link.peer, since,
            )  # fmt: skip
            return session
        if len(self.avatars) >= self.config.max_avatars:
            raise JoinRefused(CloseCode.ROOM_FULL, f"room {self.name} is full")
        identity = None
        if grant.identity is not None:
            identity = self.identities.get(grant.identity, now_s, grant.allowance)
            if len(identity.avatars) >= identity.allowance:
                raise JoinRefused(
                    CloseCode.INVITE_FULL,
                    f"this invite already has {len(identity.avatars)} avatars in the room",
                )
            if not identity.joins.allow(now_s):
                raise JoinRefused(CloseCode.FLOOD, "too many joins with this invite; wait a minute")
        limits = self._new_limits(now_s)
        avatar_id = self._allocate_id(now_s)
        self.moves.forget(avatar_id)  # a full distance budget, no previous claim
        if avatar_id >= len(self.pos_m):
            self._grow(min(MAX_AVATAR_IDS, 2 * len(self.pos_m)))
        color = hello.get("color") or PALETTE[avatar_id % len(PALETTE)]
        avatar = Avatar(
            id=avatar_id,
            name=grant.name if grant.name_fixed else self.free_name(grant.name),
            color=color,
            role=grant.role,
            resume_token=mint_resume(self.host.secret, self.name, avatar_id, new_resume_nonce()),
            name_fixed=grant.name_fixed,
            identity=grant.identity,
            limits=limits,
        )
        if identity is not None:
            identity.avatars.add(avatar_id)
            avatar.muted = identity.muted
        self.input_seq[avatar_id] = 0
        self.input_at_s[avatar_id] = now_s
        self.avatars[avatar_id] = avatar
        self.resume_tokens[avatar.resume_token] = avatar
        self.pos_m[avatar_id] = self._spawn_point()
        self.yaw[avatar_id] = round(self.layout.spawn_yaw_deg / 360.0 * YAW_UNITS) % YAW_UNITS
        self._ids = np.array(sorted(self.avatars), dtype=np.int64)
        self.metrics.avatars.inc()
        session = self._attach(link, avatar, limits, now_s)
        self._send_welcome(session, False, now_s)
        self.emit(JOIN, avatar=avatar.id, name=avatar.name, color=avatar.color, role=avatar.role)
        for feature in self.features.values():
            feature.on_join(session, False, now_s)
        log.info(
            "join: avatar %d %r (%s) in %s from %s",
            avatar.id, avatar.name, avatar.role, self.name, link.peer,
        )  # fmt: skip
        return session

    def on_leave(self, avatar: Avatar, reason: str) -> None:
        if self.avatars.pop(avatar.id, None) is None:
            return
        now_s = self.now_s()
        if avatar.session is not None:
            self._detach(avatar.session, now_s)
        self.resume_tokens.pop(avatar.resume_token, None)
        self.pending.pop(avatar.id, None)
        identity = self.identities.find(avatar.identity)
        if identity is not None:
            identity.avatars.discard(avatar.id)
        self._ids = np.array(sorted(self.avatars), dtype=np.int64)
        # Ids come back only after the resume window, so a late snapshot or event about the old
        # avatar can never be mistaken for a newcomer.
        self._cooling_ids.append((now_s + self.config.resume_window_s, avatar.id))
        self.metrics.avatars.dec()
        self.emit(LEAVE, avatar=avatar.id, reason=reason)
        for feature in self.features.values():
            feature.on_leave(avatar, reason)
        log.info("leave: avatar %d %r from %s (%s)", avatar.id, avatar.name, self.name, reason)

    def on_dispose(self) -> None:
        self.disposed = True
        for feature in self.features.values():
            feature.on_dispose()
        self.storage.save_room(self.name, self.look, self.events.seq)
        self.metrics.rooms.dec()
        log.info("room %s disposed", self.name)

    def on_disconnect(self, session: Session) -> None:
        """The connection ended without `bye`: the avatar stays, away, for the resume window."""
        avatar = session.avatar
        if avatar.session is session:
            self._detach(session, self.now_s())
            if avatar.id in self.avatars:
                log.info("away: avatar %d %r in %s", avatar.id, avatar.name, self.name)

    # ---------------------------------------------------------------------------- messages

    def receive(self, session: Session, raw: bytes | str, now_s: float) -> None:
        """One inbound frame: rate limits, decoding, validation, then its handler.

        Never raises: a refusal goes back as an `error` (the connection stays), abuse closes
        the connection, and a bug in a handler is logged and counted.
        """
        if session.link.closing:
            return  # drain until the close completes
        limits = session.limits
        accepted, flooding = limits.on_message(now_s)
        if flooding:
            log.warning("flood from %s (avatar %d): closing", session.link.peer, session.avatar.id)
            self.close_session(session, CloseCode.FLOOD, "far over the rate limit")
            return
        if accepted:
            identity = session.identity
            if identity is None and session.avatar.identity is not None:
                identity = session.identity = self.identities.get(session.avatar.identity, now_s)
            if identity is not None:  # the invite's budget, over all its links
                accepted = identity.throttle.allow(now_s)
        try:
            if not accepted:
                raise ProtocolError(ErrorCode.RATE_LIMITED, "over the rate limit: dropped")
            # The most frequent message (20 Hz per client) goes straight to its handler.
            fast = fast_input(raw)
            if fast is not None:
                self.on_input(session, fast, now_s)
                return
            # A text frame (str) is passed on purpose: decode_client refuses it with BAD_FRAME.
            msg = decode_client(raw, self.config.max_frame_bytes)  # type: ignore[arg-type]
            self.on_message(session, msg, now_s)
        except ProtocolError as exc:
            self.report(session, exc)
            if exc.code != ErrorCode.RATE_LIMITED and limits.on_invalid(now_s):
                log.warning("too many invalid frames from %s: closing", session.link.peer)
                self.close_session(session, CloseCode.POLICY, "too many invalid frames")
        except Exception:
            # A bug in handling one message must not end the connection or the room.
            self.metrics.exceptions.inc()
            log.exception("handling a message from %s failed", session.link.peer)

    def receive_control(self, session: Session, now_s: float) -> None:
        """A ping or pong frame: it spends the same tokens as a message, so a ping flood
        closes the connection (4429) like any other (websockets answers pings itself)."""
        if session.closing:
            return
        _, flooding = session.limits.on_message(now_s)
        if flooding:
            log.warning("ping flood from %s (avatar %d): closing", session.link.peer,
                        session.avatar.id)  # fmt: skip
            self.close_session(session, CloseCode.FLOOD, "far over the rate limit")

    def on_message(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        """Apply one validated message. Raises ProtocolError for refusals."""
        handler = self.handlers.get(msg["t"])
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"no handler for {msg['t']!r}", msg["t"])
        handler(session, msg, now_s)

    def report(self, session: Session, exc: ProtocolError) -> None:
        """Tell a session why its message was refused."""
        self.metrics.errors.labels(str(int(exc.code))).inc()
        session.errors += 1
        if session.errors <= 3:  # enough to diagnose a client; a flood must not flood the log
            log.info(
                "error %d to avatar %d (%s): %s", exc.code, session.avatar.id, session.link.peer,
                exc.message,
            )  # fmt: skip
        self.out.send(session.link, encode(error_message(exc)))

    def send(self, session: Session, msg: Mapping[str, Any]) -> None:
        """One message to one session (not sequenced: replies such as `pong`)."""
        self.out.send(session.link, encode(msg))

    def on_input(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        avatar_id, ack, seq = session.avatar.id, msg["ack"], msg["seq"]
        if ack < 0:
            self.ack_tick[avatar_id] = -1  # the client lost its base: the next snapshot is full
        else:
            known = int(self.ack_tick[avatar_id])
            # Only a snapshot written to this client recently can be a base.
            if ack != known and self.sent_tick[avatar_id, ack % self.sent_tick.shape[1]] == ack:
                if ack > known:
                    self.last_ack_s[avatar_id] = now_s
                self.ack_tick[avatar_id] = ack
        # Inputs are absolute claims: only the newest matters. Seq 0 is accepted once.
        waiting = self.pending.get(avatar_id)
        newest = waiting[3] if waiting is not None else int(self.input_seq[avatar_id])
        if seq > newest or (seq == 0 and newest == 0):
            self.pending[avatar_id] = (msg["x"], msg["y"], msg["yaw"], seq, now_s)

    # ------------------------------------------------------------------------------ events

    def emit(self, kind: EventKind, **fields: Any) -> int:
        """Sequence one reliable event, keep it, then send it to everyone connected.

        The one path every event takes: seq assigned here, the frame kept for resume and
        written to storage before any client can see it, then delivered.
        """
        record = kind.record(**fields)
        seq, _ = self.events.append(kind.name, record, self.now_s())
        # Committed with whatever else waits (one transaction: server/storage.py), then
        # `_deliver` sends it: nobody sees an event that is not stored.
        self.events.commit()
        self.metrics.events.labels(kind.name).inc()
        return seq

    def _deliver(self, frames: list[tuple[int, bytes]]) -> None:
        """Committed events, in seq order, to everyone connected now."""
        links = [s.link for s in self.sessions.values()]
        for _, frame in frames:
            sent = self.out.broadcast(links, frame)
            self.metrics.bytes_out.labels("event").inc(len(frame) * sent)

    # -------------------------------------------------------------------------------- tick

    def step(self, now_s: float) -> bool:
        """One tick: apply inputs, separate the crowd, features, snapshots, housekeeping.

        Returns False once the room is empty (checked once a second): the host disposes it.
        """
        self.tick += 1
        self._apply_inputs()
        ids = self._ids
        if len(ids) > 1 and self.moves.crowd:
            self.pos_m[ids] = self.moves.separate(self.pos_m[ids], ids)
        for feature in self._tickers:
            feature.on_tick(now_s)
        self._send_snapshots(self._ids, now_s)
        if self.tick % TICK_HZ == 0:
            self._housekeeping(now_s)
            return bool(self.avatars)
        return True

    def _apply_inputs(self) -> None:
        if not self.pending:
            return
        ids = np.fromiter(self.pending, dtype=np.int64, count=len(self.pending))
        # float64 holds every field exactly (cm and yaw are 16-bit, seq 32-bit).
        claims = np.array(list(self.pending.values()), dtype=np.float64)
        self.pending.clear()
        arrived_s = claims[:, 4]
        elapsed_s = arrived_s - self.input_at_s[ids]
        claimed_m = claims[:, 0:2] / CM_PER_M
        self.pos_m[ids] = self.moves.validate(self.pos_m[ids], claimed_m, elapsed_s, ids)
        self.yaw[ids] = claims[:, 2].astype(np.uint16)
        self.input_seq[ids] = claims[:, 3].astype(np.int64)
        self.input_at_s[ids] = arrived_s

    def _send_snapshots(self, ids: np.ndarray, st: float) -> None:
        x_cm = np.clip(np.rint(self.pos_m[ids, 0] * CM_PER_M), -32768, 32767).astype(np.int16)
        y_cm = np.clip(np.rint(self.pos_m[ids, 1] * CM_PER_M), -32768, 32767).astype(np.int16)
        yaw = self.yaw[ids]
        sessions = list(self.sessions.values())
        if not sessions:
            self.encoder.begin_tick(self.tick, ids, x_cm, y_cm, yaw, [])
            return
        # Each client's own avatar: its quantized state (for `you`) and the cell serving it.
        # self.sessions is keyed by avatar id; its keys come in the order of `sessions`.
        sids = np.fromiter(self.sessions, np.int64, len(sessions))
        index = np.searchsorted(ids, sids)
        cells = self.encoder.cells_of(x_cm[index], y_cm[index])
        self.encoder.begin_tick(self.tick, ids, x_cm, y_cm, yaw, cells)
        tick = self.tick

        # Who takes a snapshot now: the outbox says which links can (its slow-client policy
        # skips or drops the others); a client that acknowledged nothing for too long goes.
        links = [s.link for s in sessions]
        state = self.out.snapshot_states(links)
        stale = self.last_ack_s[sids] < st - self.config.ack_timeout_s
        for i in np.flatnonzero((state >= 0) & stale).tolist():  # rare
            self._drop_slow(sessions[i], "no snapshot acked")
        served = np.flatnonzero((state >= 0) & ~stale)
        if not len(served):
            return
        served_ids, served_cells = sids[served], cells[served]

        # Groups (cell, base): each body is encoded once and shared by its clients.
        bases = self.encoder.pick_bases(
            served_cells,
            self.ack_tick[served_ids],
            self.sent_tick[served_ids],
            self.sent_cell[served_ids],
        )
        group_key = served_cells << 32 | (bases + 1)
        keys, client_group = np.unique(group_key, return_inverse=True)
        bodies = self.encoder.bodies(
            [(k >> 32, (k & 0xFFFFFFFF) - 1) for k in keys.tolist()], bases_checked=True
        )
        head = snapshot_head(tick)
        prefixes = [snapshot_prefix(tick, st, body, head) for body in bodies]
        you = index[served]
        tails = you_tails(x_cm[you], y_cm[you], yaw[you], self.input_seq[served_ids])
        served_list = served.tolist()
        written = self.out.write_snapshots(
            [links[i] for i in served_list], state[served], prefixes, client_group, tails
        )
        slot = tick % self.sent_tick.shape[1]
        self.sent_tick[served_ids, slot] = tick
        self.sent_cell[served_ids, slot] = served_cells
        self.metrics.snapshots_sent.inc(written)

    def _housekeeping(self, now_s: float) -> None:
        deadline = now_s - self.config.resume_window_s
        for avatar in [a for a in self.avatars.values() if a.session is None]:
            if avatar.away_since_s is not None and avatar.away_since_s < deadline:
                self.on_leave(avatar, "timeout")

    # ------------------------------------------------------------------------------ helpers

    def _attach(self, link: Any, avatar: Avatar, limits: ConnectionLimits, now_s: float) -> Session:
        session = Session(link, avatar, limits)
        aid = avatar.id
        self.ack_tick[aid] = -1
        self.last_ack_s[aid] = now_s
        self.sent_tick[aid] = -1  # a new connection holds none of the snapshots sent before
        avatar.session = session
        avatar.away_since_s = None
        self.sessions[aid] = session
        return session

    def _detach(self, session: Session, now_s: float) -> None:
        avatar = session.avatar
        if avatar.session is session:
            avatar.session = None
            avatar.away_since_s = now_s
            self.sessions.pop(avatar.id, None)

    def close_session(self, session: Session, code: CloseCode, reason: str) -> None:
        if session.closing:
            return
        self.metrics.drops.labels(code.name.lower()).inc()
        self.out.close(session.link, code, reason)

    def _drop_slow(self, session: Session, why: str) -> None:
        log.warning(
            "slow client: avatar %d %r in %s from %s: %s; closing 4408",
            session.avatar.id, session.avatar.name, self.name, session.link.peer, why,
        )  # fmt: skip
        self._detach(session, self.now_s())
        self.close_session(session, CloseCode.TOO_SLOW, "too slow: resume with your token")

    def welcome(self, avatar: Avatar, resumed: bool, now_s: float) -> dict[str, Any]:
        """The `welcome` message for `avatar`: the room's state, then each feature's part."""
        x_m, y_m = self.pos_m[avatar.id]
        msg: dict[str, Any] = {
            "t": "welcome",
            "v": PROTOCOL_VERSION,
            "you": avatar.id,
            "room": self.name,
            "role": avatar.role,
            "name": avatar.name,
            "resume": avatar.resume_token,
            "resumed": resumed,
            "st": now_s,
            "tick": self.tick,
            "seq": self.events.delivered_seq,  # what was delivered: newer events follow
            "pos": [round(x_m * CM_PER_M), round(y_m * CM_PER_M), int(self.yaw[avatar.id])],
            "avatars": [self.roster_entry(a, now_s) for a in self.avatars.values()],
            "limits": self.config.limits(),
            "look": self.look,
            "layout": self.layout.name,
        }
        for feature in self.features.values():
            part = feature.welcome(avatar, now_s)
            clash = msg.keys() & part.keys()
            if clash:
                raise ValueError(f"feature {feature.name} redefines welcome {sorted(clash)}")
            msg.update(part)
        return msg

    def roster_entry(self, avatar: Avatar, now_s: float) -> dict[str, Any]:
        """One avatar as `welcome.avatars` lists it; features add their per-avatar fields."""
        entry: dict[str, Any] = {
            "id": avatar.id,
            "name": avatar.name,
            "color": avatar.color,
            "role": avatar.role,
            "muted": avatar.muted,
        }
        for feature in self._roster_parts:
            entry.update(feature.roster(avatar, now_s))
        return entry

    def _send_welcome(self, session: Session, resumed: bool, now_s: float) -> None:
        self.out.send(session.link, encode(self.welcome(session.avatar, resumed, now_s)))

    def _new_limits(self, now_s: float) -> ConnectionLimits:
        return ConnectionLimits(self.config.msgs_per_s, self.config.burst, now_s=now_s)

    def name_taken(self, name: str, by: Avatar | None = None) -> bool:
        """Whether someone else in the room has this name or one that looks like it."""
        key = name_key(name)
        cache = self._name_keys
        for avatar in self.avatars.values():
            if avatar is by:
                continue
            cached = cache.get(avatar.id)
            if cached is None or cached[0] != avatar.name:  # folded once per name, not per join
                cached = cache[avatar.id] = (avatar.name, name_key(avatar.name))
            if cached[1] == key:
                return True
        return False

    def free_name(self, name: str) -> str:
        """`name`, or `name 2`, `name 3`... : a chosen name never copies someone else's."""
        if not self.name_taken(name):
            return name
        for n in range(2, 10_000):
            suffix = f" {n}"
            candidate = name[: MAX_NAME_CHARS - len(suffix)] + suffix
            if not self.name_taken(candidate):
                return candidate
        raise JoinRefused(CloseCode.ROOM_FULL, "no free name left")

    def _grow(self, capacity: int) -> None:
        for name in (
            "pos_m", "yaw", "input_seq", "input_at_s", "ack_tick", "last_ack_s", "sent_tick",
            "sent_cell",
        ):  # fmt: skip
            old = getattr(self, name)
            # -1: no tick written (0 is a tick).
            fill = -1 if name in ("sent_tick", "ack_tick") else 0
            new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _allocate_id(self, now_s: float) -> int:
        while self._cooling_ids and self._cooling_ids[0][0] <= now_s:
            heapq.heappush(self._free_ids, self._cooling_ids.popleft()[1])
        if self._free_ids:
            return heapq.heappop(self._free_ids)
        if self._next_id >= MAX_AVATAR_IDS:
            raise JoinRefused(CloseCode.ROOM_FULL, "no avatar id free; try again shortly")
        self._next_id += 1
        return self._next_id - 1

    def _spawn_point(self) -> np.ndarray:
        return self.moves.spawn(self._rng, self.pos_m[self._ids])
