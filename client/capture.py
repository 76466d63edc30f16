"""Screenshots and video from the window (the camera's view with the HUD), then exit.

`--screenshot F.png --after S` saves one frame S seconds after start. `--record F.mp4 --duration S`
writes H.264 (yuv420p, `avc1`: browsers and QuickTime play it) with neonbar.video's writer at a
fixed frame rate: each rendered frame is written as many times as wall-clock time says frames are
due, so the video lasts as long as the session did even when the CPU renderer draws fewer frames
than the video rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from direct.showbase.ShowBase import ShowBase

from neonbar.errors import UserError

log = logging.getLogger(__name__)

VIDEO_FPS = 24.0


def grab_frame(base: ShowBase) -> np.ndarray | None:
    """The window's last frame as an (H, W, 3) uint8 BGR array, top row first."""
    tex = base.win.getScreenshot()
    if tex is None or not tex.hasRamImage():
        return None
    data = tex.getRamImageAs("BGR")
    h, w = tex.getYSize(), tex.getXSize()
    img = np.frombuffer(memoryview(data), np.uint8).reshape(h, w, 3)
    return img[::-1].copy()  # Panda3D's images start at the bottom row


@dataclass
class Capture:
    """Drives the requested captures from the frame loop and calls `on_done` when finished."""

    base: ShowBase
    on_done: Callable[[], None]
    screenshot: str | None = None
    after_s: float = 3.0
    record: str | None = None
    duration_s: float = 10.0
    fps: float = VIDEO_FPS
    shot_taken: bool = field(default=False, init=False)
    frames_written: int = field(default=0, init=False)
    _writer: Any = field(default=None, init=False)
    _t0: float | None = field(default=None, init=False)
    _done: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for path in (self.screenshot, self.record):
            if path and not Path(path).resolve().parent.is_dir():
                raise UserError(f"cannot write {path}: its folder does not exist")
        if self.screenshot and not self.screenshot.lower().endswith((".png", ".jpg", ".jpeg")):
            raise UserError(f"--screenshot needs a .png or .jpg file name, not {self.screenshot}")
        if self.record and not self.record.lower().endswith(".mp4"):
            raise UserError(f"--record needs an .mp4 file name, not {self.record}")

    @property
    def active(self) -> bool:
        return bool(self.screenshot or self.record)

    @property
    def end_s(self) -> float:
        ends = []
        if self.screenshot:
            ends.append(self.after_s)
        if self.record:
            ends.append(self.duration_s)
        return max(ends) if ends else 0.0

    def update(self, now_s: float) -> None:
        """Call once per frame, after the frame was rendered; now_s is wall-clock seconds."""
        if not self.active or self._done:
            return
        if self._t0 is None:
            self._t0 = now_s
        t = now_s - self._t0
        if self.record and t <= self.duration_s:
            self._record_frame(t)
        if self.screenshot and not self.shot_taken and t >= self.after_s:
            self.save_screenshot(self.screenshot)
            self.shot_taken = True
        if t >= self.end_s:
            self.finish()

    def save_screenshot(self, path: str) -> None:
        img = grab_frame(self.base)
        if img is None:
            log.error("no frame to save for %s", path)
            return
        import cv2

        cv2.imwrite(path, img)
        log.info("screenshot saved to %s", path)

    def _record_frame(self, t: float) -> None:
        img = grab_frame(self.base)
        if img is None:
            return
        # yuv420p needs even sizes: an odd window loses its last row or column.
        h, w = img.shape[0] & ~1, img.shape[1] & ~1
        rgb = np.ascontiguousarray(img[:h, :w, ::-1])
        if self._writer is None:
            from neonbar.video import H264Writer

            try:
                self._writer = H264Writer(self.record or "", size=(w, h), fps=self.fps)
            except OSError as exc:
                raise UserError(f"cannot open {self.record} for writing: {exc}") from None
        due = int(t * self.fps) + 1
        while self.frames_written < due:
            self._writer.write(rgb)
            self.frames_written += 1

    def finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            log.info("video saved to %s (%d frames)", self.record, self.frames_written)
        self.on_done()
