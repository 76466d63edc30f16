"""The server process: rooms by name, their tick loops, the hello, HTTP routes, shutdown.

`SessionServer` is every room's host (server/room.py's `RoomHost`): its clock, storage, metrics
and outbox (server/delivery.py's `Delivery`). One port serves everything: `GET /healthz`,
`GET /metrics` and any route a feature adds to `routes` are answered during the opening
handshake; any other path is a WebSocket, whose first frame must be a valid `hello` (`admit`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from neonbar.layout import Layout
from neonbar.protocol import (
    PROTOCOL_VERSION,
    SYSTEM,
    TICK_HZ,
    CloseCode,
    ProtocolError,
    decode_client,
)
from neonbar.tokens import read_resume
from server.collector import TickCollector
from server.delivery import Delivery, HttpReply, HttpRequest, HttpRoute, Link, listen
from server.metrics import CONTENT_TYPE, ServerMetrics
from server.room import JoinRefused, Room, RoomConfig, Session, check_invite
from server.sender import SnapshotSender
from server.snapshots import warm_up as warm_up_snapshots
from server.storage import SqliteStorage, Storage

log = logging.getLogger("neonbar.server")

FLUSH_INTERVAL_S = 1.0


class SessionServer:
    """Rooms by name, the shared secret, storage and metrics of one server process."""

    def __init__(
        self,
        layout: Layout,
        secret: bytes,
        storage: Storage | None = None,
        config: RoomConfig | None = None,
    ) -> None:
        self.layout = layout
        self.secret = secret
        self.storage: Storage = storage or SqliteStorage(":memory:")
        self.config = config or RoomConfig()
        self.metrics = ServerMetrics()
        # Set by serve_forever (a server process of its own): garbage collection between ticks.
        self.collector: TickCollector | None = None
        # Made by start(): the sender thread and the rooms' outbox over websockets.
        self.sender: SnapshotSender | None = None
        self._out: Delivery | None = None
        self.rooms: dict[str, Room] = {}
        # HTTP routes on the WebSocket port: path (or prefix ending in "/") -> handler.
        self.routes: dict[str, HttpRoute] = {"/healthz": self._healthz, "/metrics": self._metrics}
        from server.playback import media_route_for

        self.routes["/media/"] = media_route_for(self)  # scene media, by sha256 (watch together)
        self._t0 = time.monotonic()
        self._closers: set[asyncio.Task[None]] = set()
        self._ticks: dict[str, asyncio.Task[None]] = {}
        self._server: Any = None
        self._flusher: asyncio.Task[None] | None = None
        self.shutting_down = False

    @property
    def out(self) -> Delivery:
        if self._out is None:
            raise RuntimeError("the server is not started")
        return self._out

    def now_s(self) -> float:
        """Server time: seconds since this process started (monotonic)."""
        return time.monotonic() - self._t0

    # ------------------------------------------------------------------------------ rooms

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = Room(name, self)
            self.rooms[name] = room
            room.on_create()
            self._ticks[name] = asyncio.get_running_loop().create_task(
                self._run_ticks(room), name=f"room {name} tick"
            )
        return room

    def dispose_room(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            task = self._ticks.pop(room.name, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        room.on_dispose()

    async def _run_ticks(self, room: Room) -> None:
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
            alive = True
            try:
                alive = room.step(self.now_s())
                self.out.pump()
            except Exception:
                self.metrics.exceptions.inc()
                log.exception("tick %d of room %s failed", room.tick, room.name)
            self.metrics.tick_seconds.observe(time.perf_counter() - started)
            # CPU time of the tick on this thread: what the tick costs, whatever else runs.
            self.metrics.tick_cpu_seconds.observe(time.thread_time() - started_cpu)
            if self.collector is not None:
                self.collector.after_tick()
            if not alive:
                self.dispose_room(room)
                return

    # -------------------------------------------------------------------------- sessions

    def admit(self, link: Link, raw: bytes | str) -> tuple[Room, Session]:
        """A connection's first frame: it must be a hello the room accepts. Raises JoinRefused."""
        try:
            # A text frame (str) is passed on purpose: decode_client refuses it with BAD_FRAME.
            hello = decode_client(raw, self.config.max_frame_bytes)  # type: ignore[arg-type]
        except ProtocolError as exc:
            raise JoinRefused(CloseCode.PROTOCOL, f"first frame: {exc.message}") from None
        if hello["t"] != "hello":
            raise JoinRefused(CloseCode.PROTOCOL, "the first message must be hello")
        if hello["v"] != PROTOCOL_VERSION:
            reason = f"protocol version {hello['v']} not supported; this server speaks "
            raise JoinRefused(CloseCode.PROTOCOL, reason + str(PROTOCOL_VERSION))
        if self.shutting_down:
            raise JoinRefused(CloseCode.GOING_AWAY, "server shutting down")
        # Nothing here awaits, so the room cannot be disposed between being looked up and being
        # joined. A room is only created for a hello that passed authentication: strangers
        # cannot fill the database with room names.
        name = hello["room"]
        existing = self.rooms.get(name)
        if existing is None and read_resume(self.secret, name, hello.get("resume")) is not None:
            # A resume token signed for this room: the room comes back from storage (after a
            # restart) with its avatars, and judges the token like any other.
            existing = self.room(name)
        if existing is not None:
            grant = existing.on_auth(hello)
        else:
            grant = check_invite(hello, name, self.secret, self.config.open_rooms)
        room = self.room(name)
        if existing is None:  # created now, from storage: its kicks apply (server/hosting.py)
            grant = room.on_auth(hello)
        return room, room.on_join(link, hello, grant, self.now_s())

    def left(self, room: Room, session: Session) -> None:
        """A connection ended (any reason)."""
        if self.collector is not None:
            self.collector.note_disconnect()
        room.on_disconnect(session)

    # ------------------------------------------------------------------------- lifecycle

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.sender = SnapshotSender.create(asyncio.get_running_loop(), self.metrics)
        # Storage commits in its own thread; what waits for a commit runs on this loop.
        self.storage.call_back = asyncio.get_running_loop().call_soon_threadsafe
        self._out = Delivery(self.config, self.metrics, self.sender, self.close_later)
        warm_up_snapshots()  # compiled code, ready before the first tick
        self._server = await listen(self, host, port, self.routes)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())
        sock = next(iter(self._server.sockets))
        bound_host, bound_port = sock.getsockname()[:2]
        return bound_host, bound_port

    async def shutdown(self, timeout_s: float = 3.0) -> None:
        """Tell every client we are going away (1001), stop the rooms, flush storage."""
        self.shutting_down = True
        if self._server is not None:
            self._server.close(close_connections=False)
        for room in list(self.rooms.values()):
            room.emit(SYSTEM, text="The server is shutting down; you will be reconnected.")
        # Events are delivered once stored: let the last ones reach everyone before closing.
        await asyncio.get_running_loop().run_in_executor(None, self.storage.flush, timeout_s)
        for room in list(self.rooms.values()):
            for session in list(room.sessions.values()):
                room.close_session(session, CloseCode.GOING_AWAY, "server shutting down")
        if self._closers:
            # A client that stopped reading must not block the flush (close_timeout bounds it).
            _, late = await asyncio.wait(set(self._closers), timeout=timeout_s)
            if late:
                log.warning("%d clients did not finish closing within %.0f s", len(late),
                            timeout_s)  # fmt: skip
        for room in list(self.rooms.values()):
            self.dispose_room(room)
        if self._flusher is not None:
            self._flusher.cancel()
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout=timeout_s)
            except TimeoutError:
                log.warning("some connections did not close within %.0f s", timeout_s)
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        self.storage.close()
        log.info("server stopped; storage flushed")

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            if self.collector is not None:
                self.collector.idle()

    def close_later(self, conn: Any, code: int, reason: str) -> None:
        """Close a connection without blocking the caller (the closing handshake may take a
        while with a client that stopped reading; close_timeout bounds it)."""
        task = asyncio.get_running_loop().create_task(conn.close(code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    # ------------------------------------------------------------------------------- HTTP

    def _healthz(self, request: HttpRequest) -> HttpReply:
        return HttpReply(200, f"ok rooms={len(self.rooms)}\n".encode())

    def _metrics(self, request: HttpRequest) -> HttpReply:
        return HttpReply(200, self.metrics.render(), CONTENT_TYPE)


async def serve_forever(
    layout: Layout,
    secret: bytes,
    host: str,
    port: int,
    data_dir: Path,
    config: RoomConfig,
    on_listening: Callable[[str, int], None] | None = None,
    stop: Awaitable[Any] | None = None,
) -> None:
    """Run a server until `stop` completes, then shut down gracefully."""
    storage = SqliteStorage(data_dir / "neonbar.db")
    server = SessionServer(layout, secret, storage, config)
    server.collector = TickCollector(server.metrics)
    bound_host, bound_port = await server.start(host, port)
    server.collector.install()
    log.info("snapshot frames written by a sender thread; garbage collected between ticks")
    if on_listening is not None:
        on_listening(bound_host, bound_port)
    try:
        if stop is not None:
            await stop
        else:
            await asyncio.Future()
    finally:
        await server.shutdown()
        server.collector.uninstall()
