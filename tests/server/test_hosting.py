"""Kicks and mutes stick to the invite and are stored with the room: a restart keeps them.

Sans-I/O: a room on a SQLite file, dropped without closing anything (a crash), then a new room
on the same file (the restarted server). The real-process version with `kill -9` is in
tests/server/test_crash.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from neonbar.protocol import PROTOCOL_VERSION, CloseCode, ErrorCode, encode
from neonbar.tokens import mint
from server.recording import RecordedLink, RecordingHost
from server.room import JoinRefused, Room, RoomConfig, Session
from server.storage import SqliteStorage, Write

SECRET = b"recording-secret"


def hello(token: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": name, "token": token,
            **fields}  # fmt: skip


class Life:
    """One server process's room on `db` (a new one per restart; the old one is just dropped)."""

    def __init__(self, db: Path) -> None:
        self.storage = SqliteStorage(db, threaded=False)
        self.groups: list[Sequence[Write]] = []  # every commit's writes, in order
        submit = self.storage.submit

        def recording_submit(writes: Sequence[Write], cb: Callable[[], None] | None) -> None:
            self.groups.append(list(writes))
            submit(writes, cb)

        self.storage.submit = recording_submit  # type: ignore[method-assign]
        self.host = RecordingHost(RoomConfig(open_rooms=False), SECRET, self.storage)
        self.room: Room = self.host.room()

    def join(self, token: str, name: str, **fields: Any) -> tuple[Session, RecordedLink]:
        msg = hello(token, name, **fields)
        link = RecordedLink(name)
        session = self.room.on_join(link, msg, self.room.on_auth(msg), self.host.now)
        return session, link

    def send(self, session: Session, msg: dict[str, Any]) -> None:
        self.room.receive(session, encode(msg), self.host.now)

    def refused(self, token: str, name: str, **fields: Any) -> int:
        with pytest.raises(JoinRefused) as refused:
            msg = hello(token, name, **fields)
            self.room.on_join(RecordedLink(name), msg, self.room.on_auth(msg), self.host.now)
        return int(refused.value.close_code)


def errors(link: RecordedLink) -> list[int]:
    return [m["code"] for m in link.take() if m["t"] == "error"]


def test_a_kick_and_a_mute_are_committed_with_their_events_and_outlive_a_restart(tmp_path):
    db = tmp_path / "n.db"
    host_token = mint(SECRET, "bar", "host")
    guest_token = mint(SECRET, "bar", "collaborator")
    loud_token = mint(SECRET, "bar", "collaborator")
    first = Life(db)
    host, _ = first.join(host_token, "host")
    guest, guest_link = first.join(guest_token, "guest")
    loud, _ = first.join(loud_token, "loud")
    first.send(host, {"t": "kick", "avatar": guest.avatar.id})
    first.send(host, {"t": "mute", "avatar": loud.avatar.id, "muted": True})
    assert guest_link.closed is not None and guest_link.closed[0] == CloseCode.KICKED
    # Each decision is in the same transaction as its event: nobody saw one without the other.
    for kind in ("kick", "mute"):
        group = next(g for g in first.groups if any(w[0] == "event" and w[5] == kind for w in g))
        assert any(w[0] == "state" and w[2].startswith("hosting.invite.") for w in group), kind

    second = Life(db)  # the first is dropped as it stands: a crash
    assert second.refused(guest_token, "guest again") == CloseCode.KICKED
    assert second.refused(guest_token, "guest", resume=guest.avatar.resume_token) == (
        CloseCode.KICKED
    )
    # The muted invite: its restored avatar resumes muted, a new avatar of it is muted too.
    back, back_link = second.join(loud_token, "loud", resume=loud.avatar.resume_token)
    assert back.avatar.id == loud.avatar.id and back.avatar.muted
    fresh, fresh_link = second.join(loud_token, "louder")
    roster = {e["name"]: e["muted"] for e in fresh_link.take()[0]["avatars"]}
    assert roster["loud"] is True and roster["louder"] is True
    for session, link in ((back, back_link), (fresh, fresh_link)):
        link.take()
        second.send(session, {"t": "chat", "text": "hello?"})
        assert errors(link) == [ErrorCode.MUTED]
    # A host lifts the mute (for the whole invite); that is stored too.
    host_back, _ = second.join(host_token, "host", resume=host.avatar.resume_token)
    second.send(host_back, {"t": "mute", "avatar": fresh.avatar.id, "muted": False})

    third = Life(db)
    again, again_link = third.join(loud_token, "loudest")
    assert not again.avatar.muted
    third.send(again, {"t": "chat", "text": "heard"})
    assert [m["text"] for m in again_link.take() if m.get("kind") == "chat"] == ["heard"]
    assert third.refused(guest_token, "still out") == CloseCode.KICKED  # a kick is for good
    # Another invite is another person: that is how a host lets someone back.
    third.join(mint(SECRET, "bar", "collaborator"), "guest")


def test_a_crowd_invite_keeps_its_allowance_after_a_restart(tmp_path):
    """Its avatars come back from storage before any hello shows the invite; the first hello
    then sizes it as the invite says (20), not as the room's default (16)."""
    db = tmp_path / "n.db"
    token = mint(SECRET, "bar", "collaborator", avatars=20)
    first = Life(db)
    for i in range(18):
        first.join(token, f"b{i}")
    second = Life(db)
    assert len(second.room.avatars) == 18  # back, away
    second.join(token, "b18")
    second.join(token, "b19")
    assert second.refused(token, "b20") == CloseCode.INVITE_FULL


def test_a_bad_stored_standing_is_skipped_not_fatal(tmp_path):
    db = tmp_path / "n.db"
    first = Life(db)
    first.storage.save_state("bar", "hosting.invite.invite:zz", ["not", "a", "map"])
    first.storage.save_state("bar", "hosting.invite.invite:yy", {"kicked": False})
    second = Life(db)
    assert second.room.identities.find("invite:zz") is None
    assert second.room.identities.find("invite:yy") is None
    second.join(mint(SECRET, "bar", "collaborator"), "ann")


def test_a_kick_removes_one_avatar_the_invites_others_stay_and_resume(tmp_path):
    """One invite shared by two people: the kicked one is out, the other one stays, may
    resume (also after a restart), and nobody new joins with the invite."""
    db = tmp_path / "n.db"
    host_token, shared = mint(SECRET, "bar", "host"), mint(SECRET, "bar", "collaborator")
    first = Life(db)
    host, _ = first.join(host_token, "host")
    kay, _ = first.join(shared, "kay")
    lee, lee_link = first.join(shared, "lee")
    first.send(host, {"t": "kick", "avatar": kay.avatar.id})
    assert kay.avatar.id not in first.room.avatars and lee.avatar.id in first.room.avatars
    assert not lee_link.closing
    first.room.on_disconnect(lee)
    back, _ = first.join(shared, "lee", resume=lee.avatar.resume_token)
    assert back.avatar is lee.avatar
    assert first.refused(shared, "newcomer") == CloseCode.KICKED

    second = Life(db)
    again, _ = second.join(shared, "lee", resume=lee.avatar.resume_token)
    assert again.avatar.id == lee.avatar.id
    assert second.refused(shared, "newcomer") == CloseCode.KICKED
