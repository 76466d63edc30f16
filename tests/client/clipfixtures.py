"""Test clips via PyAV: one with its frame number drawn into every frame (code strip + digits),
and such a clip imported as a scene of a folder of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from client.screen import frame_code

REPO = Path(__file__).resolve().parents[2]


def write_numbered_clip(
    path: Path, frames: int = 96, fps: int = 24, size: tuple[int, int] = (320, 180),
    gop: int | None = 24, audio: bool = False, noise_seed: int | None = None, crf: int = 16,
    preset: str = "veryfast",
) -> Path:  # fmt: skip
    """An H.264 yuv420p mp4 whose frame k shows k (read it back with read_frame_code);
    `audio` adds an AAC track (a 440 Hz tone) as long as the video; `noise_seed` puts random
    noise behind the code (a clip that does not compress, for transfers); `gop` None leaves
    the keyframe interval to x264."""
    import av
    import cv2

    w, h = size
    rng = np.random.default_rng(noise_seed) if noise_seed is not None else None
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=48000) if audio else None
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": str(crf), "preset": preset, **({"g": str(gop)} if gop else {})}
        for k in range(frames):
            if rng is not None:
                img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            else:
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


def clip_scene(root: Path, name: str, title: str, seconds: int = 30) -> Path:
    """A `seconds` s numbered clip (160x96, 24 fps) imported by `neonbar scene add` as scene
    `name` with dust_storm's screenplay (its arc gives bots strong moments to mark), into
    root/scenes, never the repository's scenes/: the server plays it without rendering a
    film. Returns that folder (point NEONBAR_SCENES at it)."""
    folder = root / "scenes"
    clip = write_numbered_clip(root / f"{name}-clip.mp4", seconds * 24, 24, (160, 96))
    subprocess.run(
        [sys.executable, "-m", "neonbar", "scene", "add", str(clip), "--title", title,
         "--screenplay", str(REPO / "scenes" / "dust_storm.fountain"), "--name", name],
        cwd=REPO, env={**os.environ, "NEONBAR_SCENES": str(folder)}, check=True,
        capture_output=True, timeout=120,
    )  # fmt: skip
    return folder
