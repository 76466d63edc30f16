"""Where frames come from: a webcam (OpenCV) or a video file (PyAV), as RGB arrays with times.

Frames stay in memory: nothing here writes an image anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neonbar.errors import UserError

Frame = tuple[float, NDArray[np.uint8]]  # (seconds since the source started, RGB h x w x 3)


class NoCamera(UserError):
    """The webcam cannot be opened (absent, busy, or no permission)."""


class WebcamSource:
    """OpenCV capture from camera `index` at `size` (the driver may pick the nearest it has)."""

    live = True

    def __init__(self, index: int, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> None:
        import cv2

        self.index = index
        self._cv2: Any = cv2
        self._size = size
        self._fps = fps
        self._cap: Any = None
        self.open()

    def open(self) -> None:
        cv2 = self._cv2
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise NoCamera(
                f"webcam {self.index} cannot be opened (no camera, in use, or no permission)"
            )
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        cap.set(cv2.CAP_PROP_FPS, self._fps)
        self._cap = cap
        self._t0 = time.monotonic()

    def close(self) -> None:
        """Release the camera (its light goes off); `open()` takes it again."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def frames(self) -> Iterator[Frame]:
        cv2 = self._cv2
        while self._cap is not None:
            ok, bgr = self._cap.read()
            if not ok:
                return
            yield time.monotonic() - self._t0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class VideoFileSource:
    """Frames of a video file with their presentation times.

    Args:
        path: the file (any container/codec FFmpeg reads).
        realtime: pace frames at the file's rate (a stand-in webcam); False reads flat out.
        loop: start again at the end (for a client sharing reactions from a demo clip).
        max_width: frames wider than this are scaled down (the face mesh needs no more).
    """

    live = False

    def __init__(
        self, path: str | Path, realtime: bool = False, loop: bool = False, max_width: int = 640
    ) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"video {self.path} does not exist")
        try:
            with av.open(str(self.path)) as probe:
                if not probe.streams.video:
                    raise UserError(f"{self.path} has no video stream")
        except av.FFmpegError as exc:
            raise UserError(f"{self.path} is not a video FFmpeg can read ({exc})") from None
        self._av: Any = av
        self.realtime = realtime
        self.loop = loop
        self.max_width = max_width

    def close(self) -> None:
        pass

    def open(self) -> None:
        pass

    def frames(self) -> Iterator[Frame]:
        av = self._av
        offset_s = 0.0
        start = time.monotonic()
        while True:
            last_s = 0.0
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                width = stream.codec_context.width
                scale = min(1.0, self.max_width / max(1, width))
                for frame in container.decode(stream):
                    t_s = offset_s + float(frame.time if frame.time is not None else last_s)
                    last_s = t_s - offset_s
                    if scale < 1.0:
                        frame = frame.reformat(
                            width=round(frame.width * scale) // 2 * 2,
                            height=round(frame.height * scale) // 2 * 2,
                        )
                    rgb = frame.to_ndarray(format="rgb24")
                    if self.realtime:
                        wait = start + t_s - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                    yield t_s, rgb
                rate = float(stream.average_rate or 30)
            if not self.loop:
                return
            offset_s += last_s + 1.0 / rate
