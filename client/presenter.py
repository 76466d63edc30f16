"""Presenter mode (`neonbar client --presenter`) and the look of a rendered film.

In front of investors the HUD's working clutter — connection state, ping, key hints — is noise.
`Presenter` hides it, lays a big timeline across the top of the view (the scene's title, the
time, a progress bar and a tick at each of the scene's strong moments from its intended arc),
and gives the host two keys: Page Down (or ]) jumps to the next strong moment, Page Up (or [)
to the previous one — a seek the whole room follows. `film_mode(app)` is the same clean frame
for a replay rendered to video, where nobody presses keys. The chat feed and the toasts stay:
they are the bar talking.

`stage(app, net, …)` applies the client's --tour, --presenter and --save-session options. With
a window, the tour says on screen that any key takes over; its shots and the moment it yields
are marks in the session recording, and the yield is a line on stdout (what `neonbar demo`'s
window test watches for).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("neonbar.presenter")

NEXT_KEYS = ("page_down", "]")
PREVIOUS_KEYS = ("page_up", "[")
JUMP_LEAD_S = 1.5  # land a little before the moment, so the room sees it arrive
MOMENTS = 6
BAR_SORT = 12  # after the app's frame task (10): the timeline is current
CUE_SORT = 13
TOAST_Z = 0.7  # below the big timeline (aspect2d units)
TOUR_CAPTION = "guided tour: {shot}  ·  press any key to take the controls"
YOURS_TOAST = "the controls are yours: W A S D walk · right-drag looks · F1 keys"
YIELD_MARK = "tour: yielded to the keyboard"
YIELD_LINE = (
    "  the tour stopped at your key: the controls are yours "
    "(W A S D walk, right-drag looks, F1 keys, close the window to end)"
)


def hide_clutter(app: Any) -> None:
    """Hide the status line and the key hint (the app keeps setting their text)."""
    for name in ("status", "hint"):
        item = getattr(app.hud, name, None)
        if item is not None:
            item.hide()


def film_mode(app: Any) -> None:
    """A clean frame for a rendered film, with the presenter's big timeline, and no toast for
    the recording client's own error replies (a first make demo's film showed "over the rate
    limit: dropped" across the screen at the branch: the server had dropped some inputs)."""
    hide_clutter(app)
    Presenter(app, keys=False)
    handle = app._handle

    def shown(msg: Any) -> None:
        if isinstance(msg, dict) and msg.get("t") == "error":
            log.info("not in the film: %s", msg.get("message"))
            return
        handle(msg)

    app._handle = shown


def strong_moments(scene: str | None, n: int = MOMENTS) -> list[float]:
    """Times (s) of the scene's strongest moments from its intended arc; [] if it has none."""
    if not scene:
        return []
    try:
        from neonbar.arc import intended_arc
        from neonbar.scenes import load_scene

        return [m.t_s for m in intended_arc(load_scene(scene)).strong_moments(n)]
    except Exception as exc:  # no screenplay, unknown scene: the bar still works
        log.info("no strong moments for %s: %s", scene, exc)
        return []


def next_moment(moments: list[float], position_s: float, forward: bool = True) -> float | None:
    """The seek target for the next (or previous) strong moment from position_s."""
    lead = JUMP_LEAD_S
    if forward:
        later = [t for t in moments if t - lead > position_s + 0.25]
        return max(0.0, later[0] - lead) if later else None
    earlier = [t for t in moments if t - lead < position_s - 1.0]
    return max(0.0, earlier[-1] - lead) if earlier else None


class Presenter:
    """The big timeline and the strong-moment keys (handed the app it decorates)."""

    def __init__(self, app: Any, keys: bool = True) -> None:
        from direct.gui.OnscreenText import OnscreenText
        from direct.showbase.DirectObject import DirectObject
        from panda3d.core import CardMaker, TextNode, TransparencyAttrib

        from client import fonts

        self.app = app
        base = app.base
        # Along the top, where the status line and key hints were: the chat runs at the bottom.
        self.root = base.a2dTopCenter.attachNewNode("presenter-timeline")
        self.root.setTransparency(TransparencyAttrib.MAlpha)
        self.width = 1.5  # aspect2d units: most of a 16:9 view's width (3.56)
        self.root.setPos(0, 0, -0.16)
        card = CardMaker("presenter-track")
        card.setFrame(0, 1, 0, 1)
        self.track = self.root.attachNewNode(card.generate())
        self.track.setPos(-self.width, 0, 0)
        self.track.setScale(2 * self.width, 1, 0.018)
        self.track.setColor(0.3, 0.3, 0.45, 0.6)
        self.fill = self.root.attachNewNode(card.generate())
        self.fill.setPos(-self.width, 0, 0)
        self.fill.setColor(1.0, 0.55, 0.15, 0.95)
        self.fill.setScale(0.001, 1, 0.018)
        self._card = card
        font = fonts.load_font(base.loader, fonts.latin_font_path())
        self.title = OnscreenText(
            text="", parent=self.root, pos=(-self.width, 0.04), scale=0.05,
            align=TextNode.ALeft, fg=(1, 0.78, 0.45, 1), shadow=(0, 0, 0, 0.9), font=font,
            mayChange=True,
        )  # fmt: skip
        self.clock_text = OnscreenText(
            text="", parent=self.root, pos=(self.width, 0.04), scale=0.05,
            align=TextNode.ARight, fg=(0.9, 0.92, 1, 1), shadow=(0, 0, 0, 0.9), font=font,
            mayChange=True,
        )  # fmt: skip
        self.ticks: list[Any] = []
        self._scene: str | None = None
        self.moments: list[float] = []
        self.root.hide()
        # The toasts (the branch's choice, "the controls are yours") sat on the bar at 0.8.
        toast = getattr(app.hud, "toast", None)
        if toast is not None:
            toast.setPos(0, TOAST_Z)
        self._events = DirectObject()
        if keys:
            for key in NEXT_KEYS:
                self._events.accept(key, self.jump, [True])
            for key in PREVIOUS_KEYS:
                self._events.accept(key, self.jump, [False])
        base.taskMgr.add(self._task, "neonbar-presenter", sort=BAR_SORT)

    # ------------------------------------------------------------------------ drawing

    def _timeline(self) -> Any:
        watch = getattr(self.app, "watch", None)
        return getattr(watch, "timeline", None)

    def _position(self) -> float:
        watch = getattr(self.app, "watch", None)
        position = getattr(watch, "_position", None)
        if callable(position):
            return float(position())
        timeline = self._timeline()
        session = self.app.session
        if timeline is None or session is None:
            return 0.0
        return float(timeline.position(session.server_time()))

    def _task(self, task: Any) -> int:
        self.update()
        return int(task.cont)

    def update(self) -> None:
        timeline = self._timeline()
        if timeline is None or not getattr(timeline, "scene", None) or not timeline.frames:
            self.root.hide()
            return
        if timeline.scene != self._scene:
            self._scene = timeline.scene
            self.moments = strong_moments(timeline.scene)
            self._place_ticks(timeline.duration_s)
        self.root.show()
        duration = max(1e-6, float(timeline.duration_s))
        pos = min(duration, max(0.0, self._position()))
        self.fill.setScale(max(0.001, 2 * self.width * pos / duration), 1, 0.018)
        title = timeline.title or timeline.scene
        if self.title.text != title:
            self.title.setText(title)
        clock = f"{_clock(pos)} / {_clock(duration)}"
        if self.clock_text.text != clock:
            self.clock_text.setText(clock)

    def _place_ticks(self, duration_s: float) -> None:
        for tick in self.ticks:
            tick.removeNode()
        self.ticks = []
        for t_s in self.moments:
            tick = self.root.attachNewNode(self._card.generate())
            x = -self.width + 2 * self.width * min(1.0, t_s / max(1e-6, duration_s))
            tick.setPos(x - 0.004, 0, -0.012)
            tick.setScale(0.008, 1, 0.042)
            tick.setColor(1.0, 0.25, 0.55, 1)
            self.ticks.append(tick)

    # ------------------------------------------------------------------------ keys

    def jump(self, forward: bool = True) -> None:
        """Seek the room to the next (or previous) strong moment; host only."""
        session = self.app.session
        timeline = self._timeline()
        if timeline is None or not getattr(timeline, "scene", None):
            self.app.hud.show_toast("no scene is playing")
            return
        if session is not None and session.role not in ("host", None):
            self.app.hud.show_toast("only the host jumps between moments")
            return
        target = next_moment(self.moments, self._position(), forward)
        if target is None:
            self.app.hud.show_toast("no further strong moment" if forward else "at the first")
            return
        self.app._send({"t": "playback", "op": "seek", "pos": round(target, 3)})
        self.app.hud.show_toast(f"strong moment at {_clock(target + JUMP_LEAD_S)}", 1.5)

    def destroy(self) -> None:
        self._events.ignoreAll()
        self.app.base.taskMgr.remove("neonbar-presenter")
        self.root.removeNode()


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class TourCue:
    """What the live tour tells people: a caption along the bottom while it flies (the shot,
    and that any key takes over), then the keys once a key has stopped it.

    Args:
        app: the `client.app.NeonBarApp` whose camera is the `client.tour.TourCamera`.
        mark: writes a label into the session recording (None: not recording).
        caption: show the caption (a window; an offscreen run has no keyboard).
    """

    def __init__(
        self, app: Any, mark: Callable[[str], None] | None = None, caption: bool = True
    ) -> None:
        from direct.gui.OnscreenText import OnscreenText

        from client import fonts

        self.app = app
        self.mark = mark
        self.shot: str | None = None
        base = app.base
        self.caption = OnscreenText(
            text="", parent=base.a2dBottomCenter, pos=(0, 0.09), scale=0.045,
            fg=(1, 0.86, 0.62, 0.95), shadow=(0, 0, 0, 0.95), mayChange=True,
            font=fonts.load_font(base.loader, fonts.latin_font_path()),
        )  # fmt: skip
        if not caption:
            self.caption.hide()
        base.taskMgr.add(self._task, "neonbar-tour-cue", sort=CUE_SORT)

    def _task(self, task: Any) -> int:
        from direct.task import Task

        camera = self.app.camera
        if not getattr(camera, "touring", False):
            return int(Task.done)
        name = camera.shot.name
        if name != self.shot:
            self.shot = name
            self.caption.setText(TOUR_CAPTION.format(shot=name))
            if self.mark is not None:
                self.mark(f"tour: {name}")
        return int(task.cont)

    def yielded(self) -> None:
        """A key stopped the tour: the keys on screen, a mark, a line for the terminal."""
        self.caption.hide()
        self.app.hud.show_toast(YOURS_TOAST, 6.0)
        if self.mark is not None:
            self.mark(YIELD_MARK)
        print(YIELD_LINE, flush=True)

    def destroy(self) -> None:
        self.app.base.taskMgr.remove("neonbar-tour-cue")
        self.caption.destroy()


def _has_window(base: Any) -> bool:
    from panda3d.core import GraphicsWindow

    return isinstance(getattr(base, "win", None), GraphicsWindow)


def stage(
    app: Any,
    net: Any,
    *,
    tour: bool = False,
    presenter: bool = False,
    save_session: str | None = None,
    header: dict[str, Any] | None = None,
) -> Callable[[], None]:
    """Apply `neonbar client --tour / --presenter / --save-session`; returns the closer to
    call when the client ends (it finishes the recording)."""
    closers: list[Callable[[], None]] = []
    writer: Any = None
    if save_session:
        from client.recording import AppRecorder, SessionWriter

        writer = SessionWriter(save_session, {"recorder": "client", **(header or {})})
        closers.append(AppRecorder(app, net, writer).close)
    if tour:
        from client.tour import Tour, TourCamera

        cue = TourCue(app, mark=writer.mark if writer is not None else None,
                      caption=_has_window(app.base))  # fmt: skip

        def playing() -> bool:
            timeline = getattr(getattr(app, "watch", None), "timeline", None)
            return bool(getattr(timeline, "playing", False)) and (
                getattr(timeline, "status", "ready") == "ready"
            )

        app.camera = TourCamera(
            app.camera, Tour.for_layout(app.layout), clock=app.clock,
            crowd=app.crowd, you=lambda: app.you, on_interrupt=cue.yielded, playing=playing,
        )  # fmt: skip
        closers.append(cue.destroy)
    if presenter:
        hide_clutter(app)
        closers.append(Presenter(app).destroy)

    def close() -> None:
        for closer in reversed(closers):
            try:
                closer()
            except Exception:  # the session is ending anyway
                log.exception("could not finish %s", closer)

    return close
