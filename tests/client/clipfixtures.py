"""A test clip with its frame number drawn into every frame (code strip + digits), via PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from client.screen import frame_code


def write_numbered_clip(
    path: Path, frames: int = 96, fps: int = 24, size: tuple[int, int] = (320, 180),
    gop: int = 24, audio: bool = False,
) -> Path:  # fmt: skip
    """An H.264 yuv420p mp4 whose frame k shows k (read it back with read_frame_code);
    `audio` adds an AAC track (a 440 Hz tone) as long as the video."""
    import av
    import cv2

    w, h = size
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=48000) if audio else None
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "16", "g": str(gop), "preset": "veryfast"}
        for k in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[:] = (40 + (k * 7) % 120, 20, 60)  # a changing background
            frame_code(img, k)
            cv2.putText(img, f"{k:04d}", (w // 4, int(h * 0.7)), cv2.FONT_HERSHEY_SIMPLEX,
                        h / 90, (255, 255, 255), 2)  # fmt: skip
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            rate, block = 48000, 1024
            t = np.arange(int(rate * frames / fps)) / rate
            pcm = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(pcm), block):
                chunk = av.AudioFrame.from_ndarray(pcm[None, start : start + block],
                                                   format="fltp", layout="mono")  # fmt: skip
                chunk.sample_rate = rate
                chunk.pts = start
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path
