"""Delivery: the only code that touches websockets and sockets.

Rooms (server/room.py) are sans-I/O; this layer moves their bytes. It holds:

- `DirectConnection`: a websockets connection whose complete binary frames are handed over as
  soon as they are parsed (no per-message queue and task wake-up), through the short frame
  reader of server/framing.py, and whose every write goes through a `WriteGate`
  (server/sender.py);
- `Link`: one connection as a room sees it (writes, how much it holds, closing);
- `Delivery`: the room's `Outbox` — sends, broadcasts, paced replays, closes, snapshot batches
  for the sender thread — and the slow-client policy, in one place:

    * a snapshot to a link holding more than `snapshot_skip_bytes` is skipped (the next one
      supersedes it);
    * reliable frames are never skipped: a link holding more than `max_buffer_bytes` (its
      gate, the transport's buffer and what the kernel holds, the send buffer being capped
      at `SNDBUF_BYTES`) is closed with 4408 and resumes from its last event seq;
    * replays (a resume's missed events) are written `REPLAY_CHUNK_BYTES` at a time, only
      while the link holds less than `snapshot_skip_bytes`, one chunk per link per tick;
      events sequenced meanwhile queue behind the replay, so the client sees seq order.

- the WebSocket handler: the hello handshake, then every frame to the room's `receive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State
from websockets.streams import StreamReader

from neonbar.protocol import CloseCode
from server.framing import read_client_frames
from server.metrics import ServerMetrics
from server.room import JoinRefused, Room, RoomConfig, Session
from server.sender import SnapshotSender, WriteGate
from server.snapshots import YOU_TAIL_BYTES, frame_batch, frame_header

log = logging.getLogger("neonbar.server")

_AT_EOF_CODE = StreamReader.at_eof.__code__
_OPEN = State.OPEN

# The kernel's send buffer per connection. Linux autotunes it up to megabytes (tcp_wmem), which
# a client that stops reading would hold on top of what we count; capped, the bound on what a
# connection may hold (max_buffer_bytes) includes the kernel's part. A snapshot at 1,000
# avatars is ~1-3 KB: 64 KB is many ticks of headroom for a reader that keeps up.
SNDBUF_BYTES = 64 * 1024
REPLAY_CHUNK_BYTES = 64 * 1024


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

    Control frames (ping, pong) are counted too: `on_control` is told of each one, so they fall
    under the same rate limits as data.
    """

    on_frame: Callable[[bytes | str], None] | None = None
    on_control: Callable[[], None] | None = None
    fast_frames = 0  # frames read by read_client_frames instead of websockets' parser
    _pending = b""  # the start of a binary frame still arriving (short path only)

    def data_received(self, data: bytes) -> None:
        on_frame = self.on_frame
        if on_frame is None or self.protocol.state is not _OPEN:
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
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket: nothing to cap
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF_BYTES)
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
        if isinstance(event, Frame):
            if event.opcode in (Opcode.PING, Opcode.PONG):
                on_control = self.on_control
                if on_control is not None:
                    on_control()
            on_frame = self.on_frame
            if on_frame is not None:
                if event.fin and event.opcode is Opcode.BINARY:
                    on_frame(bytes(event.data))
                    return
                if event.fin and event.opcode is Opcode.TEXT:
                    on_frame("")  # refused as a text frame; its content does not matter
                    return
                if event.opcode in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
                    self.on_frame = None  # a fragment: everything goes through the queue now
        super().process_event(event)


def kernel_queued_bytes(fd: int) -> int:
    """Bytes the kernel still holds for a socket (SIOCOUTQ), 0 where it cannot say."""
    try:
        import fcntl
        import termios

        buf = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
        return int.from_bytes(buf, "little", signed=True)
    except (OSError, ImportError, AttributeError):
        return 0


class Link:
    """One connection as a room sees it."""

    __slots__ = ("closing", "conn", "gate", "replay", "skipped")

    def __init__(self, conn: DirectConnection) -> None:
        self.conn = conn
        gate = conn.transport
        if type(gate) is not WriteGate:
            raise TypeError("a link needs a connection made by DirectConnection")
        self.gate: WriteGate = gate
        self.closing = False
        self.skipped = 0  # snapshots skipped while it was full
        self.replay: Iterator[bytes] | None = None  # events still to replay (a resume)

    @property
    def peer(self) -> str:
        return _peer(self.conn)

    def write(self, payload: bytes) -> bool:
        """Queue one whole binary frame without awaiting (frames leave in write order).

        Plain unmasked frames with no extension (the server never negotiates compression);
        websockets writes its own frames (pongs, close) whole too, so frames never interleave.
        """
        if self.closing or self.conn.protocol.state is not _OPEN:
            return False
        try:
            self.gate.write(frame_header(len(payload)) + payload)
        except Exception:  # the transport is closing; the handler will notice
            return False
        return True

    def held_bytes(self) -> int:
        """Everything written and not yet taken by the peer: gate, transport, kernel.

        While user space holds nothing the kernel holds at most its capped send buffer,
        below every bound here, so the kernel is asked only when user space holds bytes.
        """
        user = self.gate.get_write_buffer_size()
        if not user:
            return 0
        return user + kernel_queued_bytes(self.gate.socket_fd())

    def send_state(self) -> int:
        """Bytes waiting in user space; -1 when it cannot take a frame now; 0 is idle."""
        if self.closing or self.conn.protocol.state is not _OPEN:
            return -1
        return self.gate.send_state()


class Delivery:
    """A room's outbox over websockets, and the slow-client policy (module docstring)."""

    def __init__(
        self,
        config: RoomConfig,
        metrics: ServerMetrics,
        sender: SnapshotSender,
        close_later: Callable[[ServerConnection, int, str], None],
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.sender = sender
        self._close_later = close_later
        self._replaying: dict[Link, None] = {}  # links with a replay under way, in order

    # ------------------------------------------------------------------------ reliable

    def send(self, link: Link, frame: bytes) -> bool:
        if not link.write(frame):
            return False
        self._bound(link)
        return True

    def broadcast(self, links: Sequence[Link], frame: bytes) -> int:
        sent = 0
        for link in links:
            if link.replay is not None:
                # Behind a replay, a new event waits its turn so the order stays seq order.
                link.replay = _chain(link.replay, frame)
                sent += 1
            elif link.write(frame):
                sent += 1
                self._bound(link)
        return sent

    def replay(self, link: Link, frames: Iterator[bytes]) -> None:
        """Missed events, paced: a chunk now, the rest a chunk per tick as the link drains."""
        link.replay = frames if link.replay is None else _chain_iter(link.replay, frames)
        self._replaying[link] = None
        self._pump(link)

    def pump(self) -> None:
        """Once per tick: the next chunk of every replay under way."""
        for link in list(self._replaying):
            self._pump(link)

    def _pump(self, link: Link) -> None:
        frames = link.replay
        if frames is None or link.closing:
            link.replay = None
            self._replaying.pop(link, None)
            return
        if link.held_bytes() > self.config.snapshot_skip_bytes:
            return  # wait for the client to read
        written = 0
        for frame in frames:
            if not link.write(frame):
                break
            written += len(frame)
            if written >= REPLAY_CHUNK_BYTES:
                self.metrics.bytes_out.labels("replay").inc(written)
                return
        self.metrics.bytes_out.labels("replay").inc(written)
        link.replay = None
        self._replaying.pop(link, None)

    def _bound(self, link: Link) -> None:
        held = link.held_bytes()
        if held > self.config.max_buffer_bytes:
            self.drop(link, f"holds {held} bytes, over the bound")

    def drop(self, link: Link, why: str) -> None:
        """The slow-client policy's last step: close 4408; the client resumes."""
        if link.closing:
            return
        log.warning(
            "slow client %s: %s (%d snapshots skipped); closing 4408", link.peer, why, link.skipped
        )
        self.metrics.drops.labels("too_slow").inc()
        self.close(link, CloseCode.TOO_SLOW, "too slow: resume with your token")

    def close(self, link: Link, code: CloseCode, reason: str) -> None:
        if link.closing:
            return
        link.closing = True
        link.replay = None
        self._replaying.pop(link, None)
        link.gate.dirty = True  # ticks must look at this link again
        self._close_later(link.conn, code, reason)

    # ----------------------------------------------------------------------- snapshots

    def snapshot_states(self, links: Sequence[Link]) -> np.ndarray:
        """Per link: 0 idle, > 0 bytes waiting (still takes a snapshot), -1 none this tick."""
        # A gate that nothing touched since it was last found idle is idle (no call needed);
        # the others are asked (closing links are marked dirty by close).
        state = np.fromiter(
            (0 if not (lk.gate.dirty or lk.gate.inflight) else -2 for lk in links),
            np.int64,
            len(links),
        )
        asked = np.flatnonzero(state == -2)
        if not len(asked):
            return state
        config = self.config
        skipped = 0
        for i in asked.tolist():
            link = links[i]
            pending = link.send_state()
            if pending > config.snapshot_skip_bytes:
                held = link.held_bytes()
                if held > config.max_buffer_bytes:
                    self.drop(link, f"write buffer {held} bytes")
                else:
                    link.skipped += 1
                    skipped += 1
                pending = -1
            state[i] = pending
        if skipped:
            self.metrics.snapshots_skipped.inc(skipped)
        return state

    def write_snapshots(
        self,
        links: Sequence[Link],
        states: np.ndarray,
        prefixes: Sequence[bytes],
        client_group: np.ndarray,
        tails: np.ndarray,
    ) -> int:
        """Every served link's snapshot: idle links through the sender thread as one batch,
        the others through their gate behind what it already holds. Returns frames written."""
        group_heads = [frame_header(len(p) + YOU_TAIL_BYTES) + p for p in prefixes]
        buf, starts, ends = frame_batch(group_heads, client_group, tails)
        idle = states == 0
        batch_rows = np.flatnonzero(idle)
        if len(batch_rows):
            rows = batch_rows.tolist()
            gates = [links[i].gate for i in rows]
            fds = np.fromiter((g.socket_fd() for g in gates), np.int32, len(gates))
            self.sender.submit(gates, buf, starts[batch_rows], ends[batch_rows], fds)
        failed = 0
        for row in np.flatnonzero(~idle).tolist():  # busy connections (rare)
            link = links[row]
            try:
                link.gate.write(buf[starts[row] : ends[row]].tobytes())
            except Exception:  # the transport is closing; the handler will notice
                failed += 1
        self.metrics.bytes_out.labels("snap").inc(len(buf))
        return len(links) - failed


def _chain(frames: Iterator[bytes], frame: bytes) -> Iterator[bytes]:
    return _chain_iter(frames, iter((frame,)))


def _chain_iter(first: Iterator[bytes], then: Iterator[bytes]) -> Iterator[bytes]:
    """`first`, then `then`, kept flat: a replay with thousands of events queued behind it
    stays one level deep (generators nested per event hit the recursion limit near 1,000)."""
    queue = first if isinstance(first, _Queued) else _Queued(first)
    queue.parts.append(then)
    return queue


class _Queued:
    """Iterators read one after the other."""

    __slots__ = ("parts",)

    def __init__(self, first: Iterator[bytes]) -> None:
        self.parts: deque[Iterator[bytes]] = deque((first,))

    def __iter__(self) -> _Queued:
        return self

    def __next__(self) -> bytes:
        parts = self.parts
        while parts:
            try:
                return next(parts[0])
            except StopIteration:
                parts.popleft()
        raise StopIteration


class Admission(Protocol):
    """What the handler needs from the server: admit a hello, find the room's clock."""

    config: RoomConfig
    metrics: ServerMetrics

    def admit(self, link: Link, raw: bytes | str) -> tuple[Room, Session]: ...
    def left(self, room: Room, session: Session) -> None: ...
    def now_s(self) -> float: ...


async def handle_connection(server: Admission, conn: ServerConnection) -> None:
    """One WebSocket: the hello, then every frame to the room until the connection ends."""
    server.metrics.connections.inc()
    session: Session | None = None
    room: Room | None = None
    try:
        if not isinstance(conn, DirectConnection):
            raise TypeError("connections must be made by DirectConnection")
        link = Link(conn)
        try:
            raw = await asyncio.wait_for(conn.recv(), server.config.hello_timeout_s)
        except TimeoutError:
            await _refuse(server, conn, CloseCode.PROTOCOL, "no hello within the time limit")
            return
        try:
            room, session = server.admit(link, raw)
        except JoinRefused as exc:
            await _refuse(server, conn, exc.close_code, exc.reason)
            return
        await _receive_loop(server, conn, room, session)
    except ConnectionClosed:
        pass
    except Exception:
        server.metrics.exceptions.inc()
        log.exception("connection handler failed")
        await conn.close(CloseCode.INTERNAL, "internal error")
    finally:
        server.metrics.connections.dec()
        if room is not None and session is not None:
            server.left(room, session)


async def _refuse(server: Admission, conn: ServerConnection, code: int, reason: str) -> None:
    log.info("refused %s: %d %s", _peer(conn), code, reason)
    server.metrics.drops.labels(CloseCode(code).name.lower()).inc()
    await conn.close(code, reason[:120])


async def _receive_loop(
    server: Admission, conn: DirectConnection, room: Room, session: Session
) -> None:
    now_s = server.now_s

    def on_frame(raw: bytes | str) -> None:
        room.receive(session, raw, now_s())

    def on_control() -> None:
        # Pings and pongs spend the same tokens as data (websockets answers pings itself).
        room.receive_control(session, now_s())

    conn.on_control = on_control
    async for raw in conn:
        on_frame(raw)
        # Once nothing is queued (and this task holds no frame), complete frames can be
        # handled as they arrive without reordering anything: switch to the direct path.
        if not conn.queued():
            conn.on_frame = on_frame


def _peer(conn: ServerConnection) -> str:
    try:
        host, port = conn.remote_address[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"


# ------------------------------------------------------------------------------------ HTTP


@dataclass(frozen=True)
class HttpRequest:
    """A plain HTTP GET on the WebSocket port (answered during the opening handshake)."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


HttpRoute = Callable[[HttpRequest], HttpReply | None]


def _http_reply(reply: HttpReply) -> Response:
    status = http.HTTPStatus(reply.status)
    headers = Headers(
        [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))),
         *reply.headers.items()]
    )  # fmt: skip
    return Response(status.value, status.phrase, headers, reply.body)


async def listen(
    server: Admission,
    host: str,
    port: int,
    routes: Mapping[str, HttpRoute],
) -> Server:
    """Serve WebSockets and the HTTP routes on one port.

    `routes` maps a path prefix ("/healthz", "/media/") to its handler; the longest prefix that
    matches wins; a route may return None to let the request become a WebSocket.
    """

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        matches = [p for p in routes if parts.path == p or (p.endswith("/") and
                   parts.path.startswith(p))]  # fmt: skip
        if not matches:
            return None
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        reply = routes[max(matches, key=len)](HttpRequest(parts.path, query, headers))
        return None if reply is None else _http_reply(reply)

    async def handler(conn: ServerConnection) -> None:
        await handle_connection(server, conn)

    return await serve(
        handler,
        host,
        port,
        process_request=process_request,
        # Frames above twice the limit are abuse: websockets closes with 1009 on its own.
        # Frames between the limit and twice it get a TOO_LARGE error and the link stays.
        max_size=2 * server.config.max_frame_bytes,
        max_queue=64,
        ping_interval=20,
        ping_timeout=20,
        close_timeout=3,
        compression=None,  # snapshots are binary and small; deflate would cost CPU per client
        create_connection=DirectConnection,
    )
