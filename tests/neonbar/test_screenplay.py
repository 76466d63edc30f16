"""Fountain elements of every kind parse (fountain-py) and are timed by the documented rule."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from neonbar.errors import UserError
from neonbar.screenplay import (
    ACTION_WORDS_PER_S,
    BREATH_S,
    PARENTHETICAL_S,
    SCENE_HEADING_S,
    SPEECH_WORDS_PER_S,
    TRANSITION_S,
    load_screenplay,
    parse_screenplay,
)

EVERY_KIND = """Title: Every Kind
Author: Neon Bar

# ACT ONE

= Nomi finds the arcade.

EXT. FREIGHT BOULEVARD - DUSK

The dust rolls in over the dead signs of the boulevard tonight.

Rain hammers the tin roof. [[4s]]

A drone passes.
[[hold 2.5 s]]

NOMI
(quietly)
Twenty minutes of air.
Maybe less.

MIRA
Run!

KAI ^
Go!

SMASH CUT TO:

INT. DEAD ARCADE - NIGHT

>THE END<

~Neon rain on my hands

===

/* a cut scene that takes no time */
"""


def kinds(play):
    return [e.kind for e in play.elements]


def test_every_kind_parses_with_its_line_and_times():
    play = parse_screenplay(EVERY_KIND)
    assert play.title == "Every Kind"
    by_line = {e.line: e for e in play.elements}
    heading = by_line[8]
    assert heading.kind == "scene_heading" and heading.duration_s == SCENE_HEADING_S
    action = by_line[10]
    assert action.kind == "action"
    assert action.duration_s == pytest.approx(12 / ACTION_WORDS_PER_S)  # 12 words
    assert by_line[12].duration_s == 4.0 and by_line[12].explicit  # inline note
    assert by_line[14].duration_s == 2.5 and by_line[14].explicit  # note on the next line
    paren = by_line[18]
    assert paren.kind == "parenthetical" and paren.duration_s == PARENTHETICAL_S
    speech = by_line[19]
    assert speech.kind == "dialogue" and speech.speaker == "NOMI"
    assert speech.text == "Twenty minutes of air. Maybe less."  # one cue, two lines
    assert speech.duration_s == pytest.approx(6 / SPEECH_WORDS_PER_S + BREATH_S)
    transition = next(e for e in play.elements if e.kind == "transition")
    assert transition.text == "SMASH CUT TO:" and transition.duration_s == TRANSITION_S
    assert {"centered", "lyrics"} <= set(kinds(play))
    # Sections, synopses, notes, boneyard, page breaks and the title page take no time.
    assert not {"section", "synopsis", "note", "boneyard", "page_break", "title_page"} & set(
        kinds(play)
    )
    assert [e.scene_index for e in play.elements if e.kind == "scene_heading"] == [0, 1]


def test_elements_follow_each_other_and_dual_dialogue_runs_together():
    play = parse_screenplay(EVERY_KIND)
    mira, kai = (e for e in play.elements if e.speaker in ("MIRA", "KAI"))
    assert mira.start_s == kai.start_s  # dual dialogue: spoken at once
    after = play.elements[play.elements.index(kai) + 1]
    assert after.start_s == pytest.approx(max(mira.end_s, kai.end_s))
    singles = [e for e in play.elements if e.speaker not in ("MIRA", "KAI")]
    for a, b in itertools.pairwise(singles):
        assert b.start_s >= a.end_s - 1e-9  # in order, never overlapping
    assert play.duration_s == pytest.approx(max(e.end_s for e in play.elements))


def test_fit_scales_every_time_and_dialogue_gives_subtitles():
    play = parse_screenplay(EVERY_KIND).fit(30.0)
    assert play.duration_s == 30.0
    assert max(e.end_s for e in play.elements) == pytest.approx(30.0)
    cues = play.dialogue()
    assert [c.speaker for c in cues] == ["NOMI", "MIRA", "KAI"]
    for cue in cues:
        assert 0 <= cue.start_s < cue.end_s <= 30.0
        assert play.at(cue.start_s + 1e-6) is not None
    assert play.scene_starts_s[0] == 0.0 and 0 < play.scene_starts_s[1] < 30.0


def test_shipped_screenplays_parse():
    scenes = Path(__file__).resolve().parents[2] / "scenes"
    for path in sorted(scenes.glob("*.fountain")):
        play = load_screenplay(path, 30.0)
        assert play.dialogue(), path
        assert play.scene_starts_s and play.scene_starts_s[0] == 0.0, path


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (b"Title: Only a title page\n", "no scene headings, action or dialogue"),
    ],
)
def test_bad_screenplays_are_refused_with_a_sentence(tmp_path, content, sentence):
    path = tmp_path / "bad.fountain"
    path.write_bytes(content)
    with pytest.raises(UserError, match=sentence):
        load_screenplay(path)


def test_missing_screenplay_and_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_screenplay(tmp_path / "nope.fountain")
    with pytest.raises(UserError, match="is a folder"):
        load_screenplay(tmp_path)
