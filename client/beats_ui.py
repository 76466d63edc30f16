"""Beats in the bar: the keys that mark them, and how everyone sees them.

Keys (docs/beats.md):

- **1–8** mark a beat at the scene time the key went down (joy, trust, fear, surprise, sadness,
  disgust, anger, anticipation). A tap is intensity 0.4; holding grows it to 1.0 at 1.2 s.
- **Shift+1–8** starts a range; the next Shift+digit ends it (the range keeps the emotion and
  intensity of the key that started it).
- **Tab** writes a note on your last beat (Enter saves, Esc cancels). The people list moved
  from Tab to F2.
- **Ctrl+1–8** changes your last beat's emotion. **Delete** / **Backspace** deletes the beat near
  the play head if it is yours (a host: anyone's), else your last beat.
- **Hold P** and aim at the big screen: your dot shows to everyone; a beat marked while P is
  held pins that spot on the frame.
- **F7** (host): let viewers mark beats, or stop them.

Everyone sees a beat once the server has committed it: a tick on the timeline strip under the
screen in the emotion's colour (height by intensity, a bar for a range, the one nearest the play
head labelled with author and note), a glyph rising above the author's avatar, and a pulse on the
screen at the pinned spot. Pointing the mouse at a tick labels that beat by the tick (emotion,
author, time, intensity, note); the right button turning the avatar does not hover.

`BeatBook` (what this client knows) and `BeatKeys` (keys to messages) are plain objects;
`BeatsUi` wires them to Panda3D.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from neonbar.beats import (
    EMOTION_BY_KEY,
    EMOTION_BY_NAME,
    MAX_NOTE_CHARS,
    Beat,
    BeatError,
    beat_from_dict,
    fold,
)

log = logging.getLogger("neonbar.client.beats")

TAP_INTENSITY = 0.4
HOLD_FULL_S = 1.2  # a key held this long marks intensity 1.0
TAP_S = 0.15  # a press shorter than this is a tap (a quick press lasts 60-120 ms)
NEAR_S = 2.0  # the beat this close to the play head is labelled on the strip
HOVER_SLACK_PX = 6.0  # the mouse this close to a tick (window pixels) hovers it
LABEL_WRAP = 40.0  # label lines wrap at this many text units (about 7.7 m on the 9.6 m strip)
HOVER_WRAP = 26.0  # the hover label is narrower: it sits by its tick
GLYPH_S = 2.4
PULSE_S = 1.4
POINTER_SEND_HZ = 15.0
POINTER_STALE_S = 1.0  # a remote dot not refreshed for this long fades out
MAX_TICKS = 300  # beats drawn one tick each on the strip; more are binned
TICK_BINS = 150  # bins across the strip for a crowded scene (~4 cm each)

Send = Callable[[dict[str, Any]], None]


def describe(b: Beat, author: str) -> str:
    """A standing beat as the strip labels it: emotion, author, time, intensity, then the note
    on a line of its own, e.g. 'joy · ben · 20.0–24.0 s · intensity 1.00'."""
    when = f"{b.t_in_s:.1f} s" if b.t_out_s is None else f"{b.t_in_s:.1f}–{b.t_out_s:.1f} s"
    edited = " (edited)" if b.op == "edit" else ""
    note = f"\n“{b.note}”" if b.note else ""
    return f"{b.emotion} · {author} · {when} · intensity {b.intensity:.2f}{edited}{note}"


def hold_intensity(held_s: float) -> float:
    """Intensity for a key held `held_s` seconds: a tap 0.4, full after HOLD_FULL_S."""
    frac = min(1.0, max(0.0, held_s - TAP_S) / (HOLD_FULL_S - TAP_S))
    return round(TAP_INTENSITY + (1.0 - TAP_INTENSITY) * frac, 3)


# ---------------------------------------------------------------------------------- the book


@dataclass
class BeatBook:
    """Every beat record this client has received, and the beats as they stand.

    Records arrive as `beat` events (live, or replayed after a resume) and in `beats` pages
    after a welcome; the same record twice (a page and an event) counts once. Records that
    arrive in chain order are folded in one at a time (a newcomer's 10,000 records must not
    be refolded 10,000 times); one that arrives out of order refolds the chain.
    """

    records: dict[int, Beat] = field(default_factory=dict)
    current: dict[int, Beat] = field(default_factory=dict)  # beat id -> its latest state
    version: int = 0  # grows when the standing beats change (the drawing rebuilds then)
    last_added: Beat | None = None  # the change at `version` was just this new beat
    _top_seq: int = 0
    _standing: tuple[int, list[Beat]] = (-1, [])
    _scenes: dict[str | None, tuple[int, list[Beat], list[float], float]] = field(
        default_factory=dict
    )

    def ingest(self, raw: Any) -> Beat | None:
        """Take one record (a dict off the wire); returns it when it is new."""
        try:
            rec = beat_from_dict(raw)
        except BeatError as exc:
            log.warning("ignoring a beat record the client cannot read: %s", exc)
            return None
        if rec.seq in self.records:
            return None
        self.records[rec.seq] = rec
        self.last_added = None
        if rec.seq > self._top_seq:
            self._top_seq = rec.seq
            if rec.op == "delete":
                self.current.pop(rec.beat, None)
            else:
                self.current[rec.beat] = rec
                self.last_added = rec if rec.op == "beat" else None
        else:
            self.current = {b.beat: b for b in fold(self.records[s] for s in sorted(self.records))}
        self.version += 1
        return rec

    @property
    def standing(self) -> list[Beat]:
        """The beats as they stand, by scene time."""
        version, beats = self._standing
        if version != self.version:
            beats = sorted(self.current.values(), key=lambda b: (b.t_in_ms, b.beat))
            self._standing = (self.version, beats)
        return beats

    def ordered(self) -> list[int]:
        """Record seqs in chain order (what every client should agree on)."""
        return sorted(self.records)

    def _scene(self, scene: str | None) -> tuple[int, list[Beat], list[float], float]:
        cached = self._scenes.get(scene)
        if cached is None or cached[0] != self.version:
            beats = [b for b in self.standing if b.scene == scene]
            spans = [(b.t_out_s - b.t_in_s) for b in beats if b.t_out_s is not None]
            cached = (self.version, beats, [b.t_in_s for b in beats], max(spans, default=0.0))
            self._scenes[scene] = cached
        return cached

    def for_scene(self, scene: str | None) -> list[Beat]:
        return self._scene(scene)[1]

    def last_of(self, author: str) -> Beat | None:
        """The author's most recently made beat that still stands."""
        mine = [b for b in self.current.values() if self.records[b.beat].author == author]
        return max(mine, key=lambda b: b.beat) if mine else None

    def near(self, scene: str | None, t_s: float, window_s: float = NEAR_S) -> Beat | None:
        """The standing beat of `scene` nearest `t_s` within `window_s` (ranges: inside).
        Called every frame: a bisection over the scene's beats, not a scan."""
        _, beats, starts, longest = self._scene(scene)
        lo = bisect.bisect_left(starts, t_s - window_s - longest)
        hi = bisect.bisect_right(starts, t_s + window_s)
        best: tuple[float, Beat] | None = None
        for b in beats[lo:hi]:
            end = b.t_out_s if b.t_out_s is not None else b.t_in_s
            d = 0.0 if b.t_in_s <= t_s <= end else min(abs(t_s - b.t_in_s), abs(t_s - end))
            if d <= window_s and (best is None or d < best[0]):
                best = (d, b)
        return best[1] if best else None

    def under(self, scene: str | None, t_s: float, slack_s: float) -> Beat | None:
        """The beat whose tick is at `t_s` on the strip, give or take `slack_s` (the tick's
        half width and the mouse's slack in scene seconds): the nearest point beat, else the
        shortest range that covers `t_s` (a point tick drawn over a range stays reachable)."""
        _, beats, starts, longest = self._scene(scene)
        lo = bisect.bisect_left(starts, t_s - slack_s - longest)
        hi = bisect.bisect_right(starts, t_s + slack_s)
        best: tuple[tuple[int, float], Beat] | None = None
        for b in beats[lo:hi]:
            if b.t_out_s is None:
                d = abs(t_s - b.t_in_s)
                if d > slack_s:
                    continue
                rank = (0, d)
            else:
                if not b.t_in_s - slack_s <= t_s <= b.t_out_s + slack_s:
                    continue
                rank = (1, b.t_out_s - b.t_in_s)
            if best is None or rank < best[0]:
                best = (rank, b)
        return best[1] if best else None


# ---------------------------------------------------------------------------------- the keys


def _fields_of(b: Beat) -> dict[str, Any]:
    """A standing beat as the fields of a beat_edit that keeps everything."""
    out: dict[str, Any] = {
        "scene": b.scene,
        "at": b.t_in_s,
        "emotion": b.emotion,
        "intensity": b.intensity,
    }
    if b.t_out_s is not None:
        out["until"] = b.t_out_s
    if b.note:
        out["note"] = b.note
    if b.point is not None:
        out["x"], out["y"] = b.point
    return out


@dataclass
class BeatKeys:
    """Key presses in, beat messages out.

    Args:
        send: sends one client message.
        scene_time: (scene name or None, scene time s) now.
        point: where the pointer is on the frame (x, y in 0..1) while P is held, else None.
        toast: shows a short sentence.
        me: (our name, our role) now.
        book: the beats this client knows.
    """

    send: Send
    scene_time: Callable[[], tuple[str | None, float]]
    point: Callable[[], tuple[float, float] | None]
    toast: Callable[[str], None]
    me: Callable[[], tuple[str, str | None]]
    book: BeatBook
    viewers_may_mark: bool = True
    pending: dict[int, float] = field(default_factory=dict)  # cid -> monotonic send time
    _down: dict[int, tuple[float, str, float, tuple[float, float] | None, bool]] = field(
        default_factory=dict
    )
    _range: tuple[str, str, float, float, tuple[float, float] | None] | None = None
    _next_cid: int = 1

    def _cid(self) -> int:
        cid = self._next_cid
        self._next_cid += 1
        self.pending[cid] = time.monotonic()
        return cid

    def _may_mark(self) -> bool:
        _, role = self.me()
        if role == "viewer" and not self.viewers_may_mark:
            self.toast("the host has turned off viewers' beats")
            return False
        return True

    def press(self, key: int, now_s: float, shift: bool = False, ctrl: bool = False) -> None:
        """A number key went down."""
        emo = EMOTION_BY_KEY.get(key)
        if emo is None:
            return
        if ctrl:
            self._change_emotion(emo.name)
            return
        scene, t_s = self.scene_time()
        if scene is None:
            self.toast("no scene is playing: beats mark a moment of a scene")
            return
        if not self._may_mark():
            return
        if shift and self._range is not None:
            self._end_range(t_s)
            return
        self._down[key] = (now_s, scene, t_s, self.point(), shift)

    def release(self, key: int, now_s: float) -> None:
        """A number key came up: the beat goes out (or a range starts)."""
        down = self._down.pop(key, None)
        if down is None:
            return
        pressed_s, scene, t_s, point, shift = down
        emo = EMOTION_BY_KEY[key]
        intensity = hold_intensity(now_s - pressed_s)
        if shift:
            self._range = (scene, emo.name, t_s, intensity, point)
            self.toast(f"{emo.name} from {t_s:.1f} s: Shift+digit again ends the range")
            return
        msg: dict[str, Any] = {
            "t": "beat", "scene": scene, "at": round(t_s, 3), "emotion": emo.name,
            "intensity": intensity, "cid": self._cid(),
        }  # fmt: skip
        if point is not None:
            msg["x"], msg["y"] = round(point[0], 4), round(point[1], 4)
        self.send(msg)

    def _end_range(self, t_s: float) -> None:
        assert self._range is not None
        scene, emotion, t_in, intensity, point = self._range
        self._range = None
        if t_s <= t_in:
            self.toast("a range must end after it starts: the range was dropped")
            return
        msg: dict[str, Any] = {
            "t": "beat", "scene": scene, "at": round(t_in, 3), "until": round(t_s, 3),
            "emotion": emotion, "intensity": intensity, "cid": self._cid(),
        }  # fmt: skip
        if point is not None:
            msg["x"], msg["y"] = round(point[0], 4), round(point[1], 4)
        self.send(msg)

    @property
    def range_open(self) -> bool:
        return self._range is not None

    def holding(self, now_s: float) -> str | None:
        """What the keys are doing right now, for the HUD: a held key and the intensity it
        would mark, or an open range."""
        for key, (pressed_s, _, t_s, _, shift) in self._down.items():
            emo = EMOTION_BY_KEY[key]
            level = hold_intensity(now_s - pressed_s)
            bar = "▮" * round(level * 10) + "▯" * (10 - round(level * 10))
            verb = "range from" if shift else "at"
            return f"{emo.key} {emo.name} {bar} {level:.1f}  {verb} {t_s:.1f} s"
        if self._range is not None:
            _, emotion, t_in, _, _ = self._range
            return f"{emotion} range open from {t_in:.1f} s: Shift+digit ends it"
        return None

    def _mine(self) -> Beat | None:
        name, _ = self.me()
        last = self.book.last_of(name)
        if last is None:
            self.toast("you have no beat to change yet")
        return last

    def _change_emotion(self, emotion: str) -> None:
        last = self._mine()
        if last is not None:
            self.send({"t": "beat_edit", "beat": last.beat, **_fields_of(last),
                       "emotion": emotion, "cid": self._cid()})  # fmt: skip

    def note(self, text: str) -> bool:
        """Put `text` on your last beat; False when there is none or it is too long."""
        last = self._mine()
        if last is None:
            return False
        text = " ".join(text.split())
        if len(text) > MAX_NOTE_CHARS:
            self.toast(f"a note has at most {MAX_NOTE_CHARS} characters")
            return False
        fields = _fields_of(last)
        fields.pop("note", None)
        if text:
            fields["note"] = text
        self.send({"t": "beat_edit", "beat": last.beat, **fields, "cid": self._cid()})
        return True

    def delete(self) -> None:
        """Delete the beat near the play head when you may, else your last beat."""
        name, role = self.me()
        scene, t_s = self.scene_time()
        near = self.book.near(scene, t_s)
        target = None
        if near is not None and (role == "host" or self.book.records[near.beat].author == name):
            target = near
        if target is None:
            target = self._mine()
        if target is not None:
            self.send({"t": "beat_delete", "beat": target.beat, "cid": self._cid()})

    def acknowledged(self, cid: int) -> float | None:
        """Our beat came back committed: seconds since it was sent."""
        sent = self.pending.pop(cid, None)
        return None if sent is None else time.monotonic() - sent


# ---------------------------------------------------------------------------------- Panda3D


def _ring_texture(size: int = 64) -> Any:
    """A soft white ring on transparent (tinted per emotion with setColor)."""
    import numpy as np
    from panda3d.core import Texture

    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2 + 0.5, yy - size / 2 + 0.5) / (size / 2)
    alpha = np.clip(1.0 - np.abs(r - 0.78) / 0.16, 0, 1) ** 1.5 + np.clip(1 - r / 0.22, 0, 1)
    img = np.zeros((size, size, 4), np.uint8)
    img[..., :3] = 255
    img[..., 3] = (np.clip(alpha, 0, 1) * 255).astype(np.uint8)
    tex = Texture("beat-ring")
    tex.setup2dTexture(size, size, Texture.T_unsigned_byte, Texture.F_rgba8)
    tex.setRamImageAs(img[::-1].tobytes(), "RGBA")
    return tex


@dataclass
class _Flash:
    node: Any
    born_s: float
    life_s: float
    avatar: int | None = None


class BeatsUi:
    """Beats in the bar for one client (handed what it needs, like the other client pieces).

    Args:
        base: the ShowBase.
        watch: client.watch.Watch (timeline, play head, strip, big screen).
        crowd: client.avatars.Crowd (where the avatars are).
        send: sends a client message.
        me: (our name, our role).
        you: our avatar id (None before welcome).
        toast: shows a short sentence.
        clock: seconds, the app's animation clock.
        pointer_source: returns the mouse's (x, y) on the frame or None; default: a ray from
            the camera through the mouse onto the screen.
        hover_source: returns the mouse in the window (lens film coordinates, -1..1) or None;
            default: the mouse watcher's, except while the right button turns the avatar.
    """

    def __init__(
        self,
        base: Any,
        watch: Any,
        crowd: Any,
        *,
        send: Send,
        me: Callable[[], tuple[str, str | None]],
        you: Callable[[], int | None],
        toast: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        captured: Callable[[], bool] = lambda: False,
        pointer_source: Callable[[], tuple[float, float] | None] | None = None,
        hover_source: Callable[[], tuple[float, float] | None] | None = None,
    ) -> None:
        from direct.showbase.DirectObject import DirectObject
        from panda3d.core import TransparencyAttrib

        self.base, self.watch, self.crowd = base, watch, crowd
        self._send, self._me, self._you, self._toast = send, me, you, toast
        self._clock, self._captured = clock, captured
        self._pointer_source = pointer_source or self._mouse_on_screen
        self._hover_source = hover_source or self._mouse_in_window
        self.hovered: Beat | None = None
        self.book = BeatBook()
        self.keys = BeatKeys(send, self._scene_time, self.pointer, toast, me, self.book)
        self.pointer_held = False
        self._shift = self._ctrl = False
        self._pointer_sent_s = 0.0
        self._pointer_last: tuple[float, float] | None = None
        self.remote_pointers: dict[int, tuple[float, float, float]] = {}  # id -> x, y, seen_s
        self._ticks: list[Any] = []
        self._drawn: tuple[int, str | None, float] | None = None
        self._flashes: list[_Flash] = []
        self.ack_latency_s: list[float] = []
        self.typing = False
        self._ring = _ring_texture()
        from client import fonts

        self._font = fonts.load_font(base.loader, fonts.latin_font_path())
        screen = watch.screen.screen
        self._screen_node = screen
        self.overlay = screen.attachNewNode("beat-overlay")
        self.overlay.setLightOff(1)
        self.overlay.setFogOff(1)
        self.overlay.setTransparency(TransparencyAttrib.MAlpha)
        self.overlay.setDepthWrite(False)
        self.overlay.setBin("fixed", 10)
        self._dots: dict[int, Any] = {}
        self._label = self._make_label("beat-near", LABEL_WRAP)
        self._hover_label = self._make_label("beat-hover", HOVER_WRAP)
        self._hover_stem = self._make_stem()
        from direct.gui.OnscreenText import OnscreenText
        from panda3d.core import TextNode

        # What a held key will mark (intensity grows while held), or the open range; and the
        # prompt above the note box.
        self._hold_text = OnscreenText(
            text="", parent=base.a2dBottomCenter, pos=(0, 0.3), scale=0.05,
            fg=(1, 0.85, 0.5, 1), shadow=(0, 0, 0, 0.9), align=TextNode.ACenter,
            font=self._font, mayChange=True,
        )  # fmt: skip
        self._prompt = OnscreenText(
            text="", parent=base.a2dBottomLeft, pos=(0.06, 0.27), scale=0.04,
            fg=(1, 0.85, 0.5, 1), shadow=(0, 0, 0, 0.9), align=TextNode.ALeft,
            font=self._font, mayChange=True,
        )  # fmt: skip
        self._events = DirectObject()
        ev = self._events
        for key in range(1, 9):
            ev.accept(str(key), self._press, [key])
            ev.accept(f"{key}-up", self._release, [key])
        for mod in ("shift", "lshift", "rshift"):
            ev.accept(mod, self._set_mod, ["shift", True])
            ev.accept(f"{mod}-up", self._set_mod, ["shift", False])
        for mod in ("control", "lcontrol", "rcontrol"):
            ev.accept(mod, self._set_mod, ["ctrl", True])
            ev.accept(f"{mod}-up", self._set_mod, ["ctrl", False])
        ev.accept("tab", self.open_note)
        ev.accept("delete", self._delete)
        ev.accept("backspace", self._delete)
        ev.accept("f7", self.toggle_viewers)
        ev.accept("p", self._pointer, [True])
        ev.accept("p-up", self._pointer, [False])
        self._entry: Any = None

    # ------------------------------------------------------------------------ inputs

    def _scene_time(self) -> tuple[str | None, float]:
        timeline = self.watch.timeline
        if timeline.scene is None or timeline.status not in ("ready", "preparing"):
            return None, 0.0
        pos = float(self.watch._position())
        return timeline.scene, max(0.0, min(pos, timeline.duration_s or pos))

    def _set_mod(self, which: str, down: bool) -> None:
        if which == "shift":
            self._shift = down
        else:
            self._ctrl = down

    def _press(self, key: int) -> None:
        if not (self._captured() or self.typing):
            self.keys.press(key, self._clock(), shift=self._shift, ctrl=self._ctrl)

    def _release(self, key: int) -> None:
        self.keys.release(key, self._clock())

    def _delete(self) -> None:
        if not (self._captured() or self.typing):
            self.keys.delete()

    def toggle_viewers(self) -> None:
        """F7 (host): let viewers mark beats, or stop them."""
        if self._captured() or self.typing:
            return
        _, role = self._me()
        if role != "host":
            self._toast("only the host decides whether viewers mark beats")
            return
        self._send({"t": "beat_policy", "viewers": not self.keys.viewers_may_mark})

    def _pointer(self, down: bool) -> None:
        if self._captured() or self.typing:
            down = False
        if self.pointer_held and not down:
            x, y = self._pointer_last or (0.5, 0.5)
            self._send({"t": "pointer", "on": False, "x": x, "y": y})
        self.pointer_held = down
        if not down:
            self._pointer_last = None

    def pointer(self) -> tuple[float, float] | None:
        """Where P points on the frame now (None when P is up or it misses the screen)."""
        return self._pointer_last if self.pointer_held else None

    def open_note(self) -> None:
        """Tab: a one-line box for a note on your last beat."""
        if self._captured() or self.typing:
            return
        name, _ = self._me()
        if self.book.last_of(name) is None:
            self._toast("mark a beat first (1-8), then Tab adds a note to it")
            return
        from direct.gui.DirectGui import DirectEntry

        if self._entry is None:
            self._entry = DirectEntry(
                parent=self.base.a2dBottomLeft, pos=(0.06, 0, 0.2), scale=0.045, width=34,
                numLines=1, focus=0, command=self._submit_note, text_fg=(1, 0.9, 0.6, 1),
                frameColor=(0.08, 0.03, 0.12, 0.85), initialText="",
                focusOutCommand=self.close_note, suppressKeys=True,
            )  # fmt: skip
            self._entry.bind("escape", lambda *_: self.close_note())
        last = self.book.last_of(name)
        assert last is not None
        self._prompt.setText(
            f"note on your {last.emotion} beat at {last.t_in_s:.1f} s (Enter saves, Esc cancels):"
        )
        self._prompt.show()
        self._entry.enterText(last.note)
        self._entry.show()
        self._entry["focus"] = 1
        self.typing = True

    def _submit_note(self, text: str) -> None:
        self.keys.note(text)
        self.close_note()

    def close_note(self) -> None:
        self._prompt.hide()
        if self._entry is not None:
            self._entry["focus"] = 0
            self._entry.hide()
        self.typing = False

    # ------------------------------------------------------------------------ inbound

    def on_welcome(self, msg: dict[str, Any]) -> None:
        info = msg.get("beats")
        if isinstance(info, dict):
            self.keys.viewers_may_mark = bool(info.get("viewers", True))

    def on_message(self, msg: dict[str, Any]) -> None:
        """`welcome`, `beats` pages, `pointer` updates and the `beat` / `beat_policy` events."""
        t = msg.get("t")
        now = self._clock()
        if t == "welcome":
            self.on_welcome(msg)
        elif t == "beats":
            for raw in msg.get("recs") or ():
                self.book.ingest(raw)
        elif t == "pointer":
            avatar = int(msg["avatar"])
            if msg.get("on"):
                self.remote_pointers[avatar] = (float(msg["x"]), float(msg["y"]), now)
            else:
                self.remote_pointers.pop(avatar, None)
        elif t == "event" and msg.get("kind") == "beat_policy":
            self.keys.viewers_may_mark = bool(msg.get("viewers"))
            state = "may" if self.keys.viewers_may_mark else "may no longer"
            self._toast(f"viewers {state} mark beats")
        elif t == "event" and msg.get("kind") == "beat":
            rec = self.book.ingest(msg.get("rec"))
            if msg.get("avatar") == self._you() and isinstance(msg.get("cid"), int):
                latency = self.keys.acknowledged(int(msg["cid"]))
                if latency is not None:
                    self.ack_latency_s.append(latency)
            if rec is not None and rec.op != "delete":
                self._celebrate(rec, msg.get("avatar"), now)

    def _celebrate(self, rec: Beat, avatar: Any, now: float) -> None:
        """A new or changed beat: a glyph over its author, a pulse at its spot on the screen."""
        from panda3d.core import TextNode

        emo = EMOTION_BY_NAME[rec.emotion]
        r, g, b = emo.rgb
        if isinstance(avatar, int):
            for old in [f for f in self._flashes if f.avatar == avatar]:
                old.node.removeNode()  # one glyph per person: the newest beat replaces it
                self._flashes.remove(old)
            tn = TextNode("beat-glyph")
            if self._font is not None:
                tn.setFont(self._font)
            tn.setText(f"{emo.key} {emo.name}")
            tn.setAlign(TextNode.ACenter)
            tn.setTextColor(r, g, b, 1)
            tn.setCardColor(0.02, 0.02, 0.05, 0.6)
            tn.setCardAsMargin(0.3, 0.3, 0.15, 0.15)
            tn.setCardDecal(True)
            node = self.base.render.attachNewNode(tn)
            node.setScale(0.12)
            node.setBillboardPointEye()
            node.setLightOff(1)
            node.setFogOff(1)
            node.setTransparency(True)
            node.setBin("fixed", 20)
            node.setDepthTest(False)
            self._flashes.append(_Flash(node, now, GLYPH_S, avatar))
        if rec.point is not None:
            from panda3d.core import CardMaker

            x, z = self._frame_to_screen(*rec.point)
            card = CardMaker("beat-pulse")
            card.setFrame(-0.5, 0.5, -0.5, 0.5)
            node = self.overlay.attachNewNode(card.generate())
            node.setTexture(self._ring)
            node.setPos(x, -0.03, z)
            node.setColor(r, g, b, 1)
            self._flashes.append(_Flash(node, now, PULSE_S))

    # ------------------------------------------------------------------------ geometry

    def picture_rect(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) of the picture on the screen node, metres."""
        screen = self.watch.screen
        bounds = screen.card.getTightBounds(self._screen_node)
        if bounds:
            lo, hi = bounds
            return lo.x, hi.x, lo.z, hi.z
        w, h = screen.width_m, screen.height_m
        return -w / 2, w / 2, 0.0, h

    def _frame_to_screen(self, x: float, y: float) -> tuple[float, float]:
        left, right, bottom, top = self.picture_rect()
        return left + x * (right - left), top - y * (top - bottom)

    def _mouse(self) -> tuple[float, float] | None:
        """The cursor in the window (lens film coordinates, -1..1), None outside it."""
        mw = self.base.mouseWatcherNode
        if mw is None or not mw.hasMouse():
            return None
        return mw.getMouseX(), mw.getMouseY()

    def _mouse_in_window(self) -> tuple[float, float] | None:
        from panda3d.core import MouseButton

        mw = self.base.mouseWatcherNode
        if mw is not None and mw.isButtonDown(MouseButton.three()):
            return None  # right-drag turns the avatar: the cursor sweeps past ticks
        return self._mouse()

    def hover_at(self, film: tuple[float, float] | None) -> tuple[Beat, float] | None:
        """The beat under a point of the window (lens film coordinates, -1..1, like the
        mouse), and the strip x (metres) its label points at; None off the strip's ticks."""
        timeline = self.watch.timeline
        duration = timeline.duration_s
        if film is None or timeline.scene is None or not duration:
            return None
        bar = self.watch.bar
        from client.timeline_bar import MARK_HALF_WIDTH_M

        hit = bar.pick(self.base.cam, self.base.camLens, film, HOVER_SLACK_PX,
                       self.base.win.getXSize() if self.base.win else 1.0)  # fmt: skip
        if hit is None:
            return None
        x_m, fraction, slack_m = hit
        per_m = duration / bar.track_m
        b = self.book.under(timeline.scene, fraction * duration,
                            (slack_m + MARK_HALF_WIDTH_M) * per_m)  # fmt: skip
        if b is None:
            return None
        if b.t_out_s is None:
            return b, bar.x_of(min(1.0, b.t_in_s / duration))
        lo, hi = bar.x_of(min(1.0, b.t_in_s / duration)), bar.x_of(min(1.0, b.t_out_s / duration))
        return b, min(max(x_m, lo), hi)

    def _mouse_on_screen(self) -> tuple[float, float] | None:
        return self.frame_point(self._mouse())

    def frame_point(self, film: tuple[float, float] | None) -> tuple[float, float] | None:
        """Where a point of the window (lens film coordinates) falls on the picture: (x, y)
        from its top-left, 0..1, or None when it misses the picture."""
        from client.timeline_bar import ray_on_plane

        if film is None:
            return None
        hit = ray_on_plane(self._screen_node, 0.0, self.base.cam, self.base.camLens, film)
        if hit is None:
            return None
        hit_x, hit_z = hit.x, hit.z
        left, right, bottom, top = self.picture_rect()
        x, y = (hit_x - left) / (right - left), (top - hit_z) / (top - bottom)
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            return None
        return x, y

    # ------------------------------------------------------------------------ frame

    def update(self) -> None:
        """Once per frame: pointer, strip ticks, hover and near labels, glyphs and pulses."""
        now = self._clock()
        if self.pointer_held:
            spot = self._pointer_source()
            if spot is not None:
                self._pointer_last = spot
                if now - self._pointer_sent_s >= 1.0 / POINTER_SEND_HZ:
                    self._pointer_sent_s = now
                    self._send({"t": "pointer", "on": True, "x": round(spot[0], 4),
                                "y": round(spot[1], 4)})  # fmt: skip
        holding = self.keys.holding(now)
        if holding != (self._hold_text.text or None):
            self._hold_text.setText(holding or "")
        self._draw_pointers(now)
        self._draw_ticks()
        self._draw_hover()
        self._draw_label()
        self._animate(now)

    def _draw_pointers(self, now: float) -> None:
        from panda3d.core import CardMaker

        shown = {aid: (x, y) for aid, (x, y, seen) in self.remote_pointers.items()
                 if now - seen < POINTER_STALE_S}  # fmt: skip
        me = self._you()
        if self.pointer_held and self._pointer_last is not None and me is not None:
            shown[me] = self._pointer_last
        for aid in list(self._dots):
            if aid not in shown:
                self._dots.pop(aid).removeNode()
        for aid, (x, y) in shown.items():
            dot = self._dots.get(aid)
            if dot is None:
                card = CardMaker("pointer-dot")
                card.setFrame(-0.09, 0.09, -0.09, 0.09)
                dot = self.overlay.attachNewNode(card.generate())
                dot.setTexture(self._ring)
                fig = self.crowd.figure(aid)
                color = getattr(fig, "color", None) or "#ffffff"
                rgb = tuple(int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
                dot.setColor(*rgb, 1)
                self._dots[aid] = dot
            sx, sz = self._frame_to_screen(x, y)
            dot.setPos(sx, -0.035, sz)

    def _draw_ticks(self) -> None:
        timeline = self.watch.timeline
        book = self.book
        key = (book.version, timeline.scene, round(timeline.duration_s, 3))
        if key == self._drawn:
            return
        drawn, self._drawn = self._drawn, key
        duration = timeline.duration_s
        added = book.last_added
        if (  # the common case: one new beat in the scene shown, few enough to draw each
            drawn is not None
            and drawn[1:] == key[1:]
            and drawn[0] == key[0] - 1
            and added is not None
            and added.scene == timeline.scene
            and len(self._ticks) < MAX_TICKS
            and duration
        ):
            self._ticks.append(self._tick(added, duration))
            return
        bar = self.watch.bar
        for node in self._ticks:
            if node in bar.marks:
                bar.marks.remove(node)
            node.removeNode()
        self._ticks = []
        if not duration or timeline.scene is None:
            return
        beats = book.for_scene(timeline.scene)
        if len(beats) <= MAX_TICKS:
            self._ticks = [self._tick(b, duration) for b in beats]
            return
        # A crowded scene: one tick per strip bin, in the bin's commonest emotion, as tall
        # as its share of the busiest bin (hundreds of nodes per frame would cost more than
        # the rest of the strip, and they would overlap anyway).
        counts: list[dict[str, int]] = [{} for _ in range(TICK_BINS)]
        for b in beats:
            i = min(TICK_BINS - 1, int(b.t_in_s / duration * TICK_BINS))
            counts[i][b.emotion] = counts[i].get(b.emotion, 0) + 1
        busiest = max(sum(c.values()) for c in counts)
        for i, c in enumerate(counts):
            if not c:
                continue
            emotion = max(c, key=lambda e: (c[e], -EMOTION_BY_NAME[e].key))
            node = bar.add_mark((i + 0.5) / TICK_BINS, (*EMOTION_BY_NAME[emotion].rgb, 1.0))
            node.setSz(0.5 + 1.5 * sum(c.values()) / busiest)
            self._ticks.append(node)

    def _tick(self, b: Beat, duration: float) -> Any:
        bar = self.watch.bar
        emo = EMOTION_BY_NAME[b.emotion]
        start = min(1.0, b.t_in_s / duration)
        node = bar.add_mark(start, (*emo.rgb, 1.0))
        node.setSz(0.7 + 1.3 * b.intensity)
        if b.t_out_s is not None:
            end = min(1.0, b.t_out_s / duration)
            width_m = max(0.04, (end - start) * bar.track_m)
            node.setSx(width_m / 0.04)
            node.setX(node.getX() + width_m / 2 - 0.02)
            node.setAlphaScale(0.7)
        return node

    def _make_label(self, name: str, wrap: float) -> Any:
        """A label under the strip: coloured text on a dark card, lines wrapped at `wrap`."""
        from panda3d.core import TextNode

        bar = self.watch.bar
        tn = TextNode(name)
        if self._font is not None:
            tn.setFont(self._font)
        tn.setAlign(TextNode.ACenter)
        tn.setWordwrap(wrap)
        tn.setCardColor(0.02, 0.02, 0.05, 0.85)
        tn.setCardAsMargin(0.4, 0.4, 0.2, 0.2)
        tn.setCardDecal(True)  # the text drawn on its card, not fighting it for depth
        tn.setFrameAsMargin(0.4, 0.4, 0.2, 0.2)
        tn.setFrameLineWidth(2.0)
        node = bar.root.attachNewNode(tn)
        node.setScale(bar.height_m * 0.32)
        node.setPos(0, -0.015, -0.28)
        node.hide()
        return node

    def _make_stem(self) -> Any:
        """A thin line from the hover label up to the tick it names."""
        from panda3d.core import CardMaker

        card = CardMaker("beat-hover-stem")
        card.setFrame(-0.008, 0.008, -0.1, 0.02)
        node = self.watch.bar.root.attachNewNode(card.generate())
        node.setY(-0.016)
        node.hide()
        return node

    def _author(self, b: Beat) -> str:
        return self.book.records[b.beat].author

    def near_text(self) -> tuple[str, tuple[float, float, float]] | None:
        """What the strip says about the beat nearest the play head, if any."""
        scene, t_s = self._scene_time()
        b = self.book.near(scene, t_s)
        if b is None:
            return None
        return describe(b, self._author(b)), EMOTION_BY_NAME[b.emotion].rgb

    def hover_text(self) -> str | None:
        """What the hover label says now (None while it is hidden)."""
        if self.hovered is None or self._hover_label.isHidden():
            return None
        return str(self._hover_label.node().getText())

    @staticmethod
    def _set_label(node: Any, text: str, rgb: tuple[float, float, float]) -> None:
        """Text in the emotion's colour, a shade lighter so sadness's blue still reads on the
        dark card, framed in the colour itself."""
        tn = node.node()
        if tn.getText() != text:
            tn.setText(text)
            tn.setTextColor(*(c + (1.0 - c) * 0.3 for c in rgb), 1)
            tn.setFrameColor(*rgb, 0.9)
        node.show()

    def _draw_hover(self) -> None:
        under = self.hover_at(self._hover_source())
        if under is None:
            self.hovered = None
            self._hover_label.hide()
            self._hover_stem.hide()
            return
        b, x_m = under
        self.hovered = b
        rgb = EMOTION_BY_NAME[b.emotion].rgb
        self._set_label(self._hover_label, describe(b, self._author(b)), rgb)
        # By its tick, but whole on the strip: a beat near either end keeps its label inside.
        bar, label = self.watch.bar, self._hover_label
        half_m = label.node().getWidth() / 2 * label.getSx() + 0.1
        lo, hi = -bar.width_m / 2 + half_m, bar.width_m / 2 - half_m
        label.setX(min(max(x_m, lo), hi) if lo < hi else 0.0)
        self._hover_stem.setX(x_m)
        self._hover_stem.setColor(*rgb, 1)
        self._hover_stem.show()

    def _draw_label(self) -> None:
        near = self.near_text()
        if near is None or self.hovered is not None:  # the hovered beat takes the line
            self._label.hide()
            return
        text, rgb = near
        self._set_label(self._label, text, rgb)

    def _animate(self, now: float) -> None:
        keep: list[_Flash] = []
        for f in self._flashes:
            age = now - f.born_s
            if age >= f.life_s:
                f.node.removeNode()
                continue
            u = age / f.life_s
            if f.avatar is not None:
                pos = self.crowd.position(f.avatar)
                if pos is None:
                    f.node.removeNode()
                    continue
                f.node.setPos(pos[0], pos[1], 2.25 + 0.35 * u)
                f.node.setAlphaScale(1.0 - u**2)
            else:
                f.node.setScale(0.25 + 0.9 * math.sqrt(u))
                f.node.setAlphaScale(1.0 - u)
            keep.append(f)
        self._flashes = keep

    def destroy(self) -> None:
        self._events.ignoreAll()
        for f in self._flashes:
            f.node.removeNode()
        for node in self._ticks:
            node.removeNode()
        self.overlay.removeNode()
        self._label.removeNode()
        self._hover_label.removeNode()
        self._hover_stem.removeNode()
        self._hold_text.destroy()
        self._prompt.destroy()
        if self._entry is not None:
            self._entry.destroy()


# ---------------------------------------------------------------------------------- bots


class BotBeats:
    """`neonbar bots --beats`: each bot marks beats near the playing scene's strong moments.

    Every bot gets its own plan per scene (neonbar.beats.plan_beats: skips some moments, reacts
    a log-normal half second or so late, mostly names the emotion the screenplay puts there)
    and sends each beat as the room's play head passes it. A seek back re-arms what is ahead.

    Args:
        count: how many bots.
        seed: their random generator's seed (None: a fresh one).
        moments: strong moments taken from each scene's intended arc.
    """

    def __init__(self, count: int, seed: int | None = None, moments: int = 6) -> None:
        import numpy as np

        self.count = count
        self.rng = np.random.default_rng(seed)
        self.moments = moments
        self.timeline: Any = None
        self.plans: list[list[Any]] = [[] for _ in range(count)]
        self.next: list[int] = [0] * count
        self._planned: tuple[str, float] | None = None
        self.sent = 0

    def on_message(self, msg: dict[str, Any]) -> None:
        """Follow the room's timeline (welcome or `timeline` event)."""
        from neonbar.playback import Timeline

        wire = msg.get("timeline") if msg.get("t") == "welcome" else msg
        if not (msg.get("t") == "welcome" or msg.get("kind") == "timeline"):
            return
        if not isinstance(wire, dict):
            return
        try:
            timeline = Timeline.from_wire(wire)
        except ValueError:
            return
        old = self.timeline
        self.timeline = timeline
        if timeline.scene is None or timeline.duration_s <= 0:
            return
        key = (timeline.scene, round(timeline.duration_s, 3))
        if key != self._planned:
            self._plan(timeline.scene, timeline.duration_s)
            self._planned = key
        elif old is not None and timeline.pos_s < old.position(timeline.at_s) - 0.5:
            self._rearm(timeline.pos_s)  # a seek back: what is ahead can be marked again

    def _plan(self, scene: str, duration_s: float) -> None:
        from neonbar.arc import intended_arc
        from neonbar.beats import plan_beats
        from neonbar.errors import UserError
        from neonbar.scenes import load_scene

        try:
            arc = intended_arc(load_scene(scene))
        except UserError as exc:
            log.info("bots mark no beats in %s: %s", scene, exc)
            self.plans = [[] for _ in range(self.count)]
            return
        moments = [
            (m.t_s, m.strength, m.valence, m.arousal) for m in arc.strong_moments(self.moments)
        ]
        self.plans = [
            sorted(plan_beats(moments, duration_s, self.rng), key=lambda b: b.t_s)
            for _ in range(self.count)
        ]
        self.next = [0] * self.count

    def _rearm(self, pos_s: float) -> None:
        for i, plan in enumerate(self.plans):
            self.next[i] = next((k for k, p in enumerate(plan) if p.t_s >= pos_s), len(plan))

    def due(self, bot: int, server_s: float) -> list[dict[str, Any]]:
        """The beat messages bot `bot` should send now (the play head has passed them)."""
        timeline = self.timeline
        if timeline is None or not timeline.playing or timeline.status != "ready":
            return []
        plan = self.plans[bot]
        pos = timeline.position(server_s)
        out: list[dict[str, Any]] = []
        while self.next[bot] < len(plan) and plan[self.next[bot]].t_s <= pos:
            p = plan[self.next[bot]]
            self.next[bot] += 1
            if pos - p.t_s > 2.0:
                continue  # joined late or lagged: a beat long past is not what a person does
            msg: dict[str, Any] = {"t": "beat", "scene": timeline.scene, "at": p.t_s,
                                   "emotion": p.emotion, "intensity": p.intensity,
                                   "cid": self.sent + 1}  # fmt: skip
            if p.t_out_s is not None:
                msg["until"] = round(p.t_out_s, 3)
            if p.point is not None:
                msg["x"], msg["y"] = p.point
            self.sent += 1
            out.append(msg)
        return out
