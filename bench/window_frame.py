"""What a frame of the bar costs in a real window: multisampling and post quality compared.

Each variant is a fresh process (the window's framebuffer is chosen before ShowBase opens it)
drawing the offline bar (no server) for a fixed number of frames; the figure is the process's
CPU time per frame, all threads included (Mesa's llvmpipe rasterises on its own threads), so a
busy machine slows the run without changing the figure much. Variants are interleaved round by
round and the medians compared with the anchor, the window the client opened before: 4x
multisampled at medium quality.

    DISPLAY=:77 .venv/bin/python bench/window_frame.py [--rounds 3] [--frames 60] [--size 1280x720]

Needs a display (an Xvfb is enough: `Xvfb :77 -screen 0 1280x720x24 &`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = (  # (label, multisampled window, post quality, post chain on)
    ("anchor: multisampled, medium", True, "medium", True),
    ("no multisampling, medium", False, "medium", True),
    ("no multisampling, auto (the demo's window)", False, "auto", True),
    ("no post chain at all", False, "medium", False),
)


def one(multisample: bool, quality: str, post: bool, frames: int, size: str) -> dict[str, float]:
    """Runs in the child: draw `frames` frames after a warm-up, return CPU ms per frame."""
    from panda3d.core import loadPrcFileData

    w, h = size.split("x")
    prc = [f"win-size {w} {h}", "sync-video false", "audio-library-name null",
           "notify-level-display error", "print-pipe-types false"]  # fmt: skip
    if multisample:
        prc += ["framebuffer-multisample true", "multisamples 4"]
    loadPrcFileData("bench", "\n".join(prc) + "\n")
    from direct.showbase.ShowBase import ShowBase

    from client.app import NeonBarApp

    base = ShowBase()
    NeonBarApp(base, None, name="bench", quality=quality, post=post)
    for _ in range(10):
        base.taskMgr.step()
    c0, t0 = time.process_time(), time.monotonic()
    for _ in range(frames):
        base.taskMgr.step()
    cpu_ms = (time.process_time() - c0) * 1000 / frames
    wall_ms = (time.monotonic() - t0) * 1000 / frames
    renderer = base.win.gsg.getDriverRenderer()
    base.destroy()
    return {"cpu_ms": cpu_ms, "wall_ms": wall_ms, "renderer": renderer}  # type: ignore[dict-item]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        ms, quality, post = json.loads(args.child)
        print(json.dumps(one(ms, quality, post, args.frames, args.size)))
        return 0
    if not os.environ.get("DISPLAY"):
        print("needs a display: DISPLAY=:N (Xvfb is enough)", file=sys.stderr)
        return 2
    cpu: dict[str, list[float]] = {label: [] for label, *_ in VARIANTS}
    renderer = "?"
    for _ in range(args.rounds):
        for label, ms, quality, post in VARIANTS:
            done = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps([ms, quality, post]),
                 "--frames", str(args.frames), "--size", args.size],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1])
            cpu[label].append(result["cpu_ms"])
            renderer = result["renderer"]
    anchor = statistics.median(cpu[VARIANTS[0][0]])
    print(f"{renderer}, {args.size}, {args.frames} frames x {args.rounds} rounds, load "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    for label, runs in cpu.items():
        med = statistics.median(runs)
        print(f"  {label:<46} {med:7.1f} CPU-ms/frame   {anchor / med:5.2f}x the anchor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
