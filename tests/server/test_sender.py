"""The sender thread: batches written off the event loop, byte streams exactly as written."""

from __future__ import annotations

import asyncio
import os
import socket

from serverfixtures import run

from server.metrics import ServerMetrics
from server.sender import SnapshotSender, WriteGate


class Sink(asyncio.Protocol):
    def __init__(self, made: asyncio.Queue[asyncio.Transport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.put_nowait(transport)  # type: ignore[arg-type]


Pairs = tuple[asyncio.Server, list[WriteGate], list[socket.socket]]


async def connected_pairs(count: int) -> Pairs:
    loop = asyncio.get_running_loop()
    made: asyncio.Queue[asyncio.Transport] = asyncio.Queue()
    server = await loop.create_server(lambda: Sink(made), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peers = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    gates = [WriteGate(await made.get()) for _ in range(count)]
    return server, gates, peers


def read_exactly(peer: socket.socket, size: int) -> bytes:
    peer.settimeout(10)
    out = bytearray()
    while len(out) < size:
        chunk = peer.recv(size - len(out))
        assert chunk, "connection closed early"
        out += chunk
    return bytes(out)


def test_batches_and_other_writes_reach_each_peer_in_order_even_when_sockets_fill() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        metrics = ServerMetrics()
        sender = SnapshotSender.create(loop, metrics)
        assert sender is not None
        server, gates, peers = await connected_pairs(3)
        expected = [bytearray() for _ in gates]
        # Frames far larger than a socket's buffers: the thread's sends are partial, the event
        # loop writes the rest, and what was written meanwhile waits behind it.
        for round_ in range(3):
            frames = [os.urandom(16_000_000 if i == 1 else 700) for i in range(len(gates))]
            idle = [g for g in gates if g.idle()]
            batch = [(g, f) for g, f in zip(gates, frames, strict=True) if g in idle]
            sender.submit_frames([g for g, _ in batch], [f for _, f in batch])
            for i, (gate, frame) in enumerate(zip(gates, frames, strict=True)):
                if gate not in idle:
                    gate.write(frame)  # behind whatever the gate still holds
                expected[i] += frame
                extra = f"event {round_} for {i}".encode()
                gate.write(extra)  # written while the batch is in flight: must wait
                expected[i] += extra
            assert any(g.inflight for g in gates)
        # Read everything each peer got (the big frames need the reader to drain them).
        got = await asyncio.gather(
            *(
                asyncio.to_thread(read_exactly, peer, len(exp))
                for peer, exp in zip(peers, expected, strict=True)
            )
        )
        for data, exp in zip(got, expected, strict=True):
            assert data == bytes(exp)
        while sender.in_flight:
            await asyncio.sleep(0.01)
        assert metrics.registry.get_sample_value("neonbar_send_partial_total") >= 1
        assert metrics.registry.get_sample_value("neonbar_send_seconds_count") == 3
        for gate, peer in zip(gates, peers, strict=True):
            gate.close()
            assert gate.fd == -1  # our descriptor is released with the connection
            peer.close()
        sender.stop()
        server.close()

    run(scenario())


def test_a_close_during_a_batch_waits_until_the_frame_is_out() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sender = SnapshotSender.create(loop, ServerMetrics())
        assert sender is not None
        server, (gate,), (peer,) = await connected_pairs(1)
        frame = os.urandom(16_000_000)
        sender.submit_frames([gate], [frame])
        gate.write(b"goodbye")
        gate.close()  # must not cut the frame or the goodbye short
        assert not gate.is_closing()
        data = await asyncio.to_thread(read_exactly, peer, len(frame) + 7)
        assert data == frame + b"goodbye"
        peer.settimeout(10)
        assert peer.recv(1) == b""  # then the connection ends
        assert gate.fd == -1
        sender.stop()
        server.close()

    run(scenario())


def test_a_gate_is_known_idle_only_until_something_touches_it() -> None:
    """Ticks skip asking the transport of a gate that is not dirty: every write, control call
    and finished batch must make it dirty again."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sender = SnapshotSender.create(loop, ServerMetrics())
        assert sender is not None
        server, (gate,), (peer,) = await connected_pairs(1)
        assert gate.dirty  # never checked yet
        assert gate.send_state() == 0 and not gate.dirty
        gate.write(b"event")
        assert gate.dirty
        assert gate.send_state() == 0 and not gate.dirty  # the bytes went out at once
        sender.submit_frames([gate], [os.urandom(16_000_000)])  # far over the socket buffers
        assert gate.send_state() > 0
        while sender.in_flight:
            await asyncio.sleep(0.01)
        assert gate.dirty  # the unsent end went to the transport
        assert gate.send_state() > 0  # ... and is still there: the peer has not read
        await asyncio.to_thread(read_exactly, peer, 16_000_005)
        for _ in range(200):
            if gate.send_state() == 0:
                break
            await asyncio.sleep(0.01)
        assert not gate.dirty
        gate.close()
        assert gate.dirty and gate.send_state() == -1
        peer.close()
        sender.stop()
        server.close()

    run(scenario())
