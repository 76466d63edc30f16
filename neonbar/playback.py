"""The room's playback timeline and the local play head that follows it.

The server owns each room's `Timeline`: which scene, playing or paused, the scene position at a
server time, the rate. Every client derives the position locally from its estimate of the server
clock (neonbar.clocksync), so syncing the picture means syncing the clock:

    position(st) = pos_s + (st - at_s) * rate        while playing, clamped to [0, duration]
    frame(st)    = floor(position(st) * fps)         frame k is due during [k/fps, (k+1)/fps)

A `Playhead` is what a client actually shows: a position advanced by local time and pulled
toward the timeline's position by a drift controller with three bands (`DriftBands`):

- inside `dead_s` (a quarter frame at 24 fps) nothing is corrected: the clock estimate's own
  noise must not make the picture hesitate;
- up to `seek_s` (0.25 s) the play head is slewed: it runs at most `max_slew` (8 %) fast or slow,
  closing the error with a time constant of 1 / `gain_per_s` (0.4 s), so the picture never jumps
  and frames never go backwards;
- beyond `seek_s`, and whenever the timeline itself changes (play, pause, seek, rate, another
  scene), it seeks: the new position is taken at once.

Syncplay's bands, for comparison, are "slow down past 1.5 s, seek past 4 s"; ours are tighter
because the target is one frame (42 ms at 24 fps), not a conversation about the plot.

Sans-I/O: plain numbers in, plain numbers out; no clock is read here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from neonbar.protocol import F, client_message, event_kind, welcome_field

# Rates the server accepts: slower for a close look at a beat, faster to skim.
MIN_RATE = 0.25
MAX_RATE = 4.0
MAX_FPS = 240.0
MAX_FRAMES = 24 * 60 * 60 * 4  # four hours at 24 fps
STATUSES = ("idle", "preparing", "ready", "missing")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Floor rounding guard: 1/24 s * 24 is 0.9999999999999999 in binary floating point.
_FRAME_EPS = 1e-6


def frame_for(position_s: float, fps: float, frames: int) -> int:
    """The frame due at scene position `position_s` (seconds), in [0, frames - 1]."""
    if frames <= 0:
        return 0
    return max(0, min(frames - 1, math.floor(position_s * fps + _FRAME_EPS)))


@dataclass(frozen=True)
class Timeline:
    """One room's timeline at one version; every change is a new value with `version + 1`.

    Args:
        scene: the scene's name (its spec's file stem), None before anything was chosen.
        title: the scene's title, for the timeline bar.
        media: sha256 (hex) of the scene's mp4, what clients fetch from `/media/<sha256>`.
        fps: frames per second of the media.
        frames: how many frames it has (duration = frames / fps).
        playing: whether the position advances.
        pos_s: scene position, seconds, at server time `at_s`.
        at_s: the server time (seconds, server clock) at which `pos_s` holds.
        rate: scene seconds per server second while playing.
        version: increases with every change; clients seek when it changes how the scene moves
            (`motion`).
        by: the avatar whose action made this version, -1 for the server.
        collab: collaborators may control playback too (the host decides).
        status: "idle" (no scene), "preparing" (media being made), "ready", "missing".
        note: a sentence for the room: why the media is missing, or what the server is doing
            while preparing (rendering a generated scene takes minutes).
        next_scene: the scene `next` loads (the list's next, or a branch's choice), if any.
        next_media: sha256 of that scene's mp4 once the server has it: clients fetch it while
            this scene plays, so the switch shows frames at once.
    """

    scene: str | None = None
    title: str = ""
    media: str | None = None
    fps: float = 24.0
    frames: int = 0
    playing: bool = False
    pos_s: float = 0.0
    at_s: float = 0.0
    rate: float = 1.0
    version: int = 0
    by: int = -1
    collab: bool = False
    status: str = "idle"
    note: str = ""
    next_scene: str | None = None
    next_media: str | None = None

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0

    def position(self, server_s: float) -> float:
        """Scene position (seconds) at server time `server_s`, clamped to the scene."""
        pos = self.pos_s
        if self.playing:
            pos += (server_s - self.at_s) * self.rate
        return min(max(pos, 0.0), self.duration_s)

    def frame_at(self, server_s: float) -> int:
        """Index of the frame due at server time `server_s`."""
        return frame_for(self.position(server_s), self.fps, self.frames)

    @property
    def motion(self) -> tuple[Any, ...]:
        """What decides the frame due at every server time. A version that changes none of it
        (announcing the next scene) moves no play head."""
        return (self.scene, self.media, self.fps, self.frames, self.playing, self.pos_s,
                self.at_s, self.rate)  # fmt: skip

    def ended(self, server_s: float) -> bool:
        """Playing, and the position has reached the end of the scene."""
        return self.playing and self.frames > 0 and self.position(server_s) >= self.duration_s

    # ----------------------------------------------------------------------- changes

    def _next(self, now_s: float, by: int, **changes: Any) -> Timeline:
        """Re-anchor at `now_s` (so the position is continuous) and apply `changes`."""
        anchored: dict[str, Any] = {"pos_s": self.position(now_s), "at_s": now_s}
        anchored.update(changes)
        return replace(self, version=self.version + 1, by=by, **anchored)

    def play(self, now_s: float, by: int = -1) -> Timeline:
        """Start (or keep) playing; at the very end, from the start again."""
        pos = self.position(now_s)
        if self.frames and pos >= self.duration_s:
            pos = 0.0
        return self._next(now_s, by, playing=True, pos_s=pos)

    def pause(self, now_s: float, by: int = -1) -> Timeline:
        return self._next(now_s, by, playing=False)

    def seek(self, pos_s: float, now_s: float, by: int = -1) -> Timeline:
        """Jump to scene position `pos_s` (clamped to the scene)."""
        if not math.isfinite(pos_s):
            raise ValueError("a seek position must be a finite number of seconds")
        return self._next(now_s, by, pos_s=min(max(pos_s, 0.0), self.duration_s))

    def with_rate(self, rate: float, now_s: float, by: int = -1) -> Timeline:
        if not (math.isfinite(rate) and MIN_RATE <= rate <= MAX_RATE):
            raise ValueError(f"the rate must be between {MIN_RATE:g} and {MAX_RATE:g}")
        return self._next(now_s, by, rate=float(rate))

    def with_collab(self, collab: bool, now_s: float, by: int = -1) -> Timeline:
        return self._next(now_s, by, collab=bool(collab))

    def load(
        self,
        now_s: float,
        *,
        scene: str,
        title: str,
        media: str | None,
        fps: float,
        frames: int,
        status: str,
        note: str = "",
        playing: bool = False,
        by: int = -1,
    ) -> Timeline:
        """Another scene, from its start; the rate and the collaborator rule carry over (what
        comes after it is announced again once known)."""
        return replace(
            self,
            next_scene=None,
            next_media=None,
            scene=scene,
            title=title,
            media=media,
            fps=fps,
            frames=frames,
            status=status,
            note=note,
            playing=playing,
            pos_s=0.0,
            at_s=now_s,
            version=self.version + 1,
            by=by,
        )

    def with_status(self, status: str, now_s: float, *, media: str | None = None,
                    frames: int | None = None, fps: float | None = None,
                    note: str = "") -> Timeline:  # fmt: skip
        """The media became ready (or turned out missing): same scene, position kept."""
        return self._next(
            now_s,
            self.by,
            status=status,
            media=media if media is not None else self.media,
            frames=frames if frames is not None else self.frames,
            fps=fps if fps is not None else self.fps,
            note=note,
        )

    def with_next(self, scene: str | None, media: str | None, by: int = -1) -> Timeline:
        """Announce the scene that follows (and its media once the server has it). Not
        re-anchored: the play head does not move (`motion` is unchanged)."""
        return replace(self, version=self.version + 1, by=by, next_scene=scene,
                       next_media=media if scene is not None else None)  # fmt: skip

    # -------------------------------------------------------------------------- wire

    def to_wire(self) -> dict[str, Any]:
        """The fields of the `timeline` event and of `welcome.timeline` (docs/protocol.md)."""
        wire: dict[str, Any] = {
            "scene": self.scene,
            "media": self.media,
            "fps": float(self.fps),
            "frames": int(self.frames),
            "playing": self.playing,
            "pos": float(self.pos_s),
            "at": float(self.at_s),
            "rate": float(self.rate),
            "ver": int(self.version),
            "by": int(self.by),
            "collab": self.collab,
            "status": self.status,
        }
        # Strings on the wire are never empty (neonbar.protocol): absent means "".
        if self.title:
            wire["title"] = self.title
        if self.note:
            wire["note"] = self.note
        if self.next_scene is not None:  # absent: nothing announced (older servers too)
            wire["next"] = self.next_scene
            if self.next_media is not None:
                wire["next_media"] = self.next_media
        return wire

    @classmethod
    def from_wire(cls, msg: Any) -> Timeline:
        """Read a wire timeline; raises ValueError with a sentence if anything is off."""
        if not isinstance(msg, dict):
            raise ValueError("a timeline must be a map")

        def num(key: str, lo: float, hi: float) -> float:
            value = msg.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"timeline.{key} must be a number")
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"timeline.{key} must be between {lo:g} and {hi:g}")
            return float(value)

        def text(key: str, max_len: int, nullable: bool) -> str | None:
            value = msg.get(key)
            if value is None:
                return None if nullable else ""
            if not isinstance(value, str) or len(value) > max_len:
                raise ValueError(f"timeline.{key} must be a string of at most {max_len}")
            return value

        media = text("media", 64, nullable=True)
        if media is not None and not _SHA256.match(media):
            raise ValueError("timeline.media must be a sha256 in hex")
        next_media = text("next_media", 64, nullable=True)
        if next_media is not None and not _SHA256.match(next_media):
            raise ValueError("timeline.next_media must be a sha256 in hex")
        status = text("status", 16, nullable=False) or "idle"
        if status not in STATUSES:
            raise ValueError(f"timeline.status must be one of {', '.join(STATUSES)}")
        for key in ("playing", "collab"):
            if not isinstance(msg.get(key), bool):
                raise ValueError(f"timeline.{key} must be true or false")
        return cls(
            scene=text("scene", 128, nullable=True),
            title=text("title", 200, nullable=False) or "",
            media=media,
            fps=num("fps", 1.0, MAX_FPS),
            frames=int(num("frames", 0, MAX_FRAMES)),
            playing=bool(msg["playing"]),
            pos_s=num("pos", 0.0, MAX_FRAMES),
            at_s=num("at", -1e12, 1e12),
            rate=num("rate", MIN_RATE, MAX_RATE),
            version=int(num("ver", 0, 2**53)),
            by=int(num("by", -1, 65535)),
            collab=bool(msg["collab"]),
            status=status,
            note=text("note", 500, nullable=False) or "",
            next_scene=text("next", 128, nullable=True),
            next_media=next_media,
        )


# ------------------------------------------------------------------------------ the wire

PLAYBACK_OPS = ("play", "pause", "seek", "rate", "next", "scene", "collab")
MAX_SCENE_CHARS = 64

# `playback {op, pos?, rate?, scene?, allow?}`: what the host (or, if allowed, a collaborator)
# asks of the room's timeline (docs/protocol.md, "Watch together").
PLAYBACK = client_message(
    "playback",
    {
        "op": F("str", choices=PLAYBACK_OPS),
        "pos": F("float", required=False, lo=0.0, hi=float(MAX_FRAMES)),
        "rate": F("float", required=False, lo=MIN_RATE, hi=MAX_RATE),
        "scene": F(
            "str", required=False, max_len=MAX_SCENE_CHARS, pattern=r"^[a-z0-9][a-z0-9_-]*$"
        ),
        "allow": F("bool", required=False),
    },
)

TIMELINE = event_kind(
    "timeline",
    {
        "scene": F("str", max_len=128, required=False, nullable=True),
        "title": F("str", required=False, max_len=200),
        "media": F("str", pattern=r"^[0-9a-f]{64}$", max_len=64, required=False, nullable=True),
        "fps": F("float", lo=1.0, hi=MAX_FPS),
        "frames": F("int", lo=0, hi=MAX_FRAMES),
        "playing": F("bool"),
        "pos": F("float", lo=0.0, hi=float(MAX_FRAMES)),
        "at": F("float"),
        "rate": F("float", lo=MIN_RATE, hi=MAX_RATE),
        "ver": F("int", lo=0, hi=2**53),
        "by": F("int", lo=-1, hi=65535),
        "collab": F("bool"),
        "status": F("str", choices=STATUSES),
        "note": F("str", required=False, max_len=500),
        "next": F("str", max_len=128, required=False, nullable=True),
        "next_media": F(
            "str", pattern=r"^[0-9a-f]{64}$", max_len=64, required=False, nullable=True
        ),
    },
    kept=True,
    doc="the room's timeline changed: every client seeks to it",
)
# The timeline also rides in `welcome` (a map with the same fields as the event).
welcome_field("timeline", F("any", required=False))


# ------------------------------------------------------------------------------- play head


@dataclass(frozen=True)
class DriftBands:
    """How the play head corrects drift (see the module docstring for why these values).

    Args:
        dead_s: errors below this (seconds of scene time) are left alone.
        seek_s: errors above this are fixed by seeking.
        max_slew: the most the play head may run fast or slow while slewing (0.08 = 8 %).
        gain_per_s: proportional gain; 1 / gain is the time constant of the correction.
    """

    dead_s: float = 0.25 / 24
    seek_s: float = 0.25
    max_slew: float = 0.08
    gain_per_s: float = 2.5


@dataclass(frozen=True)
class PlayheadStep:
    """What one `Playhead.update` decided."""

    position_s: float
    frame: int
    action: str  # "hold" (inside the dead band or paused), "slew", "seek"
    error_s: float  # target - shown position before the correction, scene seconds


class Playhead:
    """The position a client shows, following the room's timeline without jumps.

    Call `update` once per drawn frame with the timeline, the estimated server time and the local
    time since the last call. Frames never go backwards while the timeline plays forward with one
    `motion` (a version that only announces the next scene keeps it): a slew changes the speed
    by at most `max_slew`, never its sign.
    """

    def __init__(self, bands: DriftBands | None = None) -> None:
        self.bands = bands or DriftBands()
        self.position_s: float | None = None
        self._motion: tuple[Any, ...] | None = None
        self.seeks = 0
        self.slews = 0

    def reset(self) -> None:
        self.position_s = None
        self._motion = None

    def update(
        self, timeline: Timeline, server_s: float, dt_s: float, exact: bool = False
    ) -> PlayheadStep:
        """Advance by `dt_s` local seconds and pull toward `timeline` at `server_s`.

        `exact`: take the target as it is (while the clock estimate is still settling, right
        after joining, following it beats slewing toward a number about to change).
        """
        bands = self.bands
        target = timeline.position(server_s)
        motion = timeline.motion
        shown = self.position_s
        fresh = shown is None or motion != self._motion
        if shown is None or fresh or not timeline.playing or exact:
            if shown is None:
                jumped, error = True, 0.0
            else:
                expected = shown + (max(0.0, dt_s) * timeline.rate if not fresh else 0.0)
                error = target - expected
                jumped = abs(error) > (bands.dead_s if not fresh else 1e-9)
            if jumped and timeline.playing:
                self.seeks += 1
            self.position_s, self._motion = target, motion
            action = "seek" if jumped and timeline.playing else "hold"
            return PlayheadStep(target, self._frame(timeline), action, error)
        step = max(0.0, dt_s) * timeline.rate
        predicted = shown + step
        error = target - predicted
        if abs(error) > bands.seek_s:
            self.position_s = target
            self.seeks += 1
            action = "seek"
        elif abs(error) > bands.dead_s:
            limit = bands.max_slew * step
            correction = max(-limit, min(limit, error * min(1.0, bands.gain_per_s * dt_s)))
            self.position_s = min(predicted + correction, timeline.duration_s)
            self.slews += 1
            action = "slew"
        else:
            self.position_s = min(predicted, timeline.duration_s)
            action = "hold"
        return PlayheadStep(self.position_s, self._frame(timeline), action, error)

    def _frame(self, timeline: Timeline) -> int:
        return frame_for(self.position_s or 0.0, timeline.fps, timeline.frames)


# ------------------------------------------------------------------------------- measuring


class TimelineHistory:
    """Every version of a room's timeline, to say which frame was due at any server time.

    This is how drift is measured on the frame actually drawn (`--playback-log`): the history
    comes from the `timeline` events, the log gives the frame on the screen at a local time.
    """

    def __init__(self, timelines: list[Timeline] | None = None) -> None:
        self._items: list[Timeline] = []
        for timeline in timelines or ():
            self.add(timeline)

    def add(self, timeline: Timeline) -> None:
        if self._items and timeline.version <= self._items[-1].version:
            return  # a duplicate or an older version
        self._items.append(timeline)

    @property
    def versions(self) -> list[Timeline]:
        return list(self._items)

    @property
    def changes_s(self) -> list[float]:
        """Server times at which the timeline changed."""
        return [t.at_s for t in self._items]

    def at(self, server_s: float) -> Timeline | None:
        """The version in force at `server_s` (None before the first)."""
        found = None
        for timeline in self._items:
            if timeline.at_s <= server_s:
                found = timeline
            else:
                break
        return found


def frame_errors(
    records: list[dict[str, Any]],
    history: TimelineHistory,
    server_offset_s: float,
    settle_s: float = 0.5,
) -> list[tuple[float, int]]:
    """(local time, shown frame - frame due) for each logged frame of a playing, ready scene.

    Frames drawn before the client had heard of the version in force (its `ver` is older: the
    news was still on its way) are skipped, and so is the first `settle_s` after the client
    heard of a version (a seek lands on a frame the decoder may still be reaching).

    Args:
        records: `--playback-log` lines ({"t": local s, "frame": index or None, "ver": ...}).
        server_offset_s: server time - local time (the true one, measured by the caller).
    """
    heard: dict[int, float] = {}  # version -> local time the client first drew with it
    for rec in records:
        heard.setdefault(int(rec.get("ver", 0)), float(rec["t"]))
    out = []
    for rec in records:
        frame = rec.get("frame")
        if frame is None:
            continue
        server_s = float(rec["t"]) + server_offset_s
        timeline = history.at(server_s)
        if timeline is None or timeline.status != "ready" or timeline.media is None:
            continue
        version = int(rec.get("ver", timeline.version))
        if version < timeline.version or float(rec["t"]) - heard[version] < settle_s:
            continue
        out.append((float(rec["t"]), int(frame) - timeline.frame_at(server_s)))
    return out


__all__ = [
    "MAX_RATE",
    "MIN_RATE",
    "PLAYBACK",
    "PLAYBACK_OPS",
    "STATUSES",
    "TIMELINE",
    "DriftBands",
    "Playhead",
    "PlayheadStep",
    "Timeline",
    "TimelineHistory",
    "frame_errors",
    "frame_for",
]
