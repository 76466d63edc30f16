"""Bad input: a clear error and the connection stays; abuse: closed; nobody else notices."""

from __future__ import annotations

import asyncio
import statistics

import msgpack
from serverfixtures import RawClient, ServerThread, run

from neonbar.protocol import PROTOCOL_VERSION, CloseCode, ErrorCode


def test_bad_messages_get_errors_and_the_connection_stays(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url, name="ann")
        bob = await RawClient.join(server.url, name="bob")
        cases: list[tuple[bytes | str, ErrorCode]] = [
            (b"\xc1\xc1\xc1", ErrorCode.BAD_FRAME),  # not msgpack
            (msgpack.packb([1, 2, 3]), ErrorCode.BAD_FRAME),  # not a map
            ("text frame", ErrorCode.BAD_FRAME),
            (msgpack.packb({"t": "teleport"}), ErrorCode.UNKNOWN_TYPE),
            (msgpack.packb({"no": "type"}), ErrorCode.UNKNOWN_TYPE),
            (msgpack.packb({"t": "chat", "text": "x" * 501}), ErrorCode.INVALID_FIELD),
            (msgpack.packb({"t": "chat", "text": 7}), ErrorCode.INVALID_FIELD),
            (msgpack.packb({"t": "chat"}), ErrorCode.INVALID_FIELD),
            (
                msgpack.packb({"t": "input", "seq": 1, "ack": -1, "x": 99999, "y": 0, "yaw": 0}),
                ErrorCode.INVALID_FIELD,
            ),
            (msgpack.packb({"t": "emote", "emote": "moonwalk"}), ErrorCode.INVALID_FIELD),
            (msgpack.packb({"t": "ping", "ct": float("nan")}), ErrorCode.INVALID_FIELD),
            (msgpack.packb({"t": "chat", "text": "y" * 5000}), ErrorCode.TOO_LARGE),
            (
                msgpack.packb({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "x"}),
                ErrorCode.BAD_STATE,
            ),
        ]
        for frame, code in cases:
            await ann.send_raw(frame)
            err = await ann.error()
            assert err["code"] == code, (frame[:40], err)
            assert err["message"]
        # Still connected, still served; and bob saw nothing but normal traffic.
        await ann.send({"t": "chat", "text": "still here"})
        await ann.event("chat", text="still here")
        await bob.event("chat", text="still here")
        assert bob.errors == []
        await ann.snap()
        await ann.close()
        await bob.close()

    run(scenario())


def test_oversized_frame_closes_with_1009(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        bob = await RawClient.join(server.url)
        await ann.send_raw(b"\x00" * (2 * 4096 + 1))
        assert await ann.closed() == CloseCode.TOO_BIG
        await bob.send({"t": "chat", "text": "unaffected"})
        await bob.event("chat", text="unaffected")
        await bob.close()

    run(scenario())


def test_many_invalid_frames_close_with_1008(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        for _ in range(60):
            await ann.send_raw(b"\xc1")
        assert await ann.closed() == CloseCode.POLICY
        assert 45 <= len(ann.errors) <= 60

    run(scenario())


def test_flood_is_throttled_then_closed_and_others_latency_is_unchanged(server: ServerThread):
    async def scenario() -> None:
        calm = await RawClient.join(server.url, name="calm")
        flooder = await RawClient.join(server.url, name="flooder")

        async def rtts(n: int) -> list[float]:
            out = []
            for _ in range(n):
                out.append(await calm.ping_rtt_s())
                await asyncio.sleep(0.02)
            return out

        before = await rtts(15)
        ping = msgpack.packb({"t": "ping", "ct": 0.0})

        async def flood() -> None:
            try:
                for _ in range(4000):
                    await flooder.send_raw(ping)
                    await asyncio.sleep(0.0005)
            except Exception:
                pass  # closed by the server mid-flood

        flood_task = asyncio.create_task(flood())
        during = await rtts(15)
        code = await flooder.closed(timeout_s=15)
        await flood_task
        assert code == CloseCode.FLOOD
        rate_limited = [e for e in flooder.errors if e["code"] == ErrorCode.RATE_LIMITED]
        assert rate_limited, "the flood was throttled before being closed"
        # The calm client is still served, and its latency stayed in the same range.
        assert statistics.median(during) < max(0.05, 5 * statistics.median(before))
        await calm.send({"t": "chat", "text": "fine"})
        await calm.event("chat", text="fine")
        await calm.close()

    run(scenario())


def test_burst_over_the_rate_is_dropped_with_rate_limited(make_server):
    server = make_server(msgs_per_s=5, burst=5)

    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        for i in range(10):
            await ann.send({"t": "ping", "ct": float(i)})
        await asyncio.sleep(0.3)
        pongs = []
        deadline = asyncio.get_running_loop().time() + 1.0
        while asyncio.get_running_loop().time() < deadline:
            try:
                msg = await ann.recv(0.3)
            except TimeoutError:
                break
            if msg["t"] == "pong":
                pongs.append(msg["ct"])
        assert pongs == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert [e["code"] for e in ann.errors].count(ErrorCode.RATE_LIMITED) == 5
        await ann.close()

    run(scenario())


def test_fragmented_and_whole_frames_keep_their_order(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        await ann.send({"t": "chat", "text": "one"})  # the server now takes frames directly
        await ann.event("chat", text="one")
        frame = msgpack.packb({"t": "chat", "text": "two (in three fragments)"})
        await ann.ws.send([frame[:5], frame[5:12], frame[12:]])
        await ann.send({"t": "chat", "text": "three"})
        await ann.send_raw("a text frame")
        await ann.send({"t": "chat", "text": "four"})
        await ann.event("chat", text="four")
        texts = [e["text"] for e in ann.events if e["kind"] == "chat"]
        assert texts == ["one", "two (in three fragments)", "three", "four"]
        assert [e["code"] for e in ann.errors] == [ErrorCode.BAD_FRAME]
        await ann.close()

    run(scenario())
