"""Resume: the avatar stays for the window; missed events are replayed exactly once, in order."""

from __future__ import annotations

import asyncio
import itertools
import socket

from serverfixtures import RawClient, ServerThread, run

from neonbar.protocol import PROTOCOL_VERSION, CloseCode


async def drop(client: RawClient) -> None:
    """Vanish without a closing handshake (a cable pulled)."""
    client.ws.transport.abort()
    await asyncio.sleep(0.05)


def test_resume_replays_missed_events_exactly_once_in_order(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url, name="ann")
        bob = await RawClient.join(server.url, name="bob")
        await bob.send({"t": "chat", "text": "before"})
        seen = await ann.event("chat", text="before")
        await drop(ann)
        for i in range(5):
            await bob.send({"t": "chat", "text": f"missed {i}"})
        await bob.event("chat", text="missed 4")
        # The avatar stayed: no leave event.
        assert not [e for e in bob.events if e["kind"] == "leave"]

        back = await RawClient.join(
            server.url, name="ann", resume=ann.welcome["resume"], since=seen["seq"]
        )
        assert back.welcome["resumed"] is True and back.avatar == ann.avatar
        assert back.welcome["resume"] == ann.welcome["resume"]
        await bob.send({"t": "chat", "text": "after"})
        await back.event("chat", text="after")
        chats = [e["text"] for e in back.events if e["kind"] == "chat"]
        assert chats == [f"missed {i}" for i in range(5)] + ["after"]
        seqs = [e["seq"] for e in back.events]
        assert seqs == list(range(seen["seq"] + 1, seqs[-1] + 1))
        assert not [e for e in bob.events if e["kind"] == "join" and e["avatar"] == ann.avatar]
        await back.close()
        await bob.close()

    run(scenario())


def test_resume_replaces_a_connection_still_open(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        second = await RawClient.join(server.url, resume=ann.welcome["resume"])
        assert second.welcome["resumed"] is True
        assert await ann.closed() == CloseCode.REPLACED
        await second.send({"t": "chat", "text": "still me"})
        msg = await second.event("chat", text="still me")
        assert msg["avatar"] == ann.avatar
        await second.close()

    run(scenario())


def test_unknown_resume_token_is_a_fresh_join(server: ServerThread):
    async def scenario() -> None:
        ann = await RawClient.join(server.url, resume="not-a-token", since=3)
        assert ann.welcome["resumed"] is False
        await ann.close()

    run(scenario())


def test_away_avatar_leaves_after_the_window(make_server):
    server = make_server(resume_window_s=0.5)

    async def scenario() -> None:
        ann = await RawClient.join(server.url)
        bob = await RawClient.join(server.url)
        await drop(ann)
        leave = await bob.event("leave", avatar=ann.avatar, timeout_s=5)
        assert leave["reason"] == "timeout"
        again = await RawClient.join(server.url, resume=ann.welcome["resume"])
        assert again.welcome["resumed"] is False and again.avatar != ann.avatar
        await again.close()
        await bob.close()

    run(scenario())


def test_a_client_that_stops_reading_is_dropped_and_resumes(make_server):
    server = make_server(ack_timeout_s=1.5, snapshot_skip_bytes=4096, max_buffer_bytes=64 * 1024)

    async def scenario() -> None:
        stuck = await RawClient.open(server.url)
        # A small receive buffer so the server's side fills quickly.
        sock = stuck.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await stuck.send({"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "stuck"})
        stuck.welcome = await stuck.recv()
        stuck.ws.transport.pause_reading()

        others = [await RawClient.join(server.url, name=f"ok{i}") for i in range(3)]
        pumps = [asyncio.create_task(c.pump(chat_every=4)) for c in others]
        await asyncio.sleep(2.5)
        # The room kept its 20 Hz pace for everyone else (events pile up for `stuck` too).
        for client in others:
            ticks = [m["tick"] for m in client.snaps]
            assert len(ticks) >= 40 and ticks == sorted(ticks)
            gaps = [b - a for a, b in itertools.pairwise(ticks)]
            assert max(gaps) <= 2
        assert not [e for e in others[0].events if e["kind"] == "leave"], "dropped = away"
        stuck.ws.transport.resume_reading()
        assert await stuck.closed(timeout_s=10) in (CloseCode.TOO_SLOW, 1006)
        seen = max([e["seq"] for e in stuck.events] or [stuck.welcome["seq"]])
        back = await RawClient.join(
            server.url, resume=stuck.welcome["resume"], since=seen, name="stuck"
        )
        assert back.welcome["resumed"] is True
        for task in pumps:
            task.cancel()
        # Every event it missed arrives, in order, once; and the chats went on meanwhile.
        want = list(range(seen + 1, back.welcome["seq"] + 1))
        assert len(want) > 5
        got: list[int] = []
        while len(got) < len(want):
            got.append((await back.recv_until(lambda m: m["t"] == "event"))["seq"])
        assert got == want
        metrics = server.call(lambda: server.server.metrics.render()).decode()
        assert 'neonbar_drops_total{reason="too_slow"}' in metrics
        for c in [*others, back]:
            await c.close()

    run(scenario(), timeout_s=40)
