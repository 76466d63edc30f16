"""Reactions on a real sans-I/O room: faces to others, the felt arc, micro moments, branches."""

from __future__ import annotations

import pytest

import server.playback
import server.reactions
from neonbar import reaction as wire
from neonbar.playback import Timeline
from neonbar.protocol import PROTOCOL_VERSION, ErrorCode, encode
from server.reactions import Reactions, SceneInfo
from server.recording import RecordedLink, RecordingHost
from server.room import Grant
from server.storage import SqliteStorage


def _join(host, room, name, role="collaborator"):
    link = RecordedLink(peer=name)
    hello = {"t": "hello", "v": PROTOCOL_VERSION, "room": room.name, "name": name}
    session = room.on_join(link, hello, Grant(role, name, False), host.now)
    link.take()
    return session, link


def _send(host, room, session, msg):
    room.receive(session, encode(msg), host.now)


def _react(host, room, session, *reactions):
    _send(host, room, session, {"t": "react", "r": wire.pack_many(reactions)})


def _play(room, host, scene="last_train", seconds=24.0, at=0.0):
    playback = room.features["playback"]
    playback.timeline = Timeline(
        scene=scene, title=scene, media="0" * 64, fps=24.0, frames=round(seconds * 24),
        playing=True, pos_s=at, at_s=host.now, status="ready",
    )  # fmt: skip
    return playback


@pytest.fixture
def host(tmp_path):
    return RecordingHost(storage=SqliteStorage(tmp_path / "neonbar.sqlite", threaded=False))


def _of_type(link, t):
    return [m for m in link.take() if m["t"] == t]


def test_a_face_reaches_everyone_else_in_the_next_faces_message(host):
    room = host.room()
    a, _ = _join(host, room, "ada")
    _, link_b = _join(host, room, "bo")
    _react(host, room, a, wire.Reaction(1.0, 0.6, 0.7, (0.8, 0, 0, 0.2, 0, 0, 0)))
    host.now += 0.05
    room.step(host.now)
    faces = _of_type(link_b, "faces")
    assert len(faces) == 1
    got = wire.unpack_faces(faces[0]["d"])
    assert set(got) == {a.avatar.id}
    assert abs(got[a.avatar.id].valence - 0.6) < 0.01 and got[a.avatar.id].intensities[0] > 0.79
    # the same face again changes nothing: no new faces message
    _react(host, room, a, wire.Reaction(1.1, 0.6, 0.7, (0.8, 0, 0, 0.2, 0, 0, 0)))
    host.now += 0.2
    room.step(host.now)
    assert _of_type(link_b, "faces") == []
    # a late joiner finds it in welcome
    link_c = RecordedLink(peer="cy")
    hello = {"t": "hello", "v": PROTOCOL_VERSION, "room": room.name, "name": "cy"}
    room.on_join(link_c, hello, Grant("viewer", "cy", False), host.now)
    welcome = link_c.messages()[0]
    assert set(wire.unpack_faces(welcome["reactions"]["faces"])) == {a.avatar.id}


@pytest.mark.parametrize(
    "payload",
    [b"\0" * 13, b"\0" * 70, wire._STRUCT.pack(0, 0, 0, *[0] * 7, 0x80)],
)
def test_bad_reactions_are_refused_and_the_connection_stays(host, payload):
    room = host.room()
    a, link = _join(host, room, "ada")
    _send(host, room, a, {"t": "react", "r": payload})
    (err,) = _of_type(link, "error")
    assert err["code"] in (ErrorCode.INVALID_FIELD, ErrorCode.BAD_FRAME) and err["ref"] == "react"
    assert link.closed is None
    room.step(host.now + 0.05)
    assert room.features["reactions"].latest == {}


def test_reactions_fold_into_the_playing_scenes_felt_arc_and_persist(host, tmp_path):
    room = host.room()
    _play(room, host, scene="neon_alley", seconds=36)
    people = [_join(host, room, n)[0] for n in ("ada", "bo", "cy")]
    for step in range(30):  # 3 s at 10 Hz
        t = step / 10
        for i, s in enumerate(people):
            _react(host, room, s, wire.Reaction(t, 0.1 * i, 0.2 + 0.1 * i))
        host.now += 0.1
        room.step(host.now)
    # one far from the play head (a stale or forged clock) and one without a face
    _react(host, room, people[0], wire.Reaction(30.0, -1.0, 1.0))
    _react(host, room, people[1], wire.Reaction(3.0, -1.0, 1.0, flags=0))
    host.now += 2.5  # past the flush interval
    room.step(host.now)
    feature: Reactions = room.features["reactions"]
    arc = feature.arcs["neon_alley"]
    assert arc.count == 90 and arc.watchers == {s.avatar.id for s in people}
    v, a, n = arc.window(0.0, 3.0)
    assert n == 90 and abs(v - 0.1) < 0.01 and abs(a - 0.3) < 0.01
    feature.wait_flushed()
    felt = wire.load_felt(tmp_path, room.name)
    stored, micro = felt["neon_alley"]
    assert stored.count == 90 and micro == []
    # a restarted server keeps adding to what was stored
    room.on_dispose()
    host2 = RecordingHost(storage=SqliteStorage(tmp_path / "neonbar.sqlite", threaded=False))
    room2 = host2.room(room.name)
    _play(room2, host2, scene="neon_alley", seconds=36, at=1.0)
    (s,) = [_join(host2, room2, "dee")[0]]
    _react(host2, room2, s, wire.Reaction(1.0, 0.5, 0.5))
    room2.step(host2.now + 0.05)
    assert room2.features["reactions"].arc("neon_alley").count == 91


def test_reactions_while_nothing_plays_only_move_faces(host):
    room = host.room()
    a, _ = _join(host, room, "ada")
    _react(host, room, a, wire.Reaction(1.0, 0.5, 0.5))
    room.step(host.now + 0.05)
    feature = room.features["reactions"]
    assert feature.arcs == {} and a.avatar.id in feature.latest


def test_micro_moments_are_kept_with_the_scene(host, tmp_path):
    room = host.room()
    _play(room, host, scene="neon_alley", seconds=36, at=10.0)
    a, link = _join(host, room, "ada")
    micro = {"t": "micro", "at": 10.2, "kind": "smile", "strength": 0.5, "dur_ms": 240}
    _send(host, room, a, micro)
    _send(host, room, a, {**micro, "at": 30.0})  # nowhere near the play head
    (err,) = _of_type(link, "error")
    assert "play head" in err["message"]
    host.now += 2.5
    room.step(host.now)
    room.features["reactions"].wait_flushed()
    (_, moments) = wire.load_felt(tmp_path, room.name)["neon_alley"]
    assert [(m.kind, m.who, m.at_s) for m in moments] == [("smile", "ada", 10.2)]


def _watch_to(host, room, people, start, end, arousal):
    t = start
    while t < end:
        for s in people:
            _react(host, room, s, wire.Reaction(t, 0.0, arousal))
        host.now += 0.1
        t += 0.1
        room.step(host.now)


def test_a_flat_room_gets_the_harder_cut_and_everyone_hears_why(host):
    room = host.room()
    playback = _play(room, host, at=16.0)
    loads = []
    playback.switch_scene = lambda scene, _now, autoplay=False, **_: loads.append((scene, autoplay))
    people = [_join(host, room, n) for n in ("ada", "bo")]
    _watch_to(host, room, [s for s, _ in people], 16.0, 23.05, arousal=0.25)
    events = [m for m in people[1][1].take() if m["t"] == "event" and m["kind"] == "branch"]
    assert len(events) == 1
    (event,) = events
    assert event["scene"] == "last_train" and event["point"] == "the_envelope"
    assert event["choice"] == "last_train_hard" and "below intended" in event["reason"]
    assert "2 watchers" in event["reason"] and event.get("by") is None
    assert loads == []  # the cut comes at the end of the scene
    _watch_to(host, room, [s for s, _ in people], 23.05, 24.2, arousal=0.25)
    assert loads == [("last_train_hard", True)]


def test_an_engaged_room_gets_the_scene_as_written(host):
    room = host.room()
    playback = _play(room, host, at=16.0)
    loads = []
    playback.switch_scene = lambda scene, now_s, by=-1, autoplay=False: loads.append(scene)
    people = [_join(host, room, n)[0] for n in ("ada", "bo", "cy")]
    _watch_to(host, room, people, 16.0, 24.2, arousal=0.75)
    assert loads == ["last_train_soft"]


def test_the_host_may_override_and_others_may_not(host):
    room = host.room()
    playback = _play(room, host, at=16.0)
    loads = []
    playback.switch_scene = lambda scene, now_s, by=-1, autoplay=False: loads.append(scene)
    boss, boss_link = _join(host, room, "boss", role="host")
    viewer, viewer_link = _join(host, room, "vi", role="viewer")
    choice = {"t": "branch", "point": "the_envelope", "choice": "last_train_soft"}
    _send(host, room, viewer, choice)
    (err,) = _of_type(viewer_link, "error")
    assert err["code"] == ErrorCode.NOT_ALLOWED
    _send(host, room, boss, {**choice, "choice": "somewhere_else"})
    (err,) = _of_type(boss_link, "error")
    assert "choose one of" in err["message"]
    _send(host, room, boss, choice)
    _watch_to(host, room, [viewer], 16.0, 24.2, arousal=0.2)  # flat, but the host decided
    (event,) = [m for m in boss_link.take() if m["t"] == "event" and m["kind"] == "branch"]
    assert event["choice"] == "last_train_soft" and "host" in event["reason"]
    assert loads == ["last_train_soft"]


def test_seeking_back_before_a_branch_point_decides_it_again(host):
    room = host.room()
    Reactions.scene_info = staticmethod(
        lambda scene: SceneInfo(server.reactions.load_scene_info("last_train").points,
                                lambda t: (0.0, 0.5))
    )  # fmt: skip
    try:
        playback = _play(room, host, at=22.0)
        playback._load = lambda *a, **k: None
        # the branch point is a second away: let its worker thread load it before the ticks,
        # which here run faster than real time
        room.features["reactions"]._scene("last_train", wait=True)
        s, link = _join(host, room, "ada")
        _watch_to(host, room, [s], 22.0, 23.2, arousal=0.9)
        playback.timeline = playback.timeline.seek(17.0, host.now)
        _watch_to(host, room, [s], 17.0, 23.2, arousal=0.1)
        events = [m for m in link.take() if m["t"] == "event" and m["kind"] == "branch"]
        assert [e["choice"] for e in events] == ["last_train_soft", "last_train_hard"]
    finally:
        Reactions.scene_info = staticmethod(server.reactions.load_scene_info)


def test_garbage_reactions_never_raise_in_a_handler(host):
    import random

    room = host.room()
    _play(room, host, seconds=3600.0, at=10.0)
    rng = random.Random(9)
    kinds = ["smile", "wink", "surprise", ""]
    points = ["the_envelope", "x", ""]
    choices = ["last_train_hard", "last_train_soft", "nope"]
    handled = joins = 0
    a = link = None
    for i in range(3000):
        if link is None or link.closing:  # refused too often, or no snapshot acked: rejoin
            joins += 1
            a, link = _join(host, room, f"ada{joins}", role="host")
        pick = i % 3
        if pick == 0:
            msg = {"t": "react", "r": rng.randbytes(rng.choice([0, 1, 13, 14, 28, 42, 56, 57]))}
        elif pick == 1:
            msg = {"t": "micro", "at": rng.uniform(-5, 30), "kind": rng.choice(kinds),
                   "strength": rng.uniform(-1, 2), "dur_ms": rng.randint(-5, 900)}  # fmt: skip
        else:
            msg = {"t": "branch", "point": rng.choice(points), "choice": rng.choice(choices)}
        _send(host, room, a, msg)
        handled += 1
        host.now += 0.03
        if i % 2 == 0:
            room.step(host.now)
            link.frames.clear()
    assert room.metrics.exceptions._value.get() == 0
    assert handled == 3000 and joins < 300
