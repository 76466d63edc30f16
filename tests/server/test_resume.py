"""Resume: the avatar stays for the window; missed events are replayed exactly once, in order;
after a restart the avatar is back, away, and its old token resumes it (tests/server/test_crash.py
does the same against a real server killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from serverfixtures import RawClient, ServerThread, run

from neonbar.protocol import CM_PER_M, PROTOCOL_VERSION, TICK_HZ, CloseCode, ErrorCode, encode
from neonbar.tokens import mint_resume, new_resume_nonce
from server.durability import ALIVE_KEY, Durability
from server.recording import RecordedLink, RecordingHost
from server.room import JoinRefused, RoomConfig
from server.storage import PrunePolicy, SqliteStorage


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


# ------------------------------------------------------------------ across a restart (sans-I/O)


def hello(**fields: Any) -> dict[str, Any]:
    return {"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "ann", **fields}


def first_life(db: Path) -> tuple[dict[str, Any], list[int], list[int]]:
    """A room on `db`: ann joins, steps aside, chats, stands still for a second. Then the
    process 'dies' (nothing is closed or flushed: the objects are just dropped)."""
    host = RecordingHost(storage=SqliteStorage(db, threaded=False))
    host.now = 100.0
    room = host.room()
    link = RecordedLink("ann")
    session = room.on_join(link, hello(), room.on_auth(hello()), host.now)
    welcome = link.take()[0]
    x, y, yaw = welcome["pos"]
    want = [x + 20, y, (yaw + 1000) % 65536]
    room.receive(session, encode({"t": "input", "seq": 1, "ack": -1, "x": want[0], "y": y,
                                  "yaw": want[2]}), host.now)  # fmt: skip
    for i in range(5):
        room.receive(session, encode({"t": "chat", "text": f"line {i}"}), host.now)
    for _ in range(2 * TICK_HZ):  # past a save
        host.now += 1 / TICK_HZ
        room.step(host.now)
    aid = session.avatar.id
    stood = [round(float(v) * CM_PER_M) for v in room.pos_m[aid]] + [int(room.yaw[aid])]
    assert stood[2] == want[2]  # the input was applied: it turned
    seqs = [m["seq"] for m in link.take() if m["t"] == "event"]
    return welcome, seqs, stood


def test_after_a_restart_the_avatar_is_back_away_and_its_token_resumes_it(tmp_path: Path):
    db = tmp_path / "n.db"
    welcome, seqs, stood = first_life(db)
    host = RecordingHost(storage=SqliteStorage(db, threaded=False))
    host.now = 3.0  # a new process: its clock starts again
    room = host.room()
    ann = room.avatars[welcome["you"]]
    assert ann.session is None and ann.away_since_s is not None  # away, not gone
    assert ann.name == "ann" and ann.resume_token == welcome["resume"]

    since = seqs[1]
    grant = room.on_auth(hello(resume=welcome["resume"], since=since))
    assert grant.resume_of is ann
    link = RecordedLink("ann again")
    room.on_join(link, hello(resume=welcome["resume"], since=since), grant, host.now)
    messages = link.take()
    back = messages[0]
    assert back["t"] == "welcome" and back["resumed"] is True and back["you"] == welcome["you"]
    assert back["pos"] == stood  # where it stood (positions are saved once a second)
    assert back["seq"] == seqs[-1]  # nothing anyone saw is newer; nothing was lost
    replayed = [m["seq"] for m in messages[1:] if m["t"] == "event"]
    assert replayed == [s for s in seqs if s > since]  # exactly what it missed, once, in order
    # ...and the room goes on above it.
    room.receive(room.sessions[ann.id], encode({"t": "chat", "text": "back"}), host.now)
    assert [m["seq"] for m in link.take() if m["t"] == "event"] == [seqs[-1] + 1]


def test_after_a_restart_an_avatar_past_its_window_leaves_and_its_token_is_dead(tmp_path: Path):
    db = tmp_path / "n.db"
    welcome, _, _ = first_life(db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        # The server was down an hour: its last heartbeat and its avatars' rows are that old.
        conn.execute("UPDATE avatars SET seen_s = seen_s - 3600")
        conn.execute("UPDATE room_state SET value = value - 3600 WHERE key = ?", (ALIVE_KEY,))
    host = RecordingHost(storage=SqliteStorage(db, threaded=False))
    room = host.room()
    watcher = RecordedLink("bob")
    room.on_join(watcher, hello(name="bob"), room.on_auth(hello(name="bob")), host.now)
    for _ in range(TICK_HZ):
        host.now += 1 / TICK_HZ
        room.step(host.now)
    leaves = [m for m in watcher.messages() if m["t"] == "event" and m["kind"] == "leave"]
    assert [(m["avatar"], m["reason"]) for m in leaves] == [(welcome["you"], "timeout")]
    grant = room.on_auth(hello(resume=welcome["resume"]))
    assert grant.resume_of is None  # an open room lets it in, as somebody new
    assert SqliteStorage(db, threaded=False).load_avatars("bar")[0].name == "bob"


def test_a_resume_from_before_what_was_pruned_is_told_where_the_replay_starts(
    tmp_path: Path, monkeypatch
):
    db = tmp_path / "n.db"
    welcome, seqs, _ = first_life(db)
    monkeypatch.setattr(Durability, "policy", PrunePolicy(replay_events=3, replay_days=365))
    host = RecordingHost(storage=SqliteStorage(db, threaded=False))
    room = host.room()  # created: prunes
    assert room.events.pruned_through == seqs[-1] - 3
    link = RecordedLink("ann")
    msg = hello(resume=welcome["resume"], since=1)
    room.on_join(link, msg, room.on_auth(msg), host.now)
    messages = link.take()
    assert messages[1]["t"] == "error" and messages[1]["code"] == ErrorCode.HISTORY_PRUNED
    assert messages[1]["ref"] == "hello"
    replayed = [m["seq"] for m in messages[2:] if m["t"] == "event"]
    assert replayed == list(range(seqs[-1] - 2, seqs[-1] + 1))
    # Exported kinds are never pruned: the chats are all still stored.
    chats = SqliteStorage(db, threaded=False).events("bar", kinds=["chat"])
    assert [c["text"] for c in chats] == [f"line {i}" for i in range(5)]


def test_a_resume_token_of_another_room_or_forged_admits_nobody(tmp_path: Path):
    host = RecordingHost(config=RoomConfig(open_rooms=False))
    room = host.room("bar")
    other = mint_resume(host.secret, "lounge", 1, new_resume_nonce())
    forged = mint_resume(b"another-secret-0123456789", "bar", 1, new_resume_nonce())
    for token in (other, forged, "garbage"):
        with pytest.raises(JoinRefused) as refused:
            room.on_auth(hello(resume=token))
        assert refused.value.close_code == CloseCode.AUTH_FAILED


def test_events_queued_behind_a_long_replay_stay_flat_and_in_order():
    """Thousands of live events behind one replay (a busy room, a resume with since: 0)."""
    from server.delivery import _chain, _chain_iter

    frames = _chain_iter(iter([b"r1", b"r2"]), iter([b"r3"]))
    for i in range(5000):
        frames = _chain(frames, b"live %d" % i)
    assert list(frames) == [b"r1", b"r2", b"r3"] + [b"live %d" % i for i in range(5000)]


def test_an_avatar_that_stood_still_for_an_hour_is_still_resumable_after_a_crash(tmp_path: Path):
    """Its row is old (nothing changed to write), but the room's heartbeat says it was there."""
    db = tmp_path / "n.db"
    welcome, _, _ = first_life(db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE avatars SET seen_s = seen_s - 3600")
    host = RecordingHost(storage=SqliteStorage(db, threaded=False))
    room = host.room()
    grant = room.on_auth(hello(resume=welcome["resume"]))
    assert grant.resume_of is not None and grant.resume_of.id == welcome["you"]
    for _ in range(TICK_HZ):  # housekeeping runs: it does not time out
        host.now += 1 / TICK_HZ
        room.step(host.now)
    assert welcome["you"] in room.avatars
