"""Persistent storage behind a small interface (SQLite in WAL mode by default).

What is kept, per room: its record (look, the highest event seq ever committed, how far old
events were pruned, feature state), every reliable event with the exact frame that was sent,
and the avatars present (so a resume works after a restart).

Writes are grouped. A caller hands `submit()` a list of writes and a callback; a writer thread
commits everything submitted since its last commit in ONE transaction, then runs the callbacks,
in submission order, on the owner's thread (`call_back`, the event loop's
`call_soon_threadsafe` in the server). The room delivers an event only from that callback, so an
event anyone sees is already on disk, and the event loop never waits for the disk. Measured with
bench/eventlog.py: one commit per event is bound by the WAL fsync; a group commit pays it once
per group (BENCHMARKS.md, "Durable event log").

`SqliteStorage(":memory:")` or `threaded=False` commits inline instead (tests, the fuzz target).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from neonbar.protocol import encode

log = logging.getLogger("neonbar.storage")

# The event kinds that exports and reports read; the others (join, leave, ...) are kept only
# while they can still be replayed (see `PrunePolicy`).
KEPT_EVENT_KINDS = frozenset(
    {"chat", "drink", "emote", "look", "kick", "mute", "beat", "beat_policy"}
)

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    look TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    created_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (room, seq)
);
-- Exports, reports and the beat chain read one kind of a room's events back.
CREATE INDEX IF NOT EXISTS events_by_kind ON events (room, kind, seq);
CREATE TABLE IF NOT EXISTS avatars (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    nonce TEXT NOT NULL,
    record TEXT NOT NULL,
    x_cm INTEGER NOT NULL,
    y_cm INTEGER NOT NULL,
    yaw INTEGER NOT NULL,
    input_seq INTEGER NOT NULL,
    seen_s REAL NOT NULL,
    PRIMARY KEY (room, id)
);
CREATE TABLE IF NOT EXISTS room_state (
    room TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (room, key)
);
"""
# Columns added to the first schema (a data directory from before keeps its rows).
_ADDED_COLUMNS = {
    "rooms": [("pruned_through", "INTEGER NOT NULL DEFAULT 0")],
    "events": [("st", "REAL NOT NULL DEFAULT 0"), ("frame", "BLOB")],
}


# ------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class RoomRecord:
    name: str
    look: str
    last_seq: int  # the highest event seq ever committed in this room
    pruned_through: int = 0  # events up to this seq may be gone; replays start above it


@dataclass(frozen=True)
class AvatarRecord:
    """An avatar as it is restored after a restart (position at most ~2 s old)."""

    room: str
    id: int
    nonce: str  # the resume token's nonce (neonbar/tokens.py); the token is not stored
    name: str
    color: str
    role: str
    x_cm: int
    y_cm: int
    yaw: int
    input_seq: int
    seen_s: float  # unix time the avatar was last known connected (or when it went away)
    extra: dict[str, Any] = field(default_factory=dict)  # name_fixed, muted, drink, tipsy, ...


@dataclass(frozen=True)
class PrunePolicy:
    """Which old events a room drops (docs/server.md, "Durable event log").

    Events of the kinds in `kept_kinds` are never pruned (exports and reports read them). The
    others are deleted once they are more than `replay_events` behind the room's newest event or
    older than `replay_days`; a resume from below what was pruned is told so (docs/protocol.md).
    """

    replay_events: int = 100_000
    replay_days: float = 7.0
    kept_kinds: frozenset[str] = KEPT_EVENT_KINDS


# A write is a tuple whose first item names it; `submit` takes a list of them.
#   ("event", room, seq, st, wall_s, kind, body_json, frame)
#   ("room", name, look)                       look changed
#   ("avatar", avatar_row(AvatarRecord))       insert or replace one avatar, encoded by the
#                                              caller (a room encodes its rows spread over
#                                              its ticks, so the storage thread holds the
#                                              GIL less)
#   ("avatar_gone", room, id)
#   ("state", room, key, value_json)           feature state (timeline, ...)
#   ("prune", room, through_seq, kept_kinds)
Write = tuple[Any, ...]


def event_write(
    room: str, seq: int, st: float, kind: str, body: dict[str, Any], frame: bytes | None
) -> Write:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return ("event", room, seq, st, time.time(), kind, text, frame)


class Storage(Protocol):
    # How a commit's callbacks reach the owner's thread (the event loop's call_soon_threadsafe).
    call_back: Callable[[Callable[[], None]], Any]

    def load_room(self, name: str, default_look: str) -> RoomRecord: ...
    def load_avatars(self, room: str) -> list[AvatarRecord]: ...
    def load_state(self, room: str) -> dict[str, Any]: ...
    def save_state(self, room: str, key: str, value: Any) -> None: ...
    def save_room(self, name: str, look: str, last_seq: int = 0) -> None: ...
    def submit(self, writes: Sequence[Write], on_committed: Callable[[], None] | None) -> None: ...
    def events(
        self, room: str, since_seq: int = 0, limit: int = 1000, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]: ...
    def event_frames(self, room: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]: ...
    def oldest_seq(self, room: str) -> int: ...
    def prune_point(
        self, room: str, policy: PrunePolicy, now_wall_s: float | None = None
    ) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class StorageClosed(RuntimeError):
    pass


# ------------------------------------------------------------------------------------- SQLite


class SqliteStorage:
    """Storage in one SQLite file (WAL): a writer thread group-commits, reads run on the caller.

    Args:
        path: the database file, or ":memory:" (then everything is inline, on one connection).
        threaded: commit in a writer thread (the default for a file).
        synchronous: SQLite's `synchronous` pragma. FULL (default) fsyncs the WAL at every
            commit, so a committed event survives a power cut as well as `kill -9`; NORMAL
            survives `kill -9` only.
    """

    def __init__(
        self, path: str | Path, *, threaded: bool | None = None, synchronous: str = "FULL"
    ) -> None:
        self.path = str(path)
        memory = self.path == ":memory:"
        if not memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.threaded = (not memory) if threaded is None else (threaded and not memory)
        # Runs a commit's callbacks on the owner's thread; the server sets the event loop's
        # call_soon_threadsafe. Called once per transaction with every callback of it.
        self.call_back: Callable[[Callable[[], None]], Any] = _call_now
        self._db = self._connect(synchronous)
        self._migrate()
        self._read = self._connect(synchronous) if self.threaded else self._db
        self.commits = 0  # transactions committed (bench/eventlog.py reads it)
        self.failures = 0
        self._cond = threading.Condition()
        self._queue: list[tuple[Sequence[Write], Callable[[], None] | None]] = []
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.threaded:
            self._thread = threading.Thread(
                target=self._writer, name="neonbar-storage", daemon=True
            )
            self._thread.start()

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous}")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _migrate(self) -> None:
        db = self._db
        db.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # ------------------------------------------------------------------------------ reads

    def load_room(self, name: str, default_look: str) -> RoomRecord:
        """The room's record; a room seen for the first time is created."""
        row = self._read.execute(
            "SELECT look, last_seq, pruned_through FROM rooms WHERE name = ?", (name,)
        ).fetchone()
        # The events are the truth for seq: last_seq is written in the same transaction, but a
        # database from before kept events that rooms.last_seq did not cover.
        top = self._top_seq(name)
        if row is None:
            self.submit([("new_room", name, default_look, int(top or 0))], None)
            self.flush()
            return RoomRecord(name, default_look, int(top or 0))
        return RoomRecord(name, str(row[0]), max(int(row[1]), int(top or 0)), int(row[2]))

    def _top_seq(self, room: str) -> int | None:
        row = self._read.execute("SELECT MAX(seq) FROM events WHERE room = ?", (room,)).fetchone()
        return None if row[0] is None else int(row[0])

    def load_avatars(self, room: str) -> list[AvatarRecord]:
        rows = self._read.execute(
            "SELECT id, nonce, record, x_cm, y_cm, yaw, input_seq, seen_s FROM avatars "
            "WHERE room = ? ORDER BY id",
            (room,),
        ).fetchall()
        out = []
        for aid, nonce, record, x_cm, y_cm, yaw, input_seq, seen_s in rows:
            extra = json.loads(record)
            name, color, role = extra.pop("name"), extra.pop("color"), extra.pop("role")
            record_fields = (x_cm, y_cm, yaw, input_seq, seen_s)
            out.append(AvatarRecord(room, aid, nonce, name, color, role, *record_fields, extra))
        return out

    def load_state(self, room: str) -> dict[str, Any]:
        rows = self._read.execute(
            "SELECT key, value FROM room_state WHERE room = ?", (room,)
        ).fetchall()
        return {key: json.loads(value) for key, value in rows}

    def events(
        self, room: str, since_seq: int = 0, limit: int = 1000, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Committed events above `since_seq`, oldest first, as {seq, wall_s, st, kind, ...}."""
        query = "SELECT seq, wall_s, st, kind, body FROM events WHERE room = ? AND seq > ?"
        params: list[Any] = [room, since_seq]
        if kinds is not None:
            wanted = sorted(set(kinds))
            query += f" AND kind IN ({','.join('?' * len(wanted))})"
            params.extend(wanted)
        rows = self._read.execute(query + " ORDER BY seq LIMIT ?", (*params, limit)).fetchall()
        return [
            {**json.loads(b), "seq": s, "wall_s": w, "st": st, "kind": k} for s, w, st, k, b in rows
        ]

    def event_frames(self, room: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """(seq, frame as sent) of committed events above `after_seq`, oldest first."""
        rows = self._read.execute(
            "SELECT seq, frame, st, kind, body FROM events WHERE room = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (room, after_seq, limit),
        ).fetchall()
        out = []
        for seq, frame, st, kind, body in rows:
            if frame is None:  # stored before frames were kept: rebuild it the same way
                msg = {"t": "event", "seq": seq, "st": st, "kind": kind, **json.loads(body)}
                frame = encode(msg)
            out.append((int(seq), bytes(frame)))
        return out

    def oldest_seq(self, room: str) -> int:
        """The lowest seq still stored for the room (0 when none)."""
        row = self._read.execute("SELECT MIN(seq) FROM events WHERE room = ?", (room,)).fetchone()
        return int(row[0] or 0)

    # ----------------------------------------------------------------------------- writes

    def submit(self, writes: Sequence[Write], on_committed: Callable[[], None] | None) -> None:
        """Commit `writes` (with whatever else is waiting, in one transaction), then call back.

        Inline storage commits before returning. Callbacks run in submission order.
        """
        if self._closed:
            raise StorageClosed("storage is closed")
        if not self.threaded:
            self._commit([(writes, on_committed)])
            if on_committed is not None:
                on_committed()
            return
        with self._cond:
            self._queue.append((writes, on_committed))
            self._cond.notify()

    # Writes of the old interface, committed with the next group.
    def append_event(self, room: str, seq: int, kind: str, body: dict[str, Any]) -> None:
        self.submit([event_write(room, seq, 0.0, kind, body, None)], None)

    def save_room(self, name: str, look: str, last_seq: int = 0) -> None:
        self.submit([("room", name, look)], None)

    def save_state(self, room: str, key: str, value: Any) -> None:
        """Feature state (JSON-able), committed with the next group; load_state reads it."""
        self.submit([("state", room, key, json.dumps(value, separators=(",", ":")))], None)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything submitted so far is committed (and its callbacks handed on).

        Returns False if `timeout_s` passed first (the writer is retrying a failing commit).
        """
        if not self.threaded:
            return True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while (self._queue or self._busy) and not self._closed:
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        if self._closed:
            return
        if not self.flush(timeout_s=30.0):
            log.error("storage: some writes could not be committed before closing")
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        if self._read is not self._db:
            self._read.close()
        self._db.close()

    def _writer(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                groups, self._queue = self._queue, []
                self._busy = True
            backoff_s = 0.05
            while True:
                try:
                    self._commit(groups)
                    break
                except sqlite3.IntegrityError:
                    # A write that can never succeed (a seq stored twice is a bug): commit the
                    # others alone, refuse it loudly, and never run its callback.
                    self.failures += 1
                    log.exception("storage: a group breaks a constraint; committing one by one")
                    groups = self._commit_one_by_one(groups)
                    break
                except sqlite3.Error:
                    # Nothing is delivered before it is committed: keep the group and retry
                    # (a full disk, a locked file); the rooms wait, they lose nothing.
                    self.failures += 1
                    log.exception("storage commit failed; retrying in %.2f s", backoff_s)
                    time.sleep(backoff_s)
                    backoff_s = min(2.0, backoff_s * 2)
            callbacks = [cb for _, cb in groups if cb is not None]
            if callbacks:
                # RuntimeError: the event loop is gone (shutdown), nobody is left to tell.
                with contextlib.suppress(RuntimeError):
                    self.call_back(_chain(callbacks))
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _commit_one_by_one(
        self, groups: list[tuple[Sequence[Write], Callable[[], None] | None]]
    ) -> list[tuple[Sequence[Write], Callable[[], None] | None]]:
        done = []
        for group in groups:
            try:
                self._commit([group])
            except sqlite3.IntegrityError:
                log.error("storage: refused a group of %d writes (constraint)", len(group[0]))
                continue
            done.append(group)
        return done

    def _commit(self, groups: Sequence[tuple[Sequence[Write], Any]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            run: list[Write] = []
            for writes, _ in groups:
                for write in writes:
                    if run and run[0][0] != write[0]:
                        self._apply(db, run)
                        run = []
                    run.append(write)
            if run:
                self._apply(db, run)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.commits += 1

    @staticmethod
    def _apply(db: sqlite3.Connection, run: list[Write]) -> None:
        """Apply consecutive writes of one kind (executemany where it helps)."""
        what = run[0][0]
        if what == "event":
            # A plain INSERT: a seq is never written twice, so nothing stored is overwritten
            # (a duplicate would fail the transaction loudly rather than replace a row).
            db.executemany(
                "INSERT INTO events (room, seq, st, wall_s, kind, body, frame) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [w[1:] for w in run],
            )
            top: dict[str, int] = {}
            for w in run:
                top[w[1]] = max(top.get(w[1], 0), w[2])
            db.executemany(
                "UPDATE rooms SET last_seq = MAX(last_seq, ?) WHERE name = ?",
                [(seq, room) for room, seq in top.items()],
            )
        elif what == "avatar":
            db.executemany(
                "INSERT OR REPLACE INTO avatars "
                "(room, id, nonce, record, x_cm, y_cm, yaw, input_seq, seen_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [w[1] for w in run],
            )
        elif what == "avatar_gone":
            db.executemany("DELETE FROM avatars WHERE room = ? AND id = ?", [w[1:] for w in run])
        elif what == "room":
            db.executemany("UPDATE rooms SET look = ? WHERE name = ?", [(w[2], w[1]) for w in run])
        elif what == "new_room":
            db.executemany(
                "INSERT OR IGNORE INTO rooms (name, look, last_seq, created_s) VALUES (?, ?, ?, ?)",
                [(*w[1:], time.time()) for w in run],
            )
        elif what == "state":
            db.executemany(
                "INSERT OR REPLACE INTO room_state (room, key, value) VALUES (?, ?, ?)",
                [w[1:] for w in run],
            )
        elif what == "prune":
            for _, room, through, kept in run:
                kept = sorted(kept)
                db.execute(
                    "DELETE FROM events WHERE room = ? AND seq <= ? "
                    f"AND kind NOT IN ({','.join('?' * len(kept))})",
                    (room, through, *kept),
                )
                db.execute(
                    "UPDATE rooms SET pruned_through = MAX(pruned_through, ?) WHERE name = ?",
                    (through, room),
                )
        else:
            raise ValueError(f"unknown storage write {what!r}")

    # ---------------------------------------------------------------------------- pruning

    def prune_point(self, room: str, policy: PrunePolicy, now_wall_s: float | None = None) -> int:
        """The seq up to which `policy` lets the room's replayable events go (0: nothing)."""
        now_wall_s = time.time() if now_wall_s is None else now_wall_s
        top = self._top_seq(room)
        if top is None:
            return 0
        by_count = int(top) - policy.replay_events
        old = self._read.execute(
            "SELECT MAX(seq) FROM events WHERE room = ? AND wall_s < ?",
            (room, now_wall_s - policy.replay_days * 86400.0),
        ).fetchone()[0]
        return max(0, by_count, int(old or 0))


# Made once: json.dumps with options builds an encoder per call, and a room's rows (a
# thousand a second) are encoded on the storage thread while it holds the GIL.
_ROW_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def avatar_row(a: AvatarRecord) -> tuple[Any, ...]:
    """An avatar as the avatars table stores it (the parameters of its INSERT)."""
    record = {"name": a.name, "color": a.color, "role": a.role, **a.extra}
    text = _ROW_JSON(record)
    return (a.room, a.id, a.nonce, text, a.x_cm, a.y_cm, a.yaw, a.input_seq, a.seen_s)


def _call_now(fn: Callable[[], None]) -> None:
    fn()


def _chain(callbacks: list[Callable[[], None]]) -> Callable[[], None]:
    def run_all() -> None:
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("a storage callback failed")

    return run_all
