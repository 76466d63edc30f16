"""Helpers for the networking tests: a real server subprocess and a TCP proxy that can cut links."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`neonbar server [--open]` on 127.0.0.1 in a subprocess (environment `env`, default
    this process's); `url` once it listens."""

    def __init__(
        self, data_dir: Path, port: int = 0, timeout_s: float = 90.0, open_rooms: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.log_path = data_dir / f"server-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "neonbar", "server", "--port", str(port),
             "--data", str(data_dir), *(["--open"] if open_rooms else [])],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.url = self._wait_listening(timeout_s)

    def _wait_listening(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("listening on "):
                    return line.split()[-1]
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"server did not start; log:\n{self.log_path.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


@contextlib.contextmanager
def running_server(
    data_dir: Path, port: int = 0, open_rooms: bool = True
) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir, port, open_rooms=open_rooms)
    try:
        yield server
    finally:
        server.stop()


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 whose links can be cut (no close handshake) and refused."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.accepting = True
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        """Abort every link, like a network failure: neither side gets a close frame."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
