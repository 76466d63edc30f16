"""What hosts do: remove someone, mute someone, set the room's look.

A kick or a mute sticks to the invite (server/identity.py) and is stored with the room, one
row of room state per invite, in the same commit as its `kick` or `mute` event: by the time
anyone sees the event, a `kill -9` can no longer undo it. A restarted room reads them back
before the first hello. There is no unkick: a host lets a kicked person back with a new
invite (another nonce, another identity). An unmute is a `mute` with `muted: false` for one of
the invite's avatars in the room, stored the same way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from neonbar.protocol import KICK, LOOK, MUTE, CloseCode, ErrorCode, ProtocolError
from server.identity import Identity
from server.room import Avatar, Feature, Session, handles, register_feature

log = logging.getLogger("neonbar.server")

STANDING_PREFIX = "hosting.invite."  # room state key: this prefix + the identity's key


@register_feature
class Hosting(Feature):
    name = "hosting"

    def on_create(self) -> None:
        """Kicked and muted invites come back before anyone can join (after durability has
        put the stored avatars back, so a muted invite's restored avatars stay muted)."""
        room = self.room
        now_s = room.now_s()
        restored = 0
        for key, value in room.storage.load_state(room.name).items():
            if not key.startswith(STANDING_PREFIX) or not isinstance(value, dict):
                continue
            kicked, muted = bool(value.get("kicked")), bool(value.get("muted"))
            if not (kicked or muted):
                continue
            identity = room.identities.restore(key[len(STANDING_PREFIX) :], now_s, kicked, muted)
            for avatar_id in identity.avatars:
                if avatar_id in room.avatars:
                    room.avatars[avatar_id].muted = muted
            restored += 1
        room.identities.unsized()
        if restored:
            log.info("room %s: %d kicked or muted invites restored", room.name, restored)

    def _store(self, identity: Identity) -> None:
        """Queue the invite's standing for the next commit (the event's own, emitted next)."""
        value = json.dumps(identity.standing(), separators=(",", ":"))
        room = self.room
        room.events.write(("state", room.name, STANDING_PREFIX + identity.key, value))

    def _host_only(self, session: Session, kind: str) -> None:
        if session.avatar.role != "host":
            raise ProtocolError(ErrorCode.NOT_ALLOWED, f"only hosts may {kind}", kind)

    def _target(self, session: Session, msg: dict[str, Any]) -> Avatar:
        kind = msg["t"]
        target = self.room.avatars.get(msg["avatar"])
        if target is None:
            raise ProtocolError(ErrorCode.NO_SUCH_AVATAR, f"no avatar {msg['avatar']}", kind)
        if target is session.avatar:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"you cannot {kind} yourself", kind)
        return target

    @handles("look")
    def on_look(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self._host_only(session, "look")
        room = self.room
        room.look = msg["look"]
        room.storage.save_room(room.name, room.look, room.events.seq)
        room.emit(LOOK, look=room.look, by=session.avatar.id)

    @handles("mute")
    def on_mute(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self._host_only(session, "mute")
        target = self._target(session, msg)
        target.muted = msg["muted"]
        room = self.room
        identity = room.identities.find(target.identity)
        if identity is not None:  # the invite stays muted: reconnecting or rejoining keeps it
            identity.muted = target.muted
            for avatar_id in identity.avatars:
                if avatar_id in room.avatars and avatar_id != target.id:
                    room.avatars[avatar_id].muted = target.muted
            self._store(identity)
        room.emit(MUTE, avatar=target.id, muted=target.muted, by=session.avatar.id)
        log.info("mute: avatar %d %s by %d in %s", target.id, target.muted, session.avatar.id,
                 room.name)  # fmt: skip

    @handles("kick")
    def on_kick(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self._host_only(session, "kick")
        target = self._target(session, msg)
        room = self.room
        identity = room.identities.find(target.identity)
        if identity is not None:  # the invite may not come back into this room (4403)
            identity.kicked = True
            self._store(identity)
        room.emit(KICK, avatar=target.id, by=session.avatar.id)
        target_session = target.session
        room.on_leave(target, "kicked")
        if target_session is not None:
            room.close_session(target_session, CloseCode.KICKED, "a host removed you")
        log.info("kick: avatar %d %r by %d in %s", target.id, target.name, session.avatar.id,
                 room.name)  # fmt: skip
