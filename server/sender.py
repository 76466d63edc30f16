"""Snapshot frames written by a sender thread, off the tick and off the event loop's core.

At 1,000 clients a tick ends with 1,000 loopback `send()` calls, about 12 us each: 12 ms of
every 50 ms tick spent in the kernel while the event loop can do nothing else. Here the tick
hands the frames of the tick to a sender thread as one batch, and the thread writes them with a
numba-compiled loop over libc `send()` that holds no GIL, so the writes run on another core
while the event loop goes on parsing inputs.

Correctness rests on one rule: **while a connection has a frame in flight, nothing else is
written to its socket.** Every connection's transport is wrapped in a `WriteGate`. A frame joins
a batch only when its gate is idle (nothing in flight, nothing deferred, the transport's own
buffer empty). While the frame is in flight, whatever else is written to that connection
(events, pings, a close) waits in the gate in order. When the batch is done, the event loop
writes the unsent end of each frame (a partial `send()`, or none at all for a full socket)
through the transport, then everything deferred, in order. So the byte stream of every
connection is exactly what it would be with plain transport writes.

The sender writes through its own duplicate of each socket's descriptor, closed on the event
loop's thread only when no batch holds it, so a descriptor number can never be reused by a new
connection while the thread might still write to it.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from server.metrics import ServerMetrics

log = logging.getLogger("neonbar.server")

_CLOSE, _ABORT, _EOF = object(), object(), object()


class WriteGate:
    """A connection's transport, holding back writes while the sender thread owns the socket.

    Everything except the write side is delegated to the wrapped transport. All methods run on
    the event loop's thread.
    """

    __slots__ = ("_lost", "_transport", "deferred", "deferred_bytes", "dirty", "fd", "inflight")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.fd = -1  # our duplicate of the socket's descriptor, made on first use
        self.inflight = 0  # bytes of this connection's frame in the batch in flight
        self.deferred: list[Any] = []  # bytes or a close/abort/eof marker, in order
        self.deferred_bytes = 0
        self._lost = False
        # False only while nothing was written or changed since send_state() last found the
        # gate idle: a tick then knows it is idle without asking the transport.
        self.dirty = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    # ---------------------------------------------------------------------- transport API

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.dirty = True
        if self.inflight or self.deferred:
            self.deferred.append(bytes(data))
            self.deferred_bytes += len(data)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self._control(_CLOSE)

    def abort(self) -> None:
        self._control(_ABORT)

    def write_eof(self) -> None:
        self._control(_EOF)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self.inflight + self.deferred_bytes

    # ------------------------------------------------------------------------ sender side

    def send_state(self) -> int:
        """Bytes waiting to be written, or -1 when no frame can be written (closing, lost).

        0 means idle: a frame may go to the sender thread.
        """
        transport = self._transport
        if self._lost or transport.is_closing() or (self.deferred and not self.deferred_bytes):
            return -1
        pending = transport.get_write_buffer_size() + self.inflight + self.deferred_bytes
        if not pending:
            self.dirty = False
        return pending

    def idle(self) -> bool:
        """Nothing in flight, deferred or buffered: a frame may go to the sender thread."""
        return self.send_state() == 0

    def socket_fd(self) -> int:
        if self.fd < 0:
            sock = self._transport.get_extra_info("socket")
            self.fd = os.dup(sock.fileno())
        return self.fd

    def finish(self, unsent: bytes) -> None:
        """The batch is done: the unsent end of the frame, then what waited, in order."""
        self.inflight = 0
        if unsent or self.deferred:
            self.dirty = True
        if unsent:
            self._write_now(unsent)
        deferred, self.deferred, self.deferred_bytes = self.deferred, [], 0
        for item in deferred:
            if item is _CLOSE or item is _ABORT or item is _EOF:
                self._control(item)
            else:
                self._write_now(item)
        if self._lost:
            self.release()

    def connection_lost(self) -> None:
        self._lost = True
        self.dirty = True
        if not self.inflight:
            self.release()

    def release(self) -> None:
        if self.fd >= 0 and not self.inflight:
            os.close(self.fd)
            self.fd = -1

    # --------------------------------------------------------------------------- helpers

    def _write_now(self, data: bytes) -> None:
        if self._transport.is_closing():
            return  # the connection is going away: nothing more can reach the peer
        try:
            self._transport.write(data)
        except Exception:  # the transport broke; the connection handler will notice
            self._lost = True

    def _control(self, marker: object) -> None:
        self.dirty = True
        if self.inflight or self.deferred:
            self.deferred.append(marker)
            return
        if marker is _CLOSE:
            self._transport.close()
        elif marker is _ABORT:
            self._transport.abort()
        elif self._transport.can_write_eof():
            self._transport.write_eof()
        if marker is not _EOF:
            self.release()


SendBatch = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


@functools.cache
def _compile_send_batch() -> SendBatch:
    """libc `send()` over a batch of (fd, slice of one buffer), compiled with no GIL held."""
    if not sys.platform.startswith("linux"):
        raise RuntimeError("the snapshot sender needs Linux (libc send with MSG_NOSIGNAL)")
    import numba

    libc = ctypes.CDLL(None, use_errno=True)
    c_send = libc.send
    c_send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    c_send.restype = ctypes.c_ssize_t
    # Never block (the thread must not stall on one full socket), never raise SIGPIPE.
    flags = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL

    # Not cached on disk: the libc function address differs from process to process.
    @numba.njit(nogil=True)
    def send_batch(
        fds: np.ndarray, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, sent: np.ndarray
    ) -> None:
        base = buf.ctypes.data
        for i in range(fds.shape[0]):
            sent[i] = c_send(fds[i], base + starts[i], ends[i] - starts[i], flags)

    # Compile now (or load the cached build), not in the middle of the first tick.
    empty_i = np.zeros(0, np.int64)
    send_batch(np.zeros(0, np.int32), np.zeros(1, np.uint8), empty_i, empty_i, empty_i.copy())
    return send_batch  # type: ignore[no-any-return]


class SnapshotSender:
    """One thread writing batches of frames; completions come back to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: ServerMetrics) -> None:
        self.loop = loop
        self.metrics = metrics
        self.in_flight = 0  # batches submitted and not yet finished (event loop's view)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._send_batch: SendBatch | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def create(cls, loop: asyncio.AbstractEventLoop, metrics: ServerMetrics) -> SnapshotSender:
        """A started sender. Raises if the no-GIL writer cannot be built: the server does not
        start without it (no slower path to hide a broken build)."""
        sender = cls(loop, metrics)
        sender._send_batch = _compile_send_batch()
        sender._thread = threading.Thread(target=sender._run, name="neonbar-sender", daemon=True)
        sender._thread.start()
        return sender

    def submit(
        self,
        gates: list[WriteGate],
        buf: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        fds: np.ndarray | None = None,
    ) -> None:
        """Hand over one frame per idle gate, gate i's frame being buf[starts[i]:ends[i]];
        the gates hold their other writes until the batch is done. `buf` must not change.

        `fds` (int32) may carry each gate's `socket_fd()`, as the caller already knows it.
        """
        if fds is None:
            fds = np.fromiter((g.socket_fd() for g in gates), np.int32, len(gates))
        for gate, size in zip(gates, (ends - starts).tolist(), strict=True):
            gate.inflight = size
        self.in_flight += 1
        self._queue.put((gates, fds, buf, starts, ends, time.perf_counter()))

    def submit_frames(self, gates: list[WriteGate], frames: list[bytes]) -> None:
        """`submit` for frames as separate bytes objects."""
        lengths = np.fromiter(map(len, frames), np.int64, len(frames))
        ends = np.cumsum(lengths)
        self.submit(gates, np.frombuffer(b"".join(frames), np.uint8), ends - lengths, ends)

    def stop(self, timeout_s: float = 2.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        send_batch = self._send_batch
        assert send_batch is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            gates, fds, buf, starts, ends, submitted = item
            sent = np.zeros(len(gates), np.int64)
            started = time.perf_counter()
            try:
                send_batch(fds, buf, starts, ends, sent)
            except Exception:  # never leave gates waiting: the event loop writes it all
                log.exception("sender thread: a batch failed; writing it from the event loop")
                sent[:] = -1
            done = time.perf_counter()
            try:
                self.loop.call_soon_threadsafe(
                    self._finish, gates, buf, starts, ends, sent, done - started, done - submitted
                )
            except RuntimeError:  # the loop is closed: the server is gone
                return

    def _finish(
        self,
        gates: list[WriteGate],
        buf: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        sent: np.ndarray,
        send_s: float,
        total_s: float,
    ) -> None:
        self.in_flight -= 1
        partial = 0
        sizes, done_sizes = (ends - starts).tolist(), sent.tolist()
        for gate, start, size, done in zip(gates, starts.tolist(), sizes, done_sizes, strict=True):
            try:
                if done == size:
                    gate.finish(b"")
                else:  # -1: nothing written (a full socket, or an error the transport reports)
                    partial += 1
                    gate.finish(buf[start + max(done, 0) : start + size].tobytes())
            except Exception:  # one broken connection must not strand the rest of the batch
                log.exception("finishing a snapshot write failed")
                gate.inflight = 0
        self.metrics.send_seconds.observe(send_s)
        self.metrics.send_done_seconds.observe(total_s)
        if partial:
            self.metrics.send_partial.inc(partial)
