"""The room without sockets: a real Room driven through its host interface (server/recording.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import pytest

from neonbar.protocol import (
    CLIENT_MESSAGES,
    EVENT_KINDS,
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    F,
    client_message,
    encode,
    event_kind,
    welcome_field,
)
from neonbar.worldview import WorldView
from server.recording import RecordedLink, RecordingHost
from server.room import FEATURES, Feature, Room, RoomConfig, Session, handles, register_feature


def hello(name: str, **fields: Any) -> dict[str, Any]:
    return {"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": name, **fields}


def join(room: Room, name: str, **fields: Any) -> tuple[Session, RecordedLink]:
    link = RecordedLink(peer=name)
    msg = hello(name, **fields)
    session = room.on_join(link, msg, room.on_auth(msg), room.now_s())
    return session, link


def events(link: RecordedLink) -> list[dict[str, Any]]:
    return [m for m in link.take() if m["t"] == "event"]


@pytest.fixture
def host() -> RecordingHost:
    return RecordingHost(RoomConfig(open_rooms=True))


@pytest.fixture
def room(host: RecordingHost) -> Room:
    return host.room("bar")


def test_join_sends_welcome_then_everyone_sees_the_join_event(room: Room):
    a, link_a = join(room, "ada")
    welcome, joined = (m for m in link_a.take() if m["t"] in ("welcome", "event"))
    assert welcome["t"] == "welcome" and welcome["you"] == a.avatar.id
    assert welcome["v"] == PROTOCOL_VERSION and welcome["seq"] == 0
    assert joined["kind"] == "join" and joined["seq"] == 1 and joined["avatar"] == a.avatar.id
    _, link_b = join(room, "bo")
    assert [m["kind"] for m in events(link_a)] == ["join"]
    welcome_b = link_b.take()[0]
    assert {e["name"] for e in welcome_b["avatars"]} == {"ada", "bo"}


def test_messages_are_dispatched_through_the_registry_and_sequenced(room: Room):
    a, link_a = join(room, "ada")
    b, link_b = join(room, "bo")
    link_a.take(), link_b.take()
    room.receive(a, encode({"t": "chat", "text": "hello bar"}), 1.0)
    room.receive(b, encode({"t": "emote", "emote": "wave"}), 1.1)
    got = events(link_b)
    assert [(e["kind"], e["seq"]) for e in got] == [("chat", 3), ("emote", 4)]
    assert got[0]["text"] == "hello bar" and got[0]["avatar"] == a.avatar.id
    assert [e["seq"] for e in events(link_a)] == [3, 4]


def test_every_client_message_type_has_exactly_one_handler(room: Room):
    assert set(room.handlers) == set(CLIENT_MESSAGES)


def test_a_second_handler_for_a_message_type_is_refused():
    class Rival(Feature):
        name = "rival-chat"

        @handles("chat")
        def on_chat(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
            pass

    with pytest.raises(ValueError, match="already handled"):
        register_feature(Rival)
    assert "rival-chat" not in FEATURES


def test_a_handler_without_a_schema_is_refused():
    class Ghost(Feature):
        name = "ghost"

        @handles("no_such_message")
        def on_it(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
            pass

    with pytest.raises(ValueError, match="no schema"):
        register_feature(Ghost)


# The worked example of docs/room.md: one schema, one event kind, one handler, a welcome part.
RING = client_message("test_ring_bell", {"times": F("int", lo=1, hi=3)})
BELL = event_kind("test_bell", {"avatar": F("int", lo=0, hi=65535), "times": F("int")})
welcome_field("bell", F("any", required=False))


@register_feature
class Bell(Feature):
    name = "test_bell"

    def __init__(self, room: Room) -> None:
        super().__init__(room)
        self.rung = 0

    def welcome(self, avatar: Any, now_s: float) -> Mapping[str, Any]:
        return {"bell": {"rung": self.rung}}

    @handles(RING)
    def on_ring(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self.rung += msg["times"]
        self.room.emit(BELL, avatar=session.avatar.id, times=msg["times"])


def test_a_feature_adds_a_message_an_event_kind_and_a_welcome_part(host: RecordingHost):
    room = host.room("bells")  # made after Bell registered: it has the feature
    a, link_a = join(room, "ada")
    assert link_a.take()[0]["bell"] == {"rung": 0}
    room.receive(a, encode({"t": RING, "times": 2}), 1.0)
    (bell,) = events(link_a)
    assert bell["kind"] == "test_bell" and bell["times"] == 2
    room.receive(a, encode({"t": RING, "times": 9}), 1.1)  # the schema says at most 3
    (error,) = link_a.take()
    assert error["t"] == "error" and error["code"] == ErrorCode.INVALID_FIELD
    assert error["ref"] == RING
    _, link_b = join(room, "bo")
    assert link_b.take()[0]["bell"] == {"rung": 2}
    assert EVENT_KINDS["test_bell"] is BELL


def test_an_event_that_breaks_its_schema_is_never_sent(room: Room):
    a, link_a = join(room, "ada")
    link_a.take()
    seq = room.events.seq
    with pytest.raises(ValueError, match="text"):
        room.emit(EVENT_KINDS["chat"], avatar=a.avatar.id, text=7)
    with pytest.raises(ValueError, match="no field"):
        room.emit(EVENT_KINDS["chat"], avatar=a.avatar.id, text="x", extra=1)
    assert room.events.seq == seq and link_a.take() == []


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"\xc1", ErrorCode.BAD_FRAME),
        ("text frame", ErrorCode.BAD_FRAME),
        (encode({"t": "nope"}), ErrorCode.UNKNOWN_TYPE),
        (encode({"t": "chat"}), ErrorCode.INVALID_FIELD),
        (encode({"t": "hello", "v": 2, "room": "bar", "name": "x"}), ErrorCode.BAD_STATE),
        (encode({"t": "look", "look": "../../etc/passwd"}), ErrorCode.INVALID_FIELD),
        (b"\x80" * 5000, ErrorCode.TOO_LARGE),
    ],
)
def test_bad_frames_get_one_error_and_change_nothing(room: Room, raw: Any, code: ErrorCode):
    a, link_a = join(room, "ada")
    link_a.take()
    seq, look = room.events.seq, room.look
    room.receive(a, raw, 1.0)
    (error,) = link_a.take()
    assert error["t"] == "error" and error["code"] == code
    assert not link_a.closing and room.events.seq == seq and room.look == look


def test_a_flood_closes_with_4429(room: Room):
    a, link_a = join(room, "ada")
    frame = encode({"t": "ping", "ct": 1.0})
    for _ in range(2000):
        room.receive(a, frame, 1.0)
    assert link_a.closed is not None and link_a.closed[0] == CloseCode.FLOOD


def test_a_ping_flood_of_control_frames_closes_with_4429(room: Room):
    a, link_a = join(room, "ada")
    for _ in range(2000):
        room.receive_control(a, 1.0)
    assert link_a.closed is not None and link_a.closed[0] == CloseCode.FLOOD


def test_only_hosts_set_looks_and_only_shipped_ones(room: Room):
    a, link_a = join(room, "ada")
    room.receive(a, encode({"t": "look", "look": "teal_neon"}), 1.0)
    assert [m["code"] for m in link_a.take() if m["t"] == "error"] == [ErrorCode.NOT_ALLOWED]
    a.avatar.role = "host"
    room.receive(a, encode({"t": "look", "look": "teal_neon"}), 1.1)
    assert room.look == "teal_neon"
    assert [e["look"] for e in events(link_a)] == ["teal_neon"]


def test_the_server_decides_the_clink_and_sends_it(room: Room):
    a, link_a = join(room, "ada")
    b, _ = join(room, "bo")
    far, _ = join(room, "far")
    room.pos_m[a.avatar.id] = (0.0, 0.0)
    room.pos_m[b.avatar.id] = (1.0, 0.0)
    room.pos_m[far.avatar.id] = (9.0, 0.0)
    link_a.take()
    room.receive(a, encode({"t": "emote", "emote": "cheers"}), 10.0)
    room.receive(far, encode({"t": "emote", "emote": "cheers"}), 10.2)
    assert [e["kind"] for e in events(link_a)] == ["emote", "emote"]  # nobody near: no clink
    room.receive(b, encode({"t": "emote", "emote": "cheers"}), 10.5)
    got = events(link_a)
    assert [e["kind"] for e in got] == ["emote", "clink"]
    assert got[1]["avatar"] == b.avatar.id and got[1]["with"] == [a.avatar.id]


def test_drinks_carry_the_servers_tipsy_level(room: Room, host: RecordingHost):
    a, link_a = join(room, "ada")
    link_a.take()
    drink = {"t": "drink", "drink": "martini", "color": "#00f0ff", "glow": 0.5, "garnish": "olive"}
    host.now = 0.0
    room.receive(a, encode(drink), 0.0)
    room.receive(a, encode(drink), 60.0)  # a minute later: 0.25 - 0.1 + 0.25
    levels = [e["tipsy"] for e in events(link_a)]
    assert levels == [0.25, pytest.approx(0.4)]
    host.now = 60.0
    _, link_b = join(room, "bo")
    roster = {e["name"]: e for e in link_b.take()[0]["avatars"]}
    assert roster["ada"]["tipsy"] == pytest.approx(0.4)
    assert roster["ada"]["drink"]["drink"] == "martini"


def test_ticks_send_snapshots_a_client_decodes_to_the_room_state(room: Room, host: RecordingHost):
    sessions = [join(room, f"a{i}") for i in range(5)]
    observer, link = join(room, "observer")
    view = WorldView(history_ticks=16, interpolate=False)
    for tick in range(1, 30):
        host.now = tick / 20
        for i, (s, _) in enumerate(sessions):
            x, y = room.pos_m[s.avatar.id]
            msg = {"t": "input", "seq": tick, "ack": -1, "x": round(x * 100) + 3 + i,
                   "y": round(y * 100), "yaw": 0}  # fmt: skip
            room.receive(s, msgpack.packb(msg), host.now)
        assert room.step(host.now)
        snaps = [m for m in link.take() if m["t"] == "snap"]
        assert [m["tick"] for m in snaps] == [room.tick]
        assert view.apply(snaps[0]).applied
        room.receive(observer, encode({"t": "input", "seq": tick, "ack": room.tick, "x": 0,
                                       "y": 0, "yaw": 0}), host.now)  # fmt: skip
        state = view.current()
        for s, _ in sessions:
            x_cm, y_cm = (round(v * 100) for v in room.pos_m[s.avatar.id])
            (row,) = (state.ids == s.avatar.id).nonzero()[0]
            assert (state.x_cm[row], state.y_cm[row]) == (x_cm, y_cm)


def test_bye_leaves_for_good_and_a_disconnect_leaves_the_avatar_away(
    room: Room, host: RecordingHost
):
    a, link_a = join(room, "ada")
    b, _ = join(room, "bo")
    room.on_disconnect(b)
    assert b.avatar.id in room.avatars and b.avatar.session is None
    room.receive(a, encode({"t": "bye"}), 1.0)
    assert link_a.closed == (CloseCode.NORMAL, "bye")
    assert a.avatar.id not in room.avatars
    host.now = room.config.resume_window_s + 5
    for _ in range(20):
        room.step(host.now)
    assert not room.avatars  # the away avatar timed out


def test_a_reconnect_does_not_refill_the_rate_limit(room: Room):
    a, link_a = join(room, "ada")
    ping = encode({"t": "ping", "ct": 1.0})
    for _ in range(int(room.config.burst) + 5):
        room.receive(a, ping, 5.0)
    assert any(m.get("code") == ErrorCode.RATE_LIMITED for m in link_a.take())
    room.on_disconnect(a)
    resumed, link_b = join(room, "ada", resume=a.avatar.resume_token)
    assert resumed.avatar is a.avatar
    link_b.take()
    room.receive(resumed, ping, 5.0)
    assert [m["code"] for m in link_b.take()] == [ErrorCode.RATE_LIMITED]
