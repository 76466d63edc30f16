"""What hosts do: remove someone, mute someone, set the room's look."""

from __future__ import annotations

import logging
from typing import Any

from neonbar.protocol import KICK, LOOK, MUTE, CloseCode, ErrorCode, ProtocolError
from server.room import Avatar, Feature, Session, handles, register_feature

log = logging.getLogger("neonbar.server")


@register_feature
class Hosting(Feature):
    name = "hosting"

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
        room.emit(MUTE, avatar=target.id, muted=target.muted, by=session.avatar.id)
        log.info("mute: avatar %d %s by %d in %s", target.id, target.muted, session.avatar.id,
                 room.name)  # fmt: skip

    @handles("kick")
    def on_kick(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        self._host_only(session, "kick")
        target = self._target(session, msg)
        room = self.room
        room.emit(KICK, avatar=target.id, by=session.avatar.id)
        identity = room.identities.find(target.identity)
        if identity is not None:  # the invite may not come back into this room (4403)
            identity.kicked = True
        target_session = target.session
        room.on_leave(target, "kicked")
        if target_session is not None:
            room.close_session(target_session, CloseCode.KICKED, "a host removed you")
        log.info("kick: avatar %d %r by %d in %s", target.id, target.name, session.avatar.id,
                 room.name)  # fmt: skip
