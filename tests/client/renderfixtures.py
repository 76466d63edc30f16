"""Helpers for the client's render tests: an offscreen ShowBase and a scripted session."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

SIZE = (320, 180)


class FakeState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class FakeSession:
    """The NetSession surface with everything scripted by the test: no sockets, no thread."""

    def __init__(self, you: int = 1, name: str = "me") -> None:
        self.state = FakeState.CONNECTED
        self.ping_ms: float | None = 12.0
        self.you: int | None = you
        self.role: str | None = "host"
        self.last_error: str | None = None
        self.roster: dict[int, dict[str, Any]] = {
            you: {"name": name, "color": "#2de2ff", "role": "host", "muted": False,
                  "drink": None, "tipsy": 0.0, "tipsy_st": 0.0},
        }  # fmt: skip
        self.inbox: list[Any] = []
        self.sent: list[dict[str, Any]] = []
        self.local: tuple[float, float, float] | None = None
        self.ids = np.zeros(0, np.int64)
        self.pos = np.zeros((0, 2))
        self.yaw = np.zeros(0)
        self.corr: tuple[float, float, float, int] | None = None
        self.started = self.stopped = False

    def welcome(self, pos_cm: tuple[int, int, int] = (0, -900, 0)) -> None:
        self.inbox.append({
            "t": "welcome", "v": 1, "you": self.you, "room": "test", "role": "host",
            "name": self.roster[self.you]["name"], "resume": "r", "resumed": False, "st": 0.0,
            "tick": 0, "seq": 0, "pos": list(pos_cm), "avatars": [], "limits": {},
            "look": "neutral", "layout": "The Orange Haze",
        })  # fmt: skip

    def add_remote(self, avatar_id: int, name: str, color: str, x: float, y: float) -> None:
        self.roster[avatar_id] = {
            "name": name, "color": color, "role": "collaborator", "muted": False,
            "drink": None, "tipsy": 0.0, "tipsy_st": 0.0,
        }  # fmt: skip
        self.ids = np.append(self.ids, avatar_id)
        self.pos = np.vstack([self.pos, [[x, y]]])
        self.yaw = np.append(self.yaw, 0.0)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def set_local_state(self, x_m: float, y_m: float, yaw_rad: float) -> None:
        self.local = (x_m, y_m, yaw_rad)

    def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)

    def poll(self) -> list[Any]:
        out, self.inbox = self.inbox, []
        return out

    def remote_avatars(self, delay_s: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.ids.copy(), self.pos.copy(), self.yaw.copy()

    def correction(self) -> tuple[float, float, float, int] | None:
        return self.corr

    def sent_state(self, seq: int) -> tuple[float, float, float] | None:
        return None

    def server_time(self) -> float:
        return 0.0


@pytest.fixture
def showbase() -> Iterator[Any]:
    """An offscreen ShowBase (EGL), destroyed after the test."""
    from client.app import make_showbase

    base = make_showbase(offscreen=True, size=SIZE)
    try:
        yield base
    finally:
        base.destroy()


def render(base: Any, frames: int = 2) -> np.ndarray:
    """Step the task manager (app tasks + drawing) and return the window as RGB (H, W, 3)."""
    from client.capture import grab_frame

    for _ in range(frames):
        base.taskMgr.step()
    img = grab_frame(base)
    assert img is not None
    return img[:, :, ::-1].astype(np.int16)


def project(base: Any, point: tuple[float, float, float]) -> tuple[int, int] | None:
    """Pixel (col, row) of a world point in the window, or None when off screen."""
    from panda3d.core import Point2, Point3

    p = base.cam.getRelativePoint(base.render, Point3(*point))
    film = Point2()
    if not base.camLens.project(p, film):
        return None
    w, h = base.win.getXSize(), base.win.getYSize()
    return int((film.x + 1) / 2 * w), int((1 - film.y) / 2 * h)


def saturated_bright(img: np.ndarray, sat: float = 0.6, val: int = 140) -> int:
    """How many pixels are vivid (neon): high saturation and high value."""
    mx = img.max(axis=2)
    mn = img.min(axis=2)
    s = (mx - mn) / np.maximum(mx, 1)
    return int(((s >= sat) & (mx >= val)).sum())


def run_for(base: Any, seconds: float) -> None:
    """Step the frame loop for a stretch of wall-clock time (fades and emotes are timed)."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        base.taskMgr.step()
