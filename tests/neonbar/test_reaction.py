"""The reaction wire format, the felt arc, its store, and branch choice from a scripted arc."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from neonbar import protocol
from neonbar import reaction as wire
from neonbar.branching import BranchPoint, choose, parse_branches
from neonbar.errors import UserError


def _random_reaction(rng: random.Random) -> wire.Reaction:
    return wire.Reaction(
        rng.uniform(0, 3600),
        rng.uniform(-1, 1),
        rng.uniform(0, 1),
        tuple(rng.uniform(0, 1) for _ in wire.INTENSITIES),
        rng.choice([0, wire.FLAG_FACE, wire.FLAG_FACE | wire.FLAG_CALIBRATED, 7]),
    )


def test_a_reaction_is_at_most_16_bytes_and_round_trips_within_quantisation():
    assert wire.REACTION_BYTES <= 16
    rng = random.Random(13)
    for _ in range(2000):
        r = _random_reaction(rng)
        blob = wire.pack(r)
        assert len(blob) == wire.REACTION_BYTES
        back = wire.unpack(blob)
        assert abs(back.t_s - r.t_s) <= 0.0005 + 1e-9
        assert abs(back.valence - r.valence) <= 0.5 / 127 + 1e-9
        assert abs(back.arousal - r.arousal) <= 0.5 / 255 + 1e-9
        for a, b in zip(back.intensities, r.intensities, strict=True):
            assert abs(a - b) <= 0.5 / 255 + 1e-9
        assert back.flags == r.flags
        assert wire.pack(back) == blob  # quantisation is idempotent


def test_out_of_range_and_non_finite_values_are_clamped_not_wrapped():
    r = wire.Reaction(-5.0, 3.0, math.nan, (2.0, -1.0, 0, 0, 0, 0, math.inf), 0xFF)
    back = wire.unpack(wire.pack(r))
    assert back.t_s == 0.0 and back.valence == 1.0 and back.arousal == 0.0
    assert back.intensities[0] == 1.0 and back.intensities[1] == 0.0
    assert back.intensities[6] == 0.0
    assert back.flags == wire.FLAGS_KNOWN


def test_records_view_matches_unpack():
    rng = random.Random(2)
    rs = [_random_reaction(rng) for _ in range(4)]
    rec = wire.records(wire.pack_many(rs))
    for row, r in zip(rec, rs, strict=True):
        back = wire.unpack(row.tobytes())
        assert back == wire.unpack(wire.pack(r))
    with pytest.raises(ValueError):
        wire.records(b"x" * 15)


@pytest.mark.parametrize(
    "blob, words",
    [
        (b"", "1 to 4"),
        (b"\0" * 13, "1 to 4"),
        (b"\0" * 14 * 5, "1 to 4"),
        (wire._STRUCT.pack(wire.MAX_SCENE_MS + 1, 0, 0, *[0] * 7, 1), "four hours"),
        (wire._STRUCT.pack(0, -128, 0, *[0] * 7, 1), "-128"),
        (wire._STRUCT.pack(0, 0, 0, *[0] * 7, 0x80), "flags"),
    ],
)
def test_bad_react_payloads_are_named(blob, words):
    assert words in (wire.check_records(blob) or "")


def test_react_and_micro_messages_validate_through_the_protocol():
    blob = wire.pack(wire.Reaction(1.0, 0.5, 0.5))
    msg = protocol.decode_client(protocol.encode({"t": "react", "r": blob}))
    assert msg["r"] == blob
    ok = {"t": "micro", "at": 3.2, "kind": "smile", "strength": 0.4, "dur_ms": 220}
    assert protocol.decode_client(protocol.encode(ok))["kind"] == "smile"
    for bad in ({**ok, "kind": "wink"}, {**ok, "dur_ms": 900}, {**ok, "strength": 2}):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode_client(protocol.encode(bad))
    with pytest.raises(protocol.ProtocolError):  # more than 4 records does not even decode
        protocol.decode_client(protocol.encode({"t": "react", "r": blob * 5}))


def test_faces_payload_round_trips():
    rs = [wire.Reaction(0, 0.5, 0.25, (0.1,) * 7), wire.Reaction(0, -1.0, 1.0, (0.9,) * 7)]
    blob = wire.pack_faces([3, 700], [wire.pack(r) for r in rs])
    assert len(blob) == 2 * wire.FACE_RECORD_BYTES
    faces = wire.unpack_faces(blob)
    assert set(faces) == {3, 700}
    assert abs(faces[700].valence + 1.0) < 1e-9 and abs(faces[3].arousal - 0.25) < 0.01
    assert wire.unpack_faces(wire.pack_faces([], [])) == {}


def _naive_means(rs, bucket_ms):
    out: dict[int, list[wire.Reaction]] = {}
    for r in rs:
        if r.flags & wire.FLAG_FACE:
            q = wire.unpack(wire.pack(r))
            out.setdefault(round(q.t_s * 1000) // bucket_ms, []).append(q)
    return {b: (np.mean([r.valence for r in v]), np.mean([r.arousal for r in v]), len(v))
            for b, v in out.items()}  # fmt: skip


def test_felt_arc_buckets_equal_a_naive_per_bucket_mean():
    rng = random.Random(5)
    rs = [_random_reaction(rng) for _ in range(3000)]
    rs = [wire.Reaction(r.t_s % 30, r.valence, r.arousal, r.intensities, r.flags) for r in rs]
    arc = wire.FeltArc()
    for i in range(0, len(rs), 4):  # as the server gets them: up to 4 per message
        arc.add(wire.records(wire.pack_many(rs[i : i + 4])), watcher=i % 7)
    series = arc.series()
    naive = _naive_means(rs, arc.bucket_ms)
    assert arc.count == sum(n for _, _, n in naive.values())
    for b, (v, a, n) in naive.items():
        assert series["n"][b] == n
        assert abs(series["valence"][b] - v) < 1e-9 and abs(series["arousal"][b] - a) < 1e-9
    assert arc.watchers == set(range(7))


def test_records_without_a_face_do_not_count():
    arc = wire.FeltArc()
    looked_away = wire.Reaction(1.0, -1.0, 1.0, flags=0)
    assert arc.add(wire.records(wire.pack(looked_away))) == 0
    assert arc.count == 0 and math.isnan(arc.window(0, 10)[0])


def test_store_persists_and_a_restart_keeps_adding(tmp_path):
    store = wire.FeltArcStore(tmp_path)
    arc = wire.FeltArc()
    arc.add(wire.records(wire.pack_many([wire.Reaction(1.2, 0.5, 0.4)] * 3)))
    micro = [wire.MicroMoment("alley", 1.3, "smile", 0.6, 240, "ada")]
    assert store.save("r1", "alley", arc, micro, ["ada"]) == 1
    assert store.save("r1", "alley", arc) == 0  # nothing dirty
    store.close()
    store = wire.FeltArcStore(tmp_path / wire.FeltArcStore.FILE)
    again = store.load("r1", "alley")
    assert again.count == 3 and abs(again.window(1.0, 1.5)[0] - 0.5) < 0.01
    again.add(wire.records(wire.pack(wire.Reaction(1.3, -0.5, 0.4))))
    store.save("r1", "alley", again)
    assert store.load("r1", "alley").count == 4
    assert store.micro("r1") == micro and store.watchers("r1", "alley") == ["ada"]
    assert store.scenes("r1") == ["alley"] and store.scenes("other") == []
    store.close()
    felt = wire.load_felt(tmp_path, "r1")
    assert set(felt) == {"alley"} and felt["alley"][0].count == 4
    assert wire.load_felt(tmp_path / "nowhere", "r1") == {}


SCREENPLAY = """
INT. ALLEY - NIGHT

Rain. MEI waits under the sign.

[[branch: the_reveal at 20s over 8s on tension
    below -> alley_hard "the harder cut"
    else -> alley_soft "as written"]]
"""


def test_branch_notes_parse():
    (point,) = parse_branches(SCREENPLAY)
    assert point.name == "the_reveal" and point.at_s == 20 and point.over_s == 8
    assert point.measure == "tension" and point.line == 6
    assert point.choices["below"].scene == "alley_hard"
    assert point.default.label == "as written"


@pytest.mark.parametrize(
    "note, words",
    [
        ("[[branch: x at 20s on tension\nelse -> a]]", "starts"),
        ("[[branch: x at 20s over 8s on joy\nbelow -> a\nelse -> b]]", "measure"),
        ("[[branch: x at 20s over 8s on mood\nbelow -> a]]", "else"),
        ("[[branch: x at 20s over 8s on mood\nsideways -> a\nelse -> b]]", "sideways"),
        ("[[branch: x at 5s over 8s on mood\nbelow -> a\nelse -> b]]", "window"),
        ("[[branch: x at 9s over 8s on mood; below -> a; else -> b]]\n" * 2, "share"),
    ],
)
def test_bad_branch_notes_get_one_sentence(note, words):
    with pytest.raises(UserError, match=words):
        parse_branches(note)


def _scripted_arc(level: float, watchers: int = 3) -> wire.FeltArc:
    arc = wire.FeltArc()
    for w in range(watchers):
        rs = [wire.Reaction(t / 10, 0.2, level) for t in range(100, 200)]
        for i in range(0, len(rs), 4):
            arc.add(wire.records(wire.pack_many(rs[i : i + 4])), watcher=w)
    return arc


def intended(t_s: float) -> tuple[float, float]:
    return 0.0, 0.6  # the screenplay wants tension 0.6 throughout


def test_felt_tension_below_intended_takes_the_harder_cut():
    (point,) = parse_branches(SCREENPLAY)
    decision = choose(point, _scripted_arc(0.3), intended)
    assert decision.condition == "below" and decision.choice.scene == "alley_hard"
    assert decision.samples == 3 * 80  # 12..20 s of 10..20 s, three watchers
    assert "0.30 below intended 0.60" in decision.reason and "3 watchers" in decision.reason


def test_felt_close_to_intended_plays_as_written_and_nobody_reacting_too():
    (point,) = parse_branches(SCREENPLAY)
    assert choose(point, _scripted_arc(0.58), intended).choice.scene == "alley_soft"
    nobody = choose(point, wire.FeltArc(), intended)
    assert nobody.choice.scene == "alley_soft" and "nobody reacted" in nobody.reason
    # only reactions after the branch point: still nobody in the window
    late = wire.FeltArc()
    late.add(wire.records(wire.pack(wire.Reaction(25.0, 0.0, 0.0))))
    assert choose(point, late, intended).samples == 0


def test_the_window_compares_felt_with_the_intended_arc_where_people_felt():
    point = BranchPoint("p", 20, 10, "tension", parse_branches(SCREENPLAY)[0].choices)

    def rising(t_s):
        return 0.0, t_s / 20  # 0.5 at 10 s, 1.0 at 20 s

    arc = wire.FeltArc()  # reactions only from 10 to 12 s, felt 0.55: matches intended there
    arc.add(wire.records(wire.pack_many([wire.Reaction(10 + i / 10, 0, 0.55) for i in range(4)])))
    assert choose(point, arc, rising).condition == "else"


def test_host_override_must_name_a_branch():
    (point,) = parse_branches(SCREENPLAY)
    d = choose(point, _scripted_arc(0.3), intended, override="alley_soft")
    assert d.condition == "host" and d.choice.scene == "alley_soft" and "host" in d.reason
    with pytest.raises(UserError, match="not a branch"):
        choose(point, _scripted_arc(0.3), intended, override="elsewhere")


def test_sections_split_at_scene_headings():
    spans = wire.sections([("EXT. ALLEY", 0.0), ("EXT. STEPS", 20.0)], 36.0)
    assert spans == [("EXT. ALLEY", 0.0, 20.0), ("EXT. STEPS", 20.0, 36.0)]
    assert wire.sections([("LATER", 5.0)], 10.0) == [("opening", 0.0, 5.0), ("LATER", 5.0, 10.0)]
    assert wire.sections([], 8.0) == [("opening", 0.0, 8.0)]


def test_departures_are_felt_minus_intended_per_section():
    arc = wire.FeltArc()
    rs = [wire.Reaction(t / 10, 0.5 if t < 100 else -0.5, 0.4) for t in range(200)]
    for i in range(0, 200, 4):
        arc.add(wire.records(wire.pack_many(rs[i : i + 4])))
    out = wire.departures(arc, lambda t: (0.2, 0.6), [("a", 0, 10), ("b", 10, 20), ("c", 20, 30)])
    assert [d.label for d in out] == ["a", "b"]  # nobody felt anything in c
    a, b = out
    assert a.d_valence == pytest.approx(0.3, abs=0.01) and a.d_arousal == pytest.approx(
        -0.2, abs=0.01
    )
    assert b.d_valence == pytest.approx(-0.7, abs=0.01) and a.samples == 100


def test_the_report_shows_the_felt_arc_its_sections_and_micro_moments(tmp_path):
    from neonbar import beats as B
    from neonbar import report as R

    data = tmp_path / "data"
    store = wire.FeltArcStore(data)
    arc = wire.FeltArc()
    for w in range(3):
        rs = [wire.Reaction(t / 10, 0.1 * w, 0.5) for t in range(0, 360)]
        for i in range(0, len(rs), 4):
            arc.add(wire.records(wire.pack_many(rs[i : i + 4])), watcher=w)
    micro = [wire.MicroMoment("neon_alley", 22.4, "surprise", 0.8, 220, "ada")]
    store.save("studio", "neon_alley", arc, micro, ["ada", "bo", "cy"])
    store.close()
    felt = wire.report_felt(data, "studio")
    series = felt["neon_alley"]
    assert series.watchers[10] == pytest.approx(3.0)  # three people at 10 Hz
    assert [d.label for d in series.sections][:1] == ["EXT. KOWLOON ALLEY - NIGHT"]
    assert len(series.sections) == 2 and series.moments == ((22.4, "surprise (ada)"),)
    chain = B.BeatChain("studio")
    f = B.validate_fields(scene="neon_alley", t_in_s=3.0, emotion_name="joy", point=None, note="")
    chain.add(f, author="ana", role="viewer", server_ms=0)
    page = R.write_report(tmp_path / "out", chain.records, felt=felt)
    text = page.read_text()
    assert "Felt against intended" in text and "EXT. ALLEY STEPS" in text
    assert "22.4 s surprise (ada)" in text and "No felt arc" not in text
