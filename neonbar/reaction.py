"""Reactions: the Empathy Engine's wire records and the felt arc (spec: docs/reactions.md).

A client that opted in turns webcam frames into a few numbers per frame on its own machine; only
those numbers travel. One reaction is 14 bytes, little-endian:

    u32 scene time (ms) | i8 valence (-127..127) | u8 arousal (0..255)
    | u8 x 7 intensities (0..255, in INTENSITIES order) | u8 flags

sent at REACTION_HZ in `react` messages (1..MAX_REACTIONS_PER_MESSAGE records each). A
micro-expression (an onset-apex-offset event of at most 500 ms) travels as its own `micro`
message. The server folds reactions into the **felt arc**: per scene, per FELT_BUCKET_MS of scene
time, a count and the sums of valence, arousal and each intensity. Folding is one numpy pass over
all records a tick received, so 200 watchers at 10 Hz cost a few microseconds per tick.

Everything here is plain Python + numpy + stdlib sqlite3: no sockets, no engine.
"""

from __future__ import annotations

import math
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neonbar import protocol
from neonbar.protocol import F

INTENSITIES = (
    "smile",  # AU6 + AU12: cheeks up, lip corners up
    "brow_raise",  # AU1 + AU2
    "brow_lower",  # AU4
    "mouth_open",  # AU25-27
    "eye_widen",  # AU5
    "eye_close",  # AU43 / blink
    "lip_press",  # AU23 / AU24
)
N_INTENSITIES = len(INTENSITIES)

FLAG_FACE = 1  # a face was seen in this frame (otherwise the record says "no face")
FLAG_CALIBRATED = 2  # the sender's model was fine-tuned to its user
FLAG_SYNTHETIC = 4  # a bot made it up (follows the intended arc with noise)
FLAGS_KNOWN = FLAG_FACE | FLAG_CALIBRATED | FLAG_SYNTHETIC

REACTION_DTYPE = np.dtype(
    [
        ("t_ms", "<u4"),
        ("valence", "i1"),
        ("arousal", "u1"),
        ("intensity", "u1", (N_INTENSITIES,)),
        ("flags", "u1"),
    ]
)
REACTION_BYTES = REACTION_DTYPE.itemsize
_STRUCT = struct.Struct(f"<IbB{N_INTENSITIES}BB")
assert _STRUCT.size == REACTION_BYTES == 14

REACTION_HZ = 10.0
MAX_REACTIONS_PER_MESSAGE = 4
MAX_SCENE_MS = 4 * 3600 * 1000  # a reaction beyond four hours of scene time is refused
FELT_BUCKET_MS = 500

MICRO_KINDS = ("smile", "surprise", "frown", "lip_press", "contempt")
MICRO_MAX_MS = 500

# How far the felt arc may sit from the intended one before a branch counts it as a departure.
BRANCH_MARGIN = 0.08


@dataclass(frozen=True)
class Reaction:
    """One frame's reading. Times in seconds of scene time, values in their natural ranges."""

    t_s: float
    valence: float  # -1 .. 1
    arousal: float  # 0 .. 1
    intensities: tuple[float, ...] = (0.0,) * N_INTENSITIES  # each 0 .. 1
    flags: int = FLAG_FACE

    def intensity(self, name: str) -> float:
        return self.intensities[INTENSITIES.index(name)]


def _q(value: float, scale: float, lo: int, hi: int) -> int:
    if not math.isfinite(value):
        value = 0.0
    return max(lo, min(hi, round(value * scale)))


def pack(reaction: Reaction) -> bytes:
    """One Reaction -> 14 bytes (values are clamped into range, non-finite ones become 0)."""
    if len(reaction.intensities) != N_INTENSITIES:
        raise ValueError(f"a reaction has {N_INTENSITIES} intensities")
    t_ms = _q(reaction.t_s, 1000.0, 0, MAX_SCENE_MS)
    levels = (_q(x, 255.0, 0, 255) for x in reaction.intensities)
    valence = _q(reaction.valence, 127.0, -127, 127)
    arousal = _q(reaction.arousal, 255.0, 0, 255)
    return _STRUCT.pack(t_ms, valence, arousal, *levels, reaction.flags & FLAGS_KNOWN)


def unpack(blob: bytes) -> Reaction:
    """14 bytes -> Reaction (the inverse of `pack` up to quantisation)."""
    if len(blob) != REACTION_BYTES:
        raise ValueError(f"a reaction is {REACTION_BYTES} bytes, not {len(blob)}")
    t_ms, valence, arousal, *levels, flags = _STRUCT.unpack(blob)
    return Reaction(
        t_ms / 1000.0,
        max(-1.0, valence / 127.0),
        arousal / 255.0,
        tuple(level / 255.0 for level in levels),
        flags,
    )


def pack_many(reactions: Iterable[Reaction]) -> bytes:
    return b"".join(pack(r) for r in reactions)


def records(blob: bytes) -> NDArray[np.void]:
    """A run of packed reactions as a structured array (no copy). ValueError if ragged."""
    n, rest = divmod(len(blob), REACTION_BYTES)
    if rest:
        raise ValueError(f"reactions come in {REACTION_BYTES}-byte records")
    return np.frombuffer(blob, REACTION_DTYPE, n)


def check_records(blob: bytes) -> str | None:
    """Why a `react` payload is unacceptable, or None. Cheap enough for every message."""
    n, rest = divmod(len(blob), REACTION_BYTES)
    if rest or not 1 <= n <= MAX_REACTIONS_PER_MESSAGE:
        return f"r holds 1 to {MAX_REACTIONS_PER_MESSAGE} records of {REACTION_BYTES} bytes"
    # plain byte reads: for 1-4 records this is several times cheaper than numpy reductions
    for o in range(0, n * REACTION_BYTES, REACTION_BYTES):
        if int.from_bytes(blob[o : o + 4], "little") > MAX_SCENE_MS:
            return "a reaction's scene time is beyond four hours"
        if blob[o + 4] == 0x80:
            return "valence -128 is not used"
        if blob[o + REACTION_BYTES - 1] & ~FLAGS_KNOWN:
            return "unknown reaction flags"
    return None


# ----------------------------------------------------------------------------- wire schemas

REACT_SCHEMA: dict[str, F] = {
    # 1..4 packed reactions, oldest first
    "r": F("bytes", max_len=MAX_REACTIONS_PER_MESSAGE * REACTION_BYTES),
    "scene": F("str", required=False, nullable=True, max_len=64),
}
MICRO_SCHEMA: dict[str, F] = {
    "at": F("float", lo=0.0, hi=MAX_SCENE_MS / 1000.0),  # scene time of the apex, seconds
    "kind": F("str", choices=MICRO_KINDS),
    "strength": F("float", lo=0.0, hi=1.0),
    "dur_ms": F("int", lo=1, hi=MICRO_MAX_MS),
    "scene": F("str", required=False, nullable=True, max_len=64),
}
# server -> clients: the faces of everyone reacting, FACE_RECORD_BYTES per avatar
FACE_RECORD_BYTES = 2 + 2 + N_INTENSITIES  # u16 avatar | i8 valence | u8 arousal | u8 x 7
FACES_SCHEMA: dict[str, F] = {"d": F("bytes", max_len=FACE_RECORD_BYTES * 65536)}
FACES_HZ = 5.0  # 200 faces x 11 B x 5 Hz = 11 KB/s at most, under the 16 KB/s budget
BRANCH_EVENT: dict[str, F] = {
    "scene": F("str", max_len=64),  # the scene whose branch point was reached
    "point": F("str", max_len=64),
    "choice": F("str", max_len=64),  # the scene that plays next
    "label": F("str", max_len=120),
    "reason": F("str", max_len=400),
    "by": F("int", lo=0, hi=65535, required=False, nullable=True),  # host id when overridden
}
BRANCH_MSG: dict[str, F] = {  # host -> server: override the next branch point's choice
    "point": F("str", max_len=64),
    "choice": F("str", max_len=64),
}


def register_schemas() -> None:
    """Add the reaction messages and the branch event to the protocol's registries."""
    protocol.client_message("react", REACT_SCHEMA)
    protocol.client_message("micro", MICRO_SCHEMA)
    protocol.client_message("branch", BRANCH_MSG)
    protocol.server_message("faces", FACES_SCHEMA)
    # welcome.reactions: the rates, everyone's face now, branches taken (docs/protocol.md)
    protocol.welcome_field("reactions", F("any", required=False))


BRANCH = protocol.event_kind(
    "branch", BRANCH_EVENT, kept=True, doc="the room's felt arc (or its host) chose a branch"
)
register_schemas()


FACE_DTYPE = np.dtype(
    [("avatar", "<u2"), ("valence", "i1"), ("arousal", "u1"), ("intensity", "u1", (N_INTENSITIES,))]
)
assert FACE_DTYPE.itemsize == FACE_RECORD_BYTES


def pack_faces(avatars: Sequence[int], latest: Sequence[bytes]) -> bytes:
    """Each avatar's latest reaction record -> the `faces` payload (time and flags dropped)."""
    out = np.zeros(len(avatars), FACE_DTYPE)
    if len(avatars):
        rec = np.frombuffer(b"".join(latest), REACTION_DTYPE, len(avatars))
        out["avatar"] = avatars
        out["valence"] = rec["valence"]
        out["arousal"] = rec["arousal"]
        out["intensity"] = rec["intensity"]
    return out.tobytes()


def unpack_faces(blob: bytes) -> dict[int, Reaction]:
    """The `faces` payload -> {avatar id: Reaction (t_s 0)}. ValueError if ragged."""
    n, rest = divmod(len(blob), FACE_RECORD_BYTES)
    if rest:
        raise ValueError(f"faces come in {FACE_RECORD_BYTES}-byte records")
    rec = np.frombuffer(blob, FACE_DTYPE, n)
    out: dict[int, Reaction] = {}
    for row in rec:
        levels = tuple(float(x) / 255.0 for x in row["intensity"])
        valence = max(-1.0, float(row["valence"]) / 127.0)
        out[int(row["avatar"])] = Reaction(0.0, valence, float(row["arousal"]) / 255.0, levels)
    return out


# --------------------------------------------------------------------------------- felt arc


@dataclass
class FeltArc:
    """One scene's felt arc: sums per FELT_BUCKET_MS of scene time.

    Only records flagged FLAG_FACE count (a "no face" record says the watcher looked away, not
    that they felt nothing). `dirty` holds buckets changed since the last `take_dirty()`.
    """

    bucket_ms: int = FELT_BUCKET_MS
    n: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    sums: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2 + N_INTENSITIES)))
    watchers: set[int] = field(default_factory=set)
    dirty: set[int] = field(default_factory=set)

    def _grow(self, size: int) -> None:
        if size > len(self.n):
            size = max(size, 2 * len(self.n), 64)
            n = np.zeros(size, np.int64)
            sums = np.zeros((size, 2 + N_INTENSITIES))
            n[: len(self.n)] = self.n
            sums[: len(self.n)] = self.sums
            self.n, self.sums = n, sums

    def add(self, rec: NDArray[np.void], watcher: int | None = None) -> int:
        """Fold structured reaction records in; returns how many counted."""
        rec = rec[(rec["flags"] & FLAG_FACE) != 0]
        if not len(rec):
            return 0
        buckets = (rec["t_ms"] // self.bucket_ms).astype(np.int64)
        self._grow(int(buckets.max()) + 1)
        values = np.empty((len(rec), 2 + N_INTENSITIES))
        values[:, 0] = np.maximum(rec["valence"], -127) / 127.0
        values[:, 1] = rec["arousal"] / 255.0
        values[:, 2:] = rec["intensity"] / 255.0
        # Only the buckets these records touch: a window from the lowest to the highest.
        lo = int(buckets.min())
        span = int(buckets.max()) - lo + 1
        local = buckets - lo
        counts = np.bincount(local, minlength=span)
        self.n[lo : lo + span] += counts
        for c in range(values.shape[1]):
            self.sums[lo : lo + span, c] += np.bincount(local, values[:, c], minlength=span)
        self.dirty.update((lo + np.flatnonzero(counts)).tolist())
        if watcher is not None:
            self.watchers.add(watcher)
        return len(rec)

    def add_bucket(self, bucket: int, n: int, sums: Sequence[float]) -> None:
        """Restore one persisted bucket (adds to what is there)."""
        self._grow(bucket + 1)
        self.n[bucket] += n
        self.sums[bucket] += np.asarray(sums, np.float64)

    def take_dirty(self) -> list[tuple[int, int, list[float]]]:
        """(bucket, n, sums) of every bucket changed since the last call; clears the set."""
        out = [(b, int(self.n[b]), self.sums[b].tolist()) for b in sorted(self.dirty)]
        self.dirty.clear()
        return out

    @property
    def count(self) -> int:
        return int(self.n.sum())

    def series(self) -> dict[str, NDArray[np.float64]]:
        """Per bucket: t_s (bucket centre), n, valence, arousal and each intensity (NaN: empty)."""
        last = int(np.flatnonzero(self.n)[-1]) + 1 if self.n.any() else 0
        n = self.n[:last].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums[:last] / n[:, None]
        out = {
            "t_s": (np.arange(last) + 0.5) * self.bucket_ms / 1000.0,
            "n": n,
            "valence": mean[:, 0],
            "arousal": mean[:, 1],
        }
        for i, name in enumerate(INTENSITIES):
            out[name] = mean[:, 2 + i]
        return out

    def window(self, start_s: float, end_s: float) -> tuple[float, float, int]:
        """Mean valence, arousal and the sample count over scene time [start_s, end_s)."""
        lo = max(0, int(start_s * 1000) // self.bucket_ms)
        hi = min(len(self.n), max(lo, math.ceil(end_s * 1000 / self.bucket_ms)))
        n = int(self.n[lo:hi].sum())
        if n == 0:
            return math.nan, math.nan, 0
        sums = self.sums[lo:hi, :2].sum(axis=0)
        return float(sums[0] / n), float(sums[1] / n), n

    def window_curve(
        self, start_s: float, end_s: float
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
        """Non-empty buckets in [start_s, end_s): centre times, valence, arousal means, counts."""
        lo = max(0, int(start_s * 1000) // self.bucket_ms)
        hi = min(len(self.n), max(lo, math.ceil(end_s * 1000 / self.bucket_ms)))
        idx = lo + np.flatnonzero(self.n[lo:hi])
        n = self.n[idx]
        t = (idx + 0.5) * self.bucket_ms / 1000.0
        return t, self.sums[idx, 0] / n, self.sums[idx, 1] / n, n


@dataclass(frozen=True)
class MicroMoment:
    """A stored micro-expression: who (avatar name), when (scene s), what and how strong."""

    scene: str
    at_s: float
    kind: str
    strength: float
    dur_ms: int
    who: str


class FeltArcStore:
    """Felt arcs and micro-expression moments in SQLite (WAL), beside the server's other data.

    The felt arc is statistics, not a record anyone acknowledged: buckets are written as their
    absolute sums every flush (the server flushes every couple of seconds), so a kill -9 loses
    at most the last interval and a restart carries on adding to what was stored.
    """

    FILE = "reactions.sqlite"

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir() or path.suffix != ".sqlite":  # a data directory, made if need be
            path = path / self.FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"s_{name} REAL NOT NULL" for name in ("valence", "arousal", *INTENSITIES))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS felt (room TEXT NOT NULL, scene TEXT NOT NULL, "
            "bucket_ms INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, "
            f"{cols}, PRIMARY KEY (room, scene, bucket_ms, bucket))"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS micro (room TEXT NOT NULL, scene TEXT NOT NULL, "
            "at_s REAL NOT NULL, kind TEXT NOT NULL, strength REAL NOT NULL, "
            "dur_ms INTEGER NOT NULL, who TEXT NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS watchers (room TEXT NOT NULL, scene TEXT NOT NULL, "
            "who TEXT NOT NULL, PRIMARY KEY (room, scene, who))"
        )
        self.db.commit()

    def save(
        self,
        room: str,
        scene: str,
        arc: FeltArc,
        micro: Iterable[MicroMoment] = (),
        watchers: Iterable[str] = (),
    ) -> int:
        """Write the arc's dirty buckets, new micro moments and watcher names; one transaction."""
        rows = arc.take_dirty()
        with self.db:
            width = 2 + N_INTENSITIES
            marks = ", ".join("?" * (5 + width))
            self.db.executemany(
                f"INSERT OR REPLACE INTO felt VALUES ({marks})",
                [(room, scene, arc.bucket_ms, b, n, *sums) for b, n, sums in rows],
            )
            self.db.executemany(
                "INSERT INTO micro VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(room, m.scene, m.at_s, m.kind, m.strength, m.dur_ms, m.who) for m in micro],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO watchers VALUES (?, ?, ?)",
                [(room, scene, who) for who in watchers],
            )
        return len(rows)

    def load(self, room: str, scene: str, bucket_ms: int = FELT_BUCKET_MS) -> FeltArc:
        arc = FeltArc(bucket_ms=bucket_ms)
        for row in self.db.execute(
            "SELECT * FROM felt WHERE room = ? AND scene = ? AND bucket_ms = ? ORDER BY bucket",
            (room, scene, bucket_ms),
        ):
            arc.add_bucket(int(row[3]), int(row[4]), row[5:])
        arc.dirty.clear()
        return arc

    def scenes(self, room: str) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT scene FROM felt WHERE room = ? UNION "
            "SELECT DISTINCT scene FROM micro WHERE room = ? ORDER BY 1",
            (room, room),
        )
        return [str(r[0]) for r in rows]

    def micro(self, room: str, scene: str | None = None) -> list[MicroMoment]:
        sql = "SELECT scene, at_s, kind, strength, dur_ms, who FROM micro WHERE room = ?"
        params: tuple[Any, ...] = (room,)
        if scene is not None:
            sql += " AND scene = ?"
            params += (scene,)
        rows = self.db.execute(sql + " ORDER BY scene, at_s", params)
        return [
            MicroMoment(str(s), float(a), str(k), float(g), int(d), str(w))
            for s, a, k, g, d, w in rows
        ]

    def watchers(self, room: str, scene: str) -> list[str]:
        rows = self.db.execute(
            "SELECT who FROM watchers WHERE room = ? AND scene = ? ORDER BY who", (room, scene)
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self.db.close()


def load_felt(data_dir: str | Path, room: str) -> dict[str, tuple[FeltArc, list[MicroMoment]]]:
    """Every scene's felt arc and micro moments for a room, read from a server data dir.

    Returns {} when the room has no reactions (or the data dir has no reaction store).
    """
    path = Path(data_dir) / FeltArcStore.FILE
    if not path.exists():
        return {}
    store = FeltArcStore(path)
    try:
        return {s: (store.load(room, s), store.micro(room, s)) for s in store.scenes(room)}
    finally:
        store.close()


# ----------------------------------------------------------------------------- for the report


@dataclass(frozen=True)
class SectionDeparture:
    """How the felt arc sat against the intended arc over one section of a screenplay.

    A section runs from one scene heading to the next. `d_*` are felt minus intended, averaged
    over the section's buckets that held reactions (weighted by their sample counts).
    """

    label: str
    start_s: float
    end_s: float
    felt_valence: float
    felt_arousal: float
    intended_valence: float
    intended_arousal: float
    samples: int

    @property
    def d_valence(self) -> float:
        return self.felt_valence - self.intended_valence

    @property
    def d_arousal(self) -> float:
        return self.felt_arousal - self.intended_arousal


def sections(
    headings: Sequence[tuple[str, float]], duration_s: float
) -> list[tuple[str, float, float]]:
    """(label, start, end) per section from (heading text, start) pairs; one if none."""
    marks = sorted((max(0.0, t), label) for label, t in headings)
    if not marks or marks[0][0] > 0.5:
        marks.insert(0, (0.0, "opening"))
    out = []
    for i, (start, label) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else duration_s
        if end > start:
            out.append((label, start, end))
    return out


def departures(
    felt: FeltArc,
    intended: Any,
    spans: Sequence[tuple[str, float, float]],
) -> list[SectionDeparture]:
    """Felt against intended per section; `intended(t_s) -> (valence, arousal)`."""
    out = []
    for label, start, end in spans:
        t, valence, arousal, n = felt.window_curve(start, end)
        if not len(n):
            continue
        want = np.array([intended(float(x)) for x in t])
        out.append(
            SectionDeparture(
                label,
                start,
                end,
                float(np.average(valence, weights=n)),
                float(np.average(arousal, weights=n)),
                float(np.average(want[:, 0], weights=n)),
                float(np.average(want[:, 1], weights=n)),
                int(n.sum()),
            )
        )
    return out


def report_felt(data_dir: str | Path, room: str) -> dict[str, Any]:
    """{scene: neonbar.report.FeltSeries} for `neonbar report`, read from a server data dir."""
    from neonbar.report import FeltSeries

    out: dict[str, Any] = {}
    for scene, (arc, micro) in load_felt(data_dir, room).items():
        if not arc.count:
            continue
        series = arc.series()
        per_watcher = REACTION_HZ * arc.bucket_ms / 1000.0  # samples one watcher sends a bucket
        strongest = sorted(micro, key=lambda m: -m.strength)[:40]
        moments = tuple(
            (m.at_s, f"{m.kind} ({m.who})") for m in sorted(strongest, key=lambda m: m.at_s)
        )
        out[scene] = FeltSeries(
            series["t_s"], series["valence"], series["arousal"], series["n"] / per_watcher,
            moments, sections=tuple(_scene_departures(scene, arc)),
        )  # fmt: skip
    return out


def _scene_departures(scene: str, arc: FeltArc) -> list[SectionDeparture]:
    try:
        from neonbar.arc import intended_arc
        from neonbar.scenes import load_scene

        intended = intended_arc(load_scene(scene))
    except Exception:  # a scene gone or without a screenplay: no intended arc to compare with
        return []
    heads = [(e.text, e.start_s) for e in intended.elements if e.kind == "scene_heading"]
    return departures(arc, intended.at, sections(heads, intended.duration_s))
