"""Exports of a room's beats: OTIO markers and colours, EDL LOC lines, Resolve markers, CSV,
JSON, and verify catching a one-character change anywhere."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import opentimelineio as otio
import pytest

from neonbar import beatexport as X
from neonbar import beats as B

SCENES = {
    "dust_storm": X.SceneInfo("dust_storm", "Dust Storm", 30.0, 24, "/media/dust_storm.mp4"),
    "neon_alley": X.SceneInfo("neon_alley", "Neon Alley", 20.0, 24, None),
}


def _records() -> list[B.Beat]:
    chain = B.BeatChain("studio")
    plan = [
        ("dust_storm", 2.0, None, "joy", 0.8, "the orange haze | rolls in", (0.25, 0.5), "ana"),
        ("dust_storm", 5.5, 9.0, "fear", 1.0, "", None, "ben"),
        ("neon_alley", 3.25, None, "sadness", 0.4, "rain, finally", None, "ana"),
        ("dust_storm", 12.0, None, "surprise", 0.6, "cut! | new take", (0.9, 0.1), "chloé"),
        ("dust_storm", 20.0, None, "anger", 0.3, "", None, "ben"),
    ]
    for scene, t, t_out, emo, inten, note, point, who in plan:
        f = B.validate_fields(
            scene=scene, t_in_s=t, t_out_s=t_out, emotion_name=emo, intensity=inten, note=note,
            point=point, scene_duration_s=SCENES[scene].duration_s,
        )  # fmt: skip
        chain.add(f, author=who, role="viewer", server_ms=1_764_000_000_000 + len(chain.records))
    edit = B.validate_fields(scene="dust_storm", t_in_s=2.5, emotion_name="trust", note="warmer")
    chain.edit(1, edit, author="ana", role="viewer", server_ms=1_764_000_000_100)
    chain.delete(5, author="host", role="host", server_ms=1_764_000_000_200)
    return chain.records


@pytest.fixture
def export() -> X.BeatExport:
    return X.make_export(_records(), SCENES)


def test_otio_has_one_marker_per_standing_beat_with_colours(export: X.BeatExport) -> None:
    text = X.render(export, "otio")
    timeline = otio.adapters.read_from_string(text, "otio_json")
    clips = {c.name: c for c in timeline.find_clips()}
    assert list(clips) == ["dust_storm", "neon_alley"]
    dust = clips["dust_storm"]
    assert dust.media_reference.target_url == "/media/dust_storm.mp4"
    assert dust.source_range.duration.to_seconds() == pytest.approx(30.0)
    assert isinstance(clips["neon_alley"].media_reference, otio.schema.MissingReference)
    names = [(m.name, m.color) for m in dust.markers]
    # beat 1 edited to trust at 2.5 s, beat 5 deleted
    assert names == [("trust", "GREEN"), ("fear", "BLACK"), ("surprise", "CYAN")]
    trust, fear, surprise = dust.markers
    assert trust.comment == "warmer"
    assert trust.marked_range.start_time.to_seconds() == pytest.approx(2.5)
    assert trust.marked_range.duration.value == 0
    assert fear.marked_range.duration.to_seconds() == pytest.approx(3.5)  # a range beat
    meta = surprise.metadata["neonbar"]
    assert meta["author"] == "chloé" and list(meta["point"]) == [0.9, 0.1]
    assert meta["intensity"] == 0.6 and meta["beat"] == 4
    assert trust.metadata["neonbar"]["edited"] is True
    assert [m.name for m in clips["neon_alley"].markers] == ["sadness"]
    assert timeline.metadata["neonbar"]["head"] == export.head


def test_cmx_edl_has_loc_lines(export: X.BeatExport) -> None:
    one = X.make_export(_records(), SCENES, scene="dust_storm")
    edl = X.render(one, "edl")
    locs = [line for line in edl.splitlines() if line.startswith("* LOC:")]
    assert locs == [
        "* LOC: 00:00:02:12 GREEN   TRUST",
        "* LOC: 00:00:05:12 BLACK   FEAR",
        "* LOC: 00:00:12:00 CYAN    SURPRISE",
    ]
    assert edl.startswith("TITLE:")
    # read back through the adapter: the markers come back, comments do not
    back = otio.adapters.read_from_string(edl, "cmx_3600", rate=24)
    markers = next(iter(back.find_clips())).markers
    assert [m.name for m in markers] == ["TRUST", "FEAR", "SURPRISE"]
    with pytest.raises(X.UserError, match="one frame rate"):
        other = dict(SCENES, neon_alley=X.SceneInfo("neon_alley", "N", 20.0, 30, None))
        X.render(X.make_export(_records(), other), "edl")


def test_resolve_marker_edl(export: X.BeatExport) -> None:
    text = X.render(export, "resolve-edl")
    lines = text.splitlines()
    assert lines[:2] == ["TITLE: studio beats", "FCM: NON-DROP FRAME"]
    events = [ln for ln in lines if re.match(r"^\d{3}  001 ", ln)]
    markers = [ln for ln in lines if "|C:ResolveColor" in ln]
    assert len(events) == len(markers) == 4
    # scenes laid end to end from 01:00:00:00: dust_storm (30 s) then neon_alley
    assert events[0].split()[4] == "01:00:02:12"
    assert events[-1].split()[4] == "01:00:33:06"
    assert markers[0] == " warmer |C:ResolveColorMint |M:trust 0.50 ana |D:1"
    assert markers[1].endswith("|C:ResolveColorGreen |M:fear 1.00 ben |D:84")
    assert markers[2].startswith(" cut! / new take |C:ResolveColorCyan")  # no '|' in a note
    assert "|M:sadness 0.40 ana" in markers[3]


def test_csv_rows_and_header(export: X.BeatExport) -> None:
    text = X.render(export, "csv")
    first, columns = text.splitlines()[:2]
    assert json.loads(first[2:])["head"] == export.head
    assert columns.split(",") == list(X.CSV_COLUMNS)
    back = X.from_csv(text)
    assert back.records == export.records
    assert sum(1 for line in text.splitlines()[2:] if ",1,dust_storm," in line) == 3


def test_json_has_the_chain_head_and_standing_beats(export: X.BeatExport) -> None:
    doc = json.loads(X.render(export, "json"))
    assert doc["head"] == export.head == export.chain[-1].hash
    assert doc["records"] == 7 and len(doc["chain"]) == 7
    assert [b["emotion"] for b in doc["beats"]] == ["trust", "sadness", "fear", "surprise"]
    assert doc["scenes"]["dust_storm"]["duration_s"] == 30.0


@pytest.mark.parametrize("fmt", ["json", "otio", "csv"])
def test_verify_accepts_an_untouched_export(export: X.BeatExport, fmt: str) -> None:
    verdict = X.verify_text(X.render(export, fmt), "." + fmt)
    assert verdict.ok, verdict.line
    assert verdict.line.startswith("intact: room studio, 7 records, 4 beats")


@pytest.mark.parametrize("fmt", ["json", "otio", "csv"])
def test_verify_one_scene_export_walks_the_stubs(fmt: str) -> None:
    one = X.make_export(_records(), SCENES, scene="neon_alley")
    assert sum(isinstance(e, X.Stub) for e in one.chain) == 6
    assert X.verify_text(X.render(one, fmt), "." + fmt).ok


@pytest.mark.parametrize("fmt", ["json", "otio", "csv"])
def test_every_one_character_change_is_detected(export: X.BeatExport, fmt: str) -> None:
    text = X.render(export, fmt)
    rng = random.Random(12)
    spots = [i for i, c in enumerate(text) if not c.isspace()]
    alphabet = '0123456789abcdefxyzAQ.,:-"{}[]é'
    for i in rng.sample(spots, 150):
        new = rng.choice([c for c in alphabet if c != text[i]])
        changed = text[:i] + new + text[i + 1 :]
        verdict = X.verify_text(changed, "." + fmt)
        assert not verdict.ok, f"change at {i} ({text[i]!r} -> {new!r}) not detected"
        assert verdict.line.startswith("NOT intact")


def test_verify_names_the_first_record_that_differs(export: X.BeatExport) -> None:
    doc = json.loads(X.render(export, "json"))
    doc["chain"][3]["note"] = "rewritten"
    verdict = X.verify_text(json.dumps(doc), ".json")
    assert verdict.line == "NOT intact: record 4 differs (content does not match its hash)"
    doc = json.loads(X.render(export, "json"))
    del doc["chain"][-1]
    doc["records"] = 6
    assert "head" in X.verify_text(json.dumps(doc), ".json").line
    doc = json.loads(X.render(export, "json"))
    doc["beats"][1]["note"] = "shown differently"
    assert "beat 3 as shown differs" in X.verify_text(json.dumps(doc), ".json").line
    timeline = otio.adapters.read_from_string(X.render(export, "otio"), "otio_json")
    next(iter(timeline.find_clips())).markers[1].comment = "edited in the NLE"
    text = otio.adapters.write_to_string(timeline, "otio_json")
    assert X.verify_text(text, ".otio").line == "NOT intact: the marker of beat 2 differs"


def test_export_refuses_what_it_cannot_do() -> None:
    with pytest.raises(X.UserError, match="no beats to export"):
        X.make_export([], SCENES)
    with pytest.raises(X.UserError, match="no beats in scene 'nope'"):
        X.make_export(_records(), SCENES, scene="nope")


def test_run_verify_exit_status(tmp_path: Path, export: X.BeatExport, capsys) -> None:
    from neonbar.cli import main

    good = tmp_path / "beats.json"
    good.write_text(X.render(export, "json"))
    assert main(["verify", str(good)]) == 0
    assert "intact" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(good.read_text().replace('"warmer"', '"warmes"'))
    assert main(["verify", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "NOT intact" in out
    assert main(["verify", str(tmp_path / "missing.json")]) == 2
    edl = tmp_path / "x.edl"
    edl.write_text("TITLE: x\n")
    assert main(["verify", str(edl)]) == 2
    assert "EDLs carry no chain" in capsys.readouterr().err
