"""Sharing reactions from the 3D client: opt-in, visible while on, one key to pause.

`ReactionShare` is handed what it needs (the ShowBase, a send function, the crowd, a toast, the
scene clock) and runs one frame task. It owns the `Reactor` thread; each frame it drains what the
pipeline produced into `react` / `micro` messages, puts our own face on our avatar, and keeps the
indicator in the corner up to date. Other people's faces arrive in `faces` messages
(`on_faces`). Without a webcam it says so once and the bar carries on without it.

Privacy: the pipeline only starts when the user asked (`--webcam N` / `--reaction-video F`);
"● REACTIONS ON" shows whenever frames are read; R pauses (the camera is released, its light
goes off) and resumes; only the numbers in neonbar/reaction.py leave the machine and no frame
is written anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from neonbar import reaction as wire

log = logging.getLogger("neonbar.client.reactions")

PAUSE_KEY = "r"
TASK_SORT = 12  # after the app's frame task (10) has read the network


@dataclass
class ReactionShare:
    """Args:
    base: the ShowBase (tasks, keys, aspect2d).
    send: sends one client message (NetSession.send, or the app's offline echo).
    crowd: client.avatars.Crowd, for our own face.
    you: our avatar id now (None before welcome).
    scene_time: the play head (s) while a scene is on the big screen, else None.
    toast: shows a short sentence to the user.
    webcam / video: the source the user chose (exactly one).
    captured: True while a text field has the keyboard (R is then a letter, not a toggle).
    """

    base: Any
    send: Callable[[dict[str, Any]], None]
    crowd: Any
    you: Callable[[], int | None]
    scene_time: Callable[[], float | None]
    toast: Callable[[str], None]
    webcam: int | None = None
    video: str | None = None
    captured: Callable[[], bool] = lambda: False
    data_dir: str | None = None
    reactor: Any = None
    problem: str | None = None
    sent: int = 0
    micro_sent: int = 0
    _scene_t: float | None = None
    _batch: list[wire.Reaction] = field(default_factory=list)

    def __post_init__(self) -> None:
        from direct.gui.OnscreenText import OnscreenText
        from panda3d.core import TextNode

        from client import fonts

        font = fonts.load_font(self.base.loader, fonts.latin_font_path())  # has ● and ·
        self.indicator = OnscreenText(
            text="", parent=self.base.a2dBottomRight, pos=(-0.06, 0.08), scale=0.045,
            align=TextNode.ARight, fg=(1.0, 0.25, 0.3, 1), shadow=(0, 0, 0, 0.9), mayChange=True,
            font=font,
        )  # fmt: skip
        if self.webcam is not None or self.video is not None:  # off unless asked for
            self.start()
            self.base.accept(PAUSE_KEY, self.toggle)
        self.base.taskMgr.add(self._frame, "neonbar-reactions", sort=TASK_SORT)

    # ------------------------------------------------------------------------- inbound

    def on_message(self, msg: dict[str, Any]) -> str | None:
        """Faces go on the avatars; a branch event returns the line to show (else None)."""
        t = msg.get("t")
        if t == "faces":
            try:
                faces = wire.unpack_faces(msg["d"])
            except (KeyError, ValueError, TypeError):
                return None
            you = self.you()
            for avatar_id, face in faces.items():
                if avatar_id != you or self.reactor is None:  # ours is shown from the source
                    self.crowd.set_face(avatar_id, face)
        elif t == "welcome":
            part = msg.get("reactions")
            if not isinstance(part, dict):
                return None
            if isinstance(part.get("faces"), bytes):
                self.on_message({"t": "faces", "d": part["faces"]})
            decided = part.get("branches")
            if isinstance(decided, list) and decided and isinstance(decided[-1], dict):
                last = decided[-1]  # a late joiner hears what the room already chose
                return f"next: {last.get('choice', '?')} ({last.get('reason', '')})"
        elif t == "event" and msg.get("kind") == "branch":
            label, reason = str(msg.get("label", "")), str(msg.get("reason", ""))
            return f"next: {label} ({reason})" if reason else f"next: {label}"
        return None

    def start(self) -> None:
        from client.reactions.calibration import load_model
        from client.reactions.pipeline import ReactionEngine, Reactor
        from client.reactions.sources import VideoFileSource, WebcamSource
        from neonbar.errors import UserError

        try:
            if self.webcam is not None:
                source: Any = WebcamSource(self.webcam)
            else:
                source = VideoFileSource(str(self.video), realtime=True, loop=True)
            engine = ReactionEngine(model=load_model(self.data_dir))
        except UserError as exc:  # no camera: say so, carry on without reactions
            self.problem = str(exc)
            log.warning("reactions off: %s", exc)
            self.toast(f"reactions off: {exc}")
            self._show()
            return
        self.reactor = Reactor(source, scene_time=lambda: self._scene_t, engine=engine)
        self.reactor.start()
        self._show()

    @property
    def on(self) -> bool:
        return self.reactor is not None and self.reactor.is_alive() and not self.reactor.paused

    def toggle(self) -> None:
        if self.captured() or self.reactor is None:
            return
        self.reactor.pause(not self.reactor.paused)
        self.toast("reactions paused: camera off" if self.reactor.paused else "reactions on")
        self._show()

    def _show(self) -> None:
        if self.reactor is None:
            text = "reactions off (no camera)" if self.problem else ""
        elif not self.reactor.is_alive():
            text = "reactions stopped"
        elif self.reactor.paused:
            text = "reactions paused · R"
        else:
            text = "● REACTIONS ON · R pauses"
        if self.indicator.text != text:
            self.indicator.setText(text)

    def _frame(self, task: Any) -> int:
        self._scene_t = self.scene_time()
        reactor = self.reactor
        if reactor is None:
            return task.cont
        if reactor.error is not None and self.problem is None:
            self.problem = reactor.error
            self.toast(f"reactions stopped: {reactor.error}")
        while not reactor.outbox.empty():
            kind, item = reactor.outbox.get()
            if kind == "reaction":
                self._batch.append(item)
            elif self._scene_t is not None:  # a micro-expression only means something in a scene
                self.send({"t": "micro", "at": max(0.0, item.apex_s), "kind": item.kind,
                           "strength": item.strength, "dur_ms": min(item.dur_ms, 500)})  # fmt: skip
                self.micro_sent += 1
        if self._batch:
            # one message per frame at most, up to 4 records: 10 Hz stays 10 messages a second
            batch = self._batch[-wire.MAX_REACTIONS_PER_MESSAGE :]
            self._batch.clear()
            self.send({"t": "react", "r": wire.pack_many(batch)})
            self.sent += len(batch)
            you = self.you()
            if you is not None:
                self.crowd.set_face(you, batch[-1])
        self._show()
        return task.cont

    def destroy(self) -> None:
        if self.webcam is not None or self.video is not None:
            self.base.ignore(PAUSE_KEY)
        self.base.taskMgr.remove("neonbar-reactions")
        if self.reactor is not None:
            self.reactor.stop()
            self.reactor.join(2.0)
        self.indicator.destroy()
