"""A room: its avatars, its 20 Hz tick, its reliable events.

The lifecycle reads like a Colyseus room:

    on_create   load the room's record (look, last event seq), start the tick
    on_auth     check a hello: invite token or resume token -> who may enter, as what
    on_join     place the avatar (or reattach it), send `welcome`, announce it
    on_message  one validated client message
    on_leave    the avatar is gone for good (bye, kicked, resume window over)
    on_dispose  nobody left: stop the tick, save the record

A disconnect without `bye` is not a leave: the avatar stays, away, for the resume window.

Nothing here awaits: frames are written without blocking (`Session.write`), as
`websockets.broadcast` does, so one slow client never stalls a tick; the write buffer is watched
instead (snapshots skipped past 64 KB, the client dropped past 1 MB).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import secrets
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from neonbar.interest import MAX_AVATAR_IDS, SnapshotEncoder
from neonbar.protocol import (
    CM_PER_M,
    MAX_CHAT_CHARS,
    MAX_CLIENT_FRAME_BYTES,
    PROTOCOL_VERSION,
    TICK_HZ,
    YAW_UNITS,
    CloseCode,
    ErrorCode,
    ProtocolError,
    encode,
)
from neonbar.ratelimit import ConnectionLimits
from neonbar.tokens import TokenError, verify
from server.movement import MoveValidator
from server.sender import WriteGate
from server.snapshots import (
    YOU_TAIL_BYTES,
    can_write_directly,
    frame_batch,
    frame_header,
    snapshot_head,
    snapshot_prefix,
    write_binary_frame,
    you_tails,
)
from server.storage import KEPT_EVENT_KINDS

if TYPE_CHECKING:
    from server.app import SessionServer

log = logging.getLogger("neonbar.server")

PALETTE = ("#ff8a1f", "#ff2d55", "#2de2ff", "#b13dff", "#39ff88", "#ffd23f", "#ff3fb4", "#5b8cff")
TIPSY_PER_DRINK = 0.25
TIPSY_DECAY_PER_S = 0.1 / 60  # 0.1 per minute (docs/protocol.md)


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
    max_frame_bytes: int = MAX_CLIENT_FRAME_BYTES

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


def _header_size(frame: bytes) -> int:
    """The header size of an unmasked server frame (from its 7-bit length code)."""
    code = frame[1] & 0x7F
    return 2 if code < 126 else 4 if code == 126 else 10


def write_frame(conn: ServerConnection, frame: bytes) -> bool:
    """Queue a binary frame without awaiting (no backpressure; callers check the buffer)."""
    if conn.protocol.state is not State.OPEN:
        return False
    try:
        conn.protocol.send_binary(frame)
        conn.send_data()
    except Exception:  # the transport is going away; the handler will notice
        return False
    return True


def buffered_bytes(conn: ServerConnection) -> int:
    try:
        return conn.transport.get_write_buffer_size()
    except Exception:
        return 0


@dataclass
class Grant:
    """What on_auth decided for a hello."""

    role: str
    name: str
    name_fixed: bool
    resume_of: Avatar | None = None


@dataclass(eq=False)
class Avatar:
    id: int
    name: str
    color: str
    role: str
    resume_token: str
    name_fixed: bool = False
    muted: bool = False
    drink: dict[str, Any] | None = None
    tipsy_level: float = 0.0
    tipsy_at_s: float = 0.0
    session: Session | None = None
    away_since_s: float | None = None

    def tipsy(self, now_s: float) -> float:
        return max(0.0, self.tipsy_level - TIPSY_DECAY_PER_S * (now_s - self.tipsy_at_s))

    def roster_entry(self, now_s: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "color": self.color,
            "role": self.role,
            "muted": self.muted,
            "drink": self.drink,
            "tipsy": round(self.tipsy(now_s), 3),
        }


@dataclass(eq=False)
class Session:
    """One open connection attached to an avatar."""

    conn: ServerConnection
    avatar: Avatar
    limits: ConnectionLimits
    skipped: int = 0
    errors: int = 0
    closing: bool = False
    direct: bool = False  # snapshot frames may bypass the generic frame writer
    gate: WriteGate | None = None  # the connection's write gate (server/sender.py), if any

    def __post_init__(self) -> None:
        self.direct = can_write_directly(self.conn)
        transport = getattr(self.conn, "transport", None)
        self.gate = transport if type(transport) is WriteGate else None

    def send_state(self) -> int:
        """Bytes waiting to be written to this client; -1 when it cannot take a frame now.

        0 with a gate means idle: its snapshot may go to the sender thread.
        """
        if self.closing or self.conn.protocol.state is not State.OPEN:
            return -1
        if self.gate is not None:
            return self.gate.send_state()
        return buffered_bytes(self.conn)

    def write(self, frame: bytes) -> bool:
        """Queue one frame without awaiting; frames leave in the order they are written."""
        if self.direct:
            return write_binary_frame(self.conn, frame)
        return write_frame(self.conn, frame)

    @property
    def peer(self) -> str:
        try:
            host, port = self.conn.remote_address[:2]
            return f"{host}:{port}"
        except Exception:
            return "?"


class EventLog:
    """The room's reliable events: a sequence counter and a ring of encoded frames for resume."""

    def __init__(self, last_seq: int = 0, capacity: int = 10_000) -> None:
        self.seq = last_seq
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=capacity)

    def append(self, frame: bytes) -> None:
        self._ring.append((self.seq, frame))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def since(self, seq: int) -> Iterator[bytes]:
        """Frames of every event with a sequence number above `seq`, oldest first."""
        if not self._ring or seq >= self.seq:
            return iter(())
        first = self._ring[0][0]
        skip = max(0, seq - first + 1)
        return (frame for i, (_, frame) in enumerate(self._ring) if i >= skip)


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
        if invite.name:
            return Grant(invite.role, invite.name, True)
        return Grant(invite.role, hello["name"], False)
    if open_rooms:
        return Grant("collaborator", hello["name"], False)
    raise JoinRefused(CloseCode.AUTH_FAILED, "an invite token is required")


class Room:
    def __init__(self, name: str, server: SessionServer) -> None:
        self.name = name
        self.server = server
        self.config: RoomConfig = server.config
        self.layout = server.layout
        self.metrics = server.metrics
        self.storage = server.storage
        self.avatars: dict[int, Avatar] = {}
        self.sessions: dict[int, Session] = {}
        # The same keys in the same order: each session's write gate (None without one), and
        # the gate's socket descriptor by avatar id, so a tick touches few objects per client.
        self.gates: dict[int, WriteGate | None] = {}
        self.resume_tokens: dict[str, Avatar] = {}
        self.look = self.config.default_look
        self.events = EventLog(0, self.config.event_ring)
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
        self.gate_fd = np.zeros(0, dtype=np.int32)
        self._grow(256)
        self._ids = np.zeros(0, dtype=np.int64)  # present avatar ids, sorted
        self._free_ids: list[int] = []  # heap of ids free for reuse
        self._cooling_ids: deque[tuple[float, int]] = deque()  # (free again at, id)
        self._next_id = 1
        self._task: asyncio.Task[None] | None = None
        self._rng = np.random.default_rng()
        self.disposed = False

    # --------------------------------------------------------------------------- lifecycle

    def on_create(self) -> None:
        record = self.storage.load_room(self.name, self.config.default_look)
        self.look = record.look
        self.events = EventLog(record.last_seq, self.config.event_ring)
        self._task = asyncio.get_running_loop().create_task(
            self._run_ticks(), name=f"room {self.name} tick"
        )
        self.metrics.rooms.inc()
        log.info("room %s created (look %s, seq %d)", self.name, self.look, self.events.seq)

    def on_auth(self, hello: dict[str, Any]) -> Grant:
        """Decide who the hello is. Raises JoinRefused with the close code to use."""
        resume = hello.get("resume")
        if resume:
            avatar = self.resume_tokens.get(resume)
            if avatar is not None:
                # The resume token is a capability minted for this avatar: no invite needed.
                return Grant(avatar.role, avatar.name, avatar.name_fixed, resume_of=avatar)
        return check_invite(hello, self.name, self.server.secret, self.config.open_rooms)

    def on_join(self, conn: ServerConnection, hello: dict[str, Any], grant: Grant) -> Session:
        now_s = self.server.now_s()
        limits = ConnectionLimits(self.config.msgs_per_s, self.config.burst, now_s=now_s)
        avatar = grant.resume_of
        if avatar is not None:
            old = avatar.session
            if old is not None:
                self._detach(old)
                self.close_session(
                    old, CloseCode.REPLACED, "another connection resumed this avatar"
                )
            session = self._attach(conn, avatar, limits, now_s)
            self._send_welcome(session, resumed=True)
            since = hello.get("since")
            replayed = 0
            if since is not None:
                for frame in self.events.since(int(since)):
                    session.write(frame)
                    replayed += 1
            log.info(
                "resumed avatar %d %r in %s from %s (%d events replayed)",
                avatar.id, avatar.name, self.name, session.peer, replayed,
            )  # fmt: skip
            return session
        if len(self.avatars) >= self.config.max_avatars:
            raise JoinRefused(CloseCode.ROOM_FULL, f"room {self.name} is full")
        avatar_id = self._allocate_id(now_s)
        if avatar_id >= len(self.pos_m):
            self._grow(min(MAX_AVATAR_IDS, 2 * len(self.pos_m)))
        color = hello.get("color") or PALETTE[avatar_id % len(PALETTE)]
        avatar = Avatar(
            id=avatar_id,
            name=grant.name,
            color=color,
            role=grant.role,
            resume_token=secrets.token_urlsafe(24),
            name_fixed=grant.name_fixed,
        )
        self.input_seq[avatar_id] = 0
        self.input_at_s[avatar_id] = now_s
        self.avatars[avatar_id] = avatar
        self.resume_tokens[avatar.resume_token] = avatar
        self.pos_m[avatar_id] = self._spawn_point()
        self.yaw[avatar_id] = round(self.layout.spawn_yaw_deg / 360.0 * YAW_UNITS) % YAW_UNITS
        self._ids = np.array(sorted(self.avatars), dtype=np.int64)
        self.metrics.avatars.inc()
        session = self._attach(conn, avatar, limits, now_s)
        self._send_welcome(session, resumed=False)
        self.emit("join", avatar=avatar.id, name=avatar.name, color=avatar.color, role=avatar.role)
        log.info(
            "join: avatar %d %r (%s) in %s from %s",
            avatar.id, avatar.name, avatar.role, self.name, session.peer,
        )  # fmt: skip
        return session

    def on_leave(self, avatar: Avatar, reason: str) -> None:
        if self.avatars.pop(avatar.id, None) is None:
            return
        if avatar.session is not None:
            self._detach(avatar.session)
        self.resume_tokens.pop(avatar.resume_token, None)
        self.pending.pop(avatar.id, None)
        self._ids = np.array(sorted(self.avatars), dtype=np.int64)
        # Ids come back only after the resume window, so a late snapshot or event about the old
        # avatar can never be mistaken for a newcomer.
        self._cooling_ids.append((self.server.now_s() + self.config.resume_window_s, avatar.id))
        self.metrics.avatars.dec()
        self.emit("leave", avatar=avatar.id, reason=reason)
        log.info("leave: avatar %d %r from %s (%s)", avatar.id, avatar.name, self.name, reason)

    def on_dispose(self) -> None:
        self.disposed = True
        if self._task is not None:
            self._task.cancel()
        self.storage.save_room(self.name, self.look, self.events.seq)
        self.metrics.rooms.dec()
        log.info("room %s disposed", self.name)

    def on_disconnect(self, session: Session) -> None:
        """The connection ended without `bye`: the avatar stays, away, for the resume window."""
        avatar = session.avatar
        if self.server.collector is not None:
            self.server.collector.note_disconnect()
        if avatar.session is session:
            self._detach(session)
            if avatar.id in self.avatars:
                log.info(
                    "away: avatar %d %r in %s (code %s)",
                    avatar.id, avatar.name, self.name, session.conn.close_code,
                )  # fmt: skip

    # ---------------------------------------------------------------------------- messages

    def on_message(self, session: Session, msg: dict[str, Any], now_s: float | None = None) -> None:
        """Apply one validated message. Raises ProtocolError for refusals."""
        kind = msg["t"]
        avatar = session.avatar
        if now_s is None:
            now_s = self.server.now_s()
        if kind == "input":
            ack, aid, seq = msg["ack"], avatar.id, msg["seq"]
            if ack < 0:
                self.ack_tick[aid] = -1  # the client lost its base: the next snapshot is full
            else:
                known = int(self.ack_tick[aid])
                # Only a snapshot written to this client recently can be a base.
                if ack != known and self.sent_tick[aid, ack % self.sent_tick.shape[1]] == ack:
                    if ack > known:
                        self.last_ack_s[aid] = now_s
                    self.ack_tick[aid] = ack
            # Inputs are absolute claims: only the newest matters. Seq 0 is accepted once.
            waiting = self.pending.get(aid)
            newest = waiting[3] if waiting is not None else int(self.input_seq[aid])
            if seq > newest or (seq == 0 and newest == 0):
                self.pending[aid] = (msg["x"], msg["y"], msg["yaw"], seq, now_s)
        elif kind == "ping":
            pong = encode({"t": "pong", "ct": msg["ct"], "st": now_s})
            session.write(pong)
        elif kind == "chat":
            if avatar.role == "viewer":
                raise ProtocolError(ErrorCode.NOT_ALLOWED, "viewers cannot chat", "chat")
            if avatar.muted:
                raise ProtocolError(ErrorCode.MUTED, "a host muted you", "chat")
            self.emit("chat", avatar=avatar.id, text=msg["text"])
        elif kind == "emote":
            self.emit("emote", avatar=avatar.id, emote=msg["emote"])
        elif kind == "drink":
            drink = {k: msg[k] for k in ("drink", "color", "glow", "garnish")}
            avatar.drink = drink
            avatar.tipsy_level = min(1.0, avatar.tipsy(now_s) + TIPSY_PER_DRINK)
            avatar.tipsy_at_s = now_s
            self.emit("drink", avatar=avatar.id, **drink)
        elif kind == "profile":
            self._on_profile(avatar, msg)
        elif kind in ("kick", "mute", "look"):
            self._on_host_action(avatar, msg)
        elif kind == "bye":
            self.on_leave(avatar, "left")
            self.close_session(session, CloseCode.NORMAL, "bye")
        elif kind == "hello":
            raise ProtocolError(ErrorCode.BAD_STATE, "already joined: hello is sent once", "hello")

    def _on_profile(self, avatar: Avatar, msg: dict[str, Any]) -> None:
        change: dict[str, Any] = {}
        if "name" in msg:
            if avatar.name_fixed:
                raise ProtocolError(ErrorCode.NOT_ALLOWED, "your invite fixes your name", "profile")
            avatar.name = change["name"] = msg["name"]
        if "color" in msg:
            avatar.color = change["color"] = msg["color"]
        if not change:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "profile: nothing to change", "profile")
        self.emit("profile", avatar=avatar.id, **change)

    def _on_host_action(self, avatar: Avatar, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if avatar.role != "host":
            raise ProtocolError(ErrorCode.NOT_ALLOWED, f"only hosts may {kind}", kind)
        if kind == "look":
            self.look = msg["look"]
            self.storage.save_room(self.name, self.look, self.events.seq)
            self.emit("look", look=self.look, by=avatar.id)
            return
        target = self.avatars.get(msg["avatar"])
        if target is None:
            raise ProtocolError(ErrorCode.NO_SUCH_AVATAR, f"no avatar {msg['avatar']}", kind)
        if target is avatar:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"you cannot {kind} yourself", kind)
        if kind == "mute":
            target.muted = msg["muted"]
            self.emit("mute", avatar=target.id, muted=target.muted, by=avatar.id)
            log.info(
                "mute: avatar %d %s by %d in %s", target.id, target.muted, avatar.id, self.name
            )
            return
        self.emit("kick", avatar=target.id, by=avatar.id)
        session = target.session
        self.on_leave(target, "kicked")
        if session is not None:
            self.close_session(session, CloseCode.KICKED, "a host removed you")
        log.info("kick: avatar %d %r by %d in %s", target.id, target.name, avatar.id, self.name)

    # ------------------------------------------------------------------------------ events

    def emit(self, kind: str, **fields: Any) -> int:
        """Sequence one reliable event and send it to everyone connected, the sender included."""
        seq = self.events.next_seq()
        msg = {"t": "event", "seq": seq, "st": self.server.now_s(), "kind": kind, **fields}
        frame = encode(msg)
        self.events.append(frame)
        self.metrics.events.labels(kind).inc()
        if kind in KEPT_EVENT_KINDS:
            self.storage.append_event(self.name, seq, kind, fields)
            self.storage.save_room(self.name, self.look, seq)
        sent = 0
        for session in list(self.sessions.values()):
            if session.write(frame):
                sent += 1
            # Events are never skipped; a client that cannot keep up is dropped and will
            # get them on resume instead.
            if buffered_bytes(session.conn) > self.config.max_buffer_bytes:
                self._drop_slow(session, "write buffer over the hard bound")
        self.metrics.bytes_out.labels("event").inc(len(frame) * sent)
        return seq

    # -------------------------------------------------------------------------------- tick

    async def _run_ticks(self) -> None:
        loop = asyncio.get_running_loop()
        period_s = 1.0 / TICK_HZ
        next_s = loop.time()
        while True:
            next_s += period_s
            delay_s = next_s - loop.time()
            if delay_s < -5 * period_s:
                next_s = loop.time()  # far behind: skip ticks rather than burst to catch up
            await asyncio.sleep(max(0.0, delay_s))
            self.metrics.tick_late_seconds.observe(max(0.0, loop.time() - next_s))
            started, started_cpu = time.perf_counter(), time.thread_time()
            try:
                self.step()
            except Exception:
                self.metrics.exceptions.inc()
                log.exception("tick %d of room %s failed", self.tick, self.name)
            self.metrics.tick_seconds.observe(time.perf_counter() - started)
            # CPU time of the tick on this thread: what the tick costs, whatever else runs.
            self.metrics.tick_cpu_seconds.observe(time.thread_time() - started_cpu)
            if self.server.collector is not None:
                self.server.collector.after_tick()
            if self.tick % TICK_HZ == 0:
                self._housekeeping()
                if not self.avatars:
                    self.server.dispose_room(self)
                    return

    def step(self) -> None:
        """One tick: apply inputs, separate the crowd, send snapshots."""
        self.tick += 1
        self._apply_inputs()
        ids = self._ids
        if len(ids) > 1 and self.moves.crowd:
            self.pos_m[ids] = self.moves.separate(self.pos_m[ids])
        self._send_snapshots(ids)

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
        self.pos_m[ids] = self.moves.validate(self.pos_m[ids], claimed_m, elapsed_s)
        self.yaw[ids] = claims[:, 2].astype(np.uint16)
        self.input_seq[ids] = claims[:, 3].astype(np.int64)
        self.input_at_s[ids] = arrived_s

    def _send_snapshots(self, ids: np.ndarray) -> None:
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
        tick, st, config = self.tick, self.server.now_s(), self.config

        # Who takes a snapshot now: one look at each connection, then arrays.
        # A gate that nothing touched since it was last found idle is idle (no call needed);
        # the others are asked (closing sessions are marked dirty by close_session).
        gates = list(self.gates.values())
        state = np.fromiter(
            (0 if g is not None and not (g.dirty or g.inflight) else -2 for g in gates),
            np.int64,
            len(gates),
        )
        for i in np.flatnonzero(state == -2).tolist():
            state[i] = sessions[i].send_state()
        stale = self.last_ack_s[sids] < st - config.ack_timeout_s
        full = state > config.snapshot_skip_bytes
        skipped = 0
        for i in np.flatnonzero((state >= 0) & (stale | full)).tolist():  # rare
            session = sessions[i]
            if state[i] > config.max_buffer_bytes:
                self._drop_slow(session, f"write buffer {state[i]} bytes")
            elif stale[i]:
                self._drop_slow(session, "no snapshot acked")
            else:
                session.skipped += 1
                skipped += 1
        served = np.flatnonzero((state >= 0) & ~stale & ~full)
        if skipped:
            self.metrics.snapshots_skipped.inc(skipped)
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
        group_heads = []
        for body in bodies:
            prefix = snapshot_prefix(tick, st, body, head)
            group_heads.append(frame_header(len(prefix) + YOU_TAIL_BYTES) + prefix)
        # Every client's frame, back to back in one buffer.
        you = index[served]
        tails = you_tails(x_cm[you], y_cm[you], yaw[you], self.input_seq[served_ids])
        buf, starts, ends = frame_batch(group_heads, client_group, tails)

        # Frames for idle connections go to the sender thread as one batch (server/sender.py);
        # the others through the connection's transport, behind what it already holds.
        sender = self.server.sender
        idle = state[served] == 0
        batch_rows = np.flatnonzero(idle) if sender is not None else np.zeros(0, np.int64)
        batch_gates = [gates[i] for i in served[batch_rows].tolist()]
        if None in batch_gates:  # connections without a gate write on their own (below)
            has_gate = np.array([g is not None for g in batch_gates], dtype=bool)
            batch_rows = batch_rows[has_gate]
            batch_gates = [g for g in batch_gates if g is not None]
        if batch_gates:
            assert sender is not None
            batch_ids = served_ids[batch_rows]
            sender.submit(
                batch_gates,  # type: ignore[arg-type]
                buf,
                starts[batch_rows],
                ends[batch_rows],
                self.gate_fd[batch_ids],
            )
        direct_rows = np.ones(len(served), dtype=bool)
        direct_rows[batch_rows] = False
        failed = 0
        for row in np.flatnonzero(direct_rows).tolist():  # busy or gate-less connections
            session = sessions[served[row]]
            frame = buf[starts[row] : ends[row]].tobytes()
            if session.direct:
                try:
                    session.conn.transport.write(frame)
                    continue
                except Exception:  # the transport is closing; the handler will notice
                    pass
            elif write_frame(session.conn, frame[_header_size(frame) :]):
                continue
            failed += 1
        slot = tick % self.sent_tick.shape[1]
        self.sent_tick[served_ids, slot] = tick
        self.sent_cell[served_ids, slot] = served_cells
        self.metrics.snapshots_sent.inc(len(served) - failed)
        self.metrics.bytes_out.labels("snap").inc(len(buf))

    def _housekeeping(self) -> None:
        now_s = self.server.now_s()
        deadline = now_s - self.config.resume_window_s
        for avatar in [a for a in self.avatars.values() if a.session is None]:
            if avatar.away_since_s is not None and avatar.away_since_s < deadline:
                self.on_leave(avatar, "timeout")

    # ------------------------------------------------------------------------------ helpers

    def _attach(
        self, conn: ServerConnection, avatar: Avatar, limits: ConnectionLimits, now_s: float
    ) -> Session:
        session = Session(conn, avatar, limits)
        aid = avatar.id
        self.ack_tick[aid] = -1
        self.last_ack_s[aid] = now_s
        self.sent_tick[aid] = -1  # a new connection holds none of the snapshots sent before
        avatar.session = session
        avatar.away_since_s = None
        self.sessions[avatar.id] = session
        self.gates[avatar.id] = session.gate
        if session.gate is not None:
            self.gate_fd[avatar.id] = session.gate.socket_fd()
        return session

    def _detach(self, session: Session) -> None:
        avatar = session.avatar
        if avatar.session is session:
            avatar.session = None
            avatar.away_since_s = self.server.now_s()
            self.sessions.pop(avatar.id, None)
            self.gates.pop(avatar.id, None)

    def close_session(self, session: Session, code: CloseCode, reason: str) -> None:
        if session.closing:
            return
        session.closing = True
        if session.gate is not None:
            session.gate.dirty = True  # ticks must look at this session again
        self.metrics.drops.labels(code.name.lower()).inc()
        self.server.close_later(session.conn, code, reason)

    def _drop_slow(self, session: Session, why: str) -> None:
        log.warning(
            "slow client: avatar %d %r in %s from %s: %s (%d snapshots skipped); closing 4408",
            session.avatar.id, session.avatar.name, self.name, session.peer, why, session.skipped,
        )  # fmt: skip
        self._detach(session)
        self.close_session(session, CloseCode.TOO_SLOW, "too slow: resume with your token")

    def _send_welcome(self, session: Session, resumed: bool) -> None:
        avatar = session.avatar
        now_s = self.server.now_s()
        x_m, y_m = self.pos_m[avatar.id]
        welcome = {
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
            "seq": self.events.seq,
            "pos": [round(x_m * CM_PER_M), round(y_m * CM_PER_M), int(self.yaw[avatar.id])],
            "avatars": [a.roster_entry(now_s) for a in self.avatars.values()],
            "limits": self.config.limits(),
            "look": self.look,
            "layout": self.layout.name,
        }
        session.write(encode(welcome))

    def _grow(self, capacity: int) -> None:
        for name in (
            "pos_m", "yaw", "input_seq", "input_at_s", "ack_tick", "last_ack_s", "sent_tick",
            "sent_cell", "gate_fd",
        ):  # fmt: skip
            old = getattr(self, name)
            # -1: no tick written, no descriptor (0 is a tick and a descriptor).
            fill = -1 if name in ("sent_tick", "gate_fd", "ack_tick") else 0
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
