"""The beat record, its chain, the annotated arc and the agreement measure."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from neonbar import beats as B


def _chain(n: int = 5, room: str = "r") -> B.BeatChain:
    chain = B.BeatChain(room)
    for i in range(n):
        fields = B.validate_fields(
            scene="dust_storm",
            t_in_s=1.0 + 2.5 * i,
            emotion_name=B.EMOTIONS[i % 8].name,
            intensity=0.25 + 0.1 * i,
            note=f"note {i}" if i % 2 else "",
            point=(0.5, 0.25) if i % 3 == 0 else None,
        )
        chain.add(fields, author=f"p{i % 2}", role="viewer", server_ms=1_700_000_000_000 + i)
    return chain


def test_eight_emotions_keys_colours_coordinates() -> None:
    assert [e.name for e in B.EMOTIONS] == [
        "joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation",
    ]  # fmt: skip
    assert sorted(e.key for e in B.EMOTIONS) == list(range(1, 9))
    assert len({e.colour for e in B.EMOTIONS}) == 8
    assert len({e.otio_colour for e in B.EMOTIONS}) == 8
    assert len({e.resolve_colour for e in B.EMOTIONS}) == 8
    for e in B.EMOTIONS:
        assert -1 <= e.valence <= 1 and 0 <= e.arousal <= 1
        assert all(0 <= c <= 1 for c in e.rgb)
    # the circumplex's broad shape: joy pleasant, sadness unpleasant and calm, fear activated
    assert B.EMOTION_BY_NAME["joy"].valence > 0 > B.EMOTION_BY_NAME["sadness"].valence
    assert B.EMOTION_BY_NAME["fear"].arousal > B.EMOTION_BY_NAME["sadness"].arousal


def test_chain_links_and_hashes() -> None:
    chain = _chain(6)
    recs = chain.records
    assert [r.seq for r in recs] == list(range(1, 7))
    assert recs[0].prev == B.GENESIS_HASH
    for a, b in itertools.pairwise(recs):
        assert b.prev == a.hash
    assert chain.head == recs[-1].hash
    assert B.check_chain(recs, chain.head).ok
    # records survive JSON and read back identical
    again = [B.beat_from_dict(json.loads(json.dumps(r.to_dict()))) for r in recs]
    assert again == recs
    assert B.check_chain(again).ok


def test_hash_is_over_canonical_form() -> None:
    rec = _chain(1).records[0]
    body = rec.body()
    assert rec.hash == B.record_hash(dict(reversed(list(body.items()))))
    assert B.canonical_bytes(body) == B.canonical_bytes(dict(sorted(body.items())))
    assert b" " not in B.canonical_bytes({"a": 1, "b": [1, 2]})


@pytest.mark.parametrize(
    "field, value",
    [("note", "x"), ("intensity", 0.999), ("t_in_ms", 1), ("emotion", "anger"), ("author", "z"),
     ("point", (0.1, 0.1)), ("scene", "other"), ("server_ms", 5)],
)  # fmt: skip
def test_any_field_change_is_found_at_its_record(field: str, value: object) -> None:
    recs = list(_chain(5).records)
    recs[2] = dataclasses.replace(recs[2], **{field: value})
    check = B.check_chain(recs)
    assert not check.ok and check.first_bad == 3
    assert "record 3" in check.sentence()


def test_dropped_reordered_and_forged_records_break_the_chain() -> None:
    recs = list(_chain(5).records)
    assert B.check_chain(recs[:2] + recs[3:]).first_bad == 4  # seq gap
    assert not B.check_chain([recs[1], recs[0], *recs[2:]]).ok
    # a record re-hashed after an edit still breaks the next link
    forged = dataclasses.replace(recs[1], note="forged")
    forged = dataclasses.replace(forged, hash=forged.expected_hash())
    check = B.check_chain([recs[0], forged, *recs[2:]])
    assert check.first_bad == 3 and "link" in check.reason
    # truncation is caught by the head
    assert not B.check_chain(recs[:4], recs[-1].hash).ok


def test_edits_and_deletes_are_new_records() -> None:
    chain = _chain(3)
    first = chain.records[0]
    fields = B.validate_fields(scene="dust_storm", t_in_s=9.0, emotion_name="fear", intensity=1)
    chain.edit(first.beat, fields, author="p0", role="viewer", server_ms=1)
    chain.delete(2, author="host", role="host", server_ms=2)
    assert len(chain.records) == 5
    assert chain.records[0] == first  # never rewritten
    assert [r.op for r in chain.records] == ["beat", "beat", "beat", "edit", "delete"]
    standing = chain.beats()
    assert [b.beat for b in standing] == [3, 1]
    assert standing[1].emotion == "fear" and standing[1].t_in_ms == 9000
    assert chain.creator(1) == "p0"
    assert B.fold(chain.records) == standing
    with pytest.raises(B.BeatError, match="no beat 2"):
        chain.delete(2, author="host", role="host", server_ms=3)
    assert B.check_chain(chain.records, chain.head).ok
    # a chain rebuilt from its records is the same chain
    assert B.BeatChain("r", chain.records).beats() == standing


def test_chain_refuses_a_record_that_does_not_extend_it() -> None:
    recs = _chain(3).records
    with pytest.raises(B.BeatError, match="does not extend"):
        B.BeatChain("r", [recs[0], recs[2]])
    with pytest.raises(B.BeatError, match="hash"):
        B.BeatChain("r", [dataclasses.replace(recs[0], note="x")])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"emotion_name": "happy"}, "unknown emotion 'happy'"),
        ({"t_in_s": -0.5}, "outside the scene"),
        ({"t_in_s": 31.0}, "outside the scene"),
        ({"t_in_s": float("nan")}, "number of seconds"),
        ({"intensity": 1.5}, "between 0 and 1"),
        ({"note": "x" * 281}, "281 characters; the limit is 280"),
        ({"note": "a\u202eb"}, "U\\+202E"),
        ({"t_out_s": 1.0}, "end after it starts"),
        ({"t_out_s": 40.0}, "within the scene"),
        ({"point": (1.2, 0.5)}, "on the frame"),
        ({"point": (0.5,)}, "two numbers"),
        ({"scene": ""}, "scene"),
    ],
)
def test_invalid_fields_are_refused_with_one_sentence(kwargs: dict, message: str) -> None:
    base = {"scene": "s", "t_in_s": 2.0, "emotion_name": "joy", "scene_duration_s": 30.0}
    base.update(kwargs)
    with pytest.raises(B.BeatError, match=message.replace("(", r"\(")):
        B.validate_fields(**base)


def test_fields_are_quantised() -> None:
    f = B.validate_fields(
        scene="s", t_in_s=1.23456, t_out_s=2.0, emotion_name="joy", intensity=0.33333,
        point=(0.123456, 0.9), note="  ok  ",
    )  # fmt: skip
    assert (f.t_in_ms, f.t_out_ms, f.intensity, f.point, f.note) == (
        1235, 2000, 0.333, (0.1235, 0.9), "ok",
    )  # fmt: skip
    assert B.validate_fields(scene="s", t_in_s=0, emotion_name="joy", note="x" * 280).note


def test_record_reader_is_strict() -> None:
    d = _chain(1).records[0].to_dict()
    with pytest.raises(B.BeatError, match="missing note"):
        B.beat_from_dict({k: v for k, v in d.items() if k != "note"})
    with pytest.raises(B.BeatError, match="unexpected extra"):
        B.beat_from_dict({**d, "extra": 1})
    with pytest.raises(B.BeatError, match="integer"):
        B.beat_from_dict({**d, "t_in_ms": 1.5})
    with pytest.raises(B.BeatError, match="point"):
        B.beat_from_dict({**d, "point": [1]})


def _beat(t: float, emo: str, author: str, intensity: float = 1.0, t_out: float | None = None):
    chain = B.BeatChain("r")
    f = B.validate_fields(scene="s", t_in_s=t, t_out_s=t_out, emotion_name=emo, intensity=intensity)
    return chain.add(f, author=author, role="viewer", server_ms=0)


def test_annotated_arc_follows_the_beats() -> None:
    beats = [_beat(5, "joy", "a"), _beat(5.5, "joy", "b"), _beat(20, "sadness", "a")]
    arc = B.annotated_arc(beats, 30.0)
    assert arc.people == 2
    at = lambda t: int(np.argmin(abs(arc.t_s - t)))  # noqa: E731
    assert arc.valence[at(5)] == pytest.approx(B.EMOTION_BY_NAME["joy"].valence, abs=0.01)
    assert arc.valence[at(20)] == pytest.approx(B.EMOTION_BY_NAME["sadness"].valence, abs=0.01)
    assert math.isnan(arc.valence[at(12.5)])  # nobody marked anything there
    assert arc.density[at(5.25)] > arc.density[at(20)] > arc.density[at(12.5)]
    # density integrates to beats per person
    step = arc.t_s[1] - arc.t_s[0]
    assert float(arc.density.sum() * step) == pytest.approx(3 / 2, rel=0.02)
    # two clusters, two moments: the tails of the bumps are not moments of their own
    assert B.top_moments(beats, arc, n=5) == pytest.approx([5.25, 20.0], abs=0.3)


def test_a_range_spreads_over_its_span() -> None:
    arc = B.annotated_arc([_beat(10, "fear", "a", t_out=20)], 30.0)
    inside = arc.density[(arc.t_s > 12) & (arc.t_s < 18)]
    assert inside.min() > 0.5 * inside.max()
    assert not np.isnan(arc.arousal[(arc.t_s > 11) & (arc.t_s < 19)]).any()


def test_krippendorff_alpha_matches_the_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example: 0.743
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[c[u] for c in coders if c[u] is not None] for u in range(12)]
    assert B.krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=0.001)
    assert B.krippendorff_alpha_nominal([[1, 1], [2, 2]]) == pytest.approx(1.0)
    assert B.krippendorff_alpha_nominal([[1], [2]]) is None
    assert B.krippendorff_alpha_nominal([[1, 1], [1, 1]]) is None


def test_agreement_between_people() -> None:
    same = [
        _beat(t, e, who) for who in ("a", "b") for t, e in ((3, "joy"), (9, "fear"), (15, "anger"))
    ]
    agree = B.agreement(same, 20.0)
    assert agree.alpha == pytest.approx(1.0) and agree.timing_f1 == pytest.approx(1.0)
    assert agree.pairable_bins == 3 and set(agree.pairs) == {"a|b"}
    differ = [_beat(3, "joy", "a"), _beat(3.2, "sadness", "b"), _beat(9, "fear", "a"),
              _beat(9.1, "trust", "b"), _beat(16, "anger", "a")]  # fmt: skip
    d = B.agreement(differ, 20.0)
    assert d.alpha is not None and d.alpha < 0.2
    assert d.timing_f1 == pytest.approx(2 * 2 / 5)
    assert B.agreement([_beat(3, "joy", "a")], 20.0).timing_f1 is None


def test_bots_plan_beats_near_the_strong_moments() -> None:
    moments = [(5.0, 1.0, -0.6, 0.8), (14.0, 0.5, 0.7, 0.6), (25.0, 0.8, -0.7, 0.2)]
    rng = np.random.default_rng(3)
    plans = [B.plan_beats(moments, 30.0, rng) for _ in range(200)]
    flat = [p for plan in plans for p in plan]
    # most people mark most moments, a bit after them (reaction time), never before the scene
    assert 0.6 < len(flat) / (200 * 3) < 0.8
    delays = []
    for p in flat:
        moment = min(moments, key=lambda m: abs(m[0] - p.t_s))
        delays.append(p.t_s - moment[0])
        assert 0.0 <= p.t_s <= 30.0 and 0.05 <= p.intensity <= 1.0
    assert 0.4 < float(np.median(delays)) < 0.8 and min(delays) > 0
    # they mostly agree on the emotion the screenplay puts there
    at_5 = [p.emotion for p in flat if abs(p.t_s - 5.0) < 3]
    top = B.nearest_emotion(-0.6, 0.8).name
    assert top in ("fear", "anger") and at_5.count(top) / len(at_5) > 0.7
    assert any(p.point for p in flat) and any(p.t_out_s for p in flat)
    for p in flat:  # every plan is a valid beat
        B.validate_fields(scene="s", t_in_s=p.t_s, t_out_s=p.t_out_s, emotion_name=p.emotion,
                          intensity=p.intensity, point=p.point, scene_duration_s=30.0)  # fmt: skip
