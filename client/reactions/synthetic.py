"""A face video with a known expression script, made from one photo (tests, bench, demos).

The photo's landmarks are found once; each frame then moves the lip corners (a smile), the
brows (a raise) or the inner brows (a frown) by smooth Gaussian displacement fields around
them, and moves the whole head (translation, rotation, scale) along slow curves — so the
pipeline sees a face that moves like a person's while making expressions at known times.
The photo shipped with matplotlib (sample_data/grace_hopper.jpg) is the default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from client.reactions.features import BROW_INNER, BROW_MID, EYE_OUTER, LIP_CORNER


def sample_photo() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@dataclass(frozen=True)
class Expression:
    """An expression from start_s to end_s; `amount` in inter-ocular distances at the apex."""

    kind: str  # "smile", "brow_raise" or "frown"
    start_s: float
    end_s: float
    amount: float = 0.07

    def level(self, t_s: float) -> float:
        """0 -> 1 -> 0 with smooth ramps (a fifth of the span each side, at most 0.25 s)."""
        if not self.start_s <= t_s <= self.end_s:
            return 0.0
        ramp = min(0.25, (self.end_s - self.start_s) / 5.0)
        up = (t_s - self.start_s) / ramp
        down = (self.end_s - t_s) / ramp
        x = min(1.0, up, down)
        return 0.5 - 0.5 * math.cos(math.pi * x)


DEFAULT_SCRIPT = (
    Expression("smile", 2.0, 4.0),
    Expression("brow_raise", 5.5, 5.8, 0.08),  # a 300 ms brow flash: a micro-expression
    Expression("smile", 6.6, 6.9, 0.07),  # a 300 ms smile twitch
)


class FaceAnimator:
    """Frames of `photo` placed on a `size` canvas, animated by an expression script."""

    def __init__(
        self,
        photo: str | Path | None = None,
        size: tuple[int, int] = (640, 480),
        landmarks: NDArray[np.float64] | None = None,
        head_motion: float = 1.0,
    ) -> None:
        import cv2

        self._cv2 = cv2
        bgr = cv2.imread(str(photo or sample_photo()))
        if bgr is None:
            raise ValueError(f"cannot read {photo}")
        w, h = size
        scale = min((h - 20) / bgr.shape[0], (w - 20) / bgr.shape[1])
        img = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)))
        canvas = np.full((h, w, 3), 24, np.uint8)
        y0, x0 = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
        canvas[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img
        self.base = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
        self.size = size
        self.head_motion = head_motion
        if landmarks is None:
            from client.reactions.tracker import FaceTracker

            with FaceTracker(video=False) as tracker:
                landmarks = tracker.landmarks(self.base)
            if landmarks is None:
                raise ValueError("no face in the photo")
        self.landmarks = landmarks
        self.iod = float(np.linalg.norm(landmarks[EYE_OUTER[1], :2] - landmarks[EYE_OUTER[0], :2]))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._xx, self._yy = xx, yy
        self.centre = landmarks[:, :2].mean(axis=0)

    def _field(
        self, points: Sequence[int], moves: Sequence[tuple[float, float]], sigma: float
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        dx = np.zeros_like(self._xx)
        dy = np.zeros_like(self._yy)
        for index, (mx, my) in zip(points, moves, strict=True):
            px, py = self.landmarks[index, :2]
            g = np.exp(-((self._xx - px) ** 2 + (self._yy - py) ** 2) / (2 * sigma**2))
            dx += mx * g
            dy += my * g
        return dx, dy

    def frame(self, t_s: float, script: Sequence[Expression] = DEFAULT_SCRIPT) -> NDArray[np.uint8]:
        """The RGB frame at t_s."""
        cv2 = self._cv2
        iod = self.iod
        dx = np.zeros_like(self._xx)
        dy = np.zeros_like(self._yy)
        for e in script:
            k = e.level(t_s) * e.amount * iod
            if k == 0.0:
                continue
            if e.kind == "smile":  # corners up and outward
                fx, fy = self._field(LIP_CORNER, [(-0.5 * k, -k), (0.5 * k, -k)], 0.12 * iod)
            elif e.kind == "brow_raise":
                pts = (*BROW_MID, *BROW_INNER)
                fx, fy = self._field(pts, [(0.0, -k)] * 4, 0.09 * iod)
            elif e.kind == "frown":  # inner brows down and together
                fx, fy = self._field(BROW_INNER, [(0.4 * k, k), (-0.4 * k, k)], 0.12 * iod)
            else:
                raise ValueError(f"unknown expression {e.kind!r}")
            dx += fx
            dy += fy
        # backward map: the pixel shown at p comes from p - displacement (fine for small moves)
        face = cv2.remap(
            self.base,
            self._xx - dx,
            self._yy - dy,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        m = self.head_motion
        angle = m * 6.0 * math.sin(2 * math.pi * t_s / 5.0)
        scale = 1.0 + m * 0.06 * math.sin(2 * math.pi * t_s / 7.0)
        shift = (
            m * 25.0 * math.sin(2 * math.pi * t_s / 6.0),
            m * 12.0 * math.sin(2 * math.pi * t_s / 4.0),
        )
        affine = cv2.getRotationMatrix2D(tuple(float(c) for c in self.centre), angle, scale)
        affine[:, 2] += shift
        w, h = self.size
        return cv2.warpAffine(face, affine, (w, h), borderMode=cv2.BORDER_REPLICATE)


def write_video(
    path: str | Path,
    duration_s: float = 8.0,
    fps: int = 30,
    script: Sequence[Expression] = DEFAULT_SCRIPT,
    animator: FaceAnimator | None = None,
) -> Path:
    """Write the animated face as an H.264 yuv420p mp4 (PyAV)."""
    import av

    animator = animator or FaceAnimator()
    w, h = animator.size
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in range(round(duration_s * fps)):
            frame = av.VideoFrame.from_ndarray(animator.frame(i / fps, script), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
