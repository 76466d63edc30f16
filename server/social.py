"""What people do at the bar: chat, emotes and clinks, drinks, their name and colour."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neonbar.clink import clink_partners
from neonbar.drinks import tipsy_after_drink, tipsy_level
from neonbar.protocol import (
    CHAT,
    CLINK,
    DRINK,
    EMOTE,
    PROFILE,
    ErrorCode,
    ProtocolError,
)
from server.room import Avatar, Feature, Session, handles, register_feature

_DRINK_FIELDS = ("drink", "color", "glow", "garnish")


@register_feature
class Social(Feature):
    name = "social"

    def __init__(self, room: Any) -> None:
        super().__init__(room)
        self.cheered_s: dict[int, float] = {}  # avatar id -> server time of its last cheers

    def roster(self, avatar: Avatar, now_s: float) -> Mapping[str, Any]:
        state = avatar.state
        tipsy = state.get("tipsy")
        level = 0.0 if tipsy is None else round(tipsy_level(tipsy[0], tipsy[1], now_s), 3)
        return {"drink": state.get("drink"), "tipsy": level}

    def on_leave(self, avatar: Avatar, reason: str) -> None:
        self.cheered_s.pop(avatar.id, None)

    @handles("chat")
    def on_chat(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        avatar = session.avatar
        if avatar.role == "viewer":
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "viewers cannot chat", "chat")
        if avatar.muted:
            raise ProtocolError(ErrorCode.MUTED, "a host muted you", "chat")
        self.room.emit(CHAT, avatar=avatar.id, text=msg["text"])

    @handles("emote")
    def on_emote(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        avatar = session.avatar
        self.room.emit(EMOTE, avatar=avatar.id, emote=msg["emote"])
        if msg["emote"] != "cheers":
            return
        # The clink rule (neonbar/clink.py) on the server's own positions, decided once.
        self.cheered_s[avatar.id] = now_s
        room = self.room
        ids = room._ids
        cheered = np.array([self.cheered_s.get(i, -np.inf) for i in ids.tolist()])
        partners = clink_partners(avatar.id, ids, room.pos_m[ids], cheered, now_s)
        if partners:
            room.emit(CLINK, avatar=avatar.id, **{"with": partners})

    @handles("drink")
    def on_drink(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        avatar = session.avatar
        drink = {k: msg[k] for k in _DRINK_FIELDS}
        level, level_st = avatar.state.get("tipsy", (0.0, now_s))
        tipsy = tipsy_after_drink(level, level_st, now_s)
        avatar.state["drink"] = drink
        avatar.state["tipsy"] = (tipsy, now_s)
        self.room.emit(DRINK, avatar=avatar.id, tipsy=round(tipsy, 3), **drink)

    @handles("profile")
    def on_profile(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        avatar = session.avatar
        change: dict[str, Any] = {}
        if "name" in msg:
            if avatar.name_fixed:
                raise ProtocolError(ErrorCode.NOT_ALLOWED, "your invite fixes your name", "profile")
            if self.room.name_taken(msg["name"], by=avatar):
                raise ProtocolError(
                    ErrorCode.NAME_TAKEN, "someone here has that name (or one like it)", "profile"
                )
            change["name"] = msg["name"]
        if "color" in msg:
            change["color"] = msg["color"]
        if not change:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "profile: nothing to change", "profile")
        avatar.name = change.get("name", avatar.name)
        avatar.color = change.get("color", avatar.color)
        self.room.emit(PROFILE, avatar=avatar.id, **change)
