"""Beats in the client: keys to messages, the book of records, and drawing in the bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from client.beats_ui import BeatBook, BeatKeys, hold_intensity
from neonbar.beats import BeatChain, validate_fields

sys.path.insert(0, str(Path(__file__).parent))


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
