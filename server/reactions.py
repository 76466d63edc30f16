"""The Empathy Engine, server side: reactions in, faces out, the felt arc kept, branches taken.

- `react` (10 Hz per opted-in client, 1–4 packed 14-byte records, neonbar/reaction.py): the
  newest record is the sender's face; every record whose scene time is within
  SCENE_TOLERANCE_S of the room's play head is folded into the playing scene's felt arc. Records
  wait in a list and are folded once per tick in one numpy pass (cheap for 200 watchers).
- `faces` (FACES_HZ): one binary message to everyone with the faces that changed since the last
  one (11 bytes an avatar), which the clients put on the avatars.
- `micro`: a micro-expression moment, kept with the felt arc for the report.
- Branch points: the playing scene's screenplay may carry `[[branch: …]]` notes
  (neonbar/branching.py). When the play head reaches one, the felt arc over the window before
  it chooses (unless the host chose with a `branch` message), the room hears a reliable
  `branch` event saying what was chosen and why, and the chosen scene plays when this one ends.

The felt arc is statistics: it is written to `reactions.sqlite` beside the server's database
every FLUSH_S (off the event loop, by one worker thread), not through the event log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from neonbar import reaction as wire
from neonbar.branching import BranchDecision, BranchPoint, choose, read_branches
from neonbar.errors import UserError
from neonbar.protocol import ErrorCode, ProtocolError
from server.playback import Playback
from server.room import Avatar, Feature, Room, Session, handles, register_feature

log = logging.getLogger("neonbar.server.reactions")

SCENE_TOLERANCE_S = 5.0  # a reaction further than this from the play head is not felt-arc data
FLUSH_S = 2.0
MICRO_PER_MINUTE = 120  # more than this from one avatar is noise, not micro-expressions
_WRITER: list[ThreadPoolExecutor] = []


def _writer() -> ThreadPoolExecutor:
    if not _WRITER:
        _WRITER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="felt-arc"))
    return _WRITER[0]


def store_path(room: Room) -> Path | None:
    """reactions.sqlite beside the room's database; None for an in-memory database."""
    path = getattr(room.storage, "path", None)
    if not path or str(path) == ":memory:":
        return None
    return Path(str(path)).parent / wire.FeltArcStore.FILE


class SceneInfo:
    """What the branch logic needs of a scene: its branch points and its intended arc."""

    def __init__(self, points: list[BranchPoint], intended: Callable[[float], tuple[float, float]]):
        self.points = points
        self.intended = intended


def load_scene_info(scene: str) -> SceneInfo:
    """Branch points and intended arc of a scene by name; none when it has no screenplay."""
    from neonbar.arc import intended_arc
    from neonbar.scenes import load_scene

    try:
        spec = load_scene(scene)
        if spec.screenplay is None:
            return SceneInfo([], lambda t: (0.0, 0.0))
        points = read_branches(spec.screenplay)
        if not points:
            return SceneInfo([], lambda t: (0.0, 0.0))
        return SceneInfo(points, intended_arc(spec).at)
    except UserError as exc:
        log.warning("scene %s: no branch points (%s)", scene, exc)
        return SceneInfo([], lambda t: (0.0, 0.0))


@register_feature
class Reactions(Feature):
    name = "reactions"
    scene_info: Callable[[str], SceneInfo] = staticmethod(load_scene_info)  # tests replace it

    def __init__(self, room: Room) -> None:
        super().__init__(room)
        self.latest: dict[int, bytes] = {}  # avatar id -> newest record
        self.changed: set[int] = set()
        self.waiting: list[tuple[int, bytes]] = []  # records to fold at the next tick
        self.arcs: dict[str, wire.FeltArc] = {}
        self.new_micro: list[wire.MicroMoment] = []
        self.new_watchers: dict[str, set[str]] = {}
        self.decisions: dict[tuple[str, str], BranchDecision] = {}  # (scene, point)
        self.overrides: dict[tuple[str, str], str] = {}
        self.next_scene: tuple[str, str] | None = None  # (after this scene, play this one)
        self._info: dict[str, SceneInfo] = {}
        self._loading: dict[str, Future[SceneInfo]] = {}
        self._next_faces_s = 0.0
        self._next_flush_s = 0.0
        self._store: wire.FeltArcStore | None = None
        self._path = store_path(room)

    # ---------------------------------------------------------------------------- hooks

    def on_create(self) -> None:
        if self._path is not None:
            self._store = _writer().submit(wire.FeltArcStore, self._path).result()

    def welcome(self, avatar: Avatar, now_s: float) -> dict[str, Any]:
        ids = sorted(self.latest)
        decided = [
            {"scene": s, "point": p, "choice": d.choice.scene, "reason": d.reason}
            for (s, p), d in self.decisions.items()
        ]
        return {
            "reactions": {
                "hz": wire.REACTION_HZ,
                "faces_hz": wire.FACES_HZ,
                "faces": wire.pack_faces(ids, [self.latest[i] for i in ids]),
                "branches": decided,
            }
        }

    def on_leave(self, avatar: Avatar, reason: str) -> None:
        self.latest.pop(avatar.id, None)
        self.changed.discard(avatar.id)

    def on_tick(self, now_s: float) -> None:
        timeline = self._timeline()
        scene = timeline.scene if timeline is not None else None
        if self.waiting:
            self._fold(scene, timeline, now_s)
        if self.changed and now_s >= self._next_faces_s:
            self._send_faces()
            self._next_faces_s = now_s + 1.0 / wire.FACES_HZ
        if scene is not None and timeline is not None:
            self._branches(scene, timeline, now_s)
        if now_s >= self._next_flush_s:
            self._next_flush_s = now_s + FLUSH_S
            self.flush()

    def on_dispose(self) -> None:
        self.flush()
        if self._store is not None:
            store = self._store
            self._store = None
            _writer().submit(store.close).result()

    # ------------------------------------------------------------------------- messages

    @handles("react")
    def on_react(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        blob = msg["r"]
        why = wire.check_records(blob)
        if why is not None:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"react: {why}", "react")
        avatar = session.avatar.id
        newest = blob[-wire.REACTION_BYTES :]
        if self.latest.get(avatar, b"")[4:] != newest[4:]:  # time aside, the face changed
            self.changed.add(avatar)
        self.latest[avatar] = newest
        self.waiting.append((avatar, blob))

    @handles("micro")
    def on_micro(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        timeline = self._timeline()
        if timeline is None or timeline.scene is None:
            return  # nothing plays: a micro-expression at the bar is nobody's business
        if abs(msg["at"] - timeline.position(now_s)) > SCENE_TOLERANCE_S:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "micro: at is far from the scene's play head", "micro"
            )
        state = session.avatar.state.setdefault(self.name, {"micro": []})
        recent = [t for t in state["micro"] if now_s - t < 60.0]
        if len(recent) >= MICRO_PER_MINUTE:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "micro: too many in a minute", "micro")
        state["micro"] = [*recent, now_s]
        self.new_micro.append(
            wire.MicroMoment(
                timeline.scene, msg["at"], msg["kind"], msg["strength"], msg["dur_ms"],
                session.avatar.name,
            )
        )  # fmt: skip

    @handles("branch")
    def on_branch(self, session: Session, msg: dict[str, Any], now_s: float) -> None:
        if session.avatar.role != "host":
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "only the host chooses a branch", "branch")
        timeline = self._timeline()
        scene = timeline.scene if timeline is not None else None
        info = self._scene(scene, wait=True) if scene is not None else None
        point = next((p for p in info.points if p.name == msg["point"]), None) if info else None
        if scene is None or point is None:
            raise ProtocolError(
                ErrorCode.BAD_STATE, "branch: the playing scene has no such branch point",
                "branch",
            )  # fmt: skip
        if msg["choice"] not in {c.scene for c in point.choices.values()}:
            choices = ", ".join(c.scene for c in point.choices.values())
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"branch: choose one of {choices}", "branch"
            )
        key = (scene, point.name)
        self.overrides[key] = msg["choice"]
        if key in self.decisions:  # already taken: the host's word replaces it
            del self.decisions[key]
            self._decide(scene, point, now_s, by=session.avatar.id)

    # --------------------------------------------------------------------------- work

    def _timeline(self) -> Any:
        playback = self.room.features.get("playback")
        return getattr(playback, "timeline", None)

    def _scene(self, scene: str, wait: bool = False) -> SceneInfo | None:
        """The scene's branch points and intended arc, loaded off the event loop (computing an
        intended arc can take a second); None until loaded, unless `wait`."""
        info = self._info.get(scene)
        if info is not None:
            return info
        future = self._loading.get(scene)
        if future is None:
            future = self._loading[scene] = _writer().submit(type(self).scene_info, scene)
        if not (wait or future.done()):
            return None
        del self._loading[scene]
        try:
            info = future.result()
        except Exception as exc:  # never let a bad scene file stop the room
            log.warning("scene %s: no branch points (%s)", scene, exc)
            info = SceneInfo([], lambda t: (0.0, 0.0))
        self._info[scene] = info
        return info

    def arc(self, scene: str) -> wire.FeltArc:
        arc = self.arcs.get(scene)
        if arc is None:
            if self._store is not None:
                store = self._store
                arc = _writer().submit(store.load, self.room.name, scene).result()
            else:
                arc = wire.FeltArc()
            self.arcs[scene] = arc
        return arc

    def _fold(self, scene: str | None, timeline: Any, now_s: float) -> None:
        waiting, self.waiting = self.waiting, []
        if scene is None:
            return
        arc = self.arc(scene)
        head = timeline.position(now_s)
        blobs = b"".join(blob for _, blob in waiting)
        rec = wire.records(blobs)
        owners = np.repeat(
            np.array([a for a, _ in waiting]),
            [len(blob) // wire.REACTION_BYTES for _, blob in waiting],
        )
        near = np.abs(rec["t_ms"] / 1000.0 - head) <= SCENE_TOLERANCE_S
        if not near.any():
            return
        arc.add(rec[near])
        newcomers = set(owners[near].tolist()) - arc.watchers
        if newcomers:
            names = self.new_watchers.setdefault(scene, set())
            for avatar_id in newcomers:
                arc.watchers.add(avatar_id)
                avatar = self.room.avatars.get(avatar_id)
                if avatar is not None:
                    names.add(avatar.name)

    def _send_faces(self) -> None:
        ids = sorted(i for i in self.changed if i in self.latest)
        self.changed.clear()
        if not ids:
            return
        payload = wire.pack_faces(ids, [self.latest[i] for i in ids])
        links = [s.link for s in self.room.sessions.values()]
        frame = _encode({"t": "faces", "d": payload})
        self.room.out.broadcast(links, frame)

    def _branches(self, scene: str, timeline: Any, now_s: float) -> None:
        info = self._scene(scene)
        if info is None:
            return  # still loading: a branch point is never within the first ticks of a scene
        pos = timeline.position(now_s)
        for point in info.points:
            key = (scene, point.name)
            if key not in self.decisions and timeline.playing and pos >= point.at_s:
                self._decide(scene, point, now_s, by=None)
            elif key in self.decisions and pos < point.at_s - 1.0:
                del self.decisions[key]  # the host went back before it: decide again later
                if self.next_scene is not None and self.next_scene[0] == scene:
                    self.next_scene = None
        if (
            self.next_scene is not None
            and self.next_scene[0] == scene
            and timeline.frames > 0
            and pos >= timeline.duration_s - 1e-6
        ):
            _, chosen = self.next_scene
            self.next_scene = None
            playback = self.room.features.get("playback")
            if isinstance(playback, Playback):
                playback.switch_scene(chosen, now_s, autoplay=True)

    def _decide(self, scene: str, point: BranchPoint, now_s: float, by: int | None) -> None:
        info = self._scene(scene, wait=True)
        assert info is not None
        key = (scene, point.name)
        override = self.overrides.get(key)
        decision = choose(point, self.arc(scene), info.intended, override=override)
        self.decisions[key] = decision
        self.next_scene = (scene, decision.choice.scene)
        from neonbar.reaction import BRANCH

        self.room.emit(
            BRANCH, scene=scene, point=point.name, choice=decision.choice.scene,
            label=decision.choice.label[:120], reason=decision.reason[:400], by=by,
        )  # fmt: skip
        playback = self.room.features.get("playback")
        if isinstance(playback, Playback):
            playback.announce_next(decision.choice.scene)  # clients fetch it ahead
        log.info("room %s: branch %s of %s -> %s (%s)", self.room.name, point.name, scene,
                 decision.choice.scene, decision.reason)  # fmt: skip

    def flush(self) -> None:
        """Hand the dirty buckets, new micro moments and watchers to the writer thread."""
        if self._store is None:
            self.new_micro.clear()
            self.new_watchers.clear()
            return
        store, room = self._store, self.room.name
        micro, self.new_micro = self.new_micro, []
        watchers, self.new_watchers = self.new_watchers, {}
        for scene, arc in self.arcs.items():
            rows = arc.take_dirty()
            mine = [m for m in micro if m.scene == scene]
            names = watchers.pop(scene, set())
            if rows or mine or names:
                snapshot = wire.FeltArc(bucket_ms=arc.bucket_ms)
                snapshot.dirty.update(b for b, _, _ in rows)
                snapshot._grow(max((b for b, _, _ in rows), default=-1) + 1)
                for b, n, sums in rows:
                    snapshot.n[b] = n
                    snapshot.sums[b] = sums
                _writer().submit(store.save, room, scene, snapshot, mine, sorted(names))
        leftover = [m for m in micro if m.scene not in self.arcs]
        for scene in {m.scene for m in leftover} | set(watchers):
            mine = [m for m in leftover if m.scene == scene]
            _writer().submit(
                store.save, room, scene, wire.FeltArc(), mine, sorted(watchers.get(scene, ()))
            )

    def wait_flushed(self) -> None:
        """Block until the writer thread has written everything handed to it (tests)."""
        _writer().submit(lambda: None).result()


def _encode(msg: dict[str, Any]) -> bytes:
    from neonbar.protocol import encode

    return encode(msg)
