"""Persistent storage behind a small interface (SQLite in WAL mode by default).

What is kept: each room's look and last event sequence number (so seq stays monotonic across
restarts), and the reliable events worth reading later (chat, drinks, emotes, looks). Appends are
buffered in memory and written by `flush()` in one transaction, which the server calls about once a
second and at shutdown, so the tick never waits on the disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

KEPT_EVENT_KINDS = frozenset({"chat", "drink", "emote", "look", "kick", "mute"})

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
"""


@dataclass(frozen=True)
class RoomRecord:
    name: str
    look: str
    last_seq: int


class Storage(Protocol):
    def load_room(self, name: str, default_look: str) -> RoomRecord: ...
    def save_room(self, name: str, look: str, last_seq: int) -> None: ...
    def append_event(self, room: str, seq: int, kind: str, body: dict[str, Any]) -> None: ...
    def events(self, room: str, since_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class SqliteStorage:
    """Storage in one SQLite file; only the event loop's thread touches the connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against application crashes in WAL mode; only an OS crash may
        # lose the last second of chat, which is an acceptable trade for a fast flush.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._pending_events: list[tuple[str, int, float, str, str]] = []
        self._pending_rooms: dict[str, tuple[str, int]] = {}

    def load_room(self, name: str, default_look: str) -> RoomRecord:
        row = self._db.execute(
            "SELECT look, last_seq FROM rooms WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO rooms (name, look, last_seq, created_s) VALUES (?, ?, 0, ?)",
                (name, default_look, time.time()),
            )
            return RoomRecord(name, default_look, 0)
        return RoomRecord(name, str(row[0]), int(row[1]))

    def save_room(self, name: str, look: str, last_seq: int) -> None:
        self._pending_rooms[name] = (look, last_seq)

    def append_event(self, room: str, seq: int, kind: str, body: dict[str, Any]) -> None:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        self._pending_events.append((room, seq, time.time(), kind, text))

    def events(self, room: str, since_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        self.flush()
        rows = self._db.execute(
            "SELECT seq, wall_s, kind, body FROM events WHERE room = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (room, since_seq, limit),
        ).fetchall()
        return [{"seq": s, "wall_s": w, "kind": k, **json.loads(b)} for s, w, k, b in rows]

    def flush(self) -> None:
        if not self._pending_events and not self._pending_rooms:
            return
        events, self._pending_events = self._pending_events, []
        rooms, self._pending_rooms = self._pending_rooms, {}
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO events (room, seq, wall_s, kind, body) "
                "VALUES (?, ?, ?, ?, ?)",
                events,
            )
            self._db.executemany(
                "UPDATE rooms SET look = ?, last_seq = ? WHERE name = ?",
                [(look, seq, name) for name, (look, seq) in rooms.items()],
            )

    def close(self) -> None:
        self.flush()
        self._db.close()
