"""Watch together, server side: the room's timeline is room state, changed only by `playback`.

The host controls playback (play, pause, seek, rate, another scene, the next scene); with
`playback {op: "collab", allow: true}` the host lets collaborators control it too. Viewers never
do. Every change is a new `Timeline` (neonbar.playback) sent as a reliable `timeline` event —
sequenced and kept like every event — and saved with the room's state, so a restarted server
carries on where the room was: a scene that was playing has moved on by the time the server was
away, as it did on the clients' screens, which kept playing from their own clocks.

Choosing a scene resolves its media on a worker thread (server/media.py); meanwhile the timeline
says "preparing" (with a sentence when a generated scene is being rendered), and a `play` asked
for in that time starts the scene once it is ready. A scene whose media this server cannot have
turns the timeline "missing" with a sentence saying why and what to do, and the room hears it as
a `system` event too: never a black screen forever.

Once a scene is ready the timeline announces the one after it (`next`: the list's next, or what
a branch point chose) and, as soon as this server has that scene's media, its hash
(`next_media`): clients fetch it while the current scene plays, and the switch shows frames at
once. Looking ahead never renders (minutes of CPU for a scene nobody may pick).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from neonbar.errors import UserError
from neonbar.playback import TIMELINE, Timeline
from neonbar.protocol import SYSTEM, ErrorCode, ProtocolError
from server.delivery import HttpReply, HttpRequest
from server.media import MediaLibrary, MediaMissing, SceneMedia, media_route, resolved
from server.room import Feature, Room, Session, handles, register_feature

log = logging.getLogger("neonbar.server.playback")

STATE_KEY = "playback"
RESTORE_TIMEOUT_S = 30.0
_LIBRARY: list[MediaLibrary] = []


def shared_library() -> MediaLibrary:
    """The process's media library (the HTTP route and every room's timeline share it)."""
    if not _LIBRARY:
        _LIBRARY.append(MediaLibrary())
    return _LIBRARY[0]


def may_control(role: str, timeline: Timeline) -> bool:
    return role == "host" or (role == "collaborator" and timeline.collab)


@register_feature
class Playback(Feature):
    name = "playback"

    def __init__(self, room: Room) -> None:
        super().__init__(room)
        self.library: MediaLibrary = getattr(room.host, "media", None) or shared_library()
        self.timeline = Timeline()
        self._pending: Future[SceneMedia] | None = None
        self._loads = 0  # scenes loaded so far: which load a worker's news is about
        self._autoplay = False
        self._render_note: tuple[int, str] | None = None  # (load, sentence), from the worker
        self._next_pending: Future[SceneMedia] | None = None
        self._next_key: tuple[str | None, str] | None = None  # (this scene, the next one)

    # ---------------------------------------------------------------------------- hooks

    def on_create(self) -> None:
        state = self.room.storage.load_state(self.room.name).get(STATE_KEY)
        if not isinstance(state, dict):
            return
        try:
            saved = Timeline.from_wire(state.get("timeline"))
            saved_st = float(state["st"])
            saved_wall = float(state["wall_s"])
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("room %s: stored timeline unreadable (%s); starting idle", self.room.name,
                        exc)  # fmt: skip
            return
        now_s = self.room.now_s()
        pos = saved.position(saved_st)
        if saved.playing:  # the room's clock did not stop while the server was away
            pos += max(0.0, time.time() - saved_wall) * saved.rate
        restored = replace(saved, pos_s=min(pos, saved.duration_s), at_s=now_s,
                           version=saved.version + 1, by=-1, next_media=None)  # fmt: skip
        if restored.playing and pos >= saved.duration_s:
            restored = replace(restored, playing=False)
        self.timeline = restored
        if restored.scene is not None and restored.status == "preparing":
            # Stopped while preparing (a render takes minutes): prepare it again, rendering
            # if this server renders, and play it then if that was asked for.
            self.switch_scene(restored.scene, now_s, autoplay=bool(state.get("autoplay")))
            log.info("room %s: timeline restored, preparing %s again", self.room.name,
                     restored.scene)  # fmt: skip
            return
        if restored.scene is not None and restored.status == "ready":
            # Served again only once hashed; do it now (once per room, at start) so the first
            # client asking for the media is not refused.
            try:
                media = self.library.resolve(restored.scene, render=False).result(RESTORE_TIMEOUT_S)
            except MediaMissing as exc:
                self.timeline = restored.with_status("missing", now_s, note=str(exc))
            except Exception as exc:
                log.warning("room %s: media of %s not restored: %s", self.room.name,
                            restored.scene, exc)  # fmt: skip
                self.timeline = restored.with_status("missing", now_s, note=str(exc))
            else:
                if media.sha256 != restored.media:
                    self.timeline = restored.load(
                        now_s, scene=media.scene, title=media.title, media=media.sha256,
                        fps=media.fps, frames=media.frames, status="ready",
                    )  # fmt: skip
        current = self.timeline
        if current.status == "ready" and current.scene is not None:
            following = current.next_scene or self._after(current.scene)
            if following is not None and following != current.scene:
                self.timeline = replace(current, next_scene=following, next_media=None)
                self._look_ahead(following)
        self._save(now_s)
        log.info("room %s: timeline restored (%s at %.2f s, %s)", self.room.name,
                 self.timeline.scene, self.timeline.position(now_s),
                 "playing" if self.timeline.playing else "paused")  # fmt: skip

    def welcome(self, avatar: Any, now_s: float) -> dict[str, Any]:
        return {"timeline": self.timeline.to_wire()}

    def on_tick(self, now_s: float) -> None:
        note = self._render_note
        timeline = self.timeline
        if note is not None and note[0] == self._loads:
            self._render_note = None
            if timeline.status == "preparing" and timeline.note != note[1]:
                self._change(timeline.with_status("preparing", now_s, note=note[1]), now_s)
        if self._pending is not None:
            result = resolved(self._pending)
            if result is not None:
                self._pending = None
                self._media_ready(result, now_s)
        if self._next_pending is not None:
            ahead = resolved(self._next_pending)
            if ahead is not None:
                self._next_pending = None
                self._next_ready(ahead)
        if self.timeline.ended(now_s):
            self._change(self.timeline.pause(now_s), now_s)

    # ------------------------------------------------------------------------- messages

    @handles("playback")
    def on_playback(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        avatar = session.avatar
        timeline = self.timeline
        op = msg["op"]
        if op == "collab":
            if avatar.role != "host":
                raise ProtocolError(ErrorCode.NOT_ALLOWED, "only the host decides who controls "
                                    "playback", "playback")  # fmt: skip
            allow = _need(msg, "allow", op)
            self._change(timeline.with_collab(bool(allow), now_s, by=avatar.id), now_s)
            return
        if not may_control(avatar.role, timeline):
            who = "the host and collaborators" if timeline.collab else "the host"
            raise ProtocolError(ErrorCode.NOT_ALLOWED, f"only {who} can control playback",
                                "playback")  # fmt: skip
        if op in ("scene", "next"):
            if op == "scene":
                scene = _need(msg, "scene", op)
            else:
                scene = timeline.next_scene or self._after(timeline.scene)
            if scene is None:
                raise ProtocolError(ErrorCode.BAD_STATE, "this server has no scenes", "playback")
            self.switch_scene(str(scene), now_s, by=avatar.id, autoplay=timeline.playing)
            return
        if timeline.scene is None:
            raise ProtocolError(ErrorCode.BAD_STATE, "no scene is chosen yet", "playback")
        if timeline.status != "ready":
            if op == "play" and timeline.status == "preparing":
                self._autoplay = True  # starts as soon as the media is ready
                self._save(now_s)  # even after a restart
                return
            if op == "pause":
                self._autoplay = False
                self._save(now_s)
                return
            raise ProtocolError(ErrorCode.BAD_STATE, timeline.note or "the scene is not ready",
                                "playback")  # fmt: skip
        if op == "play":
            changed = timeline.play(now_s, by=avatar.id)
        elif op == "pause":
            changed = timeline.pause(now_s, by=avatar.id)
        elif op == "seek":
            changed = timeline.seek(float(_need(msg, "pos", op)), now_s, by=avatar.id)
        else:  # rate
            changed = timeline.with_rate(float(_need(msg, "rate", op)), now_s, by=avatar.id)
        self._change(changed, now_s)

    # ------------------------------------------------------------------------- changes

    def plays(self, sha256: str) -> bool:
        """The HTTP route's rule: this room plays that media now, or plays it next."""
        return sha256 in (self.timeline.media, self.timeline.next_media)

    def switch_scene(self, scene: str, now_s: float, *, by: int = -1,
                     autoplay: bool = False) -> None:  # fmt: skip
        """Load `scene` from its start, as the host's `playback scene` does.

        For server code that changes the scene on the room's behalf, e.g. a branch point's
        choice when the scene ends (server/reactions.py). The timeline says "preparing" until
        the media is found (rendered if need be) and hashed, then "ready" (or "missing").

        Args:
            by: the avatar whose action this is, -1 for the server.
            autoplay: start playing as soon as the scene is ready.
        """
        loaded = self.timeline.load(now_s, scene=scene, title=_title_of(scene), media=None,
                                    fps=24.0, frames=0, status="preparing", by=by)  # fmt: skip
        self._loads += 1
        load = self._loads
        self._autoplay = autoplay
        self._render_note = None

        def rendering(sentence: str) -> None:  # on a worker thread: picked up by on_tick
            self._render_note = (load, sentence)

        renders = bool(getattr(self.room.config, "render_scenes", False))
        self._pending = self.library.resolve(scene, render=renders, on_render=rendering)
        self._next_pending = None
        self._change(loaded, now_s)

    def announce_next(self, scene: str) -> None:
        """Make `scene` the one that follows the current scene (a branch point's choice): the
        timeline names it at once, and its media once this server has them, so clients
        prefetch it; `playback next` loads it."""
        timeline = self.timeline
        if scene == timeline.next_scene or timeline.scene is None:
            return
        self._change(timeline.with_next(scene, None), self.room.now_s())
        self._look_ahead(scene)

    def _after(self, scene: str | None) -> str | None:
        names = self.library.scene_names()
        if not names:
            return None
        if scene not in names:
            return names[0]
        return names[(names.index(scene) + 1) % len(names)]

    def _media_ready(self, result: SceneMedia | str, now_s: float) -> None:
        # `_pending` is always the latest load's (another choice replaces it), and versions made
        # meanwhile (a render's note, the collaborator rule) keep the scene preparing.
        timeline = self.timeline
        if timeline.status != "preparing" or (
            isinstance(result, SceneMedia) and result.scene != timeline.scene
        ):
            return
        if isinstance(result, str):
            log.warning("room %s: %s", self.room.name, result)
            self._change(timeline.with_status("missing", now_s, note=result), now_s)
            self.room.emit(SYSTEM, text=result[:500])
            return
        ready = replace(
            timeline.with_status("ready", now_s, media=result.sha256, frames=result.frames,
                                 fps=result.fps),
            title=result.title,
        )  # fmt: skip
        if self._autoplay:
            ready = replace(ready, playing=True, pos_s=0.0, at_s=now_s)
        self._autoplay = False  # saved with the ready version below
        following = self._after(result.scene)
        if following is not None and following != result.scene:
            ready = replace(ready, next_scene=following, next_media=None)
            self._change(ready, now_s)
            self._look_ahead(following)
        else:
            self._change(ready, now_s)

    def _look_ahead(self, scene: str) -> None:
        """Resolve the next scene's media without rendering; on_tick announces its hash."""
        self._next_key = (self.timeline.scene, scene)
        self._next_pending = self.library.resolve(scene, render=False)

    def _next_ready(self, result: SceneMedia | str) -> None:
        timeline = self.timeline
        key = self._next_key
        if key is None or key != (timeline.scene, timeline.next_scene):
            return  # another scene, or another one next, was chosen meanwhile
        if isinstance(result, str):
            log.info("room %s: the next scene %s cannot be fetched ahead: %s", self.room.name,
                     key[1], result)  # fmt: skip
            return
        if timeline.next_media != result.sha256:
            self._change(timeline.with_next(key[1], result.sha256), self.room.now_s())

    def _change(self, timeline: Timeline, now_s: float) -> None:
        self.timeline = timeline
        self._save(now_s)
        self.room.emit(TIMELINE, **timeline.to_wire())

    def _save(self, now_s: float) -> None:
        state = {"timeline": self.timeline.to_wire(), "st": now_s, "wall_s": time.time(),
                 "autoplay": self._autoplay}  # fmt: skip
        self.room.storage.save_state(self.room.name, STATE_KEY, state)


def media_route_for(server: Any) -> Callable[[HttpRequest], HttpReply]:
    """The `/media/` route of a SessionServer: media only for rooms that play them."""

    def room_allows(room_name: str, sha256: str) -> bool:
        room = server.rooms.get(room_name)
        feature = room.features.get(Playback.name) if room is not None else None
        return isinstance(feature, Playback) and feature.plays(sha256)

    library = getattr(server, "media", None) or shared_library()
    return media_route(library, server.secret, room_allows, server.config.open_rooms)


def _title_of(scene: str) -> str:
    """The spec's title, for the strip while the media are prepared (a render takes minutes);
    reading a spec is a small TOML file. An unknown scene keeps its name (it turns missing)."""
    from neonbar.scenes import load_scene

    try:
        return load_scene(scene).title
    except UserError:
        return scene


def _need(msg: dict[str, Any], field: str, op: str) -> Any:
    if field not in msg:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"playback {op} needs {field}", "playback")
    return msg[field]


__all__ = ["Playback", "may_control", "media_route_for", "shared_library"]
