"""Beats on the server: the chained `beat` events of a room, and reading them back for exports.

Beats are kept events in the room's durable event log (kind "beat", body {"rec": record}), so the
log is their one source of truth: the chain a room holds in memory is rebuilt from it at start,
exports and reports read it, and late joiners and resumed clients get them from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from neonbar.beats import Beat, BeatChain, BeatError, beat_from_dict
from neonbar.errors import UserError
from server.storage import SqliteStorage

EVENT_KIND = "beat"
DB_NAME = "neonbar.db"
_PAGE = 5000


class EventReader(Protocol):
    def events(
        self, room: str, since_seq: int = 0, limit: int = 1000, kinds: Any = None
    ) -> list[dict[str, Any]]: ...


def stored_records(storage: EventReader, room: str) -> list[Beat]:
    """Every beat record of a room from the event log, in chain order."""
    out: list[Beat] = []
    since = 0
    while True:
        page = storage.events(room, since, _PAGE, kinds=(EVENT_KIND,))
        for event in page:
            out.append(beat_from_dict(event["rec"]))
        if len(page) < _PAGE:
            return out
        since = int(page[-1]["seq"])


def load_chain(storage: EventReader, room: str) -> BeatChain:
    """The room's chain as stored; a stored chain that does not verify stops the room."""
    return BeatChain(room, stored_records(storage, room))


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
