"""SQLite storage and the room's event log: group commit, delivery after commit, replay, pruning.

These drive server/storage.py and server/eventlog.py directly (no server, no sockets).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgpack
import pytest

from neonbar.tokens import mint_resume, new_resume_nonce, read_resume
from server.eventlog import RoomEventLog
from server.storage import AvatarRecord, PrunePolicy, SqliteStorage, avatar_row, event_write


def stored(db: Path, room: str = "bar") -> list[tuple[int, str, str]]:
    """What another process reading the file sees."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT seq, kind, body FROM events WHERE room = ? ORDER BY seq", (room,)
        ).fetchall()


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
    assert again.events("bar", kinds=["chat"])[0]["seq"] == 1
    assert again.events("other") == []
    mode = again._read.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again.close()


def test_flush_without_changes_is_a_no_op(tmp_path: Path):
    store = SqliteStorage(tmp_path / "x.db")
    assert store.flush(timeout_s=5)
    store.close()


def test_a_callback_runs_only_once_its_group_is_readable_by_another_process(tmp_path: Path):
    db = tmp_path / "n.db"
    store = SqliteStorage(db)
    store.load_room("bar", "orange_haze")
    seen: list[list[int]] = []
    done = threading.Event()

    def check(seq: int) -> None:
        seen.append([s for s, _, _ in stored(db)])
        assert seq in seen[-1]
        if seq == 50:
            done.set()

    for seq in range(1, 51):
        write = event_write("bar", seq, 0.0, "chat", {"avatar": 1, "text": f"m{seq}"}, b"f")
        store.submit([write], lambda seq=seq: check(seq))
    assert done.wait(20)
    store.close()
    # Callbacks in submission order, each seeing its own event (and all before it) stored.
    assert [max(s) for s in seen] == sorted(max(s) for s in seen)
    assert all(set(range(1, i + 1)) <= set(s) for i, s in enumerate(seen, 1))
    # Submissions that waited while a commit ran went in together.
    assert store.commits < 51


def test_a_stored_event_is_never_overwritten(tmp_path: Path):
    store = SqliteStorage(tmp_path / "n.db", threaded=False)
    store.load_room("bar", "orange_haze")
    store.submit([event_write("bar", 1, 0.0, "chat", {"text": "first"}, b"a")], None)
    with pytest.raises(sqlite3.IntegrityError):
        store.submit([event_write("bar", 1, 0.0, "chat", {"text": "second"}, b"b")], None)
    assert [e["text"] for e in store.events("bar")] == ["first"]
    store.close()


def test_a_failed_commit_is_retried_and_delivers_nothing_meanwhile(tmp_path: Path):
    db = tmp_path / "n.db"
    store = SqliteStorage(db)
    store.load_room("bar", "orange_haze")
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    store._db.execute("PRAGMA busy_timeout=50")
    ran = threading.Event()
    store.submit([event_write("bar", 1, 0.0, "chat", {"text": "x"}, b"a")], ran.set)
    assert not ran.wait(0.5)
    assert store.failures >= 1
    blocker.execute("ROLLBACK")
    blocker.close()
    assert ran.wait(10)
    assert [s for s, _, _ in stored(db)] == [1]
    store.close()


def test_avatars_and_feature_state_round_trip(tmp_path: Path):
    db = tmp_path / "n.db"
    store = SqliteStorage(db)
    store.load_room("bar", "orange_haze")
    ann = AvatarRecord("bar", 3, "00" * 8, "Ann", "#ff00aa", "host", 120, -40, 1000, 77, 1e9,
                       {"muted": False, "drink": {"drink": "martini"}})  # fmt: skip
    bob = AvatarRecord("bar", 4, "11" * 8, "Bob", "#00ffaa", "viewer", 0, 0, 0, 0, 1e9)
    store.submit([("avatar", avatar_row(ann)), ("avatar", avatar_row(bob)),
                  ("avatar_gone", "bar", 4)], None)  # fmt: skip
    store.save_state("bar", "timeline", {"scene": "dust_storm", "playing": True})
    store.close()
    again = SqliteStorage(db)
    assert again.load_avatars("bar") == [ann]
    assert again.load_avatars("lounge") == []
    assert again.load_state("bar") == {"timeline": {"scene": "dust_storm", "playing": True}}
    again.close()


def test_an_old_database_is_migrated_and_its_events_replay(tmp_path: Path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE rooms (name TEXT PRIMARY KEY, look TEXT NOT NULL, "
            "last_seq INTEGER NOT NULL DEFAULT 0, created_s REAL NOT NULL);"
            "CREATE TABLE events (room TEXT NOT NULL, seq INTEGER NOT NULL, wall_s REAL NOT NULL,"
            " kind TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (room, seq));"
            "INSERT INTO rooms VALUES ('bar', 'teal_neon', 3, 0);"
            "INSERT INTO events VALUES ('bar', 5, 0, 'chat', '{\"avatar\":1,\"text\":\"hi\"}');"
        )
    store = SqliteStorage(db)
    # seq continues above the highest stored event even where rooms.last_seq lagged behind.
    assert store.load_room("bar", "x").last_seq == 5
    [(seq, frame)] = store.event_frames("bar", 0, 10)
    msg = msgpack.unpackb(frame)
    assert (seq, msg["seq"], msg["kind"], msg["text"]) == (5, 5, "chat", "hi")
    store.close()


def make_log(store: SqliteStorage, room: str = "bar", ring: int = 10_000):
    delivered: list[tuple[int, bytes]] = []
    log = RoomEventLog(room, store, store.load_room(room, "orange_haze"), delivered.extend, ring)
    return log, delivered


def test_events_are_delivered_only_after_their_group_commits(tmp_path: Path):
    store = SqliteStorage(tmp_path / "n.db", threaded=False)
    log, delivered = make_log(store)
    seq, frame = log.append("chat", {"avatar": 1, "text": "one"}, st=1.5)
    log.append("chat", {"avatar": 1, "text": "two"}, st=1.6)
    assert seq == 1 and delivered == [] and log.delivered_seq == 0
    assert msgpack.unpackb(frame) == {"t": "event", "seq": 1, "st": 1.5, "kind": "chat",
                                      "avatar": 1, "text": "one"}  # fmt: skip
    log.commit()
    assert [s for s, _ in delivered] == [1, 2] and log.delivered_seq == 2
    assert [e["text"] for e in store.events("bar")] == ["one", "two"]
    log.commit()  # nothing queued: no empty transaction
    assert store.commits == 2  # the room's record, then one group
    store.close()


def test_seq_continues_after_a_restart_and_replays_come_from_disk(tmp_path: Path):
    store = SqliteStorage(tmp_path / "n.db")
    log, _ = make_log(store, ring=4)
    for i in range(10):
        log.append("chat", {"avatar": 1, "text": f"m{i}"}, st=float(i))
        log.commit()
    log.append("chat", {"avatar": 1, "text": "never committed"}, st=99.0)  # lost in a crash
    store.flush()
    # From the ring (the newest 4) and from disk (older ones): the same frames, bounded.
    assert [s for s, _ in log.frames_after(6, 100, 1 << 20)] == [7, 8, 9, 10]
    assert [s for s, _ in log.frames_after(2, 3, 1 << 20)] == [3, 4, 5]
    assert len(log.frames_after(2, 100, 1)) == 1  # at least one frame, however small the budget
    store.close()

    again = SqliteStorage(tmp_path / "n.db")
    log2, _ = make_log(again)
    assert log2.seq == 10  # above everything anyone saw, and nothing stored is reused
    assert log2.append("chat", {"avatar": 1, "text": "after"}, st=0.0)[0] == 11
    log2.commit()
    again.flush()
    frames = log2.frames_after(8, 100, 1 << 20)
    assert [msgpack.unpackb(f)["seq"] for _, f in frames] == [9, 10, 11]
    again.close()


def test_pruning_keeps_kept_kinds_and_a_resume_below_it_is_told(tmp_path: Path):
    store = SqliteStorage(tmp_path / "n.db", threaded=False)
    log, _ = make_log(store)
    for i in range(20):
        kind = "chat" if i % 2 else "join"
        log.append(kind, {"avatar": 1, "text": "x"} if i % 2 else {"avatar": 1}, st=0.0)
    log.commit()
    policy = PrunePolicy(replay_events=5, replay_days=1000)
    point = store.prune_point("bar", policy)
    assert point == 15
    log.prune(policy, point)
    log.commit()
    kinds = {(e["seq"], e["kind"]) for e in store.events("bar")}
    assert all(kind == "chat" for seq, kind in kinds if seq <= 15)  # joins up to 15 are gone
    assert {seq for seq, _ in kinds if seq > 15} == {16, 17, 18, 19, 20}
    assert store.load_room("bar", "x").pruned_through == 15
    replay, gone = log.replay_start(3)
    assert gone and replay is not None and replay.after_seq == 15
    assert [s for s, _ in log.frames_after(replay.after_seq, 100, 1 << 20)] == [16, 17, 18, 19, 20]
    assert log.replay_start(16) == (log.replay_start(16)[0], False)
    assert log.replay_start(20)[0] is None  # nothing missed
    assert log.replay_start(None) == (None, False)
    # By age: everything older than the window may go.
    assert store.prune_point("bar", PrunePolicy(replay_events=10**6, replay_days=0.0)) == 20
    store.close()


def test_resume_tokens_are_signed_per_room_and_avatar():
    secret = b"s" * 32
    nonce = new_resume_nonce()
    token = mint_resume(secret, "bar", 12, nonce)
    assert len(token) <= 128 and "." not in token
    claim = read_resume(secret, "bar", token)
    assert claim is not None and (claim.avatar, claim.nonce) == (12, nonce)
    assert read_resume(secret, "lounge", token) is None
    assert read_resume(b"t" * 32, "bar", token) is None
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    assert read_resume(secret, "bar", flipped) is None
    for junk in (None, 5, "", "x" * 35, "!" * 35, token + "A"):
        assert read_resume(secret, "bar", junk) is None
    with pytest.raises(ValueError):
        mint_resume(secret, "bar", 70000, nonce)
