"""Emotional beats: the record, its hash chain, the annotated arc and agreement between people.

A beat is what someone in the bar marks while a scene plays: an emotion from Plutchik's eight at a
scene time (or over a range), how strongly, an optional note and an optional point on the frame.
Each room keeps one append-only chain of records. Creating, editing and deleting a beat each add
a record; nothing is ever rewritten. Every record carries the hash of the record before it in its
room and its own hash over a canonical serialisation, so an export can be checked later by anyone
with the file alone (`neonbar verify`): change one character of a record and its hash no longer
matches; drop or reorder records and the links break.

Sans-I/O and engine-independent: the server feeds records in, the exports and the report read
them out. Numbers in the hashed form are integers or short decimals (milliseconds, thousandths)
so the serialisation is the same on every machine and survives a round trip through JSON or
OpenTimelineIO's metadata unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MAX_NOTE_CHARS = 280
MAX_AUTHOR_CHARS = 32
MAX_ROOM_CHARS = 64
MAX_SCENE_CHARS = 128
GENESIS_HASH = "0" * 64
HASH_ALGORITHM = "sha256"
CHAIN_VERSION = 1

Op = Literal["beat", "edit", "delete"]
OPS: tuple[str, ...] = ("beat", "edit", "delete")


class BeatError(ValueError):
    """A beat that cannot be accepted; the message is one sentence a person can act on."""


# ------------------------------------------------------------------------------ the eight


@dataclass(frozen=True)
class Emotion:
    """One of Plutchik's eight primary emotions.

    Attributes:
        name: lower-case name, the wire value.
        key: the number key (1-8) that marks it in the bar.
        colour: '#rrggbb', the hue of Plutchik's wheel as the bar draws it.
        valence: -1 (unpleasant) .. 1 (pleasant), Russell's circumplex placement.
        arousal: 0 (calm) .. 1 (activated), same scale as the intended arc's arousal.
        otio_colour: the OpenTimelineIO MarkerColor name used in OTIO and CMX EDL exports.
        resolve_colour: the DaVinci Resolve marker colour used in the Resolve marker EDL.
    """

    name: str
    key: int
    colour: str
    valence: float
    arousal: float
    otio_colour: str
    resolve_colour: str

    @property
    def rgb(self) -> tuple[float, float, float]:
        """The colour as three floats in 0..1."""
        return tuple(int(self.colour[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


# Order is the wheel's order and the keys' order. OTIO has eleven named marker colours and one
# green, so trust (Plutchik's pale green) takes GREEN and fear (his dark green) takes BLACK;
# Resolve has both (Mint, Green). Valence/arousal: positions on Russell's circumplex as used in
# affective-computing annotation tools (e.g. anger and fear high arousal, negative valence).
EMOTIONS: tuple[Emotion, ...] = (
    Emotion("joy", 1, "#ffd21f", 0.80, 0.60, "YELLOW", "Yellow"),
    Emotion("trust", 2, "#8fd14f", 0.55, 0.30, "GREEN", "Mint"),
    Emotion("fear", 3, "#00a651", -0.65, 0.80, "BLACK", "Green"),
    Emotion("surprise", 4, "#2bc4e0", 0.10, 0.85, "CYAN", "Cyan"),
    Emotion("sadness", 5, "#3a6fe0", -0.70, 0.20, "BLUE", "Blue"),
    Emotion("disgust", 6, "#a05ad8", -0.60, 0.45, "PURPLE", "Purple"),
    Emotion("anger", 7, "#f0323c", -0.55, 0.85, "RED", "Red"),
    Emotion("anticipation", 8, "#ff8c1a", 0.35, 0.60, "ORANGE", "Sand"),
)
EMOTION_BY_NAME: dict[str, Emotion] = {e.name: e for e in EMOTIONS}
EMOTION_BY_KEY: dict[int, Emotion] = {e.key: e for e in EMOTIONS}
EMOTION_NAMES: tuple[str, ...] = tuple(e.name for e in EMOTIONS)


def emotion(name: str) -> Emotion:
    """The emotion called `name`; BeatError naming the eight otherwise."""
    try:
        return EMOTION_BY_NAME[name]
    except (KeyError, TypeError):
        raise BeatError(
            f"unknown emotion {name!r}: use one of {', '.join(EMOTION_NAMES)}"
        ) from None


# ------------------------------------------------------------------------------ the record


@dataclass(frozen=True)
class Beat:
    """One record of a room's beat chain.

    `op` says what the record does: "beat" creates beat number `beat` (its own `seq`), "edit"
    replaces that beat's fields with the ones in this record, "delete" removes it (the fields then
    repeat the beat's last state so a deleted beat can still be read in an audit).

    Attributes:
        room: room name.
        seq: position in the room's chain, 1, 2, 3, ...
        op: "beat", "edit" or "delete".
        beat: the beat this record is about (the seq of its "beat" record).
        scene: scene name.
        t_in_ms: scene time the beat starts, milliseconds.
        t_out_ms: scene time a range ends, milliseconds; None for a point in time.
        emotion: one of EMOTION_NAMES.
        intensity: 0..1 in thousandths.
        note: up to MAX_NOTE_CHARS characters, may be empty.
        point: (x, y) on the frame, 0..1 each from the top-left, in ten-thousandths; or None.
        author: display name of whoever made this record.
        role: their role in the room ("host", "collaborator", "viewer").
        server_ms: server wall clock when the record was committed, milliseconds since the epoch.
        prev: hash of the previous record in the room (GENESIS_HASH for the first).
        hash: sha256 of the canonical form of everything above.
    """

    room: str
    seq: int
    op: str
    beat: int
    scene: str
    t_in_ms: int
    t_out_ms: int | None
    emotion: str
    intensity: float
    note: str
    point: tuple[float, float] | None
    author: str
    role: str
    server_ms: int
    prev: str
    hash: str

    @property
    def t_in_s(self) -> float:
        return self.t_in_ms / 1000.0

    @property
    def t_out_s(self) -> float | None:
        return None if self.t_out_ms is None else self.t_out_ms / 1000.0

    @property
    def is_range(self) -> bool:
        return self.t_out_ms is not None

    def body(self) -> dict[str, Any]:
        """The hashed fields, as plain JSON values (everything but `hash`)."""
        return {
            "v": CHAIN_VERSION,
            "room": self.room,
            "seq": self.seq,
            "op": self.op,
            "beat": self.beat,
            "scene": self.scene,
            "t_in_ms": self.t_in_ms,
            "t_out_ms": self.t_out_ms,
            "emotion": self.emotion,
            "intensity": self.intensity,
            "note": self.note,
            "point": None if self.point is None else [self.point[0], self.point[1]],
            "author": self.author,
            "role": self.role,
            "server_ms": self.server_ms,
            "prev": self.prev,
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole record, hash included: what storage, the wire and exports carry."""
        out = self.body()
        out["hash"] = self.hash
        return out

    def expected_hash(self) -> str:
        """The hash this record's fields give (equal to `hash` unless it was altered)."""
        return record_hash(self.body())


_RECORD_KEYS = frozenset(
    (
        "v",
        "room",
        "seq",
        "op",
        "beat",
        "scene",
        "t_in_ms",
        "t_out_ms",
        "emotion",
        "intensity",
        "note",
        "point",
        "author",
        "role",
        "server_ms",
        "prev",
        "hash",
    )
)


def canonical_bytes(body: Mapping[str, Any]) -> bytes:
    """The canonical serialisation: UTF-8 JSON, keys sorted, no spaces, no NaN."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(body: Mapping[str, Any]) -> str:
    """sha256 (hex) of a record body's canonical serialisation."""
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )


def beat_from_dict(data: Any) -> Beat:
    """Read a record written by `Beat.to_dict` (from storage or an export), strictly.

    Raises BeatError for a missing or extra key or a value of the wrong type; it does not check
    the hash (that is the chain's job, so verify can say *which* record differs).
    """
    if not isinstance(data, Mapping):
        raise BeatError("a beat record must be a JSON object")
    keys = set(data)
    if keys != _RECORD_KEYS:
        missing = sorted(_RECORD_KEYS - keys)
        extra = sorted(keys - _RECORD_KEYS)
        what = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise BeatError(f"beat record has the wrong fields ({what})")
    if data["v"] != CHAIN_VERSION:
        raise BeatError(f"beat record version {data['v']!r} is not {CHAIN_VERSION}")
    for name in ("seq", "beat", "t_in_ms", "server_ms"):
        if not _is_int(data[name]):
            raise BeatError(f"beat record field {name} must be an integer")
    if data["t_out_ms"] is not None and not _is_int(data["t_out_ms"]):
        raise BeatError("beat record field t_out_ms must be an integer or null")
    for name in ("room", "op", "scene", "emotion", "note", "author", "role", "prev", "hash"):
        if not isinstance(data[name], str):
            raise BeatError(f"beat record field {name} must be a string")
    if not _is_number(data["intensity"]):
        raise BeatError("beat record field intensity must be a number")
    point = data["point"]
    if point is not None:
        ok = isinstance(point, (list, tuple)) and len(point) == 2 and all(map(_is_number, point))
        if not ok:
            raise BeatError("beat record field point must be [x, y] or null")
        point = (point[0], point[1])
    return Beat(
        room=data["room"],
        seq=data["seq"],
        op=data["op"],
        beat=data["beat"],
        scene=data["scene"],
        t_in_ms=data["t_in_ms"],
        t_out_ms=data["t_out_ms"],
        emotion=data["emotion"],
        intensity=data["intensity"],
        note=data["note"],
        point=point,
        author=data["author"],
        role=data["role"],
        server_ms=data["server_ms"],
        prev=data["prev"],
        hash=data["hash"],
    )


# ------------------------------------------------------------------------------ validation


@dataclass(frozen=True)
class BeatFields:
    """What a person chooses when they mark a beat, validated and quantised."""

    scene: str
    t_in_ms: int
    t_out_ms: int | None
    emotion: str
    intensity: float
    note: str
    point: tuple[float, float] | None


def validate_fields(
    *,
    scene: str,
    t_in_s: float,
    emotion_name: str,
    intensity: float = 0.5,
    t_out_s: float | None = None,
    note: str = "",
    point: Sequence[float] | None = None,
    scene_duration_s: float | None = None,
) -> BeatFields:
    """Check what someone marked and quantise it for the chain.

    Args:
        scene: scene name (non-empty, at most MAX_SCENE_CHARS).
        t_in_s: scene time, seconds, within [0, scene_duration_s] when that is known.
        emotion_name: one of EMOTION_NAMES.
        intensity: 0..1.
        t_out_s: end of a range, seconds, after t_in_s and within the scene; None for a point.
        note: at most MAX_NOTE_CHARS characters, under the chat's character rules
            (neonbar.text: no controls, no invisible or reordering format characters).
        point: (x, y) in 0..1 from the frame's top-left, or None.
        scene_duration_s: the scene's length, seconds; None when the caller does not know it.

    Raises:
        BeatError: one sentence saying what is wrong.
    """
    if not isinstance(scene, str) or not scene.strip() or len(scene) > MAX_SCENE_CHARS:
        raise BeatError("a beat needs the scene it belongs to")
    emo = emotion(emotion_name)
    if not _is_number(t_in_s):
        raise BeatError("the beat's time must be a number of seconds")
    if not _is_number(intensity) or not 0.0 <= intensity <= 1.0:
        raise BeatError("intensity must be between 0 and 1")
    limit_s = scene_duration_s if scene_duration_s is not None else math.inf
    if not 0.0 <= t_in_s <= limit_s:
        raise BeatError(
            f"time {t_in_s:.3f} s is outside the scene (0 to {limit_s:.3f} s)"
            if scene_duration_s is not None
            else f"time {t_in_s:.3f} s is before the scene starts"
        )
    t_out_ms: int | None = None
    t_in_ms = round(t_in_s * 1000.0)
    if t_out_s is not None:
        if not _is_number(t_out_s):
            raise BeatError("the range's end must be a number of seconds")
        if not t_in_s < t_out_s <= limit_s:
            raise BeatError("a range must end after it starts and within the scene")
        t_out_ms = round(t_out_s * 1000.0)
        if t_out_ms <= t_in_ms:
            raise BeatError("a range must be at least a millisecond long")
    if not isinstance(note, str):
        raise BeatError("the note must be text")
    if len(note) > MAX_NOTE_CHARS:
        raise BeatError(f"the note is {len(note)} characters; the limit is {MAX_NOTE_CHARS}")
    if note.strip():
        from neonbar.text import TextRefused, check_chat  # the one home of the text rules

        try:
            check_chat(note)
        except TextRefused as exc:
            raise BeatError(f"the note: {exc}") from None
    pt: tuple[float, float] | None = None
    if point is not None:
        if not (
            isinstance(point, (list, tuple)) and len(point) == 2 and all(map(_is_number, point))
        ):
            raise BeatError("the point must be two numbers x, y")
        x, y = float(point[0]), float(point[1])
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise BeatError("the point must lie on the frame (x and y between 0 and 1)")
        pt = (round(x, 4), round(y, 4))
    return BeatFields(
        scene=scene,
        t_in_ms=t_in_ms,
        t_out_ms=t_out_ms,
        emotion=emo.name,
        intensity=round(float(intensity), 3),
        note=note.strip(),
        point=pt,
    )


# ------------------------------------------------------------------------------ the chain


@dataclass(frozen=True)
class ChainCheck:
    """The result of recomputing a chain.

    `first_bad` is the seq of the first record that differs (its hash, its link to the record
    before, or its place in the sequence); None when the chain is intact.
    """

    ok: bool
    records: int
    head: str
    first_bad: int | None = None
    reason: str = ""

    def sentence(self) -> str:
        if self.ok:
            return f"intact: {self.records} records, head {self.head[:16]}"
        return f"NOT intact: record {self.first_bad} differs ({self.reason})"


def check_chain(records: Iterable[Beat], head: str | None = None) -> ChainCheck:
    """Recompute a room's chain from its first record.

    Args:
        records: the chain in order, starting at seq 1.
        head: the head hash the exporter claimed, checked against the last record if given.
    """
    prev = GENESIS_HASH
    count = 0
    room: str | None = None
    for expected_seq, rec in enumerate(records, start=1):
        count += 1
        if room is None:
            room = rec.room
        if rec.seq != expected_seq:
            return ChainCheck(False, count, prev, rec.seq, f"expected seq {expected_seq}")
        if rec.room != room:
            return ChainCheck(False, count, prev, rec.seq, "belongs to another room")
        if rec.prev != prev:
            return ChainCheck(False, count, prev, rec.seq, "link to the previous record broken")
        if rec.expected_hash() != rec.hash:
            return ChainCheck(False, count, prev, rec.seq, "content does not match its hash")
        prev = rec.hash
    if head is not None and head != prev:
        return ChainCheck(False, count, prev, count + 1 if count else 1, "head hash differs")
    return ChainCheck(True, count, prev)


class BeatChain:
    """One room's chain: appends records, folds them into the beats as they stand now.

    Not thread-safe; the server's room owns one per room and appends on its event loop.
    """

    def __init__(self, room: str, records: Iterable[Beat] = ()) -> None:
        self.room = room
        self.records: list[Beat] = []
        self.current: dict[int, Beat] = {}  # beat id -> its latest "beat"/"edit" record
        for rec in records:
            self._take(rec)

    @property
    def head(self) -> str:
        return self.records[-1].hash if self.records else GENESIS_HASH

    @property
    def next_seq(self) -> int:
        return len(self.records) + 1

    def _take(self, rec: Beat) -> None:
        if rec.seq != self.next_seq or rec.prev != self.head or rec.room != self.room:
            raise BeatError(f"record {rec.seq} does not extend room {self.room}'s chain")
        if rec.expected_hash() != rec.hash:
            raise BeatError(f"record {rec.seq} does not match its hash")
        self.records.append(rec)
        if rec.op == "delete":
            self.current.pop(rec.beat, None)
        else:
            self.current[rec.beat] = rec

    def _make(
        self, op: str, beat_id: int, fields: BeatFields, author: str, role: str, server_ms: int
    ) -> Beat:
        seq = self.next_seq
        unsigned = Beat(
            room=self.room,
            seq=seq,
            op=op,
            beat=seq if op == "beat" else beat_id,
            scene=fields.scene,
            t_in_ms=fields.t_in_ms,
            t_out_ms=fields.t_out_ms,
            emotion=fields.emotion,
            intensity=fields.intensity,
            note=fields.note,
            point=fields.point,
            author=author,
            role=role,
            server_ms=int(server_ms),
            prev=self.head,
            hash="",
        )
        return replace(unsigned, hash=unsigned.expected_hash())

    def add(self, fields: BeatFields, *, author: str, role: str, server_ms: int) -> Beat:
        """Append a new beat and return its record."""
        rec = self._make("beat", 0, fields, author, role, server_ms)
        self._take(rec)
        return rec

    def edit(
        self, beat_id: int, fields: BeatFields, *, author: str, role: str, server_ms: int
    ) -> Beat:
        """Append an edit of a standing beat (the caller checks who may edit)."""
        self.standing(beat_id)
        rec = self._make("edit", beat_id, fields, author, role, server_ms)
        self._take(rec)
        return rec

    def delete(self, beat_id: int, *, author: str, role: str, server_ms: int) -> Beat:
        """Append the deletion of a standing beat."""
        last = self.standing(beat_id)
        fields = BeatFields(
            last.scene,
            last.t_in_ms,
            last.t_out_ms,
            last.emotion,
            last.intensity,
            last.note,
            last.point,
        )
        rec = self._make("delete", beat_id, fields, author, role, server_ms)
        self._take(rec)
        return rec

    def standing(self, beat_id: int) -> Beat:
        """The latest state of a beat that exists and is not deleted; BeatError otherwise."""
        rec = self.current.get(beat_id)
        if rec is None:
            raise BeatError(f"there is no beat {beat_id} in this room (deleted or never made)")
        return rec

    def creator(self, beat_id: int) -> str:
        """Who made beat `beat_id` (edits do not change the owner)."""
        return self.records[beat_id - 1].author

    def beats(self, scene: str | None = None) -> list[Beat]:
        """The beats as they stand now (edits applied, deletions gone), by scene time."""
        out = [b for b in self.current.values() if scene is None or b.scene == scene]
        out.sort(key=lambda b: (b.t_in_ms, b.beat))
        return out


def fold(records: Iterable[Beat]) -> list[Beat]:
    """Beats as they stand after applying every edit and deletion, ordered by scene time."""
    current: dict[int, Beat] = {}
    for rec in records:
        if rec.op == "delete":
            current.pop(rec.beat, None)
        else:
            current[rec.beat] = rec
    return sorted(current.values(), key=lambda b: (b.t_in_ms, b.beat))


# ------------------------------------------------------------------------------ the annotated arc


@dataclass(frozen=True)
class AnnotatedArc:
    """Beats over scene time as valence, arousal and density.

    Attributes:
        t_s: sample times, seconds.
        valence: intensity-weighted mean valence of the beats near each time (-1..1); NaN where
            nobody marked anything within a few kernel widths.
        arousal: the same for arousal (0..1).
        density: beats per second per person marking (kernel density), >= 0.
        people: how many distinct authors the arc is made from.
    """

    t_s: FloatArray
    valence: FloatArray
    arousal: FloatArray
    density: FloatArray
    people: int


def annotated_arc(
    beats: Sequence[Beat],
    duration_s: float,
    *,
    step_s: float = 0.25,
    sigma_s: float = 1.5,
) -> AnnotatedArc:
    """Smooth beats into an arc comparable with the screenplay's intended arc.

    Each beat is a Gaussian bump of width `sigma_s` at its time weighted by its intensity (a
    range is spread evenly over its span). Valence and arousal are the emotion coordinates
    averaged under those bumps; where the total weight is below 2 % of one full-intensity beat
    at its peak the mood is undefined (NaN) rather than pulled toward zero.

    Args:
        beats: the standing beats of one scene (see `fold`).
        duration_s: scene length, seconds.
        step_s: sample spacing, seconds.
        sigma_s: kernel width, seconds (1.5 s: about the spread of people marking one moment).
    """
    n = max(2, math.floor(duration_s / step_s) + 1)
    t = np.linspace(0.0, max(duration_s, step_s), n)
    weight = np.zeros(n)
    val = np.zeros(n)
    aro = np.zeros(n)
    count = np.zeros(n)
    norm = 1.0 / (sigma_s * math.sqrt(2.0 * math.pi))
    for b in beats:
        emo = EMOTION_BY_NAME[b.emotion]
        if b.t_out_ms is None:
            centres = np.array([b.t_in_s])
        else:
            span = b.t_out_ms / 1000.0 - b.t_in_s
            centres = np.linspace(b.t_in_s, b.t_in_s + span, max(2, int(span / step_s) + 1))
        share = 1.0 / len(centres)
        for c in centres:
            k = np.exp(-0.5 * ((t - c) / sigma_s) ** 2)
            w = k * (b.intensity * share)
            weight += w
            val += w * emo.valence
            aro += w * emo.arousal
            count += k * norm * share
    people = len({b.author for b in beats})
    defined = weight > 0.02
    with np.errstate(invalid="ignore", divide="ignore"):
        valence = np.where(defined, val / np.where(defined, weight, 1.0), np.nan)
        arousal = np.where(defined, aro / np.where(defined, weight, 1.0), np.nan)
    density = count / max(1, people)
    return AnnotatedArc(t, valence, arousal, density, people)


def top_moments(
    beats: Sequence[Beat], arc: AnnotatedArc, n: int = 5, min_gap_s: float = 3.0
) -> list[float]:
    """Up to `n` scene times where beats cluster, in time order: peaks of the density at least
    `min_gap_s` apart and at least a fifth as dense as the densest (a lone beat far from the
    others is not a "top" moment of a busy scene, but a scene of lone beats still has some)."""
    d = arc.density
    if not beats or len(d) < 3 or float(d.max()) <= 0:
        return []
    inner = np.flatnonzero((d[1:-1] >= d[:-2]) & (d[1:-1] > d[2:])) + 1
    peaks = [int(i) for i in inner]
    for edge in (0, len(d) - 1):  # a cluster right at the start or end of the scene
        neighbour = d[1] if edge == 0 else d[-2]
        if d[edge] > neighbour:
            peaks.append(edge)
    floor = 0.2 * float(d.max())
    peaks = sorted((i for i in peaks if d[i] >= floor), key=lambda i: (-d[i], i))
    picked: list[float] = []
    for i in peaks:
        t = float(arc.t_s[i])
        if all(abs(t - p) >= min_gap_s for p in picked):
            picked.append(t)
            if len(picked) == n:
                break
    return sorted(picked)


# ------------------------------------------------------------------------------ agreement


@dataclass(frozen=True)
class Agreement:
    """How much the people who marked a scene agree.

    Attributes:
        alpha: Krippendorff's alpha (nominal) over time bins: each bin is a unit, each person a
            coder, their value the emotion they marked most strongly in that bin; bins where a
            person marked nothing are missing for them. 1 = perfect, 0 = chance, < 0 = worse
            than chance; None when fewer than two people marked the same bin, or only one
            emotion occurs at all (then alpha is undefined).
        pairable_bins: bins with at least two people's values (the units alpha is computed on).
        timing_f1: per pair of people, the F1 of matching each one's beats to the other's
            within `tolerance_s` regardless of emotion, averaged over pairs; None with < 2 people.
        pairs: {"a|b": F1} for every pair.
        bin_s: bin width, seconds.
        tolerance_s: timing tolerance, seconds.
    """

    alpha: float | None
    pairable_bins: int
    timing_f1: float | None
    pairs: dict[str, float]
    bin_s: float
    tolerance_s: float


def krippendorff_alpha_nominal(units: Sequence[Sequence[Any]]) -> float | None:
    """Krippendorff's alpha for nominal data.

    Args:
        units: for each unit, the values the coders gave it (missing values left out).

    Returns:
        alpha, or None when it is undefined (no unit with two values, or a single category).
    """
    pairable = [list(u) for u in units if len(u) >= 2]
    if not pairable:
        return None
    cats = sorted({v for u in pairable for v in u}, key=repr)
    index = {c: i for i, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for u in pairable:
        m = len(u)
        counts = np.zeros(len(cats))
        for v in u:
            counts[index[v]] += 1
        # coincidences: every ordered pair of values from different coders in the unit
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    disagree_observed = o.sum() - np.trace(o)
    disagree_expected = n_c.sum() ** 2 - (n_c**2).sum()
    if disagree_expected <= 0:
        return None
    return float(1.0 - (n - 1.0) * disagree_observed / disagree_expected)


def agreement(
    beats: Sequence[Beat], duration_s: float, *, bin_s: float = 2.0, tolerance_s: float = 1.5
) -> Agreement:
    """Agreement between the people who marked one scene (see `Agreement`)."""
    by_author: dict[str, list[Beat]] = {}
    for b in beats:
        by_author.setdefault(b.author, []).append(b)
    n_bins = max(1, math.ceil(max(duration_s, bin_s) / bin_s))
    units: list[list[str]] = [[] for _ in range(n_bins)]
    for marks in by_author.values():
        strength: dict[int, dict[str, float]] = {}
        for b in marks:
            i = min(n_bins - 1, int(b.t_in_s // bin_s))
            per = strength.setdefault(i, {})
            per[b.emotion] = per.get(b.emotion, 0.0) + b.intensity
        for i, per in strength.items():
            # strongest emotion in the bin; ties go to the wheel's order
            units[i].append(
                max(EMOTION_NAMES, key=lambda e: (per.get(e, -1.0), -EMOTION_NAMES.index(e)))
            )
    alpha = krippendorff_alpha_nominal(units)
    pairable = sum(1 for u in units if len(u) >= 2)
    authors = sorted(by_author)
    pairs: dict[str, float] = {}
    for i, a in enumerate(authors):
        for b_name in authors[i + 1 :]:
            pairs[f"{a}|{b_name}"] = _timing_f1(
                [x.t_in_s for x in by_author[a]], [x.t_in_s for x in by_author[b_name]], tolerance_s
            )
    timing = float(np.mean(list(pairs.values()))) if pairs else None
    return Agreement(alpha, pairable, timing, pairs, bin_s, tolerance_s)


def _timing_f1(a: Sequence[float], b: Sequence[float], tolerance_s: float) -> float:
    """F1 of a greedy one-to-one matching of two sorted lists of times within a tolerance."""
    xs, ys = sorted(a), sorted(b)
    i = j = matched = 0
    while i < len(xs) and j < len(ys):
        d = xs[i] - ys[j]
        if abs(d) <= tolerance_s:
            matched += 1
            i += 1
            j += 1
        elif d < 0:
            i += 1
        else:
            j += 1
    total = len(xs) + len(ys)
    return 2.0 * matched / total if total else 0.0


# ------------------------------------------------------------------------------ bots


def nearest_emotion(valence: float, arousal: float, rank: int = 0) -> Emotion:
    """The emotion whose circumplex position is `rank`-th closest to (valence, arousal)."""
    order = sorted(
        EMOTIONS, key=lambda e: ((e.valence - valence) ** 2 + (e.arousal - arousal) ** 2, e.key)
    )
    return order[min(rank, len(order) - 1)]


@dataclass(frozen=True)
class PlannedBeat:
    """A beat a bot means to mark when the play head passes `t_s`."""

    t_s: float
    emotion: str
    intensity: float
    point: tuple[float, float] | None
    t_out_s: float | None = None


def plan_beats(
    moments: Sequence[tuple[float, float, float, float]],
    duration_s: float,
    rng: np.random.Generator,
    *,
    take_p: float = 0.7,
    point_p: float = 0.4,
    range_p: float = 0.1,
) -> list[PlannedBeat]:
    """How one simulated person marks a scene, from its strong moments.

    People react after the moment (a log-normal delay, median ~0.6 s, as reaction times are),
    skip some moments, mostly agree on the emotion the screenplay puts there (the nearest one
    on the circumplex, the second nearest one time in five) and mark it about as strongly as the
    moment is strong. A few mark a range instead, and some point at the frame.

    Args:
        moments: (t_s, strength 0..1, valence, arousal) per strong moment of the intended arc.
        duration_s: scene length; nothing is planned past it.
        rng: this person's random generator.
    """
    out: list[PlannedBeat] = []
    for t_s, strength, valence, arousal in moments:
        if rng.random() > take_p:
            continue
        delay = float(rng.lognormal(mean=math.log(0.6), sigma=0.45))
        t = min(max(0.0, t_s + delay), duration_s)
        emo = nearest_emotion(valence, arousal, rank=1 if rng.random() < 0.2 else 0)
        intensity = float(np.clip(0.35 + 0.6 * strength + rng.normal(0.0, 0.12), 0.05, 1.0))
        point = None
        if rng.random() < point_p:
            x, y = rng.normal(0.5, 0.15, 2).clip(0.02, 0.98)
            point = (round(float(x), 4), round(float(y), 4))
        t_out = None
        if rng.random() < range_p and t + 1.0 < duration_s:
            t_out = min(duration_s, t + float(rng.uniform(1.0, 4.0)))
        out.append(PlannedBeat(round(t, 3), emo.name, round(intensity, 3), point, t_out))
    return out


# ------------------------------------------------------------------------------ the wire


def _register_wire() -> tuple[Any, Any]:
    """The beat messages and events in neonbar.protocol's registries (docs/protocol.md, Beats)."""
    from neonbar import protocol as p

    fields = {
        # A scene's name (as playback's), never a path: the server looks it up in its library.
        "scene": p.F("str", max_len=MAX_SCENE_CHARS, pattern=r"^[a-z0-9][a-z0-9_-]*$"),
        "at": p.F("float", lo=0.0, hi=86_400.0),  # scene time, seconds
        "emotion": p.F("str", choices=EMOTION_NAMES),
        "intensity": p.F("float", required=False, lo=0.0, hi=1.0),
        "until": p.F("float", required=False, nullable=True, lo=0.0, hi=86_400.0),  # a range's end
        "note": p.F("str", required=False, max_len=MAX_NOTE_CHARS),
        "x": p.F("float", required=False, lo=0.0, hi=1.0),  # point on the frame, from the left
        "y": p.F("float", required=False, lo=0.0, hi=1.0),  # ... and from the top
        "cid": p.F("int", required=False, lo=0, hi=2**31 - 1),  # the sender's own id for it
    }
    p.client_message("beat", fields)
    p.client_message("beat_edit", {"beat": p.F("int", lo=1, hi=2**53), **fields})
    p.client_message(
        "beat_delete",
        {"beat": p.F("int", lo=1, hi=2**53), "cid": p.F("int", required=False, lo=0, hi=2**31 - 1)},
    )
    p.client_message("beat_policy", {"viewers": p.F("bool")})
    p.client_message(
        "pointer",
        {"on": p.F("bool"), "x": p.F("float", lo=0.0, hi=1.0), "y": p.F("float", lo=0.0, hi=1.0)},
    )
    p.server_message(
        "pointer",
        {
            "avatar": p.F("int", lo=0, hi=65535),
            "on": p.F("bool"),
            "x": p.F("float", lo=0.0, hi=1.0),
            "y": p.F("float", lo=0.0, hi=1.0),
        },
    )
    # welcome.beats = {"viewers": bool, "count": records in the room's chain}
    p.welcome_field("beats", p.F("any", required=False))
    # Standing beats for a newcomer, in pages, after welcome: records up to welcome.seq.
    p.server_message(
        "beats",
        {"recs": p.F("any"), "head": p.F("str", max_len=64), "done": p.F("bool")},
    )
    beat = p.event_kind(
        "beat",
        {
            "avatar": p.F("int", lo=0, hi=65535),
            "rec": p.F("any"),  # one chain record (Beat.to_dict); read it with beat_from_dict
            "cid": p.F("int", required=False, lo=0, hi=2**31 - 1),
        },
        kept=True,
        doc="a beat record was committed to the room's chain (new beat, edit or delete)",
    )
    policy = p.event_kind(
        "beat_policy",
        {"viewers": p.F("bool"), "by": p.F("int", lo=0, hi=65535)},
        kept=True,
        doc="the host let viewers mark beats, or stopped them",
    )
    return beat, policy


BEAT_EVENT, BEAT_POLICY_EVENT = _register_wire()
