"""The delivery layer against a real server: paced replays, and the bound on what a link holds."""

from __future__ import annotations

import asyncio
import socket

from serverfixtures import RawClient, run

from neonbar.protocol import PROTOCOL_VERSION
from server.delivery import REPLAY_CHUNK_BYTES, SNDBUF_BYTES, kernel_queued_bytes


def everything_held(link) -> int:
    """User space (gate, transport) and the kernel's send queue, whatever is empty."""
    return link.gate.get_write_buffer_size() + kernel_queued_bytes(link.gate.socket_fd())


def test_a_resume_from_zero_is_paced_and_arrives_whole_in_order(make_server):
    skip = 16 * 1024
    server = make_server(msgs_per_s=5000, burst=5000, snapshot_skip_bytes=skip,
                         max_buffer_bytes=256 * 1024)  # fmt: skip

    async def scenario() -> tuple[list[int], list[int]]:
        late = await RawClient.join(server.url, name="late")
        token = late.welcome["resume"]
        await late.close()
        talker = await RawClient.join(server.url, name="talker")
        for i in range(600):  # ~250 KB of events, far more than one chunk
            await talker.send({"t": "chat", "text": f"{i:04d} " + "x" * 400})
        last = await talker.event("chat", timeout_s=20, text=f"{599:04d} " + "x" * 400)
        back = await RawClient.open(server.url)
        sock = back.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no room to hide bytes in
        back.ws.transport.pause_reading()  # a client slow to read what it asked for
        await back.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "late",
                         "resume": token, "since": 0})  # fmt: skip
        room = server.server.rooms["bar"] if server.server else None
        assert room is not None
        held = []
        for _ in range(30):
            await asyncio.sleep(0.05)
            session = server.call(lambda: room.avatars[late.avatar].session)
            if session is not None:
                link = session.link
                held.append(server.call(lambda link=link: everything_held(link)))
        back.ws.transport.resume_reading()
        seqs = []
        while not seqs or seqs[-1] < last["seq"]:
            msg = await back.recv_until(lambda m: m["t"] == "event", 20)
            seqs.append(msg["seq"])
        return held, seqs

    held, seqs = run(scenario(), timeout_s=60)
    # Never the whole ring at once: at most the skip bound plus one chunk (and a frame) in user
    # space, plus the kernel's capped send buffer.
    assert held and max(held) <= skip + REPLAY_CHUNK_BYTES + 4096 + 2 * SNDBUF_BYTES
    assert max(held) > skip  # the client really stopped reading: the bound was what held it
    assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[0] == 1
