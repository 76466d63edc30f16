"""A TCP proxy on 127.0.0.1 that delays (with jitter), cuts or corrupts what passes through.

It runs its own asyncio loop on a daemon thread, so synchronous code, asyncio tests and client
subprocesses can all go through it. Delays keep TCP's order: a chunk is delivered at
max(previous delivery, arrival + delay), each direction on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from dataclasses import dataclass, field


@dataclass
class DelayProxy:
    """Forward 127.0.0.1:port to 127.0.0.1:upstream_port.

    Args:
        delay_s: one-way delay added to every chunk, each direction.
        jitter_s: plus a random extra delay, exponential with this mean (0: none).
        cut_after_bytes: the first `cut_downloads` connections are aborted after this many bytes
            went downstream (None: never).
        corrupt_at: flip one downstream byte at this offset of every connection (None: never).
    """

    upstream_port: int
    delay_s: float = 0.0
    jitter_s: float = 0.0
    cut_after_bytes: int | None = None
    cut_downloads: int = 1
    corrupt_at: int | None = None
    seed: int = 0
    port: int = 0
    connections: int = 0
    cuts: int = 0
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._main, name="delay-proxy", daemon=True)

    def start(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("proxy did not start")
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    def _delay(self) -> float:
        extra = self._rng.expovariate(1.0 / self.jitter_s) if self.jitter_s > 0 else 0.0
        return self.delay_s + extra

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        cut = self.cut_after_bytes if number <= self.cut_downloads else None

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
            loop = asyncio.get_running_loop()

            async def deliver() -> None:
                sent = 0
                with contextlib.suppress(Exception):
                    while True:
                        at, data = await queue.get()
                        wait = at - loop.time()
                        if wait > 0:
                            await asyncio.sleep(wait)
                        if data is None:
                            break
                        if down and self.corrupt_at is not None and \
                                sent <= self.corrupt_at < sent + len(data):  # fmt: skip
                            i = self.corrupt_at - sent
                            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                        if down and cut is not None and sent + len(data) >= cut:
                            dst.write(data[: cut - sent])
                            await dst.drain()
                            self.cuts += 1
                            break
                        dst.write(data)
                        await dst.drain()
                        sent += len(data)
                dst.transport.abort()
                src_transport = getattr(src, "_transport", None)
                if src_transport is not None:
                    src_transport.abort()

            task = asyncio.ensure_future(deliver())
            last = 0.0
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    last = max(last, loop.time() + self._delay())
                    queue.put_nowait((last, data))
            queue.put_nowait((last, None))
            await task

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def stop(self) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join(5)
