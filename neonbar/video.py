"""H.264 video in and out with PyAV: the mp4s that browsers, QuickTime and the big screen play.

`H264Writer` writes yuv420p H.264 in an mp4 with the `avc1` sample entry (PyAV 18 bundles FFmpeg
with libx264; OpenCV's writer here only has mp4v, which browsers and QuickTime refuse)::

    with H264Writer("out.mp4", size=(1280, 720), fps=24) as video:
        video.write(rgb)          # (H, W, 3) uint8 RGB, top row first

`probe(path)` says what a file holds (frames, rate, size, codec) or raises UserError with one
sentence; `read_frames(path)` decodes it to RGB arrays.

Determinism: the muxer runs with `+bitexact` (no creation time in the file), so the same frames
give byte-identical files at the widths we render (1280, 640, any multiple of 64: measured 5 of
5 identical). At widths whose chroma plane is not a multiple of 32 pixels (96x54, say) x264 gave
different files from identical frames in a process that also renders with Mesa (3 outcomes in
5 runs, decoded frames within a mean of 1 level); tests/client/test_film.py checks both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from neonbar.errors import UserError

DEFAULT_CRF = 18  # visually lossless for graded neon; banding shows in the haze above ~23
DEFAULT_PRESET = "veryfast"  # encoding is a small share next to rendering (BENCHMARKS.md)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds."""

    path: Path
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    codec_tag: str
    pix_fmt: str


class H264Writer:
    """Append RGB frames to an H.264 (yuv420p, avc1) mp4.

    Args:
        path: the .mp4 to write (its folder must exist).
        size: (width, height) in pixels; both even (yuv420p halves the chroma).
        fps: frames per second (an integer or a Fraction such as 30000/1001).
        crf: x264 constant rate factor (lower is better and bigger).
        preset: x264 speed preset.
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        fps: float | Fraction = 24,
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
    ) -> None:
        self.path = Path(path)
        width, height = int(size[0]), int(size[1])
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise UserError(f"video size {width}x{height} must be even and at least 16x16")
        if not self.path.resolve().parent.is_dir():
            raise UserError(f"cannot write {self.path}: its folder does not exist")
        if self.path.suffix.lower() != ".mp4":
            raise UserError(f"{self.path} should be an .mp4 file")
        self.size = (width, height)
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.fps = rate
        self.frames = 0
        # bitexact: no creation time or muxer build in the file, so a render is reproducible.
        self._container: Any = av.open(
            str(self.path), mode="w", format="mp4", options={"fflags": "+bitexact"}
        )
        stream: Any = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.codec_tag = "avc1"
        stream.options = {"crf": str(crf), "preset": preset}
        self._stream = stream

    def write(self, rgb: npt.NDArray[np.uint8]) -> None:
        """One frame: (height, width, 3) uint8 RGB, top row first."""
        if rgb.shape != (self.size[1], self.size[0], 3):
            raise ValueError(f"frame shape {rgb.shape}, expected {(self.size[1], self.size[0], 3)}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, np.uint8), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / self.fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def abort(self) -> None:
        """Close and delete the partial file (a render that failed leaves nothing behind)."""
        try:
            if self._container is not None:
                self._container.close()
        finally:
            self._container = None
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def probe(path: str | Path) -> VideoInfo:
    """Open a video, count its frames and decode the first; UserError if it is not a video."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path} is empty, not a video")
    try:
        container: Any = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        raise UserError(f"{path} is not a video file PyAV/FFmpeg can read") from None
    try:
        if not container.streams.video:
            raise UserError(f"{path} has no video stream")
        stream = container.streams.video[0]
        first = None
        frames = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                frames += 1
                if first is None:
                    for frame in packet.decode():
                        first = frame
                        break
            if first is None:
                # Some codecs hold the first frames back until the decoder is flushed.
                for frame in stream.decode(None):
                    first = frame
                    break
        except av.error.FFmpegError:
            raise UserError(f"{path} is damaged: FFmpeg cannot decode its video") from None
        if frames == 0 or first is None:
            raise UserError(f"{path} has no video frames")
        fmt = str(container.format.name)
        if frames == 1 or fmt.endswith("_pipe") or fmt == "image2":
            raise UserError(f"{path} is a still image, not a video")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if fps <= 0:
            raise UserError(f"{path} does not say its frame rate")
        ctx = stream.codec_context
        tag = ctx.codec_tag if isinstance(ctx.codec_tag, str) else ""
        return VideoInfo(
            path=path,
            frames=frames,
            fps=fps,
            duration_s=frames / fps,
            width=int(first.width),
            height=int(first.height),
            codec=str(ctx.name),
            codec_tag=tag,
            pix_fmt=str(first.format.name),
        )
    finally:
        container.close()


def read_frames(path: str | Path, limit: int | None = None) -> Iterator[npt.NDArray[np.uint8]]:
    """Decode a video to (H, W, 3) uint8 RGB frames, in order."""
    with av.open(str(path)) as container:
        stream: Any = container.streams.video[0]
        for k, frame in enumerate(container.decode(stream)):
            if limit is not None and k >= limit:
                return
            yield frame.to_ndarray(format="rgb24")
