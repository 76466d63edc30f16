"""The timeline strip under the big screen, and the host's playback keys.

The strip lives in the bar itself (world space, just below the screen), so everyone in the room
reads the same thing: the scene's title, the time and the length, the state (playing, paused,
preparing, fetching N %, or what went wrong), and who controls playback. A thin progress line
runs along it; beat ticks (client/beats_ui.py) can be added with `add_mark`, and `pick` says
where on the strip the mouse points (a ray from the camera through the cursor onto the strip's
plane), so a tick can be hovered.

Keys (for whoever may control; others get a toast saying who does):
Space play/pause · Ctrl+← / Ctrl+→ seek 5 s back / ahead · Ctrl+↓ / Ctrl+↑ slower / faster ·
N next scene. Plain arrows keep walking and turning the avatar; Ctrl is what makes them
timeline keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from direct.showbase.DirectObject import DirectObject
from panda3d.core import CardMaker, NodePath, Point2, Point3, TextNode, TransparencyAttrib

from client import fonts
from neonbar.playback import MAX_RATE, MIN_RATE, Timeline

SEEK_STEP_S = 5.0
TRACK_INSET_M = 0.1  # the progress track (and the marks on it) stop this far from each end
MARK_Y_M = -0.012  # marks sit just in front of the plate (the strip faces -y)
MARK_HALF_WIDTH_M = 0.02
RATES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
assert RATES[0] >= MIN_RATE and RATES[-1] <= MAX_RATE

STATE_TEXT = {"preparing": "preparing the scene…", "missing": "media missing", "idle": "no scene"}


def ray_on_plane(node: NodePath, plane_y: float, cam: NodePath, lens: Any,
                 film: tuple[float, float]) -> Point3 | None:  # fmt: skip
    """Where the ray from the camera through a point of the window (lens film coordinates,
    -1..1 like the mouse) meets the plane y = `plane_y` of `node` (in `node`'s frame), or
    None when it runs along the plane or the plane is behind the camera or past the far
    plane. The big screen and the strip both face -y in their own frames."""
    near, far = Point3(), Point3()
    if not lens.extrude(Point2(*film), near, far):
        return None
    a = node.getRelativePoint(cam, near)
    b = node.getRelativePoint(cam, far)
    if abs(b.y - a.y) < 1e-9:
        return None
    k = (plane_y - a.y) / (b.y - a.y)
    if not 0.0 <= k <= 1.0:
        return None
    return a + (b - a) * k


def fmt_clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def may_control(timeline: Timeline, role: str | None) -> bool:
    """The server's rule (server/playback.py), mirrored so the keys can say no at once."""
    return role == "host" or (role == "collaborator" and timeline.collab)


def controller_text(timeline: Timeline) -> str:
    return "host & collaborators control" if timeline.collab else "host controls"


def status_line(timeline: Timeline, server_s: float, fetch_fraction: float | None = None,
                problem: str | None = None) -> str:  # fmt: skip
    """The strip's middle line: state and time, e.g. '▶ 0:12 / 0:30  ×1.5'."""
    if problem:
        return _fit(problem)
    if timeline.status != "ready":
        return _fit(timeline.note or STATE_TEXT.get(timeline.status, timeline.status))
    if fetch_fraction is not None:
        return f"fetching the scene… {fetch_fraction * 100:3.0f} %"
    pos = timeline.position(server_s)
    mark = "▶" if timeline.playing and not timeline.ended(server_s) else "❚❚"
    rate = f"  ×{timeline.rate:g}" if abs(timeline.rate - 1.0) > 1e-9 else ""
    return f"{mark} {fmt_clock(pos)} / {fmt_clock(timeline.duration_s)}{rate}"


# The middle line shares the strip with the title and who controls: a server's note (a
# render's error, say) is cut to what fits between them; the whole note is in the server log.
STATUS_CHARS = 30


def _fit(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= STATUS_CHARS else text[: STATUS_CHARS - 1].rstrip() + "…"


@dataclass
class TimelineBar:
    """The strip under the screen (child of the world's screen node).

    Args:
        screen: World.screen (origin at the panel's bottom centre, facing into the room).
        width_m: the panel's width; the strip spans it.
    """

    base: Any
    screen: NodePath
    width_m: float
    height_m: float = 0.6
    marks: list[NodePath] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.screen.attachNewNode("timeline-bar")
        self.root.setPos(0, -0.03, -0.08 - self.height_m)
        self.root.setLightOff(1)
        self.root.setFogOff(1)
        self.root.setTransparency(TransparencyAttrib.MAlpha)
        w, h = self.width_m, self.height_m
        back = CardMaker("timeline-back")
        back.setFrame(-w / 2, w / 2, 0, h)
        plate = self.root.attachNewNode(back.generate())
        plate.setColor(0.02, 0.02, 0.05, 0.85)
        line = CardMaker("timeline-line")
        line.setFrame(0, 1, 0, 1)
        self.track = self.root.attachNewNode(line.generate())
        self.track.setPos(-w / 2 + TRACK_INSET_M, -0.004, 0.05)
        self.track.setScale(self.track_m, 1, 0.035)
        self.track.setColor(0.25, 0.25, 0.4, 1)
        self.fill = self.root.attachNewNode(line.generate())
        self.fill.setPos(-w / 2 + TRACK_INSET_M, -0.008, 0.05)
        self.fill.setColor(1.0, 0.55, 0.15, 1)
        self.fill.setScale(0.001, 1, 0.035)
        font = fonts.load_font(self.base.loader, fonts.latin_font_path())
        self.title = self._text("title", font, -w / 2 + 0.1, TextNode.ALeft, (1, 0.75, 0.4, 1))
        self.state = self._text("state", font, 0.0, TextNode.ACenter, (0.85, 0.9, 1, 1))
        self.who = self._text("who", font, w / 2 - 0.1, TextNode.ARight, (0.6, 0.65, 0.9, 1))
        self._shown: tuple[str, str, str, float] | None = None

    def _text(self, name: str, font: Any, x: float, align: int,
              color: tuple[float, float, float, float]) -> TextNode:  # fmt: skip
        node = TextNode(f"timeline-{name}")
        if font is not None:
            node.setFont(font)
        node.setAlign(align)
        node.setTextColor(*color)
        path = self.root.attachNewNode(node)
        path.setScale(self.height_m * 0.5)
        path.setPos(x, -0.01, self.height_m * 0.4)
        return node

    def update(self, timeline: Timeline, server_s: float, fetch_fraction: float | None = None,
               problem: str | None = None) -> None:  # fmt: skip
        title = timeline.title or (timeline.scene or "")
        state = status_line(timeline, server_s, fetch_fraction, problem)
        who = controller_text(timeline) if timeline.scene else ""
        if fetch_fraction is not None:
            frac = fetch_fraction
        elif timeline.duration_s > 0:
            frac = timeline.position(server_s) / timeline.duration_s
        else:
            frac = 0.0
        shown = (title, state, who, round(frac, 3))
        old = self._shown or ("\0", "\0", "\0", -1.0)
        if shown == old:
            return
        self._shown = shown
        # Each setText rebuilds that line's glyphs (~1 ms): only the lines that changed.
        for node, text, before in ((self.title, title, old[0]), (self.state, state, old[1]),
                                   (self.who, who, old[2])):  # fmt: skip
            if text != before:
                node.setText(text)
        if shown[3] != old[3]:
            self.fill.setSx(max(0.001, self.track_m * min(1.0, max(0.0, frac))))

    @property
    def track_m(self) -> float:
        """Length of the track the scene is laid along, metres."""
        return self.width_m - 2 * TRACK_INSET_M

    def x_of(self, fraction: float) -> float:
        """The strip's x (metres, in `root`'s frame) at `fraction` of the scene."""
        return -self.width_m / 2 + TRACK_INSET_M + self.track_m * fraction

    def add_mark(self, at_fraction: float, color: tuple[float, float, float, float]) -> NodePath:
        """A tick on the strip at `at_fraction` of the scene (beats, strong moments)."""
        tick = CardMaker("timeline-mark")
        tick.setFrame(-MARK_HALF_WIDTH_M, MARK_HALF_WIDTH_M, 0, 0.12)
        node = self.root.attachNewNode(tick.generate())
        node.setPos(self.x_of(at_fraction), MARK_Y_M, 0.02)
        node.setColor(*color)
        self.marks.append(node)
        return node

    def pick(self, cam: NodePath, lens: Any, film: tuple[float, float], slack_px: float = 6.0,
             window_px: float = 1.0) -> tuple[float, float, float] | None:  # fmt: skip
        """Where a point of the window (lens film coordinates, -1..1 like the mouse) meets
        the strip: (x metres in `root`'s frame, fraction of the scene, slack metres), or None
        when it misses the strip. The slack is what `slack_px` pixels (of a window
        `window_px` pixels wide) span on the strip there, so a thin tick stays easy to hit
        from across the bar."""
        hit = ray_on_plane(self.root, MARK_Y_M, cam, lens, film)
        if hit is None:
            return None
        if not (-self.width_m / 2 <= hit.x <= self.width_m / 2
                and -0.02 <= hit.z <= self.height_m):  # fmt: skip
            return None
        step = 2.0 * slack_px / max(1.0, window_px)  # film units are 2 across the window
        beside = ray_on_plane(self.root, MARK_Y_M, cam, lens, (film[0] + step, film[1]))
        slack = abs(beside.x - hit.x) if beside is not None else 0.0
        fraction = (hit.x - self.x_of(0.0)) / self.track_m
        return hit.x, fraction, slack

    def destroy(self) -> None:
        self.root.removeNode()


class TimelineKeys(DirectObject):
    """Space, Ctrl+arrows and N turned into `playback` messages (docs/protocol.md)."""

    def __init__(
        self,
        send: Callable[[dict[str, Any]], None],
        timeline: Callable[[], Timeline],
        position: Callable[[], float],
        role: Callable[[], str | None],
        toast: Callable[[str], None],
        captured: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__()
        self._send, self._timeline, self._position = send, timeline, position
        self._role, self._toast, self._captured = role, toast, captured
        self._ctrl = False
        self.accept("space", self._key, ["toggle"])
        self.accept("n", self._key, ["next"])
        for ctrl in ("control", "lcontrol", "rcontrol"):
            self.accept(ctrl, self._set_ctrl, [True])
            self.accept(f"{ctrl}-up", self._set_ctrl, [False])
        for arrow, op in (("arrow_left", "back"), ("arrow_right", "ahead"),
                          ("arrow_down", "slower"), ("arrow_up", "faster")):  # fmt: skip
            self.accept(arrow, self._arrow, [op])
            self.accept(f"{arrow}-repeat", self._arrow, [op])

    def _set_ctrl(self, down: bool) -> None:
        self._ctrl = down

    def _arrow(self, op: str) -> None:
        if self._ctrl:
            self._key(op)

    def _key(self, op: str) -> None:
        if self._captured():
            return
        msg = self.message(op)
        if msg is not None:
            self._send(msg)

    def message(self, op: str) -> dict[str, Any] | None:
        """The message for a key, or None (and a toast) when it cannot apply."""
        timeline = self._timeline()
        if not may_control(timeline, self._role()):
            rule = "the host and collaborators" if timeline.collab else "the host"
            self._toast(f"only {rule} can control playback")
            return None
        if op == "next":
            return {"t": "playback", "op": "next"}
        if timeline.scene is None:
            self._toast("no scene yet: press N for the first one")
            return None
        if op == "toggle":
            return {"t": "playback", "op": "pause" if timeline.playing else "play"}
        if op in ("back", "ahead"):
            step = SEEK_STEP_S if op == "ahead" else -SEEK_STEP_S
            return {"t": "playback", "op": "seek", "pos": max(0.0, self._position() + step)}
        index = min(range(len(RATES)), key=lambda k: abs(RATES[k] - timeline.rate))
        index = max(0, min(len(RATES) - 1, index + (1 if op == "faster" else -1)))
        return {"t": "playback", "op": "rate", "rate": RATES[index]}

    def destroy(self) -> None:
        self.ignoreAll()


__all__ = ["TimelineBar", "TimelineKeys", "controller_text", "may_control", "ray_on_plane",
           "status_line"]  # fmt: skip
