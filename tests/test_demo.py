"""`neonbar demo` with no display: server, invites, bots and client end to end, to files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.mark.timeout(180)
def test_headless_demo_writes_a_video_and_a_screenshot_of_the_bar(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run(
        [sys.executable, "-m", "neonbar", "demo", "--bots", "3", "--duration", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Wrote the video out/demo.mp4 and the screenshot out/demo.png." in done.stdout
    assert "Traceback" not in done.stderr

    shot = cv2.imread(str(tmp_path / "out" / "demo.png"))
    assert shot is not None and shot.shape[:2] == (720, 1280)
    hsv = cv2.cvtColor(shot, cv2.COLOR_BGR2HSV)
    # A bar at night: mostly dark, with saturated neon somewhere in the frame.
    assert np.median(hsv[..., 2]) < 140
    assert ((hsv[..., 1] > 150) & (hsv[..., 2] > 150)).sum() > 500

    video = cv2.VideoCapture(str(tmp_path / "out" / "demo.mp4"))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = video.read()
    video.release()
    assert ok and frame.mean() > 5
    assert frames >= 5 * 20  # real time at the recording's frame rate, frames repeated if slow
