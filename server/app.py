"""The WebSocket front door: HTTP health and metrics, the hello handshake, the receive loop.

One port serves everything: `GET /healthz` and `GET /metrics` are answered during the opening
handshake (`process_request`); any other path is a WebSocket. A connection's first frame must be a
valid `hello`; after `welcome`, every frame is rate-limited, decoded, validated, then handed to
its room. The handler wraps everything, so nothing a client sends can take the server down.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgpack
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State
from websockets.streams import StreamReader

from neonbar.layout import Layout
from neonbar.protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    ProtocolError,
    decode_client,
    encode,
    error_message,
)
from server.collector import TickCollector
from server.framing import read_client_frames
from server.metrics import CONTENT_TYPE, ServerMetrics
from server.room import JoinRefused, Room, RoomConfig, Session, check_invite
from server.sender import SnapshotSender, WriteGate
from server.snapshots import warm_up as warm_up_snapshots
from server.storage import SqliteStorage, Storage

log = logging.getLogger("neonbar.server")

FLUSH_INTERVAL_S = 1.0
_AT_EOF_CODE = StreamReader.at_eof.__code__


class DirectConnection(ServerConnection):
    """A connection whose complete data frames can be handled as soon as they are parsed.

    websockets queues every message for a task to `recv()`; at 20 inputs per second from each of
    hundreds of clients, the queue and the task wake-ups cost more than handling the message.
    Once the handler sets `on_frame`, unfragmented frames skip the queue and are handled in
    arrival order from `data_received`. A fragmented message switches the connection back to the
    queue for good, so order is kept in every case.

    On that path, whenever websockets' parser stands between two frames, received bytes first go
    through `read_client_frames` (server/framing.py), which takes complete binary frames without
    websockets' per-frame coroutines; from the first frame it does not take, bytes go to
    websockets as usual. Every write goes through a `WriteGate` (server/sender.py).
    """

    on_frame: Callable[[bytes | str], None] | None = None
    fast_frames = 0  # frames read by read_client_frames instead of websockets' parser
    _pending = b""  # the start of a binary frame still arriving (short path only)

    def data_received(self, data: bytes) -> None:
        on_frame = self.on_frame
        if on_frame is None or self.protocol.state is not State.OPEN:
            if self._pending:  # websockets' parser stands at that frame's first byte
                data, self._pending = self._pending + data, b""
            super().data_received(data)
            return
        if self._pending:
            data, self._pending = self._pending + data, b""
        elif not self._parser_at_frame_start():
            super().data_received(data)
            return
        payloads, consumed, other = read_client_frames(data, self.protocol.max_message_size)
        self.fast_frames += len(payloads)
        for payload in payloads:
            on_frame(payload)
        if consumed < len(data):
            if other:
                super().data_received(data[consumed:])
            else:
                self._pending = data[consumed:]

    def eof_received(self) -> bool | None:
        if self._pending:
            data, self._pending = self._pending, b""
            super().data_received(data)
        return super().eof_received()

    def _parser_at_frame_start(self) -> bool:
        """websockets' parser has consumed nothing of the next frame: bytes may bypass it."""
        protocol = self.protocol
        if protocol.reader.buffer:
            return False
        parser = protocol.parser
        while (inner := parser.gi_yieldfrom) is not None:
            parser = inner
        # Between frames, Protocol.parse waits in StreamReader.at_eof for the next byte.
        return parser.gi_code is _AT_EOF_CODE

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Every write goes through the gate, so snapshot batches written by the sender thread
        # never interleave with the connection's other frames (server/sender.py).
        super().connection_made(WriteGate(transport))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        gate = self.transport
        if isinstance(gate, WriteGate):
            gate.connection_lost()
        super().connection_lost(exc)

    def queued(self) -> int:
        return len(self.recv_messages.frames)

    def process_event(self, event: Event) -> None:
        on_frame = self.on_frame
        if on_frame is not None and isinstance(event, Frame):
            if event.fin and event.opcode is Opcode.BINARY:
                on_frame(bytes(event.data))
                return
            if event.fin and event.opcode is Opcode.TEXT:
                on_frame("")  # refused as a text frame; its content does not matter
                return
            if event.opcode in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
                self.on_frame = None  # a fragment: everything goes through the queue from now
        super().process_event(event)


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
        # Started with the server: writes each tick's snapshot frames off the event loop.
        self.sender: SnapshotSender | None = None
        self.rooms: dict[str, Room] = {}
        self._t0 = time.monotonic()
        self._closers: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.shutting_down = False

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
        return room

    def dispose_room(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        room.on_dispose()

    # ------------------------------------------------------------------------- lifecycle

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.sender = SnapshotSender.create(asyncio.get_running_loop(), self.metrics)
        warm_up_snapshots()  # compiled code, ready before the first tick
        self._server = await serve(
            self.handler,
            host,
            port,
            process_request=self.process_request,
            # Frames above twice the limit are abuse: websockets closes with 1009 on its own.
            # Frames between the limit and twice it get a TOO_LARGE error and the link stays.
            max_size=2 * self.config.max_frame_bytes,
            max_queue=64,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=3,
            compression=None,  # snapshots are binary and small; deflate would cost CPU per client
            create_connection=DirectConnection,
        )
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())
        sock = next(iter(self._server.sockets))
        bound_host, bound_port = sock.getsockname()[:2]
        return bound_host, bound_port

    async def shutdown(self, timeout_s: float = 3.0) -> None:
        """Tell every client we are going away (1001), stop the rooms, flush storage."""
        self.shutting_down = True
        if self._server is not None:
            self._server.close(close_connections=False)
        conns: list[ServerConnection] = []
        for room in list(self.rooms.values()):
            room.emit("system", text="The server is shutting down; you will be reconnected.")
            conns.extend(s.conn for s in room.sessions.values())
        closing = [c.close(CloseCode.GOING_AWAY, "server shutting down") for c in conns]
        if closing:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*closing, return_exceptions=True), timeout=timeout_s
                )
            except TimeoutError:  # a client that stopped reading must not block the flush
                log.warning("some clients did not finish closing within %.0f s", timeout_s)
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
            try:
                self.storage.flush()
            except Exception:
                self.metrics.exceptions.inc()
                log.exception("storage flush failed; will retry")

    def close_later(self, conn: ServerConnection, code: int, reason: str) -> None:
        """Close a connection without blocking the caller (the closing handshake may take a
        while with a client that stopped reading; close_timeout bounds it)."""
        task = asyncio.get_running_loop().create_task(conn.close(code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    # ------------------------------------------------------------------------------- HTTP

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            rooms = len(self.rooms)
            return _response(http.HTTPStatus.OK, f"ok rooms={rooms}\n".encode(), "text/plain")
        if path == "/metrics":
            return _response(http.HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE)
        return None

    # -------------------------------------------------------------------------- WebSocket

    async def handler(self, conn: ServerConnection) -> None:
        self.metrics.connections.inc()
        session: Session | None = None
        room: Room | None = None
        try:
            joined = await self._handshake(conn)
            if joined is None:
                return
            room, session = joined
            await self._receive_loop(conn, room, session)
        except ConnectionClosed:
            pass
        except Exception:
            self.metrics.exceptions.inc()
            log.exception("connection handler failed")
            self.close_later(conn, CloseCode.INTERNAL, "internal error")
        finally:
            self.metrics.connections.dec()
            if room is not None and session is not None:
                room.on_disconnect(session)

    async def _handshake(self, conn: ServerConnection) -> tuple[Room, Session] | None:
        try:
            raw = await asyncio.wait_for(conn.recv(), self.config.hello_timeout_s)
        except TimeoutError:
            await self._refuse(conn, CloseCode.PROTOCOL, "no hello within the time limit")
            return None
        try:
            # A text frame (str) is passed on purpose: decode_client refuses it with BAD_FRAME.
            hello = decode_client(raw, self.config.max_frame_bytes)  # type: ignore[arg-type]
        except ProtocolError as exc:
            await self._refuse(conn, CloseCode.PROTOCOL, f"first frame: {exc.message}")
            return None
        if hello["t"] != "hello":
            await self._refuse(conn, CloseCode.PROTOCOL, "the first message must be hello")
            return None
        if hello["v"] != PROTOCOL_VERSION:
            reason = f"protocol version {hello['v']} not supported; this server speaks "
            await self._refuse(conn, CloseCode.PROTOCOL, reason + str(PROTOCOL_VERSION))
            return None
        if self.shutting_down:
            await self._refuse(conn, CloseCode.GOING_AWAY, "server shutting down")
            return None
        # From here to the end of on_join nothing awaits, so the room cannot be disposed
        # between being looked up and being joined. A room is only created for a hello that
        # passed authentication: strangers cannot fill the database with room names.
        name = hello["room"]
        try:
            existing = self.rooms.get(name)
            if existing is not None:
                grant = existing.on_auth(hello)
            else:
                grant = check_invite(hello, name, self.secret, self.config.open_rooms)
            room = self.room(name)
            session = room.on_join(conn, hello, grant)
        except JoinRefused as exc:
            await self._refuse(conn, exc.close_code, exc.reason)
            return None
        return room, session

    async def _refuse(self, conn: ServerConnection, code: int, reason: str) -> None:
        log.info("refused %s: %d %s", _peer(conn), code, reason)
        self.metrics.drops.labels(CloseCode(code).name.lower()).inc()
        await conn.close(code, reason[:120])

    async def _receive_loop(self, conn: ServerConnection, room: Room, session: Session) -> None:
        def on_frame(raw: bytes | str) -> None:
            self._on_frame(room, session, raw)

        async for raw in conn:
            on_frame(raw)
            # Once nothing is queued (and this task holds no frame), complete frames can be
            # handled as they arrive without reordering anything: switch to the direct path.
            if isinstance(conn, DirectConnection) and not conn.queued():
                conn.on_frame = on_frame

    def _on_frame(self, room: Room, session: Session, raw: bytes | str) -> None:
        """One inbound frame: rate limits, decoding, then the room. Never raises."""
        if session.closing:
            return  # drain until the close completes
        limits = session.limits
        now_s = self.now_s()
        accepted, flooding = limits.on_message(now_s)
        if flooding:
            log.warning("flood from %s (avatar %d): closing", session.peer, session.avatar.id)
            room.close_session(session, CloseCode.FLOOD, "far over the rate limit")
            return
        try:
            if not accepted:
                raise ProtocolError(ErrorCode.RATE_LIMITED, "over the rate limit: dropped")
            # A text frame (str) is passed on purpose: decode_client refuses it with BAD_FRAME.
            msg = fast_input(raw) or decode_client(raw, self.config.max_frame_bytes)  # type: ignore[arg-type]
            room.on_message(session, msg, now_s)
        except ProtocolError as exc:
            self._report(session, exc)
            if exc.code != ErrorCode.RATE_LIMITED and limits.on_invalid(now_s):
                log.warning("too many invalid frames from %s: closing", session.peer)
                room.close_session(session, CloseCode.POLICY, "too many invalid frames")
        except Exception:
            # A bug in handling one message must not end the connection or the room.
            self.metrics.exceptions.inc()
            log.exception("handling a message from %s failed", session.peer)

    def _report(self, session: Session, exc: ProtocolError) -> None:
        self.metrics.errors.labels(str(int(exc.code))).inc()
        session.errors += 1
        if session.errors <= 3:  # enough to diagnose a client; a flood must not flood the log
            log.info(
                "error %d to avatar %d (%s): %s", exc.code, session.avatar.id, session.peer,
                exc.message,
            )  # fmt: skip
        session.write(encode(error_message(exc)))


_INPUT_KEYS = frozenset(("t", "seq", "ack", "x", "y", "yaw"))
_U32 = 2**32 - 1


def fast_input(raw: Any) -> dict[str, Any] | None:
    """The most frequent message (`input`, 20 Hz per client), checked the short way.

    Accepts only a frame that decode_client would accept unchanged: exactly the input fields,
    plain ints within the schema's ranges. Anything else returns None and takes the full path,
    which produces the proper error.
    """
    if type(raw) is not bytes or len(raw) > 64:
        return None
    try:
        msg = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_map_len=8, max_ext_len=0)
    except Exception:
        return None
    if type(msg) is not dict or msg.keys() != _INPUT_KEYS or msg["t"] != "input":
        return None
    seq, ack, x, y, yaw = msg["seq"], msg["ack"], msg["x"], msg["y"], msg["yaw"]
    if not (type(seq) is int and type(ack) is int and type(x) is int and type(y) is int):
        return None
    if type(yaw) is not int or not (0 <= seq <= _U32 and -1 <= ack <= _U32):
        return None
    if not (-32768 <= x <= 32767 and -32768 <= y <= 32767 and 0 <= yaw <= 65535):
        return None
    return msg


def _peer(conn: ServerConnection) -> str:
    try:
        host, port = conn.remote_address[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


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
    log.info(
        "snapshot frames written %s; garbage collected between ticks",
        "by a sender thread" if server.sender is not None else "on the event loop",
    )
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
