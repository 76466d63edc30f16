"""Avatars that survive a restart, and the pruning of old events (docs/server.md).

A room feature with no messages of its own. It keeps one row per avatar in storage
(server/storage.py `AvatarRecord`): written when the avatar joins or resumes, once a second
while it moves or its state changes, deleted when it leaves, each in the same commit pipeline
as the room's events. When a room is created again after a restart (or a `kill -9`), every
avatar still stored comes back away, as a dropped connection would leave it: for what is left
of its resume window, counted from when it was last known connected, its old resume token
(signed, neonbar/tokens.py) reattaches it where it stood, with its name, colour, role, drink
and tipsy level; the events it missed are replayed from the log.

Once an hour (and when the room is created) events past the `PrunePolicy` go.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from neonbar.protocol import CM_PER_M, EVENT_KINDS, TICK_HZ
from neonbar.tokens import mint_resume, read_resume
from server.room import Avatar, Feature, Session, register_feature
from server.storage import AvatarRecord, PrunePolicy, avatar_row

log = logging.getLogger("neonbar.server")

SAVE_EVERY_TICKS = TICK_HZ  # positions are at most twice this old after a crash (2 s)
PRUNE_EVERY_TICKS = 3600 * TICK_HZ
ALIVE_KEY = "durability.alive_s"  # room state: the last second the room was known running
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


@register_feature
class Durability(Feature):
    name = "durability"
    policy = PrunePolicy()

    def __init__(self, room: Any) -> None:
        super().__init__(room)
        self._saved: dict[int, tuple[Any, ...]] = {}  # avatar id -> what its row holds
        self._nonces: dict[int, str] = {}  # avatar id -> its resume token's nonce

    # ------------------------------------------------------------------------- lifecycle

    def on_create(self) -> None:
        room = self.room
        records = room.storage.load_avatars(room.name)
        alive_s = float(room.storage.load_state(room.name).get(ALIVE_KEY) or 0.0)
        now_s, wall_s = room.now_s(), time.time()
        restored = 0
        for record in records:
            if record.id in room.avatars:
                continue
            # Connected when the server stopped: last seen at the room's last heartbeat.
            seen_s = max(record.seen_s, alive_s) if record.extra.get("connected") else record.seen_s
            try:
                self._restore(record, now_s - max(0.0, wall_s - seen_s))
            except (ValueError, TypeError, KeyError):
                log.exception("room %s: avatar %d could not be restored", room.name, record.id)
                continue
            restored += 1
        if restored:
            log.info("room %s: %d avatars restored, away", room.name, restored)
        self._prune()

    def on_join(self, session: Session, resumed: bool, now_s: float) -> None:
        self._save(session.avatar, force=True)
        self.room.events.commit()

    def on_leave(self, avatar: Avatar, reason: str) -> None:
        self._saved.pop(avatar.id, None)
        self._nonces.pop(avatar.id, None)
        self.room.events.write(("avatar_gone", self.room.name, avatar.id))
        self.room.events.commit()

    def on_tick(self, now_s: float) -> None:
        """Each avatar's row once a second if it changed, a twentieth of them built per tick
        (a tick never pays for the whole room), and the room's heartbeat once a second.

        The rows are committed once a second, with the heartbeat (or sooner, with any event
        kept in between): one transaction of a thousand rows costs the storage thread far
        less than twenty of fifty, each with its own fsync.
        """
        room = self.room
        slot = room.tick % SAVE_EVERY_TICKS
        ids = room._ids
        for aid in ids[ids % SAVE_EVERY_TICKS == slot].tolist():
            avatar = room.avatars.get(aid)
            if avatar is not None:
                self._save(avatar)
        if slot == SAVE_EVERY_TICKS - 1:
            room.events.write(("state", room.name, ALIVE_KEY, json.dumps(time.time())))
            room.events.commit()
        if room.tick % PRUNE_EVERY_TICKS == 0:
            self._prune()

    def on_dispose(self) -> None:
        for avatar in self.room.avatars.values():
            self._save(avatar)
        self.room.events.commit()

    # --------------------------------------------------------------------------- helpers

    def _nonce(self, avatar: Avatar) -> str | None:
        nonce = self._nonces.get(avatar.id)
        if nonce is None:
            room = self.room
            claim = read_resume(room.host.secret, room.name, avatar.resume_token)
            if claim is None:  # a token not signed here: nothing to resume with
                return None
            nonce = self._nonces[avatar.id] = claim.nonce
        return nonce

    def _save(self, avatar: Avatar, force: bool = False) -> None:
        """Queue the avatar's row if anything in it changed since it was last written."""
        room = self.room
        aid = avatar.id
        x_m, y_m = room.pos_m[aid]
        x_cm, y_cm = round(float(x_m) * CM_PER_M), round(float(y_m) * CM_PER_M)
        yaw, input_seq = int(room.yaw[aid]), int(room.input_seq[aid])
        # Checked for every avatar once a second: most have no feature state, and one
        # encoder made once is several times cheaper than json.dumps' per call.
        state = {}
        for name, value in avatar.state.items():
            try:
                _ENCODE(value)
            except (TypeError, ValueError):
                continue  # feature state that is not plain data stays in memory
            state[name] = value
        identity = getattr(avatar, "identity", None)
        # Connected or away: a connected avatar is alive as long as the room's heartbeat.
        connected = avatar.session is not None
        key = (avatar.name, avatar.color, avatar.role, x_cm, y_cm, yaw, input_seq,
               avatar.name_fixed, avatar.muted, identity, connected,
               _ENCODE(state) if state else "")  # fmt: skip
        if not force and self._saved.get(aid) == key:
            return
        nonce = self._nonce(avatar)
        if nonce is None:
            return
        self._saved[aid] = key
        extra = {"name_fixed": avatar.name_fixed, "muted": avatar.muted, "identity": identity,
                 "state": state, "connected": connected}  # fmt: skip
        row = AvatarRecord(room.name, aid, nonce, avatar.name, avatar.color, avatar.role,
                           x_cm, y_cm, yaw, input_seq, time.time(), extra)  # fmt: skip
        room.events.write(("avatar", avatar_row(row)))  # encoded here, a few per tick

    def _restore(self, record: AvatarRecord, away_since_s: float) -> None:
        """Put a stored avatar back in the room, away (as on_join places a new one)."""
        room = self.room
        aid = record.id
        while aid >= len(room.pos_m):
            room._grow(2 * len(room.pos_m))
        room._next_id = max(room._next_id, aid + 1)
        room.moves.forget(aid)
        extra = record.extra
        avatar = Avatar(
            id=aid,
            name=record.name,
            color=record.color,
            role=record.role,
            resume_token=mint_resume(room.host.secret, room.name, aid, record.nonce),
            name_fixed=bool(extra.get("name_fixed", False)),
            muted=bool(extra.get("muted", False)),
        )
        avatar.away_since_s = away_since_s
        avatar.state.update(extra.get("state") or {})
        identity = extra.get("identity")
        identities = getattr(room, "identities", None)
        if identity is not None and identities is not None:
            avatar.identity = identity
            identities.get(identity, room.now_s()).avatars.add(aid)
        room.pos_m[aid] = (record.x_cm / CM_PER_M, record.y_cm / CM_PER_M)
        room.yaw[aid] = record.yaw
        room.input_seq[aid] = record.input_seq
        room.input_at_s[aid] = room.now_s()
        room.avatars[aid] = avatar
        room.resume_tokens[avatar.resume_token] = avatar
        room._ids = np.array(sorted(room.avatars), dtype=np.int64)
        room.metrics.avatars.inc()
        self._saved[aid] = ()
        self._nonces[aid] = record.nonce

    def _prune(self) -> None:
        room = self.room
        # Never pruned: the kinds storage lists and every kind registered as kept (exports,
        # reports, the beat chain and the timeline read them back).
        registered = frozenset(name for name, kind in EVENT_KINDS.items() if kind.kept)
        policy = replace(self.policy, kept_kinds=self.policy.kept_kinds | registered)
        point = room.storage.prune_point(room.name, policy)
        if point > room.events.pruned_through:
            room.events.prune(policy, point)
            room.events.commit()
            log.info("room %s: replayable events up to seq %d pruned", room.name, point)
