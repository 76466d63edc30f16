"""Beats on the server: beat / beat_edit / beat_delete, the room's chain, the pointer.

Beats are kept events in the room's durable event log (kind "beat", body {"avatar", "rec",
"cid"}), so the log is their one source of truth: the chain a room holds in memory is rebuilt
from it when the room is created, exports and reports read it, resumed clients get the ones
they missed by the log's replay, and a newcomer gets the beats as they stand in `beats` pages
right after its welcome.

Each accepted beat message becomes one chain record (neonbar.beats), hashed and linked here on
the event loop in the order messages are handled, then emitted: the room's event path commits
it to storage before anyone, the author included, sees it. The author's own copy of the event
(with its `cid`) is its acknowledgement.

Refused, with an `error` and nothing stored: an unknown emotion or scene, a time outside the
scene, a note too long, a viewer while the host has viewers' beats turned off, an edit or
delete of someone else's beat (hosts may delete any), and more than RATE_PER_S beats a second
sustained (the bucket lives with the avatar, so reconnecting does not refill it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from neonbar.beats import (
    BEAT_EVENT,
    BEAT_POLICY_EVENT,
    GENESIS_HASH,
    Beat,
    BeatChain,
    BeatError,
    BeatFields,
    beat_from_dict,
    fold,
    validate_fields,
)
from neonbar.errors import UserError
from neonbar.protocol import ErrorCode, ProtocolError, encode
from neonbar.ratelimit import TokenBucket
from server.room import Avatar, Feature, Room, Session, handles, register_feature
from server.storage import SqliteStorage

log = logging.getLogger("neonbar.server.beats")

RATE_PER_S = 4.0  # beats a second, sustained; a burst of BURST (a flurry of key presses) passes
BURST = 12.0
POINTER_PER_S = 15.0  # pointer updates a second relayed per avatar; more are dropped quietly
PAGE_RECORDS = 200  # records per `beats` page to a newcomer (~60 KB)
PAGES_PER_TICK = 4  # pages sent per tick over all newcomers (~5 MB/s at 20 Hz)
STATE_KEY = "beats"

EVENT_KIND = "beat"
DB_NAME = "neonbar.db"
_PAGE = 5000


class EventReader(Protocol):
    def events(
        self, room: str, since_seq: int = 0, limit: int = 1000, kinds: Any = None
    ) -> list[dict[str, Any]]: ...


def stored_events(storage: EventReader, room: str) -> list[tuple[int, Beat]]:
    """(event seq, record) of every beat event of a room, in order (chain order too)."""
    out: list[tuple[int, Beat]] = []
    since = 0
    while True:
        page = storage.events(room, since, _PAGE, kinds=(EVENT_KIND,))
        out.extend((int(event["seq"]), beat_from_dict(event["rec"])) for event in page)
        if len(page) < _PAGE:
            return out
        since = int(page[-1]["seq"])


def stored_records(storage: EventReader, room: str) -> list[Beat]:
    """Every beat record of a room from the event log, in chain order."""
    return [rec for _, rec in stored_events(storage, room)]


def load_records(data_dir: Path, room: str) -> list[Beat]:
    """A room's beat records read from a server data directory (for export and report).

    Raises:
        UserError: no database there, a room without beats, or a stored chain that is damaged.
    """
    db = Path(data_dir) / DB_NAME
    if not db.is_file():
        raise UserError(f"{data_dir} holds no server data (no {DB_NAME}); pass the server's --data")
    storage = SqliteStorage(db, threaded=False)
    try:
        records = stored_records(storage, room)
    except BeatError as exc:
        raise UserError(f"room {room!r} has a damaged beat record: {exc}") from None
    finally:
        storage.close()
    if not records:
        raise UserError(f"room {room!r} has no beats in {data_dir}")
    return records


# ------------------------------------------------------------------------------------ the room


def _refuse(code: ErrorCode, text: str, ref: str) -> ProtocolError:
    return ProtocolError(code, text, ref)


@register_feature
class Beats(Feature):
    name = "beats"

    def __init__(self, room: Room) -> None:
        super().__init__(room)
        self.chain = BeatChain(room.name)
        self.event_seq: list[int] = []  # chain record i -> the event seq that carried it
        self.viewers_may_mark = True
        self.damaged: str | None = None  # why the stored chain does not verify, if it does not
        # newcomers still being sent the standing beats: avatar id -> (session, records,
        # next index, head as of their welcome)
        self._paging: dict[int, tuple[Session, list[Beat], int, str]] = {}
        self._durations: dict[str, float] = {}

    # ---------------------------------------------------------------------------- hooks

    def on_create(self) -> None:
        room = self.room
        try:
            stored = stored_events(room.storage, room.name)
            self.chain = BeatChain(room.name, [rec for _, rec in stored])
        except BeatError as exc:
            # A stored chain that does not verify is a damaged database. The room still opens
            # (chat, the scene, everything else), but beats stay off: extending a chain that
            # nobody could verify would hide the damage. `neonbar verify` on an export shows it.
            self.damaged = str(exc)
            log.error("room %s: stored beats do not verify (%s); beats are off", room.name, exc)
            return
        self.event_seq = [seq for seq, _ in stored]
        records = self.chain.records
        for event in room.storage.events(room.name, 0, 1_000_000, kinds=(BEAT_POLICY_EVENT.name,)):
            self.viewers_may_mark = bool(event["viewers"])
        if records:
            log.info("room %s: %d beat records, head %s", room.name, len(records),
                     self.chain.head[:12])  # fmt: skip

    def welcome(self, avatar: Avatar, now_s: float) -> dict[str, Any]:
        return {"beats": {"viewers": self.viewers_may_mark, "count": len(self.chain.records)}}

    def on_join(self, session: Session, resumed: bool, now_s: float) -> None:
        if resumed:
            return  # the event log's replay brings exactly the records it missed
        # A newcomer gets the records every present client has already seen (event seq at
        # most the welcome's seq); later ones arrive as events. Records of deleted beats are
        # left out; the pages hold the chain's surviving "beat"/"edit" records in chain order.
        shown = self._delivered_count()
        delivered = self.chain.records[:shown]
        standing = {b.seq for b in fold(delivered)}
        recs = [r for r in delivered if r.seq in standing]
        head = delivered[-1].hash if delivered else GENESIS_HASH
        # The first page goes now; the rest one per tick (PAGES_PER_TICK), so a room with
        # thousands of beats does not land on a newcomer's connection in one burst.
        self._paging[session.avatar.id] = (session, recs, 0, head)
        self._send_page(session.avatar.id)

    def _send_page(self, avatar_id: int) -> None:
        session, recs, start, head = self._paging[avatar_id]
        page = [r.to_dict() for r in recs[start : start + PAGE_RECORDS]]
        done = start + PAGE_RECORDS >= len(recs)
        self.room.send(session, {"t": "beats", "recs": page, "head": head, "done": done})
        if done:
            del self._paging[avatar_id]
        else:
            self._paging[avatar_id] = (session, recs, start + PAGE_RECORDS, head)

    def on_tick(self, now_s: float) -> None:
        for avatar_id in list(self._paging)[:PAGES_PER_TICK]:
            session = self._paging[avatar_id][0]
            if self.room.sessions.get(avatar_id) is not session or session.closing:
                del self._paging[avatar_id]  # gone (a resume replays from the log instead)
                continue
            self._send_page(avatar_id)

    def on_leave(self, avatar: Avatar, reason: str) -> None:
        self._paging.pop(avatar.id, None)

    def _delivered_count(self) -> int:
        """How many chain records have been delivered (committed and sent) to the room."""
        delivered = getattr(self.room.events, "delivered_seq", self.room.events.seq)
        n = len(self.event_seq)
        while n and self.event_seq[n - 1] > delivered:
            n -= 1
        return n

    # ---------------------------------------------------------------------------- rules

    def _may_mark(self, session: Session, ref: str) -> None:
        if self.damaged is not None:
            raise _refuse(
                ErrorCode.BAD_STATE,
                f"this room's stored beats do not verify ({self.damaged}); beats are off",
                ref,
            )
        role = session.avatar.role
        if role == "viewer" and not self.viewers_may_mark:
            raise _refuse(ErrorCode.NOT_ALLOWED, "the host has turned off viewers' beats", ref)
        bucket = session.avatar.state.get(STATE_KEY)
        now_s = self.room.now_s()
        if not isinstance(bucket, TokenBucket):
            bucket = TokenBucket(RATE_PER_S, BURST, now_s)
            session.avatar.state[STATE_KEY] = bucket
        if not bucket.allow(now_s):
            raise _refuse(
                ErrorCode.RATE_LIMITED, f"too many beats: at most {RATE_PER_S:g} a second", ref
            )

    def scene_duration_s(self, scene: str, ref: str) -> float:
        """The scene's length: the room's timeline when it plays that scene, else the library."""
        playback = self.room.features.get("playback")
        timeline = getattr(playback, "timeline", None)
        if timeline is not None and timeline.scene == scene and timeline.frames > 0:
            return float(timeline.frames / timeline.fps)
        known = self._durations.get(scene)
        if known is not None:
            return known
        from neonbar.scenes import load_scene, scene_dirs

        # A name that is no spec file is refused with a stat per folder, not by loading the
        # library (load_scene lists every scene for its message): a client naming random
        # scenes costs the server next to nothing.
        if not any((folder / f"{scene}.toml").is_file() for folder in scene_dirs()):
            raise _refuse(ErrorCode.INVALID_FIELD, f"{ref}: no scene named {scene!r}", ref)
        try:
            duration = float(load_scene(scene).duration_s)
        except (UserError, OSError):
            raise _refuse(
                ErrorCode.INVALID_FIELD, f"{ref}: no scene named {scene!r}", ref
            ) from None
        self._durations[scene] = duration
        return duration

    def _fields(self, msg: dict[str, Any]) -> BeatFields:
        ref = msg["t"]
        has_x, has_y = "x" in msg, "y" in msg
        if has_x != has_y:
            raise _refuse(ErrorCode.INVALID_FIELD, f"{ref}: a point needs both x and y", ref)
        try:
            return validate_fields(
                scene=msg["scene"],
                t_in_s=msg["at"],
                emotion_name=msg["emotion"],
                intensity=msg.get("intensity", 0.5),
                t_out_s=msg.get("until"),
                note=msg.get("note", ""),
                point=(msg["x"], msg["y"]) if has_x else None,
                scene_duration_s=self.scene_duration_s(msg["scene"], ref),
            )
        except BeatError as exc:
            raise _refuse(ErrorCode.INVALID_FIELD, f"{ref}: {exc}", ref) from None

    def _owns(self, session: Session, beat_id: int) -> bool:
        # Names are unique in a room while their holders are present, and an invite may fix a
        # name; the creator's name is what the chain records, so it is what ownership follows.
        return self.chain.creator(beat_id) == session.avatar.name

    def _emit(self, session: Session, rec: Beat, msg: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"avatar": session.avatar.id, "rec": rec.to_dict()}
        if "cid" in msg:
            fields["cid"] = msg["cid"]
        self.event_seq.append(self.room.emit(BEAT_EVENT, **fields))

    # ---------------------------------------------------------------------------- handlers

    @handles("beat")
    def on_beat(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self._may_mark(session, "beat")  # role and rate first: a refused beat costs a token too
        fields = self._fields(msg)
        avatar = session.avatar
        rec = self.chain.add(fields, author=avatar.name, role=avatar.role, server_ms=_wall_ms())
        self._emit(session, rec, msg)

    @handles("beat_edit")
    def on_beat_edit(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        beat_id = msg["beat"]
        self._standing(beat_id, "beat_edit")
        if not self._owns(session, beat_id):
            raise _refuse(ErrorCode.NOT_ALLOWED, "you may edit only your own beats", "beat_edit")
        self._may_mark(session, "beat_edit")
        fields = self._fields(msg)
        avatar = session.avatar
        rec = self.chain.edit(
            beat_id, fields, author=avatar.name, role=avatar.role, server_ms=_wall_ms()
        )
        self._emit(session, rec, msg)

    @handles("beat_delete")
    def on_beat_delete(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        beat_id = msg["beat"]
        self._standing(beat_id, "beat_delete")
        avatar = session.avatar
        if avatar.role != "host" and not self._owns(session, beat_id):
            raise _refuse(
                ErrorCode.NOT_ALLOWED,
                "you may delete only your own beats (hosts: any)",
                "beat_delete",
            )
        self._may_mark(session, "beat_delete")
        rec = self.chain.delete(beat_id, author=avatar.name, role=avatar.role, server_ms=_wall_ms())
        self._emit(session, rec, msg)

    @handles("beat_policy")
    def on_beat_policy(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        if session.avatar.role != "host":
            raise _refuse(
                ErrorCode.NOT_ALLOWED, "only hosts may change who marks beats", "beat_policy"
            )
        self.viewers_may_mark = bool(msg["viewers"])
        self.room.emit(BEAT_POLICY_EVENT, viewers=self.viewers_may_mark, by=session.avatar.id)

    @handles("pointer")
    def on_pointer(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        # The pointer is a live gesture, not a record: relayed to the others, never stored.
        # Over its rate the update is dropped without an error (the next one supersedes it).
        avatar = session.avatar
        bucket = avatar.state.get("pointer")
        if not isinstance(bucket, TokenBucket):
            bucket = TokenBucket(POINTER_PER_S, POINTER_PER_S, now_s)
            avatar.state["pointer"] = bucket
        if not bucket.allow(now_s) and msg["on"]:
            return
        frame = encode(
            {"t": "pointer", "avatar": avatar.id, "on": msg["on"], "x": msg["x"], "y": msg["y"]}
        )
        links = [s.link for aid, s in self.room.sessions.items() if aid != avatar.id]
        self.room.out.broadcast(links, frame)

    def _standing(self, beat_id: int, ref: str) -> Beat:
        try:
            return self.chain.standing(beat_id)
        except BeatError as exc:
            raise _refuse(ErrorCode.INVALID_FIELD, f"{ref}: {exc}", ref) from None


def _wall_ms() -> int:
    import time

    return int(time.time() * 1000)
