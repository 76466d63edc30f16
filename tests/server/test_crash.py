"""`kill -9` the real server mid-stream, restart it on the same data: nothing anyone saw is lost.

The server runs as `neonbar server` in a subprocess on 127.0.0.1 with a temp --data dir; real
websocket clients stream chat at it. After SIGKILL and a restart on the same directory:

- every event any client saw (a sender's own echo is its acknowledgement) is stored, at the
  same seq, with the same content; nothing stored was overwritten;
- seq continues above the highest seq anyone saw;
- a client resumes with its old resume token: same avatar, where it stood, and exactly the
  events it missed since its `since`, once each, in order;
- a kicked invite is still refused (4403) and a muted invite's chat still refused (4007).

No assertion depends on how fast the machine is: the streams are counted in events, and every
wait is a generous bound that only a hung server reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from serverfixtures import RawClient, run
from websockets.exceptions import ConnectionClosed

from neonbar.protocol import PROTOCOL_VERSION, CloseCode, ErrorCode
from neonbar.tokens import load_secret, mint

sys.path.insert(0, str(Path(__file__).parents[1] / "client"))  # the server process
from netfixtures import ServerProcess

EVENT_KEYS = ("t", "seq", "st", "kind")


@pytest.fixture
def servers():
    started: list[ServerProcess] = []

    env = {k: v for k, v in os.environ.items() if k != "NEONBAR_SECRET"}  # data/secret.key

    def start(data: Path, open_rooms: bool = True) -> ServerProcess:
        server = ServerProcess(data, open_rooms=open_rooms, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def stored_events(data: Path, room: str = "bar") -> dict[int, tuple[str, dict[str, Any]]]:
    import json

    with contextlib.closing(sqlite3.connect(data / "neonbar.db")) as db:
        rows = db.execute("SELECT seq, kind, body FROM events WHERE room = ?", (room,)).fetchall()
    return {seq: (kind, json.loads(body)) for seq, kind, body in rows}


def content(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return event["kind"], {k: v for k, v in event.items() if k not in EVENT_KEYS}


async def read_forever(client: RawClient) -> None:
    """Keep reading (acknowledging snapshots so the server keeps the client) until closed."""
    seq = 0
    with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
        while True:
            msg = await client.recv(30.0)
            if msg["t"] == "snap":
                seq += 1
                x, y, yaw, _ = msg["you"]
                await client.send(
                    {"t": "input", "seq": seq, "ack": msg["tick"], "x": x, "y": y, "yaw": yaw}
                )


async def chat_stream(client: RawClient, tag: str) -> None:
    """Send chat as fast as the rate limit comfortably allows until the connection dies."""
    n = 0
    with contextlib.suppress(ConnectionClosed, OSError):
        while True:
            n += 1
            await client.send({"t": "chat", "text": f"{tag} {n}"})
            await asyncio.sleep(0.03)


def check_after_restart(data: Path, seen: list[dict[str, Any]]) -> int:
    """Every seen event is stored, same seq, same content. Returns the highest seq seen."""
    events = stored_events(data)
    by_seq: dict[int, tuple[str, dict[str, Any]]] = {}
    for event in seen:
        got = content(event)
        assert by_seq.setdefault(event["seq"], got) == got, "two clients saw different events"
    missing = sorted(set(by_seq) - set(events))
    assert not missing, f"{len(missing)} seen events are not stored: {missing[:10]}"
    for seq, want in by_seq.items():
        assert events[seq] == want, f"event {seq} was overwritten"
    # Shown with `pytest -s` (BENCHMARKS.md, "Durable event log").
    print(f"after kill -9: {len(by_seq)} events seen, all stored; highest seen {max(by_seq)}")
    return max(by_seq)


def test_kill_9_mid_stream_loses_nothing_seen_and_resume_restores_the_avatar(
    tmp_path: Path, servers
):
    server = servers(tmp_path)

    async def before_crash() -> tuple[RawClient, list[RawClient], list[int]]:
        watcher = await RawClient.join(server.url, name="watcher")
        # The watcher steps to a spot of its own and stands there, reading.
        x, y, yaw = watcher.welcome["pos"]
        target = [x + 30, y, yaw]
        await watcher.send({"t": "input", "seq": 1, "ack": -1, "x": target[0], "y": y,
                            "yaw": yaw})  # fmt: skip
        senders = [await RawClient.join(server.url, name=f"s{i}") for i in range(3)]
        tasks = [asyncio.create_task(chat_stream(c, c.welcome["name"])) for c in senders]
        tasks += [asyncio.create_task(read_forever(c)) for c in [watcher, *senders]]
        # Wait (counted in events, not time) until the stream is well under way and the
        # watcher's spot is the server's: it has stood there through several snapshots.
        while True:
            await asyncio.sleep(0.05)
            chats = [e for e in watcher.events if e["kind"] == "chat"]
            snaps = [s["you"][:2] for s in watcher.snaps[-40:]]
            if len(chats) >= 60 and len(snaps) == 40 and all(s == snaps[-1] for s in snaps):
                break
        stood = watcher.snaps[-1]["you"][:3]
        server.stop(signal.SIGKILL)  # mid-stream: the senders are still sending
        await asyncio.wait(tasks, timeout=30)
        for task in tasks:
            task.cancel()
        return watcher, senders, stood

    watcher, senders, stood = run(before_crash(), timeout_s=120)
    seen = [e for c in [watcher, *senders] for e in c.events]
    # Every sender's own chats that came back to it were acknowledged; all the more seen.
    assert any(e["kind"] == "chat" for e in senders[0].events)

    server = servers(tmp_path)
    top = check_after_restart(tmp_path, seen)
    since = max(20, top - 25)  # the watcher claims it processed only up to here

    async def after_restart() -> None:
        back = await RawClient.join(
            server.url, name="watcher", resume=watcher.welcome["resume"], since=since
        )
        assert back.welcome["resumed"] is True
        assert back.avatar == watcher.avatar
        assert back.welcome["seq"] >= top
        x, y, yaw = back.welcome["pos"]
        assert abs(x - stood[0]) <= 1 and abs(y - stood[1]) <= 1 and yaw == stood[2]
        want = list(range(since + 1, back.welcome["seq"] + 1))
        got: list[dict[str, Any]] = []
        while len(got) < len(want):
            got.append(await back.recv_until(lambda m: m["t"] == "event", timeout_s=20))
        assert [e["seq"] for e in got] == want  # exactly the missed ones, in order, once
        before = {e["seq"]: content(e) for e in seen}
        assert all(content(e) == before[e["seq"]] for e in got if e["seq"] in before)
        # The room goes on above everything anyone saw.
        await back.send({"t": "chat", "text": "after the crash"})
        after = await back.event("chat", text="after the crash", timeout_s=20)
        assert after["seq"] > top
        await back.close()

    run(after_restart(), timeout_s=90)


def test_repeated_kill_9_under_load_never_reuses_a_seq(tmp_path: Path, servers):
    """Several crash/restart cycles with many clients chatting; invariants checked each time.

    Counted in events; the kill lands at a random point of the stream (seeded)."""
    rng = random.Random(9)
    seen_all: list[dict[str, Any]] = []
    top_before = 0
    for cycle in range(3):
        server = servers(tmp_path)

        async def stream(server: ServerProcess, cycle: int) -> list[dict[str, Any]]:
            url = server.url
            clients = [await RawClient.join(url, name=f"c{cycle}-{i}") for i in range(6)]
            tasks = [asyncio.create_task(chat_stream(c, f"c{cycle}-{i}"))
                     for i, c in enumerate(clients)]  # fmt: skip
            tasks += [asyncio.create_task(read_forever(c)) for c in clients]
            stop_at = rng.randrange(40, 160)
            while sum(e["kind"] == "chat" for e in clients[0].events) < stop_at:
                await asyncio.sleep(0.02)
            server.stop(signal.SIGKILL)
            await asyncio.wait(tasks, timeout=30)
            for task in tasks:
                task.cancel()
            return [e for c in clients for e in c.events]

        seen = run(stream(server, cycle), timeout_s=120)
        assert seen
        # This cycle's first event is above everything seen in the cycles before.
        assert min(e["seq"] for e in seen) > top_before
        seen_all.extend(seen)
        top_before = check_after_restart(tmp_path, seen_all)
    server = servers(tmp_path)
    check_after_restart(tmp_path, seen_all)


def test_a_kick_and_a_mute_outlive_kill_9(tmp_path: Path, servers):
    """Acknowledged (the host saw the kick and the mute events), then SIGKILL at once: the
    restarted server on the same data still refuses the kicked invite and the muted chat."""
    server = servers(tmp_path, open_rooms=False)
    secret = load_secret(tmp_path)  # the key the server made in its data directory
    host_token, guest_token = mint(secret, "bar", "host"), mint(secret, "bar", "collaborator")
    loud_token = mint(secret, "bar", "collaborator")

    async def before_crash() -> dict[str, Any]:
        host = await RawClient.join(server.url, name="host", token=host_token)
        guest = await RawClient.join(server.url, name="guest", token=guest_token)
        loud = await RawClient.join(server.url, name="loud", token=loud_token)
        await host.send({"t": "kick", "avatar": guest.avatar})
        await host.event("kick", avatar=guest.avatar)
        await host.send({"t": "mute", "avatar": loud.avatar, "muted": True})
        await host.event("mute", avatar=loud.avatar, muted=True)
        server.stop(signal.SIGKILL)  # the instant the host has seen both
        return {"guest": guest.welcome, "loud": loud.welcome}

    welcomes = run(before_crash(), timeout_s=60)
    server = servers(tmp_path, open_rooms=False)

    async def after_restart() -> None:
        for resume in (None, welcomes["guest"]["resume"]):  # a fresh join, or its old avatar
            guest = await RawClient.open(server.url)
            hello = {"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "guest",
                     "token": guest_token, "resume": resume}  # fmt: skip
            await guest.send(hello)
            assert await guest.closed() == CloseCode.KICKED
        # The muted avatar resumes muted; a new avatar of the same invite is muted as well.
        loud = await RawClient.join(server.url, name="loud", token=loud_token,
                                    resume=welcomes["loud"]["resume"])  # fmt: skip
        assert loud.welcome["resumed"] is True and loud.avatar == welcomes["loud"]["you"]
        louder = await RawClient.join(server.url, name="louder", token=loud_token)
        for client in (loud, louder):
            await client.send({"t": "chat", "text": "can you hear me?"})
            error = await client.error()
            assert error["code"] == ErrorCode.MUTED and error["ref"] == "chat"
        assert not [e for e in loud.events + louder.events if e["kind"] == "chat"]
        await loud.close()
        await louder.close()

    run(after_restart(), timeout_s=60)
