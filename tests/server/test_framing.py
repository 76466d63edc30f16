"""The short path for client frames: exact bytes in, the same messages out as websockets gives."""

from __future__ import annotations

import asyncio
import os
import random

from hypothesis import given
from hypothesis import strategies as st
from serverfixtures import RawClient, ServerThread, run
from websockets.frames import Frame, Opcode

from neonbar.protocol import encode
from server.framing import read_client_frames


def client_frame(payload: bytes, opcode: Opcode = Opcode.BINARY, fin: bool = True) -> bytes:
    """A frame as a client writes it (masked), serialized by websockets itself."""
    return Frame(opcode, payload, fin=fin).serialize(mask=True, extensions=[])


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(0, 20))
def test_reads_every_complete_binary_frame_and_keeps_the_rest(
    payloads: list[bytes], cut: int
) -> None:
    stream = b"".join(client_frame(p) for p in payloads)
    whole, consumed, other = read_client_frames(stream, 1 << 20)
    assert (whole, consumed, other) == (payloads, len(stream), False)
    # Cut anywhere: everything before the cut frame comes out, the rest waits for more bytes.
    part = stream[: max(0, len(stream) - cut)]
    got, consumed, other = read_client_frames(part, 1 << 20)
    assert not other and got == payloads[: len(got)]
    assert part[consumed:] == stream[consumed : len(part)]
    assert (
        read_client_frames(part[consumed:] + stream[len(part) :], 1 << 20)[0]
        == payloads[len(got) :]
    )


def test_stops_at_frames_it_leaves_to_websockets() -> None:
    data = client_frame(b"one")
    for other in (
        client_frame(b"", Opcode.PING),
        client_frame(b"text", Opcode.TEXT),
        client_frame(b"frag", fin=False),
        client_frame(b"\x03\xe8", Opcode.CLOSE),
        Frame(Opcode.BINARY, b"unmasked").serialize(mask=False, extensions=[]),
        client_frame(b"x" * 200),  # over the limit below
    ):
        got, consumed, stop = read_client_frames(data + other + data, 100)
        assert (got, consumed, stop) == ([b"one"], len(data), True)


def test_split_bytes_pings_and_fragments_keep_every_message_in_order(server: ServerThread) -> None:
    """Chat messages written as raw frames: whole, cut in two, with a ping among them, in
    random-sized pieces, and as a fragmented message. Every one arrives, in order, and the
    short path read the frames it can take."""
    texts = [f"round {i} for the orange haze" for i in range(60)]
    frames = [client_frame(encode({"t": "chat", "text": t})) for t in texts]
    rng = random.Random(7)

    async def scenario() -> tuple[list[str], int]:
        client = await RawClient.join(server.url, room="framing")
        await client.snap()  # after welcome: the server reads this connection the short way
        write = client.ws.transport.write

        async def pause() -> None:
            await asyncio.sleep(0.005)  # let each write arrive on its own

        for frame in frames[:10]:  # whole frames, one write each
            write(frame)
            await pause()
        for frame in frames[10:20]:  # each frame cut in two writes
            cut = rng.randint(1, len(frame) - 1)
            write(frame[:cut])
            await pause()
            write(frame[cut:])
            await pause()
        write(client_frame(b"neon", Opcode.PING) + frames[20])  # a ping before a frame
        await pause()
        chaos = b"".join(frames[21:40])  # random pieces, most cut mid-frame
        pos = 0
        while pos < len(chaos):
            step = rng.randint(1, 40)
            write(chaos[pos : pos + step])
            pos += step
        await pause()
        middle = encode({"t": "chat", "text": texts[40]})  # websockets reassembles this one
        write(client_frame(middle[:5], fin=False) + client_frame(middle[5:], Opcode.CONT))
        await pause()
        for frame in frames[41:]:
            write(frame)
            await pause()
        seen: list[str] = []
        while len(seen) < len(texts):
            event = await client.recv_until(lambda m: m["t"] == "event" and m["kind"] == "chat")
            seen.append(event["text"])
        room = server.server.rooms["framing"]
        fast = server.call(lambda: sum(s.link.conn.fast_frames for s in room.sessions.values()))
        await client.close()
        return seen, fast

    seen, fast = run(scenario())
    assert seen == texts
    assert fast >= 19  # whole and cut frames before the ping at least


def test_garbage_after_good_frames_still_closes_with_protocol_error(server: ServerThread) -> None:
    async def scenario() -> int | None:
        client = await RawClient.join(server.url, room="framing")
        await client.snap()
        await client.send({"t": "chat", "text": "first round"})  # the short path is on after it
        await client.event("chat", text="first round")
        good = client_frame(encode({"t": "chat", "text": "last call"}))
        # A reserved opcode: websockets must see it and close the connection (1002).
        client.ws.transport.write(good + b"\x83\x80" + os.urandom(4))
        await client.event("chat", text="last call")
        return await client.closed()

    assert run(scenario()) == 1002
