"""Bad input: a clear error and the connection stays; abuse: closed; nobody else notices."""

from __future__ import annotations

import asyncio
import socket
import statistics

import msgpack
import pytest
from serverfixtures import RawClient, ServerThread, run

from neonbar.protocol import PROTOCOL_VERSION, CloseCode, ErrorCode
from server.delivery import SNDBUF_BYTES


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


@pytest.mark.parametrize("control", ["ping", "pong"])
def test_websocket_control_frames_are_rate_limited_like_data(server: ServerThread, control: str):
    """Pings and unsolicited pongs (answers to nothing) spend the same tokens as messages."""

    async def scenario() -> None:
        calm = await RawClient.join(server.url, name="calm")
        flooder = await RawClient.join(server.url, name=f"{control}er")
        send_control = getattr(flooder.ws, control)

        async def flood() -> None:
            try:
                for i in range(20_000):
                    await send_control(str(i).encode())  # control frames, not messages
                    if i % 50 == 0:
                        await asyncio.sleep(0)
            except Exception:
                pass  # closed by the server mid-flood

        task = asyncio.create_task(flood())
        assert await flooder.closed(timeout_s=15) == CloseCode.FLOOD
        await task
        await calm.send({"t": "chat", "text": "still served"})
        await calm.event("chat", text="still served")
        await calm.close()

    run(scenario())


def test_one_invite_holds_a_bounded_number_of_avatars(make_server):
    server = make_server(open_rooms=False, avatars_per_invite=3, join_burst=20)
    token = server.token()

    async def scenario() -> None:
        held = [await RawClient.join(server.url, name=f"p{i}", token=token) for i in range(3)]
        extra = await RawClient.open(server.url)
        await extra.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "p3",
                          "token": token})  # fmt: skip
        assert await extra.closed() == CloseCode.INVITE_FULL
        # Dropping a connection does not free the slot: the avatar stays away to be resumed.
        await held[0].close()
        again = await RawClient.open(server.url)
        await again.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "p4",
                          "token": token})  # fmt: skip
        assert await again.closed() == CloseCode.INVITE_FULL
        # Another invite is another identity.
        other = await RawClient.join(server.url, name="q", token=server.token())
        assert other.welcome["you"] not in {c.avatar for c in held}

    run(scenario())


def test_join_and_drop_loops_are_refused_not_minted(make_server):
    server = make_server(open_rooms=False, avatars_per_invite=100, join_burst=4, joins_per_min=6)
    token = server.token()

    async def scenario() -> list[int | None]:
        codes = []
        for i in range(8):
            client = await RawClient.open(server.url)
            await client.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar",
                               "name": f"d{i}", "token": token})  # fmt: skip
            msg = await client.recv_until(lambda m: m["t"] == "welcome", 5) if i < 4 else None
            codes.append(None if msg else await client.closed())
            await client.close()
        return codes

    codes = run(scenario())
    assert codes[:4] == [None] * 4
    assert codes[4:] == [CloseCode.FLOOD] * 4
    room = server.server.rooms["bar"] if server.server else None
    assert room is not None and server.call(lambda: len(room.avatars)) == 4


def test_a_kick_outlasts_the_connection_and_a_mute_outlasts_the_avatar(make_server):
    server = make_server(open_rooms=False)
    host_token, guest_token, loud_token = server.token(role="host"), server.token(), server.token()

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="host", token=host_token)
        guest = await RawClient.join(server.url, name="guest", token=guest_token)
        await host.send({"t": "kick", "avatar": guest.avatar})
        assert await guest.closed() == CloseCode.KICKED
        back = await RawClient.open(server.url)
        await back.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "guest2",
                         "token": guest_token})  # fmt: skip
        assert await back.closed() == CloseCode.KICKED

        loud = await RawClient.join(server.url, name="loud", token=loud_token)
        await host.send({"t": "mute", "avatar": loud.avatar, "muted": True})
        await loud.event("mute", avatar=loud.avatar, muted=True)
        await loud.send({"t": "bye"})
        await loud.closed()
        again = await RawClient.join(server.url, name="loud", token=loud_token)
        assert {e["name"]: e["muted"] for e in again.welcome["avatars"]}["loud"] is True
        await again.send({"t": "chat", "text": "hello?"})
        assert (await again.error())["code"] == ErrorCode.MUTED

    run(scenario())


def test_a_named_invite_is_one_avatar_a_second_hello_takes_it_over(make_server):
    server = make_server(open_rooms=False)
    token = server.token(name="Investor")

    async def scenario() -> None:
        first = await RawClient.join(server.url, name="x", token=token)
        second = await RawClient.join(server.url, name="y", token=token)
        assert second.avatar == first.avatar and second.welcome["resumed"] is True
        assert second.welcome["name"] == "Investor"
        assert await first.closed() == CloseCode.REPLACED

    run(scenario())


def test_a_name_cannot_copy_someone_elses(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url, name="ann")
        copy = await RawClient.join(server.url, name="ANN")
        assert copy.welcome["name"] == "ANN 2"
        bob = await RawClient.join(server.url, name="bob")
        for lookalike in ("Ann", "\u0430nn", "a n n"):  # case, Cyrillic a, spacing
            await bob.send({"t": "profile", "name": lookalike})
            assert (await bob.error())["code"] == ErrorCode.NAME_TAKEN
        await bob.send({"t": "profile", "name": "bobby"})
        await ann.event("profile", avatar=bob.avatar, name="bobby")

    run(scenario())


def test_what_a_never_reading_client_holds_is_bounded_including_the_kernel(make_server):
    server = make_server(snapshot_skip_bytes=8 * 1024, max_buffer_bytes=48 * 1024)

    async def scenario() -> int | None:
        stuck = await RawClient.join(server.url, name="stuck")
        talker = await RawClient.join(server.url, name="talker")
        room = server.server.rooms["bar"] if server.server else None
        assert room is not None
        link = server.call(lambda: room.sessions[stuck.avatar].link)
        sndbuf = server.call(
            lambda: link.gate.get_extra_info("socket").getsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF
            )
        )
        assert sndbuf <= 2 * SNDBUF_BYTES  # Linux doubles the value it is given
        stuck.ws.transport.pause_reading()  # stop reading: the kernel's buffers fill
        held = []
        for i in range(400):
            await talker.send({"t": "chat", "text": f"{i:04d} " + "x" * 400})
            if i % 20 == 0:
                await asyncio.sleep(0.05)
                held.append(server.call(link.held_bytes))
                if link.closing:
                    break
        code = await asyncio.wait_for(_close_code_seen_by_server(server, link), 15)
        assert max(held) <= 48 * 1024 + 64 * 1024  # the bound, plus at most one event burst
        return code

    assert run(scenario()) is True


async def _close_code_seen_by_server(server: ServerThread, link) -> bool:
    while not server.call(lambda: link.closing):
        await asyncio.sleep(0.05)
    return True


def test_an_invite_minted_for_a_crowd_holds_that_many_and_no_more(make_server):
    server = make_server(open_rooms=False)
    token = server.token(avatars=20)  # `neonbar invite --avatars 20`: twenty bots at once

    async def scenario() -> None:
        crowd = [await RawClient.join(server.url, name=f"b{i}", token=token) for i in range(20)]
        assert len({c.avatar for c in crowd}) == 20
        extra = await RawClient.open(server.url)
        await extra.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "b20",
                          "token": token})  # fmt: skip
        assert await extra.closed() == CloseCode.INVITE_FULL

    run(scenario())


def test_text_that_hides_or_reorders_and_look_paths_are_refused_over_the_wire(make_server):
    """The issue's list, each through a real socket: an error naming the message, nothing
    stored or shown, the connection stays."""
    server = make_server(open_rooms=False)

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        ann = await RawClient.join(server.url, name="ann", token=server.token())
        hidden = ["bad\x7fdel", "c1\x85next", "c1\x9bcsi", "bidi \u202eevil", "line\u2028sep",
                  "para\u2029sep", "zero\u200bwidth", "isolate \u2066x\u2069"]  # fmt: skip
        for text in hidden:
            await ann.send({"t": "chat", "text": text})
            error = await ann.error()
            assert error["code"] == ErrorCode.INVALID_FIELD and error["ref"] == "chat", text
        for name in ("\u200b", "\u3164", "\u3164\u3164", " ann", "a\u00a0nn"):
            await ann.send({"t": "profile", "name": name})
            error = await ann.error()
            assert error["code"] == ErrorCode.INVALID_FIELD and error["ref"] == "profile", name
        for look in ("../../etc/passwd", "assets/luts/teal_neon.cube", "teal_neon.cube"):
            await host.send({"t": "look", "look": look})
            error = await host.error()
            assert error["code"] == ErrorCode.INVALID_FIELD and error["ref"] == "look", look
        # An invisible name in the hello itself is not a valid hello.
        ghost = await RawClient.open(server.url)
        await ghost.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "\u3164",
                          "token": server.token()})  # fmt: skip
        assert await ghost.closed() == CloseCode.PROTOCOL
        # Copying the host's name at the door gets a suffix; nothing above reached anyone.
        copy = await RawClient.join(server.url, name="HOST", token=server.token())
        assert copy.welcome["name"] == "HOST 2"
        await ann.send({"t": "chat", "text": "plain"})
        await host.event("chat", text="plain")
        assert [e["text"] for e in host.events if e["kind"] == "chat"] == ["plain"]
        assert not [e for e in host.events if e["kind"] in ("look", "profile")]
        for client in (host, ann, copy):
            await client.close()

    run(scenario())


def test_a_new_avatar_of_the_same_invite_does_not_refill_the_invites_budget(make_server):
    """Per connection 5 messages pass at once; the invite (2 avatars) has 10 for all of its
    connections together, refilled at 0.4 a second: after two avatars spent them, a third
    one's fresh connection bucket does not help."""
    server = make_server(open_rooms=False, avatars_per_invite=2, msgs_per_s=0.2, burst=5)
    token = server.token()

    async def spend(name: str) -> list[int]:
        client = await RawClient.join(server.url, name=name, token=token)
        for i in range(4):
            await client.send({"t": "ping", "ct": float(i)})
        await client.send({"t": "bye"})  # the 5th message; the avatar leaves, freeing its slot
        await client.closed()
        return [e["code"] for e in client.errors]

    async def scenario() -> list[int]:
        assert await spend("first") == []
        assert await spend("second") == []
        third = await RawClient.join(server.url, name="third", token=token)
        for i in range(4):
            await third.send({"t": "ping", "ct": float(i)})
        await third.send({"t": "chat", "text": "sync"})  # refused or echoed: the last reply
        replies = [await third.recv_until(_reply) for _ in range(5)]
        return [m.get("code", 0) for m in replies]

    codes = run(scenario())
    assert codes.count(ErrorCode.RATE_LIMITED) >= 3, codes


def _reply(msg: dict) -> bool:
    """A pong, an error or a chat event: what a ping or a chat gets back."""
    return msg["t"] in ("pong", "error") or (msg["t"] == "event" and msg["kind"] == "chat")


def test_a_kick_outlasts_the_room_being_emptied(make_server):
    """Everyone leaves, the room is disposed; the room made for the next hello reads the
    kick back from storage."""
    server = make_server(open_rooms=False)
    host_token, guest_token = server.token(role="host"), server.token()

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="host", token=host_token)
        guest = await RawClient.join(server.url, name="guest", token=guest_token)
        await host.send({"t": "kick", "avatar": guest.avatar})
        assert await guest.closed() == CloseCode.KICKED
        await host.send({"t": "bye"})
        await host.closed()
        assert server.server is not None
        rooms = server.server.rooms
        for _ in range(100):  # disposed within a couple of seconds once empty
            if not server.call(lambda: "bar" in rooms):
                break
            await asyncio.sleep(0.1)
        assert not server.call(lambda: "bar" in rooms)
        back = await RawClient.open(server.url)
        await back.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "guest",
                         "token": guest_token})  # fmt: skip
        assert await back.closed() == CloseCode.KICKED

    run(scenario())
