"""Test helpers: a real server on 127.0.0.1 (port 0) in a thread, and a tiny raw test client.

The client speaks the wire protocol directly (msgpack over websockets) so these tests pin the
server's behaviour without depending on the project's own client code.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from neonbar.layout import load_layout
from neonbar.protocol import PROTOCOL_VERSION, decode_server, encode
from neonbar.tokens import mint
from server.app import SessionServer
from server.room import RoomConfig

SECRET = b"test-secret-0123456789abcdef"


class ServerThread:
    """A SessionServer running on its own event loop in a daemon thread."""

    def __init__(self, config: RoomConfig) -> None:
        self.config = config
        self.server: SessionServer | None = None
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._main, name="test-server", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self.server = SessionServer(load_layout(), SECRET, config=self.config)
        host, port = await self.server.start("127.0.0.1", 0)
        self.url = f"ws://{host}:{port}"
        self._stop = self.loop.create_future()
        self._ready.set()
        await self._stop
        await self.server.shutdown(timeout_s=2.0)

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the server's loop (its state is not thread-safe) and return its result."""
        fut: asyncio.Future[Any] = asyncio.run_coroutine_threadsafe(_call(fn), self.loop)  # type: ignore[arg-type]
        return fut.result(5)

    def token(self, room: str = "bar", role: str = "collaborator", **kwargs: Any) -> str:
        return mint(SECRET, room, role, **kwargs)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
    """Run one test scenario with a hard time bound."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


@dataclass
class RawClient:
    """One connection: send dicts, receive decoded messages, keep what arrived."""

    ws: ClientConnection
    welcome: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    snaps: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        ws = await connect(url, max_size=None, open_timeout=5, close_timeout=2, **kwargs)
        return cls(ws)

    @classmethod
    async def join(
        cls, url: str, room: str = "bar", name: str = "tester", **hello: Any
    ) -> RawClient:
        client = await cls.open(url)
        await client.send(
            {"t": "hello", "v": PROTOCOL_VERSION, "room": room, "name": name, **hello}
        )
        msg = await client.recv()
        assert msg["t"] == "welcome", msg
        client.welcome = msg
        return client

    @property
    def avatar(self) -> int:
        return int(self.welcome["you"])

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(encode(msg))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, timeout_s: float = 5.0) -> dict[str, Any]:
        msg = decode_server(await asyncio.wait_for(self.ws.recv(), timeout_s))
        kind = msg["t"]
        target = {"event": self.events, "error": self.errors, "snap": self.snaps}.get(
            kind, self.others
        )
        target.append(msg)
        return msg

    async def recv_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("expected message did not arrive")
            msg = await self.recv(left)
            if predicate(msg):
                return msg

    async def event(self, kind: str, timeout_s: float = 5.0, **fields: Any) -> dict[str, Any]:
        def match(m: dict[str, Any]) -> bool:
            return (
                m["t"] == "event"
                and m["kind"] == kind
                and all(m.get(k) == v for k, v in fields.items())
            )

        return await self.recv_until(match, timeout_s)

    async def error(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return await self.recv_until(lambda m: m["t"] == "error", timeout_s)

    async def snap(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return await self.recv_until(lambda m: m["t"] == "snap", timeout_s)

    async def closed(self, timeout_s: float = 8.0) -> int | None:
        """Read until the server closes; returns the close code."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    await self.recv(timeout_s)
        except ConnectionClosed:
            pass
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()

    async def pump(self, chat_every: int = 0) -> None:
        """Read forever, acknowledging every snapshot (as a real client's input loop does)."""
        seq = 0
        try:
            while True:
                msg = await self.recv(10.0)
                if msg["t"] != "snap":
                    continue
                seq += 1
                x, y, yaw, _ = msg["you"]
                await self.send(
                    {"t": "input", "seq": seq, "ack": msg["tick"], "x": x, "y": y, "yaw": yaw}
                )
                if chat_every and seq % chat_every == 0:
                    await self.send({"t": "chat", "text": "x" * 400})
        except (ConnectionClosed, TimeoutError):
            pass

    async def ping_rtt_s(self) -> float:
        started = time.perf_counter()
        await self.send({"t": "ping", "ct": started})
        await self.recv_until(lambda m: m["t"] == "pong" and m["ct"] == started)
        return time.perf_counter() - started
