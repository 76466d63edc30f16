"""Beats out to the edit: OpenTimelineIO, CMX 3600 EDL, a Resolve marker EDL, CSV and JSON.

`neonbar export` reads a room's beat chain from the server's data directory and writes one file;
`neonbar verify` recomputes the chain from a JSON, OTIO or CSV export and says in one line whether
it is intact and, if not, which record first differs. What each format keeps and drops is in
docs/beats.md.

Every verifiable export carries the room's chain (each record with its own hash and the hash of
the record before it) and the scenes it covers. When an export is limited to one scene the
records of other scenes are carried as stubs (seq, prev, hash), so the links can still be walked
from the first record to the head. Verify then rebuilds the whole export from the chain it
carries and compares: a change anywhere, in a record, a marker, a scene's length or the head,
is caught, not only a change to a hashed field.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neonbar.beats import (
    EMOTION_BY_NAME,
    GENESIS_HASH,
    Beat,
    BeatError,
    ChainCheck,
    beat_from_dict,
    fold,
    record_hash,
)
from neonbar.errors import UserError

FORMAT_NAME = "neonbar-beats"
FORMAT_VERSION = 1
FORMATS = ("otio", "edl", "resolve-edl", "csv", "json")
# Resolve's timelines start at 01:00:00:00 unless told otherwise; markers are placed on it.
RESOLVE_START_S = 3600.0
_STUB_KEYS = ("seq", "prev", "hash")


@dataclass(frozen=True)
class SceneInfo:
    """What an export says about a scene: enough to lay its clip on a timeline."""

    name: str
    title: str
    duration_s: float
    fps: int
    media: str | None  # path or URL of the scene's mp4, None when it is not rendered

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "duration_s": self.duration_s,
            "fps": self.fps,
            "media": self.media,
        }


@dataclass(frozen=True)
class Stub:
    """A record of another scene in a one-scene export: only its place in the chain."""

    seq: int
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev": self.prev, "hash": self.hash}


Entry = Beat | Stub


@dataclass(frozen=True)
class BeatExport:
    """One export's content, whatever the file format."""

    room: str
    scene: str | None  # the --scene filter, None for every scene
    chain: tuple[Entry, ...]
    scenes: dict[str, SceneInfo]

    @property
    def head(self) -> str:
        return self.chain[-1].hash if self.chain else GENESIS_HASH

    @property
    def records(self) -> list[Beat]:
        return [e for e in self.chain if isinstance(e, Beat)]

    def standing(self) -> list[Beat]:
        """The beats as they stand (edits applied, deletions gone) in this export's scenes."""
        return fold(self.records)

    def scene_order(self) -> list[str]:
        """Scenes in the order their first beat was marked (the timeline's clip order)."""
        seen: list[str] = []
        for rec in self.records:
            if rec.scene not in seen:
                seen.append(rec.scene)
        return seen

    def header(self) -> dict[str, Any]:
        """What the export says about itself. `seal` is sha256 of the rest of the header, so
        the scene details (not part of any beat record) cannot change without verify noticing;
        the head is what to compare with the server's (or an earlier export's) own."""
        out: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "room": self.room,
            "scene": self.scene,
            "head": self.head,
            "records": len(self.chain),
            "scenes": {name: self.scenes[name].to_dict() for name in self.scene_order()},
        }
        out["seal"] = record_hash(out)
        return out


def make_export(
    records: Sequence[Beat], scenes: Mapping[str, SceneInfo], scene: str | None = None
) -> BeatExport:
    """An export of a room's whole chain, optionally showing one scene's records only."""
    if not records:
        raise UserError("there are no beats to export")
    room = records[0].room
    chain: list[Entry] = [
        r if scene is None or r.scene == scene else Stub(r.seq, r.prev, r.hash) for r in records
    ]
    used = {r.scene for r in records if scene is None or r.scene == scene}
    if scene is not None and not used:
        raise UserError(f"room {room!r} has no beats in scene {scene!r}")
    missing = used - set(scenes)
    if missing:
        raise UserError(f"no scene information for {', '.join(sorted(missing))}")
    return BeatExport(room, scene, tuple(chain), {n: scenes[n] for n in sorted(used)})


# ------------------------------------------------------------------------------------ JSON


def _standing_view(b: Beat) -> dict[str, Any]:
    emo = EMOTION_BY_NAME[b.emotion]
    return {
        "beat": b.beat,
        "scene": b.scene,
        "emotion": b.emotion,
        "colour": emo.colour,
        "t_in_s": b.t_in_ms / 1000.0,
        "t_out_s": None if b.t_out_ms is None else b.t_out_ms / 1000.0,
        "intensity": b.intensity,
        "note": b.note,
        "point": None if b.point is None else list(b.point),
        "author": b.author,
        "edited": b.seq != b.beat,
        "record": b.seq,
        "hash": b.hash,
    }


def to_json_doc(export: BeatExport) -> dict[str, Any]:
    """The JSON export: header with the chain head, the chain, and the beats as they stand."""
    doc = export.header()
    doc["chain"] = [e.to_dict() for e in export.chain]
    doc["beats"] = [_standing_view(b) for b in export.standing()]
    return doc


def to_json(export: BeatExport) -> str:
    return pretty_json(to_json_doc(export))


def _has_rows(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_rows(v) for v in value.values())
    if isinstance(value, list):
        return any(isinstance(v, (dict, list)) for v in value)
    return False


def _pretty(value: Any, depth: int) -> str:
    if not _has_rows(value):
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_pretty(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [inner + _pretty(v, depth + 1) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def pretty_json(doc: Any) -> str:
    """JSON with one record (or marker) per line: readable, diffable, and written by the C
    encoder (`indent=` makes json fall back to pure Python: 10,000 beats took 6 s, this 0.5 s)."""
    return _pretty(doc, 0) + "\n"


def _entry_from_dict(data: Any) -> Entry:
    if isinstance(data, Mapping) and set(data) == set(_STUB_KEYS):
        seq, prev, digest = data["seq"], data["prev"], data["hash"]
        if not (isinstance(seq, int) and isinstance(prev, str) and isinstance(digest, str)):
            raise BeatError("a chain stub must have an integer seq and string hashes")
        return Stub(seq, prev, digest)
    return beat_from_dict(data)


def _scenes_from(raw: Any) -> dict[str, SceneInfo]:
    if not isinstance(raw, Mapping):
        raise BeatError("the export's scenes must be an object")
    out: dict[str, SceneInfo] = {}
    for name, info in raw.items():
        if not isinstance(info, Mapping) or set(info) != {"title", "duration_s", "fps", "media"}:
            raise BeatError(f"scene {name!r} in the export has the wrong fields")
        out[str(name)] = SceneInfo(
            str(name), info["title"], info["duration_s"], info["fps"], info["media"]
        )
    return out


def _from_header(doc: Mapping[str, Any], chain_raw: Any) -> BeatExport:
    if doc.get("format") != FORMAT_NAME or doc.get("version") != FORMAT_VERSION:
        raise BeatError(f"not a {FORMAT_NAME} v{FORMAT_VERSION} export")
    if not isinstance(chain_raw, list):
        raise BeatError("the export's chain must be a list")
    chain = tuple(_entry_from_dict(item) for item in chain_raw)
    room, scene = doc.get("room"), doc.get("scene")
    if not isinstance(room, str) or not (scene is None or isinstance(scene, str)):
        raise BeatError("the export's room and scene must be names")
    return BeatExport(room, scene, chain, _scenes_from(doc.get("scenes")))


def from_json(text: str) -> tuple[BeatExport, dict[str, Any]]:
    """Parse a JSON export; returns the content and the document as read."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise BeatError("a JSON export is one object")
    return _from_header(doc, doc.get("chain")), doc


# ------------------------------------------------------------------------------------ OTIO


def _rt(frames: int, fps: int) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "RationalTime.1", "rate": float(fps), "value": float(frames)}


def _range(start: int, duration: int, fps: int) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "TimeRange.1", "start_time": _rt(start, fps),
            "duration": _rt(duration, fps)}  # fmt: skip


def _otio_doc(export: BeatExport) -> dict[str, Any]:
    """The timeline in OTIO's JSON schema (Timeline.1, Track.1, Clip.2, Marker.2, ...).

    Built as plain data: the OTIO export is this document as JSON, and `to_otio` hands it to
    OTIO's own reader, which checks it against the schema. Building the objects through the
    Python bindings converts every metadata value one setitem at a time: for 10,000 beats that
    took 20 s where writing the document takes 2.8 s (same machine, same load).
    """
    standing = export.standing()
    clips = []
    for name in export.scene_order():
        info = export.scenes[name]
        fps = info.fps
        available = _range(0, round(info.duration_s * fps), fps)
        ref: dict[str, Any] = {"OTIO_SCHEMA": "MissingReference.1", "metadata": {},
                               "name": name, "available_range": available,
                               "available_image_bounds": None}  # fmt: skip
        if info.media:
            ref = {**ref, "OTIO_SCHEMA": "ExternalReference.1", "name": "",
                   "target_url": info.media}  # fmt: skip
        markers = []
        for b in standing:
            if b.scene != name:
                continue
            start = round(b.t_in_ms / 1000.0 * fps)
            end = round(b.t_out_ms / 1000.0 * fps) if b.t_out_ms is not None else start
            view = _standing_view(b)
            for key in ("emotion", "note", "scene"):
                del view[key]
            view["t_in_ms"], view["t_out_ms"] = b.t_in_ms, b.t_out_ms
            view["role"], view["server_ms"] = b.role, b.server_ms
            markers.append(
                {"OTIO_SCHEMA": "Marker.2", "metadata": {"neonbar": view}, "name": b.emotion,
                 "color": EMOTION_BY_NAME[b.emotion].otio_colour,
                 "marked_range": _range(start, end - start, fps), "comment": b.note}
            )  # fmt: skip
        clips.append(
            {"OTIO_SCHEMA": "Clip.2", "metadata": {"neonbar": {"scene": name, "title": info.title}},
             "name": name, "source_range": available, "effects": [], "markers": markers,
             "enabled": True, "color": None, "media_references": {"DEFAULT_MEDIA": ref},
             "active_media_reference_key": "DEFAULT_MEDIA"}
        )  # fmt: skip
    meta = export.header()
    meta["chain"] = [e.to_dict() for e in export.chain]
    track: dict[str, Any] = {"OTIO_SCHEMA": "Track.1", "metadata": {}, "name": "scenes",
                             "source_range": None, "effects": [], "markers": [], "enabled": True,
                             "color": None, "children": clips, "kind": "Video"}  # fmt: skip
    stack: dict[str, Any] = {"OTIO_SCHEMA": "Stack.1", "metadata": {}, "name": "tracks",
                             "source_range": None, "effects": [], "markers": [], "enabled": True,
                             "color": None, "children": [track]}  # fmt: skip
    return {"OTIO_SCHEMA": "Timeline.1", "metadata": {"neonbar": meta},
            "name": f"{export.room} beats", "global_start_time": None, "tracks": stack}  # fmt: skip


def to_otio(export: BeatExport) -> Any:
    """An OTIO Timeline: one clip per scene, one Marker per standing beat.

    The marker's name is the emotion, its colour the emotion's OTIO colour, its comment the
    note, its marked range the beat's time (zero length for a point in time, the range for a
    range beat), and everything else about the beat is in `marker.metadata["neonbar"]`. The
    timeline's `metadata["neonbar"]` carries the export header and the chain that verify reads.
    """
    import opentimelineio as otio  # type: ignore[import-untyped]

    doc = json.dumps(_otio_doc(export), ensure_ascii=False, allow_nan=False)
    return otio.adapters.read_from_string(doc, "otio_json")


def from_otio(text: str) -> tuple[BeatExport, dict[str, Any]]:
    """Parse an OTIO export: OTIO must read it (it is a valid timeline), and the document as
    JSON is what verify compares with the timeline rebuilt from the chain."""
    import opentimelineio as otio

    try:
        otio.adapters.read_from_string(text, "otio_json")
        doc = json.loads(text)
    except Exception as exc:  # OTIO raises several types for a damaged file
        raise BeatError(f"not a readable OTIO file ({type(exc).__name__})") from None
    meta = doc.get("metadata", {}).get("neonbar") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise BeatError("this OTIO file carries no neonbar beat chain")
    return _from_header(meta, meta.get("chain")), doc


# ------------------------------------------------------------------------------------ EDLs


def to_edl(export: BeatExport) -> str:
    """CMX 3600 through otio-cmx3600-adapter: one event per scene, a LOC line per marker.

    The adapter writes the marker's colour and its name (the emotion, upper-cased) and drops
    comments, metadata and marked-range durations: notes, authors, ranges and the chain are
    not in an EDL.
    """
    import opentimelineio as otio

    timeline = to_otio(export)
    rates = {export.scenes[n].fps for n in export.scene_order()}
    if len(rates) != 1:
        raise UserError("a CMX EDL needs one frame rate; export one scene with --scene")
    return str(otio.adapters.write_to_string(timeline, "cmx_3600", rate=rates.pop()))


def _timecode(seconds: float, fps: int) -> str:
    frames = round(seconds * fps)
    ff = frames % fps
    total_s = frames // fps
    return f"{total_s // 3600:02d}:{total_s // 60 % 60:02d}:{total_s % 60:02d}:{ff:02d}"


def _resolve_text(text: str) -> str:
    # The marker line is split on '|' and ends at the line break.
    return " ".join(text.replace("|", "/").split())


def to_resolve_edl(export: BeatExport) -> str:
    """The EDL DaVinci Resolve writes for "Timeline Markers to EDL" and reads back with
    "Timeline Markers from EDL": one event per marker on a timeline starting at 01:00:00:00,
    the scenes laid end to end, then a line ` NOTE |C:ResolveColor… |M:NAME |D:FRAMES`."""
    rates = {export.scenes[n].fps for n in export.scene_order()}
    if len(rates) != 1:
        raise UserError("a Resolve marker EDL needs one frame rate; export one scene with --scene")
    fps = rates.pop()
    lines = [f"TITLE: {_resolve_text(export.room)} beats", "FCM: NON-DROP FRAME", ""]
    offset_s = RESOLVE_START_S
    starts: dict[str, float] = {}
    for name in export.scene_order():
        starts[name] = offset_s
        offset_s += export.scenes[name].duration_s
    standing = sorted(
        export.standing(), key=lambda b: (starts[b.scene] + b.t_in_ms / 1000.0, b.beat)
    )
    for i, b in enumerate(standing, start=1):
        emo = EMOTION_BY_NAME[b.emotion]
        start_s = starts[b.scene] + b.t_in_ms / 1000.0
        frames = 1
        if b.t_out_ms is not None:
            frames = max(1, round((b.t_out_ms - b.t_in_ms) / 1000.0 * fps))
        tc_in = _timecode(start_s, fps)
        tc_out = _timecode(start_s + 1.0 / fps, fps)
        lines.append(f"{i:03d}  001      V     C        {tc_in} {tc_out} {tc_in} {tc_out}  ")
        name = f"{emo.name} {b.intensity:.2f} {b.author}"
        lines.append(
            f" {_resolve_text(b.note)} |C:ResolveColor{emo.resolve_colour} "
            f"|M:{_resolve_text(name)} |D:{frames}"
        )
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ CSV

CSV_COLUMNS = (
    "seq", "op", "beat", "standing", "scene", "t_in_s", "t_out_s", "emotion", "intensity",
    "note", "point_x", "point_y", "author", "role", "server_ms", "prev", "hash",
)  # fmt: skip


def _csv_header_line(export: BeatExport) -> str:
    head = export.header()
    return "# " + json.dumps(head, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def to_csv(export: BeatExport) -> str:
    """One row per chain record (stubs have only seq, prev and hash); `standing` is 1 on the
    record that holds a beat's current state. The first line is a comment with the header."""
    standing = {b.seq for b in export.standing()}
    out = io.StringIO()
    out.write(_csv_header_line(export) + "\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in export.chain:
        if isinstance(e, Stub):
            writer.writerow([e.seq] + [""] * (len(CSV_COLUMNS) - 3) + [e.prev, e.hash])
            continue
        writer.writerow(
            [
                e.seq, e.op, e.beat, int(e.seq in standing), e.scene, _ms(e.t_in_ms),
                "" if e.t_out_ms is None else _ms(e.t_out_ms), e.emotion, repr(e.intensity),
                e.note, "" if e.point is None else repr(e.point[0]),
                "" if e.point is None else repr(e.point[1]), e.author, e.role, e.server_ms,
                e.prev, e.hash,
            ]
        )  # fmt: skip
    return out.getvalue()


def _ms(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _ms_from(text: str) -> int:
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or len(frac) != 3 or not frac.isdigit():
        raise BeatError(f"time {text!r} is not seconds with three decimals")
    return int(whole) * 1000 + int(frac)


def _float_from(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BeatError(f"{text!r} is not a number")
    return value


def from_csv(text: str) -> BeatExport:
    first, _, rest = text.partition("\n")
    if not first.startswith("# "):
        raise BeatError("a CSV export starts with its '# {…}' header line")
    head = json.loads(first[2:])
    if not isinstance(head, dict):
        raise BeatError("the CSV header line is not an object")
    rows = list(csv.reader(io.StringIO(rest)))
    if not rows or tuple(rows[0]) != CSV_COLUMNS:
        raise BeatError("the CSV columns are not the export's")
    chain: list[dict[str, Any]] = []
    for row in rows[1:]:
        if len(row) != len(CSV_COLUMNS):
            raise BeatError(f"CSV row {len(chain) + 1} has {len(row)} columns")
        r = dict(zip(CSV_COLUMNS, row, strict=True))
        try:
            if not r["op"]:
                chain.append({"seq": int(r["seq"]), "prev": r["prev"], "hash": r["hash"]})
                continue
            point = None
            if r["point_x"] or r["point_y"]:
                point = [_float_from(r["point_x"]), _float_from(r["point_y"])]
            chain.append(
                {
                    "v": 1, "room": head.get("room"), "seq": int(r["seq"]), "op": r["op"],
                    "beat": int(r["beat"]), "scene": r["scene"], "t_in_ms": _ms_from(r["t_in_s"]),
                    "t_out_ms": _ms_from(r["t_out_s"]) if r["t_out_s"] else None,
                    "emotion": r["emotion"], "intensity": _float_from(r["intensity"]),
                    "note": r["note"], "point": point, "author": r["author"], "role": r["role"],
                    "server_ms": int(r["server_ms"]), "prev": r["prev"], "hash": r["hash"],
                }
            )  # fmt: skip
        except ValueError as exc:
            raise BeatError(f"CSV row {len(chain) + 1}: {exc}") from None
    return _from_header(head, chain)


# ------------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class Verdict:
    ok: bool
    line: str


def check_entries(export: BeatExport, claimed_head: Any, claimed_count: Any) -> ChainCheck:
    """Walk the chain an export carries: seq from 1, each link, each full record's hash."""
    prev = GENESIS_HASH
    for i, e in enumerate(export.chain, start=1):
        if e.seq != i:
            return ChainCheck(False, i, prev, e.seq, f"expected record {i} here")
        if e.prev != prev:
            return ChainCheck(False, i, prev, e.seq, "link to the previous record broken")
        if isinstance(e, Beat):
            if e.room != export.room:
                return ChainCheck(False, i, prev, e.seq, "belongs to another room")
            if record_hash(e.body()) != e.hash:
                return ChainCheck(False, i, prev, e.seq, "content does not match its hash")
        prev = e.hash
    n = len(export.chain)
    if claimed_head != prev or claimed_count != n:
        return ChainCheck(False, n, prev, n + 1, "the head or record count differs (truncated?)")
    return ChainCheck(True, n, prev)


def _first_view_difference(export: BeatExport, seen: Sequence[Any], rebuilt: Sequence[Any]) -> str:
    for a, b in zip(seen, rebuilt, strict=False):
        if a != b:
            beat = b.get("beat") if isinstance(b, dict) else None
            return f"beat {beat} as shown differs from its record" if beat else "a beat differs"
    return "the number of beats shown differs from the chain"


def verify_text(text: str, suffix: str) -> Verdict:
    """Verify an export's content; `suffix` (".json", ".otio", ".csv") picks the reader."""
    kind = suffix.lower().lstrip(".")
    try:
        if kind == "otio":
            export, doc = from_otio(text)
            claimed = doc["metadata"]["neonbar"]
            check = check_entries(export, claimed.get("head"), claimed.get("records"))
            if check.ok and _otio_doc(export) != doc:
                return Verdict(False, _otio_difference(export, doc))
        elif kind == "csv":
            export = from_csv(text)
            head = json.loads(text.partition("\n")[0][2:])
            check = check_entries(export, head.get("head"), head.get("records"))
            if check.ok and to_csv(export) != text.replace("\r\n", "\n"):
                return Verdict(False, "NOT intact: a row or the header differs from the chain")
        else:
            export, doc = from_json(text)
            check = check_entries(export, doc.get("head"), doc.get("records"))
            if check.ok:
                rebuilt = to_json_doc(export)
                if rebuilt != doc:
                    if rebuilt["beats"] != doc.get("beats"):
                        why = _first_view_difference(
                            export, doc.get("beats") or [], rebuilt["beats"]
                        )
                    else:
                        why = "the export's header differs from the chain it carries"
                    return Verdict(False, f"NOT intact: {why}")
    except (BeatError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return Verdict(False, f"NOT intact: the file cannot be read as an export ({exc})")
    if not check.ok:
        return Verdict(False, check.sentence())
    beats = len(export.standing())
    where = f"scene {export.scene}" if export.scene else f"{len(export.scenes)} scene(s)"
    return Verdict(
        True,
        f"intact: room {export.room}, {check.records} records, {beats} beats in {where}, "
        f"head {check.head[:16]}",
    )


def _otio_difference(export: BeatExport, doc: Any) -> str:
    mine = _otio_doc(export)
    try:
        clips_a = mine["tracks"]["children"][0]["children"]
        clips_b = doc["tracks"]["children"][0]["children"]
        for clip_a, clip_b in zip(clips_a, clips_b, strict=False):
            for ma, mb in zip(clip_a["markers"], clip_b["markers"], strict=False):
                if ma != mb:
                    beat = ma["metadata"]["neonbar"]["beat"]
                    return f"NOT intact: the marker of beat {beat} differs"
    except (KeyError, IndexError, TypeError):
        pass
    return "NOT intact: the timeline differs from the chain it carries"


# ------------------------------------------------------------------------------------ commands


def scene_info(name: str, fallback_duration_s: float) -> SceneInfo:
    """What the scene library knows about a scene; a scene since removed keeps its name and
    the span of its beats, at 24 fps, with no media."""
    from neonbar import scenes

    try:
        spec = scenes.load_scene(name)
    except UserError:
        return SceneInfo(name, name, round(fallback_duration_s, 3), 24, None)
    try:
        media: str | None = str(scenes.media_path(spec, render=False))
    except UserError:
        media = None
    return SceneInfo(name, spec.title, float(spec.duration_s), int(spec.fps), media)


def scenes_for(records: Iterable[Beat]) -> dict[str, SceneInfo]:
    span: dict[str, float] = {}
    for r in records:
        end = (r.t_out_ms if r.t_out_ms is not None else r.t_in_ms) / 1000.0
        span[r.scene] = max(span.get(r.scene, 0.0), end + 1.0)
    return {name: scene_info(name, end) for name, end in span.items()}


def render(export: BeatExport, fmt: str) -> str:
    if fmt == "json":
        return to_json(export)
    if fmt == "csv":
        return to_csv(export)
    if fmt == "edl":
        return to_edl(export)
    if fmt == "resolve-edl":
        return to_resolve_edl(export)
    if fmt == "otio":
        # OTIO's JSON schema, one marker per line (tests read every export back with OTIO)
        return pretty_json(_otio_doc(export))
    raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def run_export(args: argparse.Namespace) -> int:
    # The server owns its storage schema; neonbar/ does not import server/ at module level.
    load_records = importlib.import_module("server.beats").load_records
    records: list[Beat] = load_records(Path(args.data), args.room)
    export = make_export(records, scenes_for(records), args.scene)
    text = render(export, args.format)
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; give a file name for the export")
    tmp = out.with_name(f".{out.name}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    beats = len(export.standing())
    print(f"wrote {out}: {beats} beats, {len(export.chain)} records, head {export.head[:16]}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix not in (".json", ".otio", ".csv"):
        raise UserError(
            f"{path.name}: verify reads .json, .otio or .csv exports (EDLs carry no chain)"
        )
    verdict = verify_text(text, suffix)
    print(f"{path}: {verdict.line}")
    return 0 if verdict.ok else 1
