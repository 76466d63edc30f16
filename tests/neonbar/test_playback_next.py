"""The timeline's `next` / `next_media`: announced without moving anyone's play head."""

from __future__ import annotations

import pytest

from neonbar.playback import Playhead, Timeline
from neonbar.protocol import validate_server

SCENE = Timeline(scene="rainfall", title="Rainfall", media="ab" * 32, fps=24.0, frames=24 * 8,
                 status="ready")  # fmt: skip
NEXT = "cd" * 32


def test_next_rides_the_wire_and_is_absent_when_nothing_is_announced():
    plain = SCENE.to_wire()
    assert "next" not in plain and "next_media" not in plain  # what older clients saw
    named = SCENE.with_next("reveal", None)
    assert named.to_wire()["next"] == "reveal" and "next_media" not in named.to_wire()
    ready = named.with_next("reveal", NEXT)
    assert Timeline.from_wire(ready.to_wire()) == ready
    assert (ready.next_scene, ready.next_media, ready.version) == ("reveal", NEXT, 2)
    assert ready.with_next(None, NEXT).next_media is None  # no scene next, no media next


@pytest.mark.parametrize(
    ("change", "error"),
    [({"next_media": "zz" * 32}, "next_media"), ({"next": 7}, "next"),
     ({"next": "x" * 200}, "next")],
)  # fmt: skip
def test_bad_next_fields_are_refused(change, error):
    with pytest.raises(ValueError, match=error):
        Timeline.from_wire({**SCENE.with_next("reveal", NEXT).to_wire(), **change})


def test_the_event_schema_takes_the_new_fields():
    wire = SCENE.with_next("reveal", NEXT).to_wire()
    event = {"t": "event", "seq": 1, "st": 0.0, "kind": "timeline", **wire}
    assert validate_server(event)["next_media"] == NEXT  # raises if the schema refuses it


def test_announcing_the_next_scene_moves_no_play_head():
    playing = SCENE.play(now_s=10.0)
    head = Playhead()
    head.update(playing, 10.0, 0.0)
    first_seeks = head.seeks  # the first frame is a seek
    shown = []
    server_s = 10.0
    timeline = playing
    for k in range(1, 48):  # two seconds at 24 fps, the clock a little ahead of the head
        server_s += 1 / 24
        if k == 20:
            timeline = timeline.with_next("reveal", None)
        if k == 30:
            timeline = timeline.with_next("reveal", NEXT)
        step = head.update(timeline, server_s + 0.004, 1 / 24)
        assert step.action != "seek", k
        shown.append(step.frame)
    assert shown == sorted(shown) and head.seeks == first_seeks
    # A real change of the timeline still seeks.
    step = head.update(timeline.seek(1.0, server_s), server_s, 1 / 24)
    assert step.action == "seek" and step.frame == 24


def test_a_new_scene_forgets_what_was_next():
    announced = SCENE.with_next("reveal", NEXT)
    loaded = announced.load(5.0, scene="reveal", title="Reveal", media=None, fps=24.0,
                            frames=0, status="preparing")  # fmt: skip
    assert (loaded.next_scene, loaded.next_media) == (None, None)
    assert announced.motion == SCENE.motion
