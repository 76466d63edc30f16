"""The intended arc follows the screenplay: a script written to rise and fall rises and falls."""

from __future__ import annotations

import numpy as np
import pytest

from neonbar.arc import ARC_VERSION, Arc, arc_of_text, arc_path, intended_arc, score_element
from neonbar.errors import UserError
from neonbar.scenes import load_scene
from neonbar.screenplay import TimedElement

RISE_AND_FALL = """Title: Rise and Fall

INT. NOODLE BAR - NIGHT

The bar is quiet. Rain drifts slowly down the window. Steam rises, soft and still.

MIRA
(softly)
It's warm in here. Stay a while.

A gunshot! Glass shatters! Sirens scream outside! Blood on the counter!

KAI
Get down! NOW! Run!

SMASH CUT TO:

EXT. ROOFTOP - DAWN

Silence. The sun rises slowly over the city. They breathe, together, safe.

MIRA
We're alive. I love you.
"""


def arc():
    return arc_of_text(RISE_AND_FALL, duration_s=40.0)


def test_arousal_rises_to_the_fight_and_falls_after():
    a = arc()
    fight = next(e for e in a.elements if "gunshot" in e.text)
    t_peak = float(a.times_s[np.argmax(a.arousal)])
    assert fight.start_s - 2.0 <= t_peak <= fight.end_s + 4.0
    start, peak, end = a.at(2.0)[1], a.arousal.max(), a.at(38.0)[1]
    assert peak > start + 0.3
    assert peak > end + 0.3


def test_valence_dips_in_the_fight_and_ends_positive():
    a = arc()
    fight = next(e for e in a.elements if "gunshot" in e.text)
    during = a.at((fight.start_s + fight.end_s) / 2)[0]
    assert during < -0.4
    assert a.at(38.0)[0] > 0.3
    assert a.at(9.0)[0] > during + 0.5  # the warm line before it


def test_ranges_smoothing_and_element_lines():
    a = arc()
    assert a.times_s[0] == 0.0 and a.times_s[-1] == pytest.approx(40.0)
    assert np.all(a.valence >= -1) and np.all(a.valence <= 1)
    assert np.all(a.arousal >= 0) and np.all(a.arousal <= 1)
    # Smoothed: no jump between samples bigger than a fraction of the range.
    assert np.abs(np.diff(a.arousal)).max() < 0.1
    assert [e.line for e in a.elements][:3] == [3, 5, 8]
    assert all(e.end_s > e.start_s for e in a.elements)


def test_strong_moments_find_the_fight_and_the_turn():
    a = arc()
    moments = a.strong_moments(3)
    assert len(moments) == 3
    assert [m.t_s for m in moments] == sorted(m.t_s for m in moments)
    fight = next(e for e in a.elements if "gunshot" in e.text)
    assert any(fight.start_s - 2 <= m.t_s <= fight.end_s + 4 and m.kind == "arousal"
               for m in moments)  # fmt: skip
    assert any(m.kind == "valence_change" for m in moments)
    assert all(m.line > 0 for m in moments)
    gaps = np.diff([m.t_s for m in moments])
    assert np.all(gaps >= 40.0 / 6 - 1e-9)
    assert a.strong_moments(0) == []


def test_structure_cues_move_arousal():
    def el(kind, text):
        return TimedElement(kind, text, 1, 0.0, 1.0)

    assert score_element(el("transition", "SMASH CUT TO:"))[1] > score_element(
        el("transition", "FADE OUT."))[1] + 0.4  # fmt: skip
    assert score_element(el("action", "RUN! The car EXPLODES!"))[1] > score_element(
        el("action", "She sits by the window and waits, quiet and still."))[1] + 0.3  # fmt: skip
    night = score_element(el("scene_heading", "EXT. ALLEY - NIGHT"))
    day = score_element(el("scene_heading", "INT. KITCHEN - DAY"))
    assert night[0] < day[0] and night[1] > day[1]


def test_arc_is_deterministic_and_round_trips_json():
    a, b = arc(), arc()
    assert np.array_equal(a.valence, b.valence) and np.array_equal(a.arousal, b.arousal)
    back = Arc.from_json(a.to_json())
    assert np.allclose(back.valence, a.valence, atol=1e-5)
    assert back.elements == a.elements
    assert back.at(17.3) == pytest.approx(a.at(17.3), abs=1e-4)
    with pytest.raises(ValueError):
        Arc.from_json(a.to_json().replace(f'"version": {ARC_VERSION}', '"version": 99'))


def test_shipped_scenes_store_their_arc_beside_the_spec():
    from neonbar.scenes import list_scenes

    shipped = [s.name for s in list_scenes() if s.shipped]
    assert {"dust_storm", "neon_alley", "rooftop_signal", "last_train"} <= set(shipped)
    for name in shipped:
        spec = load_scene(name)
        stored = arc_path(spec)
        assert stored.is_file(), f"{stored} is missing; run neonbar scene arc {name}"
        fresh = intended_arc(spec)  # the stored one, when it is up to date
        computed = arc_of_text(spec.screenplay.read_text(encoding="utf-8"), spec.duration_s)
        assert np.allclose(fresh.arousal, computed.arousal, atol=1e-4), (
            f"{stored} is stale; run neonbar scene arc {name}"
        )
        assert fresh.duration_s == spec.duration_s


def test_a_scene_without_screenplay_has_no_arc(tmp_path, monkeypatch):
    from neonbar.scenes import spec_from_dict

    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"x")
    spec = spec_from_dict({"title": "C", "clip": "c.mp4", "duration_s": 2}, tmp_path / "c.toml")
    with pytest.raises(UserError, match="no screenplay"):
        intended_arc(spec)
