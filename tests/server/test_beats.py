"""Beats against a real server: concurrent annotators agree on one ordered chain, every invalid
beat is refused with a clear error and nothing stored, ownership and the viewers' switch hold,
newcomers get the standing beats, a resumed client gets exactly what it missed, and after
kill -9 every acknowledged beat is there and the chain verifies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "client"))  # the clip, the server process
from clipfixtures import clip_scene
from netfixtures import ServerProcess, free_port
from serverfixtures import RawClient, ServerThread, run

from neonbar.beats import EMOTION_NAMES, BeatChain, beat_from_dict, check_chain

SCENE = "dust_storm"  # shipped: 30 s (scenes/dust_storm.toml)
REPO = Path(__file__).resolve().parents[2]


def _beat(t: float, emotion: str = "joy", **extra: Any) -> dict[str, Any]:
    return {"t": "beat", "scene": SCENE, "at": t, "emotion": emotion, **extra}


def _chain(server: ServerThread, room: str = "bar") -> BeatChain:
    return server.call(lambda: server.server.rooms[room].features["beats"].chain)


def _records(events: list[dict[str, Any]]) -> list[int]:
    return [e["rec"]["seq"] for e in events if e.get("kind") == "beat"]


async def _drain(client: RawClient, seconds: float) -> None:
    """Read whatever arrives for `seconds` (snapshots keep coming, so read by the clock)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            await client.recv(left)
        except TimeoutError:
            return


async def _beat_events(client: RawClient, n: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_records(client.events)) < n:
        await client.recv(max(0.05, deadline - time.monotonic()))


def test_concurrent_annotators_see_the_same_ordered_chain(server: ServerThread) -> None:
    async def scenario() -> None:
        people = [await RawClient.join(server.url, name=f"p{i}") for i in range(4)]
        per_person = 12

        async def mark(i: int, c: RawClient) -> None:
            for k in range(per_person):
                emo = ("joy", "fear", "anger", "trust")[(i + k) % 4]
                await c.send(_beat(1.0 + k * 2 + i * 0.1, emo, intensity=0.5, cid=k))
                await asyncio.sleep(0.01 * ((i + k) % 3))

        await asyncio.gather(*(mark(i, c) for i, c in enumerate(people)))
        total = per_person * len(people)
        await asyncio.gather(*(_beat_events(c, total) for c in people))
        orders = [_records(c.events) for c in people]
        assert orders[0] == list(range(1, total + 1))
        assert all(o == orders[0] for o in orders)
        # the same records, byte for byte, everywhere; and they are the server's chain
        recs = [[e["rec"] for e in c.events if e["kind"] == "beat"] for c in people]
        assert all(r == recs[0] for r in recs)
        chain = _chain(server)
        assert [r.to_dict() for r in chain.records] == recs[0]
        assert check_chain([beat_from_dict(r) for r in recs[0]], chain.head).ok
        # each author's own copy carried its cid: that is the acknowledgement
        mine = [
            e for e in people[2].events if e["kind"] == "beat" and e["avatar"] == people[2].avatar
        ]
        assert sorted(e["cid"] for e in mine) == list(range(per_person))
        assert all(e["rec"]["author"] == "p2" for e in mine)
        for c in people:
            assert c.errors == []
            await c.close()

    run(scenario())


@pytest.mark.parametrize(
    "msg, code, text",
    [
        (_beat(2.0, "happy"), 4002, "emotion must be one of joy, trust"),
        (_beat(31.0), 4002, "outside the scene (0 to 30.000 s)"),
        (_beat(5.0, until=4.0), 4002, "a range must end after it starts"),
        (_beat(5.0, note="x" * 281), 4002, "note is longer than 280"),
        (_beat(5.0, note="a\u202eb"), 4002, "U+202E"),
        (_beat(5.0, x=0.5), 4002, "a point needs both x and y"),
        (_beat(5.0, x=1.5, y=0.5), 4002, "x must be at most 1"),
        ({**_beat(5.0), "scene": "no_such_scene"}, 4002, "no scene named 'no_such_scene'"),
        ({"t": "beat_edit", "beat": 99, **{k: v for k, v in _beat(1.0).items() if k != "t"}},
         4002, "there is no beat 99"),
        ({"t": "beat_delete", "beat": 99}, 4002, "there is no beat 99"),
        ({"t": "beat_policy", "viewers": False}, 4005, "only hosts"),
    ],
)  # fmt: skip
def test_every_invalid_beat_is_refused_and_nothing_stored(
    server: ServerThread, msg: dict[str, Any], code: int, text: str
) -> None:
    async def scenario() -> None:
        c = await RawClient.join(server.url, name="ann")
        await c.send(msg)
        err = await c.error()
        assert err["code"] == code and text in err["message"], err
        # the connection stays, a good beat still goes through, and it is record 1
        await c.send(_beat(3.0, cid=7))
        ev = await c.event("beat")
        assert ev["rec"]["seq"] == 1 and ev["cid"] == 7
        assert len(_chain(server).records) == 1
        await c.close()

    run(scenario())


def test_rate_limit_refuses_a_flood_of_beats(server: ServerThread) -> None:
    async def scenario() -> None:
        c = await RawClient.join(server.url, name="ann")
        for k in range(30):
            await c.send(_beat(1.0 + k * 0.5))
        await c.recv_until(lambda m: m["t"] == "error" and m["code"] == 4004)
        assert "too many beats" in c.errors[-1]["message"]
        await _drain(c, 0.8)
        accepted = len(_records(c.events))
        assert 12 <= accepted < 30  # the burst passed, the rest was refused
        assert len(_chain(server).records) == accepted
        await c.close()

    run(scenario())


def test_owners_edit_hosts_delete_viewers_switch(server: ServerThread) -> None:
    async def scenario() -> None:
        host = await RawClient.join(server.url, name="hal", token=server.token(role="host"))
        viewer = await RawClient.join(server.url, name="vic", token=server.token(role="viewer"))
        other = await RawClient.join(server.url, name="oz")
        await viewer.send(_beat(4.0, "surprise", x=0.25, y=0.5))  # viewers may, by default
        first = await viewer.event("beat")
        beat_id = first["rec"]["beat"]
        edit = {"t": "beat_edit", "beat": beat_id, "scene": SCENE, "at": 4.5, "emotion": "fear",
                "note": "the lip twitch, there"}  # fmt: skip
        await other.send(edit)
        assert "only your own" in (await other.error())["message"]
        await viewer.send(edit)
        ev = await viewer.event("beat")
        assert ev["rec"]["op"] == "edit" and ev["rec"]["note"] == "the lip twitch, there"
        await other.send({"t": "beat_delete", "beat": beat_id})
        assert (await other.error())["code"] == 4005
        await host.send({"t": "beat_delete", "beat": beat_id})
        ev = await host.recv_until(lambda m: m.get("kind") == "beat" and m["rec"]["op"] == "delete")
        assert ev["rec"]["op"] == "delete" and ev["rec"]["author"] == "hal"
        await host.send({"t": "beat_policy", "viewers": False})
        await viewer.event("beat_policy", viewers=False)
        await viewer.send(_beat(6.0))
        assert "turned off viewers' beats" in (await viewer.error())["message"]
        chain = _chain(server)
        assert [r.op for r in chain.records] == ["beat", "edit", "delete"]
        assert chain.beats() == []
        for c in (host, viewer, other):
            await c.close()

    run(scenario())


def test_pointer_is_relayed_not_stored(server: ServerThread) -> None:
    async def scenario() -> None:
        a = await RawClient.join(server.url, name="ann")
        b = await RawClient.join(server.url, name="bob")
        await a.send({"t": "pointer", "on": True, "x": 0.3, "y": 0.6})
        got = await b.recv_until(lambda m: m["t"] == "pointer")
        assert got == {"t": "pointer", "avatar": a.avatar, "on": True, "x": 0.3, "y": 0.6}
        assert len(_chain(server).records) == 0
        await a.close()
        await b.close()

    run(scenario())


def test_newcomer_gets_the_standing_beats(server: ServerThread) -> None:
    async def scenario() -> None:
        a = await RawClient.join(server.url, name="ann")
        for k in range(5):
            await a.send(_beat(1.0 + k, "joy"))
        await _beat_events(a, 5)
        await a.send({"t": "beat_delete", "beat": 2})
        await _beat_events(a, 6)
        late = await RawClient.join(server.url, name="late")
        assert late.welcome["beats"] == {"viewers": True, "count": 6}
        page = await late.recv_until(lambda m: m["t"] == "beats")
        assert page["done"] is True
        assert [r["beat"] for r in page["recs"]] == [1, 3, 4, 5]
        assert page["head"] == _chain(server).head
        await a.close()
        await late.close()

    run(scenario())


def test_resumed_client_gets_exactly_the_beats_it_missed(server: ServerThread) -> None:
    async def scenario() -> None:
        a = await RawClient.join(server.url, name="ann")
        b = await RawClient.join(server.url, name="bob")
        for k in range(3):
            await a.send(_beat(1.0 + k))
        await _beat_events(b, 3)
        seen = max(e["seq"] for e in b.events)
        resume = b.welcome["resume"]
        await b.ws.close()
        for k in range(4):
            await a.send(_beat(10.0 + k, "fear"))
        await _beat_events(a, 7)
        back = await RawClient.join(server.url, name="bob", resume=resume, since=seen)
        assert back.welcome["resumed"] is True
        await _beat_events(back, 4)
        await _drain(back, 0.8)
        assert _records(back.events) == [4, 5, 6, 7]  # exactly the missed ones, once each
        assert not [m for m in back.others if m["t"] == "beats"]  # no second copy in pages
        await a.close()
        await back.close()

    run(scenario())


# ----------------------------------------------------------------------------- kill -9


def test_kill_9_during_a_burst_loses_no_acknowledged_beat(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()  # the restart listens where the clients were
    url = f"ws://127.0.0.1:{port}"
    server = ServerProcess(data, port)
    acked: list[dict[str, Any]] = []
    try:

        async def burst() -> None:
            clients = [await RawClient.join(url, name=f"m{i}") for i in range(3)]

            async def mark(i: int, c: RawClient) -> None:
                k = 0
                while True:
                    await c.send(_beat(round((k * 0.37 + i) % 29.0, 3), "anticipation", cid=k))
                    k += 1
                    await asyncio.sleep(0.02)

            async def read(c: RawClient) -> None:
                while True:
                    msg = await c.recv(10)
                    if msg["t"] == "event" and msg["kind"] == "beat" and msg["avatar"] == c.avatar:
                        acked.append(msg["rec"])

            tasks = [asyncio.ensure_future(mark(i, c)) for i, c in enumerate(clients)]
            tasks += [asyncio.ensure_future(read(c)) for c in clients]
            while len(acked) < 60:
                await asyncio.sleep(0.01)
            os.kill(server.proc.pid, signal.SIGKILL)  # mid-burst: beats in flight everywhere
            await asyncio.gather(*tasks, return_exceptions=True)

        run(burst(), timeout_s=90)
    finally:
        server.stop(signal.SIGKILL)
    assert len(acked) >= 60
    server = ServerProcess(data, port)
    try:

        async def after() -> None:
            c = await RawClient.join(url, name="late")
            page = await c.recv_until(lambda m: m["t"] == "beats" and m["done"])
            assert c.welcome["beats"]["count"] >= len(acked)
            # one more beat continues the chain from the last committed record
            await c.send(_beat(1.0, "joy", cid=1))
            ev = await c.event("beat")
            assert ev["rec"]["seq"] == c.welcome["beats"]["count"] + 1
            assert page["recs"]
            await c.close()

        run(after())
    finally:
        server.stop(signal.SIGINT)
    out = tmp_path / "beats.json"
    done = subprocess.run(
        [sys.executable, "-m", "neonbar", "export", "--data", str(data), "--room", "bar",
         "--format", "json", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    stored = {r["hash"]: r for r in doc["chain"]}
    for rec in acked:
        assert stored.get(rec["hash"]) == rec  # every acknowledged beat, unchanged
    seqs = [r["seq"] for r in doc["chain"]]
    assert seqs == list(range(1, len(seqs) + 1))  # seq never reused, no gap
    check = subprocess.run(
        [sys.executable, "-m", "neonbar", "verify", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0 and "intact" in check.stdout, check.stdout + check.stderr


def test_bots_mark_a_playing_scene_and_the_room_exports_and_reports(tmp_path: Path) -> None:
    # a scene folder of the test's own (never the repository's scenes/)
    env = {**os.environ, "NEONBAR_SCENES": str(clip_scene(tmp_path, "bench_storm", "Bench Storm"))}
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data, open_rooms=False, env=env)
    url = server.url
    try:
        host = subprocess.run(
            [sys.executable, "-m", "neonbar", "invite", "--room", "bar", "--role", "host",
             "--data", str(data)],
            cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.splitlines()[0].strip()  # fmt: skip
        bots = subprocess.run(
            [sys.executable, "-m", "neonbar", "bots", "--server", url, "--room", "bar",
             "--count", "6", "--duration", "16", "--token", host, "--play", "bench_storm",
             "--beats", "--json", "--chatty", "0"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert bots.returncode == 0, bots.stderr[-2000:]
        summary = json.loads(bots.stdout)
        assert summary["errors"] == 0 and summary["beats_sent"] > 0
    finally:
        server.stop(signal.SIGINT)

    def neonbar(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "neonbar", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    otio_file = tmp_path / "beats.otio"
    done = neonbar("export", "--data", str(data), "--room", "bar", "--format", "otio",
                   "--out", str(otio_file))  # fmt: skip
    assert done.returncode == 0, done.stderr
    import opentimelineio as otio

    timeline = otio.adapters.read_from_file(str(otio_file))
    (clip,) = timeline.find_clips()
    assert clip.name == "bench_storm" and clip.media_reference.target_url.endswith(".mp4")
    # every beat the bots sent was committed and is a marker in the scene's clip
    assert len(clip.markers) == summary["beats_sent"]
    assert all(m.name in EMOTION_NAMES for m in clip.markers)
    assert neonbar("verify", str(otio_file)).returncode == 0
    report = tmp_path / "report"
    done = neonbar("report", "--data", str(data), "--room", "bar", "--out", str(report))
    assert done.returncode == 0, done.stderr
    page = (report / "index.html").read_text()
    assert "Bench Storm" in page and "Krippendorff" in page
    assert (report / "bench_storm-arcs.png").is_file()
    assert (report / "bench_storm-moment-1.png").is_file()  # a frame from the clip
    # nothing there: one sentence, exit 2, nothing written
    done = neonbar("export", "--data", str(data), "--room", "nobody", "--format", "json",
                   "--out", str(tmp_path / "none.json"))  # fmt: skip
    assert done.returncode == 2 and "has no beats" in done.stderr
    assert not (tmp_path / "none.json").exists()


# ----------------------------------------------------------------------------- sans-I/O room


def _join(
    host: Any, room: Any, name: str, role: str = "collaborator", keep: bool = False
) -> tuple[Any, Any]:
    from neonbar.protocol import PROTOCOL_VERSION
    from neonbar.tokens import mint
    from server.recording import RecordedLink

    link = RecordedLink()
    hello = {"t": "hello", "v": PROTOCOL_VERSION, "room": room.name, "name": name,
             "token": mint(host.secret, room.name, role)}  # fmt: skip
    session = room.on_join(link, hello, room.on_auth(hello), host.now)
    if not keep:
        link.take()
    return session, link


def test_refused_beats_store_nothing_and_the_chain_survives_a_restart(tmp_path: Path) -> None:
    from neonbar.protocol import encode
    from server.recording import RecordingHost
    from server.storage import SqliteStorage

    storage = SqliteStorage(tmp_path / "neonbar.db", threaded=False)
    host = RecordingHost(storage=storage)
    room = host.room("bar")
    ann, link = _join(host, room, "ann")

    def stored() -> list[dict[str, Any]]:
        return storage.events("bar", 0, 1000, kinds=("beat",))

    bad = [_beat(2.0, "happy"), _beat(99.0), _beat(5.0, until=4.0), _beat(5.0, note="x" * 281),
           _beat(5.0, x=0.5), {"t": "beat_delete", "beat": 1}]  # fmt: skip
    for k, msg in enumerate(bad):
        host.now = 1.0 + k
        room.receive(ann, encode(msg), host.now)
    errors = [m for m in link.take() if m["t"] == "error"]
    assert len(errors) == len(bad) and stored() == []
    for k in range(3):
        host.now = 10.0 + k
        room.receive(ann, encode(_beat(3.0 + k, cid=k)), host.now)
    acks = [m for m in link.take() if m["t"] == "event" and m["kind"] == "beat"]
    assert [m["cid"] for m in acks] == [0, 1, 2] and len(stored()) == 3
    head = room.features["beats"].chain.head
    # a new room on the same storage (a restart) rebuilds the chain and continues it
    again = RecordingHost(storage=storage).room("bar")
    assert again.features["beats"].chain.head == head
    bob, blink = _join(host, again, "bob")
    again.receive(bob, encode(_beat(7.0, "fear")), 20.0)
    rec = next(m["rec"] for m in blink.take() if m["t"] == "event" and m["kind"] == "beat")
    assert rec["seq"] == 4 and rec["prev"] == head


def test_a_tampered_stored_chain_turns_beats_off(tmp_path: Path) -> None:
    import sqlite3

    from neonbar.protocol import encode
    from server.recording import RecordingHost
    from server.storage import SqliteStorage

    path = tmp_path / "neonbar.db"
    storage = SqliteStorage(path, threaded=False)
    host = RecordingHost(storage=storage)
    room = host.room("bar")
    ann, _ = _join(host, room, "ann")
    for k in range(3):
        room.receive(ann, encode(_beat(3.0 + k, note="as marked")), 1.0 + k)
    storage.close()
    db = sqlite3.connect(path)
    first = "(SELECT MIN(seq) FROM events WHERE kind = 'beat')"
    db.execute("UPDATE events SET body = replace(body, 'as marked', 'rewritten') "
               f"WHERE kind = 'beat' AND seq = {first}")  # fmt: skip
    db.commit()
    db.close()
    host = RecordingHost(storage=SqliteStorage(path, threaded=False))
    room = host.room("bar")  # the room opens: chat and the scene go on
    ann, link = _join(host, room, "ann")
    room.receive(ann, encode(_beat(9.0)), 10.0)
    room.receive(ann, encode({"t": "chat", "text": "still here"}), 10.1)
    msgs = link.take()
    err = next(m for m in msgs if m["t"] == "error")
    assert err["code"] == 4006 and "record 1 does not match its hash" in err["message"]
    assert any(m["t"] == "event" and m["kind"] == "chat" for m in msgs)
    assert not any(m["t"] == "event" and m["kind"] == "beat" for m in msgs)


def test_a_newcomer_gets_many_standing_beats_in_pages_over_ticks() -> None:
    from neonbar.protocol import encode
    from server.recording import RecordingHost

    host = RecordingHost()
    room = host.room("bar")
    ann, _ = _join(host, room, "ann")
    for k in range(450):
        host.now = 1.0 + 0.3 * k  # within ann's 4 beats a second
        room.receive(ann, encode(_beat(round((k * 0.061) % 29.0, 3), "joy")), host.now)
    room.receive(ann, encode({"t": "beat_delete", "beat": 5}), host.now + 0.3)
    _, link = _join(host, room, "late", keep=True)
    first = [m for m in link.take() if m["t"] == "beats"]
    assert len(first) == 1 and len(first[0]["recs"]) == 200 and not first[0]["done"]
    pages = first
    for tick in range(10):
        room.step(host.now + 1.0 + tick * 0.05)
        pages += [m for m in link.take() if m["t"] == "beats"]
    assert [len(p["recs"]) for p in pages] == [200, 200, 49] and pages[-1]["done"]
    beats = [r["beat"] for p in pages for r in p["recs"]]
    assert beats == [b for b in range(1, 451) if b != 5]  # chain order, the deleted one left out
    assert {p["head"] for p in pages} == {room.features["beats"].chain.head}
