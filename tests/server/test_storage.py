"""SQLite storage: room records survive a restart, kept events are written on flush."""

from __future__ import annotations

from pathlib import Path

from server.storage import SqliteStorage


def test_rooms_and_events_persist(tmp_path: Path):
    db = tmp_path / "data" / "neonbar.db"
    store = SqliteStorage(db)
    assert store.load_room("bar", "orange_haze").last_seq == 0
    store.append_event("bar", 1, "chat", {"avatar": 3, "text": "née"})
    store.append_event("bar", 2, "drink", {"avatar": 3, "drink": "martini"})
    store.save_room("bar", "teal_neon", 2)
    store.close()

    again = SqliteStorage(db)
    record = again.load_room("bar", "orange_haze")
    assert (record.look, record.last_seq) == ("teal_neon", 2)
    events = again.events("bar", since_seq=1)
    assert [(e["seq"], e["kind"], e["drink"]) for e in events] == [(2, "drink", "martini")]
    assert again.events("bar")[0]["text"] == "née"
    assert again.events("other") == []
    mode = again._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again.close()


def test_flush_without_changes_is_a_no_op(tmp_path: Path):
    store = SqliteStorage(tmp_path / "x.db")
    store.flush()
    store.close()
