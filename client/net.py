"""The protocol client: one connection to a Neon Bar room (spec: docs/protocol.md).

`AsyncSession` is the asyncio client used by headless bots and, through `NetSession`, by the
desktop app: hello/welcome, inputs at 20 Hz with sequence numbers and snapshot acks, snapshots
into a `WorldView`, ping/pong clock sync, reliable events delivered once and in order, and
resume with exponential backoff when the connection drops. Nothing the server sends can crash it:
a malformed frame is logged and counted, an `error` message is logged and handed to the app.

`NetSession` runs an `AsyncSession` on its own event loop in a daemon thread, so the Panda3D
frame loop never waits on the network: every method it calls is non-blocking. (Measured against
stepping the asyncio loop inside a frame task: see BENCHMARKS.md, "Client networking".)

No Panda3D here: this module is imported by bots and tests that have no window.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from neonbar import protocol
from neonbar.clocksync import BURST_PINGS, ClockSync, ping_interval_s
from neonbar.protocol import CM_PER_M, YAW_UNITS, CloseCode, ErrorCode, ProtocolError
from neonbar.worldview import WorldView

log = logging.getLogger("neonbar.net")

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

CLIENT_ID = "neonbar-py/1"

# Close codes after which reconnecting would not help; the sentence goes to the HUD.
FINAL_CLOSES: dict[int, str] = {
    CloseCode.PROTOCOL: "this client speaks a different protocol version than the server",
    CloseCode.AUTH_FAILED: "the server refused the invite token",
    CloseCode.TOKEN_EXPIRED: "the invite has expired; ask the host for a new one",
    CloseCode.KICKED: "kicked by host",
    CloseCode.WRONG_ROOM: "the invite is for another room",
    CloseCode.REPLACED: "this avatar was taken over by another connection",
    CloseCode.ROOM_FULL: "the room is full; try again later",
}
# Close codes after which we reconnect and resume the same avatar.
RESUMABLE_CLOSES: dict[int, str] = {
    CloseCode.GOING_AWAY: "the server is restarting",
    CloseCode.TOO_SLOW: "the connection was too slow",
    CloseCode.POLICY: "the server closed the connection (policy)",
    CloseCode.FLOOD: "the server closed the connection (too many messages)",
    CloseCode.INTERNAL: "the server had an internal error",
}
# A failed resume (token unknown or too old) closes with one of these: join afresh once.
_RESUME_REFUSALS = (CloseCode.AUTH_FAILED, CloseCode.TOKEN_EXPIRED, CloseCode.PROTOCOL)


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class ConnectError(OSError):
    """The first connection attempt failed (refused, unreachable, bad URL, bad handshake)."""


@dataclass
class SessionStats:
    """Counters for tests, bots and the HUD."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    snapshots: int = 0
    events: int = 0  # reliable events delivered (after dedupe)
    malformed: int = 0  # frames that failed to decode or validate
    errors: int = 0  # `error` messages from the server
    duplicate_events: int = 0
    event_gaps: int = 0
    reconnects: int = 0
    welcomes: int = 0
    close_codes: list[int] = field(default_factory=list)  # every close, in order
    latency_s: list[float] = field(default_factory=list)  # snapshot st -> receipt, server clock
    connected_at_local_s: float | None = None


def _backoff_s(attempt: int, base_s: float = 0.25, cap_s: float = 8.0) -> float:
    """Exponential backoff with full jitter, so a restarted server is not hit by a herd."""
    return random.uniform(0.5, 1.0) * min(cap_s, base_s * 2**attempt)


class AsyncSession:
    """One client connection on the running asyncio loop.

    Args:
        server_url: ws://host:port
        room, name, token, color: what `hello` carries (token may be None on an --open server).
        light: skip snapshot reconstruction and interpolation; ack each snapshot's tick as is.
            For load generators only: the server does the same work, the client almost none.
        own_timers: run the 20 Hz input and 1 Hz ping timers here. Bots turn this off and drive
            `send_input()` / `send_ping()` from one shared timer, which is far cheaper than one
            timer task per connection.
        retry_first_connect: keep retrying when the very first connection fails (the desktop
            app does; bots and tests want `ConnectError` at once).
        record_latency: keep one latency sample per snapshot in `stats.latency_s`.
        view_lock: held while the world view changes (NetSession samples it from another
            thread).
        clock: monotonic local clock in seconds.
    """

    def __init__(
        self,
        server_url: str,
        room: str,
        name: str,
        token: str | None = None,
        color: str | None = None,
        *,
        light: bool = False,
        own_timers: bool = True,
        retry_first_connect: bool = False,
        record_latency: bool = False,
        input_hz: float = 20.0,
        ping_interval_s: float = 1.0,
        welcome_timeout_s: float = 10.0,
        view_lock: threading.Lock | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_inbox: int = 10_000,
    ) -> None:
        self.server_url = server_url
        self.room = room
        self.name = name
        self.token = token
        self.color = color
        self.light = light
        self.own_timers = own_timers
        self.retry_first_connect = retry_first_connect
        self.record_latency = record_latency
        self.input_period_s = 1.0 / input_hz
        self.ping_interval_s = ping_interval_s
        self.welcome_timeout_s = welcome_timeout_s
        self.clock = clock
        self.view_lock = view_lock or threading.Lock()

        self.state = ConnectionState.CONNECTING
        self.ping_ms: float | None = None
        self.you: int | None = None
        self.role: str | None = None
        self.last_error: str | None = None
        self.roster: dict[int, dict[str, Any]] = {}
        self.welcome: dict[str, Any] | None = None
        self.limits: dict[str, Any] = {}
        self.view = WorldView(interpolate=not light)
        self.clock_sync = ClockSync(settle_samples=BURST_PINGS)  # the burst after welcome
        self.stats = SessionStats()
        self.inbox: deque[dict[str, Any]] = deque(maxlen=max_inbox)
        self.on_message: Callable[[dict[str, Any]], None] | None = None

        self.resume_token: str | None = None
        self.last_event_seq = 0
        self.input_seq = 0
        self.light_ack = -1
        self.local_state: tuple[float, float, float] | None = None
        self.sent_states: dict[int, tuple[float, float, float]] = {}
        self._outbox: deque[dict[str, Any]] = deque(maxlen=64)
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._welcomed = asyncio.Event()
        self._closed = asyncio.Event()
        self._stop_evt = asyncio.Event()

    # ------------------------------------------------------------------ what the app calls

    def set_local_state(self, x_m: float, y_m: float, yaw_rad: float) -> None:
        """The predicted local avatar state; the next input carries it."""
        self.local_state = (x_m, y_m, yaw_rad)

    def queue_message(self, msg: dict[str, Any]) -> None:
        """Validate and send a chat/emote/drink/profile/kick/mute/look message.

        An invalid message is not sent; an `error` (with "local": True) goes to the inbox
        instead. While disconnected, messages wait (up to 64) and go out after the resume.
        """
        try:
            protocol.validate_client(msg)
        except ProtocolError as exc:
            self._deliver({**protocol.error_message(exc), "local": True})
            return
        self._outbox.append(dict(msg))
        if self._ws is not None and self._welcomed.is_set():
            self._spawn(self._flush_outbox())

    def correction(self) -> tuple[float, float, float, int] | None:
        """The server's latest authoritative state of your avatar: x_m, y_m, yaw_rad, last_seq."""
        you = self.view.you
        if you is None:
            return None
        x_cm, y_cm, yaw, seq = you
        return x_cm / CM_PER_M, y_cm / CM_PER_M, yaw * 2 * math.pi / YAW_UNITS, seq

    def server_time(self) -> float:
        return self.clock_sync.server_time(self.clock())

    async def wait_welcome(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._welcomed.wait(), timeout_s)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        """Say bye and close; `run()` returns."""
        self._stopping = True
        self._stop_evt.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.send(protocol.encode({"t": "bye"})), 1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        self.state = ConnectionState.CLOSED

    def drop(self) -> None:
        """Abort the transport without a close handshake (tests: simulate a network drop)."""
        if self._ws is not None:
            self._ws.transport.abort()

    # --------------------------------------------------------------------- connection loop

    async def run(self) -> None:
        """Connect and stay connected until `close()` or a final close code.

        Raises:
            ConnectError: the first attempt failed and `retry_first_connect` is off.
        """
        attempt = 0
        try:
            while not self._stopping:
                retry_now = False
                try:
                    retry_now = await self._connect_unless_stopped()
                    attempt = 0 if self._welcomed.is_set() else attempt
                except (OSError, InvalidHandshake, TimeoutError) as exc:
                    reason = _describe_connect_failure(self.server_url, exc)
                    self.last_error = reason
                    if self.stats.connected_at_local_s is None and not self.retry_first_connect:
                        self.state = ConnectionState.CLOSED
                        raise ConnectError(reason) from None
                    log.info("%s; retrying", reason)
                except InvalidURI:
                    self.last_error = f"{self.server_url!r} is not a ws:// URL"
                    self.state = ConnectionState.CLOSED
                    raise ConnectError(self.last_error) from None
                if self._stopping or self.state is ConnectionState.CLOSED:
                    break
                self.state = (
                    ConnectionState.RECONNECTING
                    if self.stats.connected_at_local_s is not None
                    else ConnectionState.CONNECTING
                )
                if not retry_now:
                    with contextlib.suppress(TimeoutError):  # close() ends the wait early
                        await asyncio.wait_for(self._stop_evt.wait(), _backoff_s(attempt))
                    attempt += 1
                    if self._stopping:
                        break
                self.stats.reconnects += 1
        finally:
            if self._stopping or self.state is ConnectionState.CLOSED:
                self.state = ConnectionState.CLOSED
            self._ws = None
            self._closed.set()

    async def _connect_unless_stopped(self) -> bool:
        """`_connect_once`, abandoned (after a bounded grace for the bye) when close() is called."""
        conn = asyncio.ensure_future(self._connect_once())
        stop = asyncio.ensure_future(self._stop_evt.wait())
        try:
            await asyncio.wait({conn, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not conn.done():
            # close() already sent bye on an open connection; give the close handshake a
            # moment, then abandon whatever is still pending (e.g. a handshake in progress).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(conn, 3.0)
            return False
        return conn.result()

    async def _connect_once(self) -> bool:
        """One connection's life. Returns True to retry at once (resume refused)."""
        self._welcomed.clear()
        async with connect(
            self.server_url,
            max_size=protocol.MAX_SERVER_FRAME_BYTES,
            open_timeout=5.0,
            close_timeout=2.0,
            compression=None,  # frames are already compact binary; deflate costs CPU
            user_agent_header=CLIENT_ID,
        ) as ws:
            if self._stopping:
                return False  # closed while connecting: leave before saying hello
            self._ws = ws
            tried_resume = self.resume_token is not None
            await self._send(self._hello())
            timers: list[asyncio.Task[None]] = [asyncio.create_task(self._welcome_watchdog(ws))]
            try:
                async for frame in ws:
                    self._on_frame(frame)
                    if self._welcomed.is_set() and len(timers) == 1 and self.own_timers:
                        timers += [
                            asyncio.create_task(self._input_timer()),
                            asyncio.create_task(self._ping_timer()),
                        ]
            except ConnectionClosed:
                pass
            finally:
                for task in timers:
                    task.cancel()
                self._ws = None
            return self._handle_close(ws, tried_resume)

    async def _welcome_watchdog(self, ws: ClientConnection) -> None:
        """A server that accepts the socket but never welcomes us is treated as a drop."""
        await asyncio.sleep(self.welcome_timeout_s)
        if not self._welcomed.is_set():
            log.warning("no welcome within %.0f s; closing", self.welcome_timeout_s)
            self.last_error = "the server did not answer the hello"
            ws.transport.abort()

    def _handle_close(self, ws: ClientConnection, tried_resume: bool) -> bool:
        code = ws.close_code if ws.close_code is not None else 1006
        reason = ws.close_reason or ""
        self.stats.close_codes.append(code)
        if self._stopping:
            return False
        if code in _RESUME_REFUSALS and tried_resume:
            # The avatar could not be resumed (window passed, server restarted): join afresh.
            log.info("resume refused (%s %s); joining as a new avatar", code, reason)
            self.resume_token = None
            return True
        if code in FINAL_CLOSES:
            self.last_error = FINAL_CLOSES[code]
            if code == CloseCode.AUTH_FAILED and not self.token:
                self.last_error = "this room needs an invite: ask the host for a join link"
            log.warning("connection closed for good: %s (%s %s)", self.last_error, code, reason)
            self.state = ConnectionState.CLOSED
            return False
        self.last_error = RESUMABLE_CLOSES.get(code, "the connection dropped") + "; reconnecting"
        log.info("connection closed (%s %s): %s", code, reason, self.last_error)
        return False

    def _hello(self) -> dict[str, Any]:
        hello: dict[str, Any] = {
            "t": "hello",
            "v": protocol.PROTOCOL_VERSION,
            "room": self.room,
            "name": self.name,
            "token": self.token,
            "client": CLIENT_ID,
        }
        if self.color:
            hello["color"] = self.color
        if self.resume_token:
            hello["resume"] = self.resume_token
            hello["since"] = self.last_event_seq
        return hello

    async def _send(self, msg: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        data = protocol.encode(msg)
        self.stats.frames_out += 1
        self.stats.bytes_out += len(data)
        # On a closed connection the reader sees the close and decides what to do.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(data)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference until done, or it may be collected
        task.add_done_callback(self._tasks.discard)

    async def _flush_outbox(self) -> None:
        while self._outbox and self._ws is not None and self._welcomed.is_set():
            await self._send(self._outbox.popleft())

    # -------------------------------------------------------------------------- timers

    async def _input_timer(self) -> None:
        next_s = self.clock()
        while True:
            await self.send_input()
            next_s += self.input_period_s
            delay_s = next_s - self.clock()
            if delay_s < -self.input_period_s:  # fell behind (suspended?): do not burst
                next_s = self.clock()
                delay_s = 0.0
            await asyncio.sleep(max(0.0, delay_s))

    async def _ping_timer(self) -> None:
        sent = 0
        while True:
            await self.send_ping()
            sent += 1  # a burst after connecting: in sync within ~0.5 s (neonbar.clocksync)
            await asyncio.sleep(ping_interval_s(sent, self.ping_interval_s))

    async def send_input(self) -> None:
        """Send the current local state with the next sequence number and the snapshot ack."""
        if self._ws is None or not self._welcomed.is_set() or self.local_state is None:
            return
        x_m, y_m, yaw_rad = self.local_state
        self.input_seq += 1
        self.sent_states[self.input_seq] = self.local_state
        self.sent_states.pop(self.input_seq - 128, None)
        ack = self.light_ack if self.light else self.view.ack
        await self._send(
            {
                "t": "input",
                "seq": self.input_seq,
                "ack": ack,
                "x": max(-32768, min(32767, round(x_m * CM_PER_M))),
                "y": max(-32768, min(32767, round(y_m * CM_PER_M))),
                "yaw": protocol.yaw_to_units(yaw_rad),
            }
        )

    async def send_ping(self) -> None:
        if self._ws is not None and self._welcomed.is_set():
            await self._send({"t": "ping", "ct": self.clock()})

    # ------------------------------------------------------------------------- inbound

    def _on_frame(self, frame: bytes | str) -> None:
        now_s = self.clock()
        self.stats.frames_in += 1
        self.stats.bytes_in += len(frame)
        light = self.light and isinstance(frame, bytes) and self._welcomed.is_set()
        if light and self._on_light_frame(frame, now_s):  # type: ignore[arg-type]
            return
        try:
            msg = protocol.decode_server(frame)  # type: ignore[arg-type]
        except ProtocolError as exc:
            self.stats.malformed += 1
            log.warning("dropped a malformed frame from the server: %s", exc.message)
            return
        kind = msg["t"]
        try:
            if kind == "snap":
                self._on_snapshot(msg, now_s)
            elif kind == "event":
                self._on_event(msg)
            elif kind == "pong":
                self.clock_sync.add_sample(msg["ct"], msg["st"], now_s)
                if self.clock_sync.last_rtt_s is not None:
                    self.ping_ms = self.clock_sync.last_rtt_s * 1000.0
            elif kind == "welcome":
                self._on_welcome(msg, now_s)
            elif kind == "error":
                self.stats.errors += 1
                log.warning("server error %s (%s): %s", msg["code"], msg.get("ref"), msg["message"])
                self._deliver(msg)
            else:  # a feature's own message (e.g. `faces`): the app decides what it means
                self._deliver(msg)
        except (ProtocolError, ValueError, TypeError, KeyError, IndexError) as exc:
            # Valid framing but contents we cannot use (e.g. a bad snapshot section).
            self.stats.malformed += 1
            log.warning("dropped an unusable %s message: %s", kind, exc)

    def _on_light_frame(self, frame: bytes, now_s: float) -> bool:
        """Load-test fast path: pick the tick out of a snapshot without full validation."""
        try:
            msg = msgpack.unpackb(frame, raw=False)
        except Exception:
            return False
        if not isinstance(msg, dict):
            return False
        if msg.get("t") == "event":
            # Joins alone are O(N^2) frames while a crowd arrives: a load bot only keeps the
            # sequence number it needs to resume.
            seq = msg.get("seq")
            if not isinstance(seq, int) or seq <= self.last_event_seq:
                return isinstance(seq, int)
            self.last_event_seq = seq
            self.stats.events += 1
            return True
        if msg.get("t") != "snap":
            return False
        tick, st = msg.get("tick"), msg.get("st")
        if not isinstance(tick, int) or not isinstance(st, (int, float)):
            return False
        self.light_ack = tick
        self.stats.snapshots += 1
        if self.record_latency and self.clock_sync.synced:
            self.stats.latency_s.append(self.clock_sync.server_time(now_s) - st)
        return True

    def _on_snapshot(self, msg: dict[str, Any], now_s: float) -> None:
        with self.view_lock:
            self.view.apply(msg)
        self.light_ack = msg["tick"]
        self.stats.snapshots += 1
        if self.record_latency and self.clock_sync.synced:
            self.stats.latency_s.append(self.clock_sync.server_time(now_s) - msg["st"])

    def _on_welcome(self, msg: dict[str, Any], now_s: float) -> None:
        resumed = bool(msg["resumed"]) and self.you == msg["you"]
        self.stats.welcomes += 1
        self.welcome = msg
        self.you = msg["you"]
        self.role = msg["role"]
        self.resume_token = msg["resume"]
        self.limits = msg["limits"] if isinstance(msg["limits"], dict) else {}
        self.clock_sync.hint(msg["st"], now_s)
        self.roster = _roster_from(msg["avatars"], msg["st"])
        with self.view_lock:
            if not resumed:
                self.view.reset()
                self.last_event_seq = msg["seq"]
            # The new connection has no acked snapshot on the server side yet.
            self.view.ack = -1
        self.light_ack = -1
        pos = msg["pos"]
        if (self.local_state is None or not resumed) and len(pos) == 3:
            self.local_state = (
                pos[0] / CM_PER_M,
                pos[1] / CM_PER_M,
                float(protocol.units_to_yaw(pos[2] % YAW_UNITS)),
            )
        self.state = ConnectionState.CONNECTED
        self.last_error = None
        if self.stats.connected_at_local_s is None:
            self.stats.connected_at_local_s = now_s
        self._welcomed.set()
        self._deliver(msg)
        if self._outbox:
            self._spawn(self._flush_outbox())

    def _on_event(self, msg: dict[str, Any]) -> None:
        seq = msg["seq"]
        if seq <= self.last_event_seq:
            self.stats.duplicate_events += 1
            return
        if seq != self.last_event_seq + 1 and self.last_event_seq:
            self.stats.event_gaps += 1
            log.info("event seq jumped from %d to %d", self.last_event_seq, seq)
        self.last_event_seq = seq
        self.stats.events += 1
        self._apply_event(msg)
        self._deliver(msg)

    def _apply_event(self, msg: dict[str, Any]) -> None:
        reaction = EVENT_REACTIONS.get(msg["kind"])
        if reaction is not None:
            reaction(self, msg)

    def _deliver(self, msg: dict[str, Any]) -> None:
        self.inbox.append(msg)
        if self.on_message is not None:
            self.on_message(msg)


# ---------------------------------------------------------------------- event reactions
#
# What each event kind does to the session's own state (the roster, the world view); the app
# and the bots get every event afterwards too (`on_message` / `inbox`). A feature adds its
# reaction with `@reacts_to(KIND)` (docs/room.md). The roster is copy-on-write: the app
# iterates it from another thread (NetSession), so a change builds a new dict and swaps it in.

EventReaction = Callable[["AsyncSession", dict[str, Any]], None]
EVENT_REACTIONS: dict[str, EventReaction] = {}


def reacts_to(kind: protocol.EventKind) -> Callable[[EventReaction], EventReaction]:
    """Register the session's reaction to one event kind (one per kind)."""

    def register(fn: EventReaction) -> EventReaction:
        if kind.name in EVENT_REACTIONS and EVENT_REACTIONS[kind.name] is not fn:
            raise ValueError(f"event kind {kind.name!r} already has a reaction")
        EVENT_REACTIONS[kind.name] = fn
        return fn

    return register


def _update_entry(session: AsyncSession, avatar: int, **change: Any) -> None:
    if avatar in session.roster:
        session.roster = {**session.roster, avatar: {**session.roster[avatar], **change}}


@reacts_to(protocol.JOIN)
def _on_join(session: AsyncSession, msg: dict[str, Any]) -> None:
    session.roster = {
        **session.roster,
        msg["avatar"]: {
            "name": msg["name"],
            "color": msg["color"],
            "role": msg["role"],
            "muted": False,
            "drink": None,
            "tipsy": 0.0,
            "tipsy_st": msg["st"],
        },
    }


@reacts_to(protocol.LEAVE)
def _on_leave(session: AsyncSession, msg: dict[str, Any]) -> None:
    avatar = msg["avatar"]
    session.roster = {k: v for k, v in session.roster.items() if k != avatar}
    if avatar != session.you:
        with session.view_lock:
            session.view.remove(avatar)


@reacts_to(protocol.PROFILE)
def _on_profile(session: AsyncSession, msg: dict[str, Any]) -> None:
    _update_entry(session, msg["avatar"], **{k: msg[k] for k in ("name", "color") if k in msg})


@reacts_to(protocol.MUTE)
def _on_mute(session: AsyncSession, msg: dict[str, Any]) -> None:
    _update_entry(session, msg["avatar"], muted=msg["muted"])


@reacts_to(protocol.DRINK)
def _on_drink(session: AsyncSession, msg: dict[str, Any]) -> None:
    # The server applies the tipsy model and sends the level; clients only let it decay.
    drink = {k: msg[k] for k in ("drink", "color", "glow", "garnish")}
    _update_entry(session, msg["avatar"], drink=drink, tipsy=msg["tipsy"], tipsy_st=msg["st"])


def split_join_link(url: str) -> tuple[str, str | None, str | None]:
    """`ws://H:P/?room=R&token=T` (from `neonbar invite`) -> (ws://H:P, room, token)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    room = query.get("room", [None])[0]
    token = query.get("token", [None])[0]
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "", "", ""))
    return base, room, token


def _roster_from(avatars: Any, st: float = 0.0) -> dict[int, dict[str, Any]]:
    roster: dict[int, dict[str, Any]] = {}
    if not isinstance(avatars, list):
        return roster
    for entry in avatars:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            continue
        color = entry.get("color")
        role = entry.get("role")
        roster[entry["id"]] = {
            "name": str(entry.get("name", "?"))[: protocol.MAX_NAME_CHARS],
            "color": color if isinstance(color, str) and _COLOR.match(color) else "#ffffff",
            "role": role if role in protocol.ROLES else "viewer",
            "muted": bool(entry.get("muted", False)),
            "drink": _drink_from(entry.get("drink")),
            "tipsy": _unit_float(entry.get("tipsy")),
            "tipsy_st": st,
        }
    return roster


def _drink_from(value: Any) -> dict[str, Any] | None:
    """A roster drink the app can draw, or None: `welcome.avatars` is only loosely typed."""
    if not isinstance(value, dict):
        return None
    try:
        checked = protocol.validate_client({"t": "drink", **value})
    except ProtocolError:
        return None
    return {k: checked[k] for k in ("drink", "color", "glow", "garnish")}


def _unit_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return min(1.0, max(0.0, float(value)))


def _describe_connect_failure(url: str, exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return f"cannot connect to {url}: timed out"
    if isinstance(exc, InvalidHandshake):
        return f"cannot connect to {url}: not a Neon Bar server ({exc})"
    return (
        f"cannot connect to {url}: {exc.strerror or exc}"
        if isinstance(exc, OSError)
        else (f"cannot connect to {url}: {exc}")
    )


class SessionState:
    """What the app reads of a session, mirrored from its `AsyncSession` (plain attribute reads
    are atomic, so the app's thread may read them while the network thread writes)."""

    _session: AsyncSession

    @property
    def state(self) -> ConnectionState:
        return self._session.state

    @property
    def ping_ms(self) -> float | None:
        return self._session.ping_ms

    @property
    def you(self) -> int | None:
        return self._session.you

    @property
    def role(self) -> str | None:
        return self._session.role

    @property
    def last_error(self) -> str | None:
        return self._session.last_error

    @property
    def roster(self) -> dict[int, dict[str, Any]]:
        return self._session.roster

    @property
    def stats(self) -> SessionStats:
        return self._session.stats

    @property
    def session(self) -> AsyncSession:
        """The underlying session (tests, diagnostics); touch it only from the net thread."""
        return self._session


class NetSession(SessionState):
    """An `AsyncSession` on a daemon thread, for a frame loop that must never block.

    Every method is non-blocking and safe to call from the frame loop's thread; `stop()` waits
    (bounded) for the bye to go out.
    """

    def __init__(
        self,
        server_url: str,
        room: str | None,
        name: str,
        token: str | None = None,
        color: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        # A join link printed by `neonbar invite` carries the room and the token.
        server_url, link_room, link_token = split_join_link(server_url)
        room = room or link_room or "lobby"
        token = token or link_token
        self._session = AsyncSession(
            server_url, room, name, token, color, retry_first_connect=True, view_lock=self._lock
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._poll_seen = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._thread_main, name="neonbar-net", daemon=True)
        self._thread.start()

    def _thread_main(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._session.run())
        except ConnectError as exc:  # only with retry_first_connect off; keep the sentence
            self._session.last_error = str(exc)
        except Exception:  # the network thread must not die silently
            log.exception("network thread failed")
            self._session.last_error = "network error; see the log"
            self._session.state = ConnectionState.CLOSED
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout_s: float = 3.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._session.close(), loop)
            thread.join(timeout_s)
        self._session.state = ConnectionState.CLOSED

    def set_local_state(self, x_m: float, y_m: float, yaw_rad: float) -> None:
        self._session.local_state = (x_m, y_m, yaw_rad)

    def send(self, msg: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._session.queue_message, msg)

    def poll(self) -> list[dict[str, Any]]:
        """Welcome, events (in seq order, once), errors received since the last poll."""
        inbox = self._session.inbox
        out = []
        while inbox:
            try:
                out.append(inbox.popleft())
            except IndexError:
                break
        return out

    def remote_avatars(self, delay_s: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids (N,), pos_m (N, 2), yaw_rad (N,): interpolated `delay_s` in the past, not you."""
        render_s = self.server_time() - delay_s
        with self._lock:
            return self._session.view.sample(render_s, exclude=self._session.you)

    def correction(self) -> tuple[float, float, float, int] | None:
        return self._session.correction()

    def sent_state(self, seq: int) -> tuple[float, float, float] | None:
        """The local state (x_m, y_m, yaw_rad) that input `seq` carried, if still remembered:
        compare with `correction()` to reconcile prediction with the server."""
        return self._session.sent_states.get(seq)

    def server_time(self) -> float:
        return self._session.server_time()

    @property
    def clock_settling(self) -> bool:
        """The server clock estimate is still taking in the first pings (neonbar.clocksync)."""
        return self._session.clock_sync.settling


__all__ = [
    "FINAL_CLOSES",
    "AsyncSession",
    "ConnectError",
    "ConnectionState",
    "ErrorCode",
    "NetSession",
    "SessionStats",
]
