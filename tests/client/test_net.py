"""The protocol client against a real server subprocess and against fake servers."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from client.net import (
    AsyncSession,
    ConnectError,
    ConnectionState,
    NetSession,
    _roster_from,
)
from neonbar import protocol
from neonbar.drinks import tipsy_after_drink, tipsy_level

# pytest runs with --import-mode=importlib: helpers beside the tests are not on the path.
sys.path.insert(0, str(Path(__file__).parent))
from netfixtures import CuttableProxy, free_port, running_server

ROOM = "nettest"


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {predicate}")


async def async_wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {predicate}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


def test_two_clients_see_each_other_move_and_chat(server):
    a = NetSession(server.url, ROOM, "alice", color="#ff2bd6")
    b = NetSession(server.url, ROOM, "bob")
    a.start()
    b.start()
    try:
        wait_until(lambda: a.state is ConnectionState.CONNECTED)
        wait_until(lambda: b.state is ConnectionState.CONNECTED)
        assert a.you is not None and b.you is not None and a.you != b.you
        assert a.role == "collaborator"
        wait_until(lambda: b.you in a.roster and a.you in b.roster)
        assert b.roster[a.you]["color"] == "#ff2bd6"

        # Alice walks; Bob sees her, interpolated, where she went.
        start = a.correction() or wait_until(a.correction)
        for k in range(30):
            a.set_local_state(start[0] + 0.05 * k, start[1], 0.3)
            time.sleep(0.02)
        target = np.array([start[0] + 0.05 * 29, start[1]])

        def bob_sees_alice_arrive() -> bool:
            ids, pos, _yaw = b.remote_avatars()
            hit = np.flatnonzero(ids == a.you)
            return len(hit) == 1 and np.hypot(*(pos[hit[0]] - target)) < 0.05

        wait_until(bob_sees_alice_arrive)
        ids, _, _ = b.remote_avatars()
        assert b.you not in ids.tolist()  # your own avatar is not "remote"
        assert a.ping_ms is not None and 0 < a.ping_ms < 1000
        assert abs(a.server_time() - b.server_time()) < 0.05
        corr = a.correction()
        assert corr is not None and corr[3] > 0
        assert a.sent_state(corr[3]) is not None

        a.poll()
        b.poll()
        a.send({"t": "chat", "text": "cheers to the director!"})
        a.send({"t": "drink", "drink": "martini", "color": "#00f0ff", "glow": 0.9,
                "garnish": "neural_olive"})  # fmt: skip
        got: list[dict] = []
        wait_until(lambda: got.extend(b.poll()) or len(got) >= 2)
        kinds = [(m["t"], m.get("kind")) for m in got]
        assert kinds == [("event", "chat"), ("event", "drink")]
        assert got[0]["text"] == "cheers to the director!" and got[0]["avatar"] == a.you
        assert got[1]["seq"] == got[0]["seq"] + 1
        wait_until(lambda: b.roster[a.you]["drink"] is not None)
        assert b.roster[a.you]["drink"]["garnish"] == "neural_olive"
        assert b.roster[a.you]["tipsy"] == pytest.approx(0.25)

        # An invalid message is refused locally, with an error for the app.
        a.send({"t": "chat", "text": ""})
        errors = wait_until(lambda: [m for m in a.poll() if m["t"] == "error"])
        assert errors[0].get("local") is True

        a_id = a.you
        a.stop()
        assert a.state is ConnectionState.CLOSED
        wait_until(lambda: a_id not in b.roster)
        wait_until(lambda: a_id not in b.remote_avatars()[0].tolist())
        assert b.stats.malformed == 0
    finally:
        a.stop()
        b.stop()


def test_resume_after_the_link_drops_replays_missed_events_once(server):
    port = int(server.url.rsplit(":", 1)[1])

    async def scenario() -> None:
        proxy = CuttableProxy(port)
        await proxy.start()
        a = AsyncSession(f"ws://127.0.0.1:{proxy.port}", ROOM, "carol")
        b = AsyncSession(server.url, ROOM, "dave")
        runs = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        try:
            await a.wait_welcome(10)
            await b.wait_welcome(10)
            await async_wait_until(lambda: b.you in a.roster)
            first_you = a.you
            a.inbox.clear()

            proxy.accepting = False  # the network is down: no reconnect yet
            proxy.cut()
            await async_wait_until(lambda: a.state is ConnectionState.RECONNECTING)
            for i in range(3):
                b.queue_message({"t": "chat", "text": f"missed {i}"})
            await asyncio.sleep(0.5)
            proxy.accepting = True

            await async_wait_until(
                lambda: a.state is ConnectionState.CONNECTED and a.stats.reconnects > 0
            )
            assert a.you == first_you
            assert a.welcome is not None and a.welcome["resumed"] is True
            b.queue_message({"t": "chat", "text": "after"})
            await async_wait_until(
                lambda: any(m.get("text") == "after" for m in a.inbox), timeout_s=5
            )
            chats = [m["text"] for m in a.inbox if m.get("kind") == "chat"]
            assert chats == ["missed 0", "missed 1", "missed 2", "after"]
            seqs = [m["seq"] for m in a.inbox if m["t"] == "event"]
            assert seqs == sorted(set(seqs))
            # Snapshots flow again (a full one first: the old acks mean nothing now).
            snaps = a.stats.snapshots
            await async_wait_until(lambda: a.stats.snapshots > snaps + 5)
        finally:
            await a.close()
            await b.close()
            await asyncio.gather(*runs, return_exceptions=True)
            await proxy.close()

    asyncio.run(scenario())


def test_a_client_the_server_drops_as_too_slow_resumes_with_each_event_once(server):
    """The server drops a client that stops reading (4408); it resumes and misses nothing."""

    async def scenario() -> None:
        a = AsyncSession(server.url, ROOM, "frank")
        b = AsyncSession(server.url, ROOM, "gina")
        runs = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        try:
            await a.wait_welcome(10)
            await b.wait_welcome(10)
            first_you = a.you
            a.inbox.clear()
            assert a._ws is not None
            a._ws.transport.pause_reading()  # a frozen client: it still sends stale acks
            for i in range(3):
                b.queue_message({"t": "chat", "text": f"while frozen {i}"})
                await asyncio.sleep(1.0)
            # The server gives up after its ack timeout (10 s) and closes with 4408.
            await asyncio.sleep(9.0)
            for i in range(3, 5):
                b.queue_message({"t": "chat", "text": f"while frozen {i}"})
            await asyncio.sleep(0.5)
            a._ws.transport.resume_reading()
            await async_wait_until(
                lambda: a.stats.reconnects >= 1 and a.state is ConnectionState.CONNECTED, 15
            )
            assert a.you == first_you and a.welcome["resumed"] is True
            assert a.stats.close_codes == [4408]
            b.queue_message({"t": "chat", "text": "welcome back"})
            await async_wait_until(lambda: any(m.get("text") == "welcome back" for m in a.inbox))
            chats = [m["text"] for m in a.inbox if m.get("kind") == "chat"]
            assert chats == [f"while frozen {i}" for i in range(5)] + ["welcome back"]
        finally:
            await a.close()
            await b.close()
            await asyncio.gather(*runs, return_exceptions=True)

    asyncio.run(scenario())


def test_reconnects_after_the_server_restarts(tmp_path: Path):
    port = free_port()
    with running_server(tmp_path, port) as first:
        session = NetSession(first.url, ROOM, "erin")
        session.start()
        try:
            wait_until(lambda: session.state is ConnectionState.CONNECTED)
            first.stop()  # SIGTERM: the server says 1001 going away
            wait_until(lambda: session.state is not ConnectionState.CONNECTED)
            assert session.state is ConnectionState.RECONNECTING
            assert session.last_error
            with running_server(tmp_path, port):
                wait_until(lambda: session.state is ConnectionState.CONNECTED, 20)
                assert session.last_error is None
                # A new server process: a new avatar, and snapshots again.
                snaps = session.stats.snapshots
                wait_until(lambda: session.stats.snapshots > snaps + 5)
        finally:
            session.stop()


# --------------------------------------------------------------------------- fake servers


def welcome(you: int = 7, resumed: bool = False) -> bytes:
    return protocol.encode(
        {
            "t": "welcome", "v": protocol.PROTOCOL_VERSION, "you": you, "room": ROOM,
            "role": "host", "name": "x",
            "resume": "resume-token", "resumed": resumed, "st": 100.0, "tick": 0, "seq": 3,
            "pos": [100, -200, 0], "look": "neutral", "layout": "test",
            "avatars": [{"id": you, "name": "x", "color": "#ffffff", "role": "host",
                         "muted": False, "drink": None, "tipsy": 0.0}],
            "limits": {"max_frame_bytes": 4096},
        }
    )  # fmt: skip


def full_snap(tick: int, ids: list[int]) -> bytes:
    arr = np.array(ids)
    return protocol.encode(
        {"t": "snap", "tick": tick, "base": -1, "st": 100.0 + tick * 0.05, "you": [0, 0, 0, 0],
         "d": b"", "a": protocol.pack_absolute(arr, arr * 10, arr * 10, arr)}
    )  # fmt: skip


async def fake_server(handler: Callable[[ServerConnection], Any]) -> Any:
    return await serve(handler, "127.0.0.1", 0)


def fake_url(srv: Any) -> str:
    return f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


def test_malformed_frames_are_logged_and_survived(caplog: pytest.LogCaptureFixture):
    garbage = [
        b"\xc1\xff\x00 not msgpack",
        "a text frame",
        protocol.encode({"t": "nonsense"}),
        protocol.encode([1, 2, 3]),
        protocol.encode(
            {
                "t": "snap",
                "tick": 5,
                "base": -1,
                "st": 1.0,
                "you": [0, 0, 0, 0],
                "d": b"\x01\x02\x03",
                "a": b"",
            }
        ),
        protocol.encode({"t": "event", "seq": 4, "st": 1.0, "kind": "chat", "avatar": 1}),
    ]

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(welcome())
        for frame in garbage:
            await ws.send(frame)
        await ws.send(protocol.encode(
            {"t": "event", "seq": 4, "st": 1.0, "kind": "chat", "avatar": 7, "text": "still here"}
        ))  # fmt: skip
        for tick in range(1, 6):
            await ws.send(full_snap(tick, [7, 8]))
        await ws.wait_closed()

    async def scenario() -> AsyncSession:
        async with await fake_server(handler) as srv:
            session = AsyncSession(fake_url(srv), ROOM, "x")
            run = asyncio.create_task(session.run())
            await async_wait_until(lambda: session.stats.snapshots >= 5, 5)
            assert session.state is ConnectionState.CONNECTED
            await session.close()
            await run
            return session

    with caplog.at_level(logging.WARNING, logger="neonbar.net"):
        session = asyncio.run(scenario())
    assert session.stats.malformed == len(garbage)
    assert [m.get("text") for m in session.inbox if m["t"] == "event"] == ["still here"]
    assert sum("malformed" in r.message or "unusable" in r.message for r in caplog.records) >= 5
    assert session.state is ConnectionState.CLOSED


@pytest.mark.parametrize(
    ("code", "sentence"),
    [(4403, "kicked by host"), (4409, "taken over"), (4402, "expired")],
)
def test_final_close_codes_stop_without_retrying(code: int, sentence: str):
    connections = []

    async def handler(ws: ServerConnection) -> None:
        connections.append(await ws.recv())
        await ws.send(welcome())
        await ws.close(code, "bye now")

    async def scenario() -> AsyncSession:
        async with await fake_server(handler) as srv:
            session = AsyncSession(fake_url(srv), ROOM, "x")
            await asyncio.wait_for(session.run(), 5)
            await asyncio.sleep(0.3)
            return session

    session = asyncio.run(scenario())
    assert session.state is ConnectionState.CLOSED
    assert session.last_error is not None and sentence in session.last_error
    assert len(connections) == 1


def test_going_away_resumes_with_token_and_since():
    hellos: list[dict] = []

    async def handler(ws: ServerConnection) -> None:
        hellos.append(protocol.decode_client(await ws.recv()))
        await ws.send(welcome(resumed=len(hellos) > 1))
        if len(hellos) == 1:
            await ws.send(protocol.encode(
                {"t": "event", "seq": 4, "st": 1.0, "kind": "system", "text": "closing"}
            ))  # fmt: skip
            await ws.close(1001, "restarting")
        else:
            await ws.wait_closed()

    async def scenario() -> AsyncSession:
        async with await fake_server(handler) as srv:
            session = AsyncSession(fake_url(srv), ROOM, "x")
            run = asyncio.create_task(session.run())
            await async_wait_until(lambda: len(hellos) == 2 and session.welcome["resumed"], 5)
            await session.close()
            await run
            return session

    session = asyncio.run(scenario())
    assert "resume" not in hellos[0]
    assert hellos[1]["resume"] == "resume-token" and hellos[1]["since"] == 4
    assert session.stats.reconnects == 1


def test_first_connection_refused():
    async def scenario() -> None:
        session = AsyncSession(f"ws://127.0.0.1:{free_port()}", ROOM, "x")
        with pytest.raises(ConnectError, match="refused"):
            await session.run()
        assert session.state is ConnectionState.CLOSED

    asyncio.run(scenario())

    # The desktop app keeps trying, and says why.
    net = NetSession(f"ws://127.0.0.1:{free_port()}", ROOM, "x")
    net.start()
    try:
        wait_until(lambda: net.last_error and "refused" in net.last_error, 5)
        assert net.state in (ConnectionState.CONNECTING, ConnectionState.RECONNECTING)
        time.sleep(1.0)  # now in a backoff wait
    finally:
        started = time.monotonic()
        net.stop()
    assert time.monotonic() - started < 2.5  # stop() does not wait out the backoff (up to 8 s)
    assert net.state is ConnectionState.CLOSED
    assert not net._thread.is_alive()


def test_join_link_carries_room_and_token():
    net = NetSession("ws://127.0.0.1:9/?room=lounge&token=abc", None, "x")
    assert net.session.room == "lounge"
    assert net.session.token == "abc"
    assert net.session.server_url == "ws://127.0.0.1:9/"


def test_roster_from_welcome_is_sanitized():
    roster = _roster_from(
        [
            {"id": 1, "name": "a", "color": "#zzzzzz", "role": "god", "tipsy": float("nan"),
             "drink": {"drink": "m", "color": "#FF00FF", "glow": 0.5, "garnish": "neural_olive"}},
            {"id": 2, "drink": "a string", "tipsy": 3},
            "junk",
            {"name": "no id"},
        ],
        st=10.0,
    )  # fmt: skip
    assert sorted(roster) == [1, 2]
    assert roster[1]["color"] == "#ffffff" and roster[1]["role"] == "viewer"
    assert roster[1]["drink"] == {
        "drink": "m", "color": "#ff00ff", "glow": 0.5, "garnish": "neural_olive"
    }  # fmt: skip
    assert roster[1]["tipsy"] == 0.0
    assert roster[2]["drink"] is None and roster[2]["tipsy"] == 1.0


def test_tipsy_decays_and_drinks_add_a_quarter():
    assert tipsy_level(0.5, 0.0, 60.0) == pytest.approx(0.4)
    assert tipsy_level(0.05, 0.0, 600.0) == 0.0
    assert tipsy_after_drink(0.9, 0.0, 0.0) == 1.0
    assert tipsy_after_drink(0.5, 0.0, 120.0) == pytest.approx(0.55)
