"""Beats in the client: keys to messages, the book of records, and drawing in the bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from client.beats_ui import BeatBook, BeatKeys, hold_intensity
from neonbar.beats import EMOTION_BY_NAME, BeatChain, validate_fields

sys.path.insert(0, str(Path(__file__).parent))
from renderfixtures import showbase  # noqa: F401  (fixture)


def _keys(scene: str | None = "dust_storm", role: str = "viewer", point=None):
    sent: list[dict[str, Any]] = []
    toasts: list[str] = []
    clock = {"t": 10.0}
    book = BeatBook()
    keys = BeatKeys(
        sent.append,
        scene_time=lambda: (scene, clock["t"]),
        point=lambda: point,
        toast=toasts.append,
        me=lambda: ("ana", role),
        book=book,
    )
    return keys, sent, toasts, clock, book


def test_tap_and_hold_intensity() -> None:
    assert hold_intensity(0.0) == hold_intensity(0.12) == 0.4
    assert hold_intensity(0.675) == pytest.approx(0.7)
    assert hold_intensity(5.0) == 1.0
    keys, sent, _, clock, _ = _keys()
    keys.press(3, now_s=100.0)
    clock["t"] = 11.0  # the scene moves on while the key is held: the beat keeps 10.0
    keys.release(3, now_s=100.9375)
    assert sent == [
        {"t": "beat", "scene": "dust_storm", "at": 10.0, "emotion": "fear",
         "intensity": 0.85, "cid": 1},
    ]  # fmt: skip
    assert 1 in keys.pending


def test_the_hud_shows_what_a_held_key_will_mark() -> None:
    keys, _, _, _, _ = _keys()
    assert keys.holding(0.0) is None
    keys.press(5, now_s=1.0)
    assert keys.holding(1.05).startswith("5 sadness ▮▮▮▮▯▯▯▯▯▯ 0.4  at 10.0 s")
    assert keys.holding(2.5).startswith("5 sadness ▮▮▮▮▮▮▮▮▮▮ 1.0")
    keys.release(5, now_s=2.5)
    keys.press(7, now_s=3.0, shift=True)
    keys.release(7, now_s=3.1)
    assert keys.holding(4.0) == "anger range open from 10.0 s: Shift+digit ends it"


def test_shift_starts_and_ends_a_range() -> None:
    keys, sent, toasts, clock, _ = _keys(point=(0.25, 0.75))
    keys.press(8, now_s=0.0, shift=True)
    keys.release(8, now_s=0.05)
    assert sent == [] and keys.range_open and "Shift+digit again" in toasts[-1]
    clock["t"] = 14.5
    keys.press(1, now_s=5.0, shift=True)
    keys.release(1, now_s=5.1)
    assert not keys.range_open
    assert sent == [
        {"t": "beat", "scene": "dust_storm", "at": 10.0, "until": 14.5,
         "emotion": "anticipation", "intensity": 0.4, "cid": 1, "x": 0.25, "y": 0.75},
    ]  # fmt: skip


def test_no_scene_and_policy_say_why() -> None:
    keys, sent, toasts, _, _ = _keys(scene=None)
    keys.press(1, now_s=0)
    keys.release(1, now_s=0.1)
    assert sent == [] and "no scene" in toasts[-1]
    keys, sent, toasts, _, _ = _keys(role="viewer")
    keys.viewers_may_mark = False
    keys.press(1, now_s=0)
    keys.release(1, now_s=0.1)
    assert sent == [] and "turned off" in toasts[-1]


def _records():
    chain = BeatChain("r")
    for t, emo, who in ((5.0, "joy", "ana"), (9.0, "fear", "ben"), (12.0, "anger", "ana")):
        f = validate_fields(scene="dust_storm", t_in_s=t, emotion_name=emo, note="n")
        chain.add(f, author=who, role="viewer", server_ms=0)
    return chain


def test_book_dedupes_and_orders() -> None:
    chain = _records()
    book = BeatBook()
    recs = [r.to_dict() for r in chain.records]
    for raw in (recs[2], recs[0], recs[0], recs[1]):  # a page and events overlap, any order
        book.ingest(raw)
    assert book.ordered() == [1, 2, 3]
    assert [b.emotion for b in book.for_scene("dust_storm")] == ["joy", "fear", "anger"]
    assert book.last_of("ana").beat == 3
    assert book.near("dust_storm", 9.8).beat == 2
    assert book.near("dust_storm", 20.0) is None
    assert book.ingest({"bad": 1}) is None


def test_note_edit_and_delete_messages() -> None:
    keys, sent, toasts, clock, book = _keys()
    for r in _records().records:
        book.ingest(r.to_dict())
    assert keys.note("  the   lip twitch, there ")
    assert sent[-1] == {
        "t": "beat_edit", "beat": 3, "scene": "dust_storm", "at": 12.0, "emotion": "anger",
        "intensity": 0.5, "note": "the lip twitch, there", "cid": 1,
    }  # fmt: skip
    assert not keys.note("x" * 281) and "280" in toasts[-1]
    keys.press(4, now_s=0, ctrl=True)  # Ctrl+4: my last beat becomes surprise
    assert sent[-1]["t"] == "beat_edit" and sent[-1]["emotion"] == "surprise"
    clock["t"] = 9.0  # near ben's beat: not mine, so my last one goes
    keys.delete()
    assert sent[-1] == {"t": "beat_delete", "beat": 3, "cid": 3}
    host, hsent, _, hclock, hbook = _keys(role="host")
    for r in _records().records:
        hbook.ingest(r.to_dict())
    hclock["t"] = 9.0
    host.delete()  # the host removes the beat near the play head, whoever made it
    assert hsent[-1]["beat"] == 2


# ------------------------------------------------------------------------------ in the bar


def _open_bar(base: Any, pos_cm: tuple[int, int, int]) -> tuple[Any, Any]:
    """The app as ana (a viewer) with ben in the room and dust_storm paused at 12 s."""
    from renderfixtures import FakeSession

    from client.app import NeonBarApp
    from neonbar.playback import Timeline

    session = FakeSession(you=1, name="ana")
    session.role = "viewer"
    session.add_remote(2, "ben", "#ff2d55", 0.0, -4.0)
    session.welcome(pos_cm)
    timeline = Timeline(scene="dust_storm", title="Dust Storm", fps=24.0, frames=720,
                        status="ready", pos_s=12.0, at_s=0.0)  # fmt: skip
    session.inbox[-1]["timeline"] = timeline.to_wire()
    session.inbox[-1]["beats"] = {"viewers": True, "count": 0}
    app = NeonBarApp(base, session, name="ana", post=False)
    base.taskMgr.step()
    return app, session


@pytest.fixture
def bar_app(showbase):  # noqa: F811  (the fixture imported above)
    app, session = _open_bar(showbase, (0, -600, 0))
    yield app, session, showbase
    app.destroy()


@pytest.fixture
def strip_app(showbase):  # noqa: F811  (the fixture imported above)
    """As bar_app, standing 3.5 m from the screen: the strip spans the window."""
    app, session = _open_bar(showbase, (0, 850, 0))
    yield app, session, showbase
    app.destroy()


def _event(seq: int, rec: Any, avatar: int, cid: int | None = None) -> dict[str, Any]:
    msg = {"t": "event", "seq": seq, "st": 0.0, "kind": "beat", "avatar": avatar,
           "rec": rec.to_dict()}  # fmt: skip
    if cid is not None:
        msg["cid"] = cid
    return msg


def test_keys_in_the_bar_send_beats_and_committed_beats_are_drawn(bar_app) -> None:
    app, session, base = bar_app
    base.messenger.send("3")
    base.messenger.send("3-up")
    beat = [m for m in session.sent if m.get("t") == "beat"]
    assert len(beat) == 1
    assert beat[0]["scene"] == "dust_storm" and beat[0]["at"] == pytest.approx(12.0)
    assert beat[0]["emotion"] == "fear" and beat[0]["intensity"] == 0.4
    # the server commits it (and ben's, with a spot on the frame): both are drawn
    chain = BeatChain("test")
    mine = chain.add(validate_fields(scene="dust_storm", t_in_s=12.0, emotion_name="fear"),
                     author="ana", role="viewer", server_ms=0)  # fmt: skip
    his = chain.add(validate_fields(scene="dust_storm", t_in_s=20.0, t_out_s=24.0,
                                    emotion_name="joy", intensity=1.0, point=(0.7, 0.3),
                                    note="the haze lifts"),
                    author="ben", role="collaborator", server_ms=0)  # fmt: skip
    session.inbox += [_event(1, mine, 1, cid=beat[0]["cid"]), _event(2, his, 2)]
    base.taskMgr.step()
    ui = app.beats
    assert ui.book.ordered() == [1, 2]
    assert len(ui.ack_latency_s) == 1  # our own beat came back: acknowledged
    ticks = ui._ticks
    assert len(ticks) == 2 and all(t in app.watch.bar.marks for t in ticks)
    fear, joy = ticks
    assert tuple(fear.getColor())[:3] == pytest.approx(EMOTION_BY_NAME["fear"].rgb, abs=1e-3)
    assert joy.getSx() > 5 * fear.getSx()  # a range is a bar, not a tick
    assert joy.getSz() > fear.getSz()  # stronger: taller
    assert fear.getX() < joy.getX()
    # the near label names the beat at the play head, glyphs rise over both authors,
    # a pulse marks ben's spot on the screen
    text, _ = ui.near_text()
    assert text.startswith("fear · ana · 12.0 s")
    glyphs = [f for f in ui._flashes if f.avatar is not None]
    pulses = [f for f in ui._flashes if f.avatar is None]
    assert sorted(f.avatar for f in glyphs) == [1, 2] and len(pulses) == 1
    left, right, bottom, top = ui.picture_rect()
    x, _, z = pulses[0].node.getPos()
    assert x == pytest.approx(left + 0.7 * (right - left))
    assert z == pytest.approx(top - 0.3 * (top - bottom))
    # Tab: a note on my last beat, as an edit
    base.messenger.send("tab")
    assert ui.typing and app.hud.captures_keys is False and app._typing_note()
    ui._submit_note("that dust, finally")
    assert not ui.typing
    edit = session.sent[-1]
    assert edit["t"] == "beat_edit" and edit["beat"] == 1 and edit["note"] == "that dust, finally"
    # a delete removes the tick
    delete = chain.delete(1, author="ana", role="viewer", server_ms=0)
    session.inbox.append(_event(3, delete, 1))
    base.taskMgr.step()
    assert len(ui._ticks) == 1


def test_pointer_goes_out_while_p_is_held_and_pins_the_beat(bar_app) -> None:
    app, session, base = bar_app
    ui = app.beats
    ui._pointer_source = lambda: (0.25, 0.6)
    base.messenger.send("p")
    base.taskMgr.step()
    base.messenger.send("1")
    base.messenger.send("1-up")
    base.messenger.send("p-up")
    pointers = [m for m in session.sent if m.get("t") == "pointer"]
    assert pointers[0] == {"t": "pointer", "on": True, "x": 0.25, "y": 0.6}
    assert pointers[-1]["on"] is False
    beat = [m for m in session.sent if m.get("t") == "beat"][-1]
    assert (beat["x"], beat["y"]) == (0.25, 0.6)
    # someone else's dot shows on the screen, and goes when they let go
    session.inbox.append({"t": "pointer", "avatar": 2, "on": True, "x": 0.5, "y": 0.5})
    base.taskMgr.step()
    assert 2 in ui._dots
    session.inbox.append({"t": "pointer", "avatar": 2, "on": False, "x": 0.5, "y": 0.5})
    base.taskMgr.step()
    assert 2 not in ui._dots


def test_only_the_host_switches_viewers_beats(bar_app) -> None:
    app, session, base = bar_app
    base.messenger.send("f7")  # we are a viewer here
    assert not [m for m in session.sent if m.get("t") == "beat_policy"]
    session.role = "host"
    base.messenger.send("f7")
    assert session.sent[-1] == {"t": "beat_policy", "viewers": False}
    session.inbox.append({"t": "event", "seq": 9, "st": 0.0, "kind": "beat_policy",
                          "viewers": False, "by": 1})  # fmt: skip
    base.taskMgr.step()
    assert app.beats.keys.viewers_may_mark is False


def test_f2_opens_the_people_list_now(bar_app) -> None:
    app, _, base = bar_app
    assert app.hud.people.isHidden()
    base.messenger.send("f2")
    assert not app.hud.people.isHidden()


def test_bots_mark_the_playing_scene_as_the_play_head_passes() -> None:
    from client.beats_ui import BotBeats
    from neonbar.arc import intended_arc
    from neonbar.playback import Timeline
    from neonbar.scenes import load_scene

    bots = BotBeats(count=20, seed=5)
    timeline = Timeline(scene="dust_storm", title="Dust Storm", fps=24.0, frames=720,
                        status="ready", playing=True, pos_s=0.0, at_s=100.0)  # fmt: skip
    bots.on_message({"t": "welcome", "timeline": timeline.to_wire()})
    sent = []
    for step in range(0, 31 * 4):
        server_s = 100.0 + step / 4
        for i in range(20):
            sent += [(i, m) for m in bots.due(i, server_s)]
    assert len(sent) > 20  # most bots mark most moments
    moments = [m.t_s for m in intended_arc(load_scene("dust_storm")).strong_moments(6)]
    for _, m in sent:
        validate_fields(scene=m["scene"], t_in_s=m["at"], t_out_s=m.get("until"),
                        emotion_name=m["emotion"], intensity=m["intensity"],
                        scene_duration_s=30.0)  # fmt: skip
        assert min(abs(m["at"] - t) for t in moments) < 2.5  # near a strong moment
    assert len({m["cid"] for _, m in sent}) == len(sent)
    # past the end nothing more comes; a seek back to the start re-arms the whole plan
    assert all(bots.due(i, 200.0) == [] for i in range(20))
    back = Timeline(scene="dust_storm", title="Dust Storm", fps=24.0, frames=720,
                    status="ready", playing=True, pos_s=0.0, at_s=300.0, version=2)  # fmt: skip
    bots.on_message({"t": "event", "kind": "timeline", **back.to_wire()})
    again = [m for step in range(31 * 4) for i in range(20) for m in bots.due(i, 300 + step / 4)]
    assert sorted(m["at"] for m in again) == sorted(m["at"] for _, m in sent)


# ------------------------------------------------------------------------------ two people, live


@pytest.mark.render
def test_two_people_mark_beats_during_a_playing_scene_and_see_each_others(
    showbase,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import time

    from clipfixtures import clip_scene
    from netfixtures import running_server

    from client.app import NeonBarApp
    from client.net import NetSession
    from client.watch import WatchOptions

    monkeypatch.setenv("NEONBAR_SCENES", str(clip_scene(tmp_path, "live_storm", "Live Storm")))
    data = tmp_path / "data"
    data.mkdir()
    repo = Path(__file__).resolve().parents[2]
    with running_server(data) as server:
        host = subprocess.run(
            [sys.executable, "-m", "neonbar", "invite", "--room", "live", "--role", "host",
             "--data", str(data)],
            cwd=repo, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.splitlines()[0].strip()  # fmt: skip
        bob = NetSession(server.url, "live", "Bob", token=host)
        alice = NetSession(server.url, "live", "Alice")
        options = WatchOptions(server_url=server.url, room="live", data_dir=tmp_path / "cache")
        app = NeonBarApp(showbase, alice, name="Alice", post=False, watch_options=options)
        bob_events: list[dict[str, Any]] = []

        def pump(until, timeout_s: float = 90.0):
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                showbase.taskMgr.step()
                bob_events.extend(m for m in bob.poll() if m.get("kind") == "beat")
                if until():
                    return
                time.sleep(0.01)
            raise AssertionError("condition not met in time")

        alice.start()
        bob.start()
        try:
            pump(lambda: app.you is not None and bob.you is not None)
            bob.send({"t": "playback", "op": "scene", "scene": "live_storm"})
            pump(lambda: app.watch.timeline.status == "ready")
            bob.send({"t": "playback", "op": "play"})
            pump(lambda: app.watch.timeline.playing and app.beats._scene_time()[1] > 1.0)
            # Alice presses 4 (surprise) in the bar; Bob sees it live
            showbase.messenger.send("4")
            showbase.messenger.send("4-up")
            pump(lambda: len(bob_events) >= 1)
            seen = bob_events[0]["rec"]
            assert (seen["author"], seen["emotion"], seen["scene"]) == ("Alice", "surprise",
                                                                         "live_storm")  # fmt: skip
            assert 1.0 < seen["t_in_ms"] / 1000 < 30.0
            # Bob marks anger at the same moment; Alice's bar draws both
            bob.send({"t": "beat", "scene": "live_storm", "at": seen["t_in_ms"] / 1000 + 0.5,
                      "emotion": "anger", "intensity": 0.9, "note": "there it is"})  # fmt: skip
            pump(lambda: len(app.beats.book.records) >= 2 and len(bob_events) >= 2)
            assert app.beats.book.ordered() == [e["rec"]["seq"] for e in bob_events] == [1, 2]
            assert [b.emotion for b in app.beats.book.standing] == ["surprise", "anger"]
            assert len(app.beats._ticks) == 2
            assert app.beats.ack_latency_s  # Alice's own beat came back committed
        finally:
            app.destroy()
            bob.stop()


def test_book_folds_in_order_and_out_of_order_alike() -> None:
    import random

    chain = BeatChain("r")
    rng = random.Random(4)
    for k in range(300):
        standing = chain.beats()
        if standing and rng.random() < 0.2:
            chain.delete(rng.choice(standing).beat, author="h", role="host", server_ms=k)
        elif standing and rng.random() < 0.2:
            target = rng.choice(standing)
            f = validate_fields(scene="s", t_in_s=rng.uniform(0, 30), emotion_name="fear")
            chain.edit(target.beat, f, author=target.author, role="viewer", server_ms=k)
        else:
            f = validate_fields(scene="s", t_in_s=rng.uniform(0, 30), emotion_name="joy")
            chain.add(f, author=f"p{k % 3}", role="viewer", server_ms=k)
    in_order, shuffled = BeatBook(), BeatBook()
    raws = [r.to_dict() for r in chain.records]
    for raw in raws:
        in_order.ingest(raw)
    rng.shuffle(raws)
    for raw in raws:
        shuffled.ingest(raw)
    assert in_order.standing == shuffled.standing == chain.beats()
    assert in_order.last_of("p1") == shuffled.last_of("p1")
    for t in (0.0, 7.5, 15.0, 29.0):
        assert in_order.near("s", t) == shuffled.near("s", t)


def test_a_crowded_scene_is_binned_on_the_strip(bar_app) -> None:
    from client.beats_ui import MAX_TICKS, TICK_BINS

    app, session, base = bar_app
    chain = BeatChain("test")
    for k in range(MAX_TICKS + 200):
        f = validate_fields(scene="dust_storm", t_in_s=(k * 0.37) % 29.0, emotion_name="joy")
        rec = chain.add(f, author="ben", role="viewer", server_ms=0)
        session.inbox.append(_event(k + 1, rec, 2))
    base.taskMgr.step()
    assert len(app.beats.book.standing) == MAX_TICKS + 200
    assert 0 < len(app.beats._ticks) <= TICK_BINS
    assert app.beats.near_text()[0].startswith("joy · ben")


# ------------------------------------------------------------------------------ hover


def test_under_picks_the_nearest_tick_and_ranges_anywhere_on_their_bar() -> None:
    chain = BeatChain("r")
    for t_in, t_out, emo in ((10.0, None, "joy"), (10.4, None, "fear"), (8.0, 16.0, "trust"),
                             (9.0, 11.0, "anger"), (25.0, None, "sadness")):  # fmt: skip
        f = validate_fields(scene="s", t_in_s=t_in, t_out_s=t_out, emotion_name=emo)
        chain.add(f, author="ana", role="viewer", server_ms=0)
    book = BeatBook()
    for r in chain.records:
        book.ingest(r.to_dict())
    assert book.under("s", 10.1, 0.3).emotion == "joy"  # two ticks in reach: the nearer
    assert book.under("s", 10.3, 0.3).emotion == "fear"
    assert book.under("s", 9.2, 0.3).emotion == "anger"  # inside two ranges: the shorter
    assert book.under("s", 14.0, 0.3).emotion == "trust"  # anywhere on its bar
    assert book.under("s", 16.2, 0.3).emotion == "trust"  # its end, give or take the slack
    assert book.under("s", 20.0, 0.3) is None
    assert book.under("s", 25.5, 0.3) is None and book.under("s", 25.2, 0.3).emotion == "sadness"
    assert book.under("other", 10.0, 0.3) is None


def _film(base: Any, node: Any, at: tuple[float, float, float] = (0, 0, 0.06)):
    """Where a point of `node` shows in the window, in the mouse's coordinates (-1..1)."""
    from panda3d.core import Point2, Point3

    film = Point2()
    assert base.camLens.project(base.cam.getRelativePoint(node, Point3(*at)), film)
    return film.x, film.y


def test_pointing_the_mouse_at_a_tick_labels_that_beat(bar_app) -> None:
    app, session, base = bar_app
    ui = app.beats
    chain = BeatChain("test")
    for t_in, t_out, emo, who, note in (
        (12.0, None, "fear", "ana", ""),
        (12.3, None, "anger", "ben", "there it is"),
        (20.0, 24.0, "joy", "ben", "the haze lifts"),
    ):
        f = validate_fields(scene="dust_storm", t_in_s=t_in, t_out_s=t_out, emotion_name=emo,
                            intensity=0.5, note=note)  # fmt: skip
        rec = chain.add(f, author=who, role="viewer", server_ms=0)
        session.inbox.append(_event(rec.seq, rec, 2))
    mouse: dict[str, Any] = {"at": None}
    ui._hover_source = lambda: mouse["at"]
    base.taskMgr.step()
    fear, anger, joy = ui._ticks
    assert ui.hover_text() is None and ui.near_text()[0].startswith("fear · ana · 12.0 s")

    mouse["at"] = _film(base, anger)
    base.taskMgr.step()
    assert ui.hover_text() == "anger · ben · 12.3 s · intensity 0.50\n“there it is”"
    assert ui._label.isHidden()  # the hovered beat takes the label line from the near one
    label = ui._hover_label
    assert tuple(label.node().getFrameColor())[:3] == pytest.approx(
        EMOTION_BY_NAME["anger"].rgb, abs=1e-3
    )
    assert label.getX() == pytest.approx(anger.getX(), abs=0.01)  # by its tick
    mouse["at"] = _film(base, fear)  # the two ticks are 9 cm apart: each is reachable
    base.taskMgr.step()
    assert ui.hovered.emotion == "fear" and ui.hover_text().startswith("fear · ana · 12.0 s")
    for x in (-0.4, 0.0, 0.4):  # a range: anywhere on its bar (tick units: ±0.02 m)
        mouse["at"] = _film(base, joy, (x * 0.04, 0, 0.06))
        base.taskMgr.step()
        assert ui.hover_text() == "joy · ben · 20.0–24.0 s · intensity 0.50\n“the haze lifts”"

    # the same ray finds P's spot on the picture
    bar = app.watch.bar
    left, right, bottom, top = ui.picture_rect()
    spot = (left + 0.25 * (right - left), 0.0, top - 0.6 * (top - bottom))
    on_picture = ui.frame_point(_film(base, ui._screen_node, spot))
    assert on_picture == pytest.approx((0.25, 0.6), abs=1e-3)
    assert ui.frame_point(_film(base, bar.root, (0, 0, 0.1))) is None  # the strip is not it

    # off the ticks (the strip at 5 s, the picture above it, outside the window): hidden,
    # and the near label is back
    for at in (_film(base, bar.root, (bar.x_of(5 / 30), 0, 0.1)),
               _film(base, bar.root, (0, 0, bar.height_m + 1.0)), None):  # fmt: skip
        mouse["at"] = at
        base.taskMgr.step()
        assert ui.hover_text() is None and ui.hovered is None
        assert ui._hover_label.isHidden() and ui._hover_stem.isHidden()
        assert not ui._label.isHidden()


def test_the_hover_label_is_drawn_by_its_tick_in_the_emotions_colour(strip_app) -> None:
    from renderfixtures import project, render

    app, session, base = strip_app
    ui = app.beats
    chain = BeatChain("test")
    f = validate_fields(scene="dust_storm", t_in_s=4.0, emotion_name="sadness", note="rain")
    session.inbox.append(_event(1, chain.add(f, author="ben", role="viewer", server_ms=0), 2))
    mouse: dict[str, Any] = {"at": None}
    ui._hover_source = lambda: mouse["at"]
    base.taskMgr.step()
    (tick,) = ui._ticks
    col, row = project(base, tuple(tick.getPos(base.render)))
    rgb = EMOTION_BY_NAME["sadness"].rgb
    text = [round(255 * (c + (1 - c) * 0.3)) for c in rgb]

    def coloured() -> int:  # pixels of the label's text colour just under the tick
        img = render(base)[row : row + 40, max(0, col - 60) : col + 60]
        return int((abs(img - text).max(axis=2) < 40).sum())

    before = coloured()
    mouse["at"] = _film(base, tick)
    after = coloured()
    assert ui.hover_text() == "sadness · ben · 4.0 s · intensity 0.50\n“rain”"
    assert after > before + 40  # 150 on this box at 320x180
    mouse["at"] = None
    assert coloured() <= before + 5


def test_hover_reads_the_cursor_but_not_while_the_right_button_turns(bar_app) -> None:
    from types import SimpleNamespace

    app, _, base = bar_app
    ui = app.beats

    class Watcher:  # the mouse an offscreen buffer lacks: in the window, right button as told
        right = False

        def hasMouse(self) -> bool:  # Panda3D's names
            return True

        def isButtonDown(self, button: Any) -> bool:
            return self.right and str(button) == "mouse3"

        def getMouseX(self) -> float:
            return 0.25

        def getMouseY(self) -> float:
            return -0.5

    watcher = Watcher()
    ui.base = SimpleNamespace(mouseWatcherNode=watcher)
    try:
        assert ui._mouse_in_window() == (0.25, -0.5)
        watcher.right = True
        assert ui._mouse_in_window() is None
        assert ui._mouse() == (0.25, -0.5)  # P still aims while turning
        ui.base = SimpleNamespace(mouseWatcherNode=None)  # no pointer at all
        assert ui._mouse_in_window() is None and ui._mouse() is None
    finally:
        ui.base = base
