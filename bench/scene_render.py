"""Scene render benchmark: the generator's frames per second on this CPU, rendering vs encoding.

For each size, `--frames` frames spread evenly over the whole scene (so every shot, the rain or
dust and the titles are in the mix) are drawn by client.film (Panda3D offscreen, Mesa llvmpipe:
all on the CPU, post chain at its "medium" preset) and encoded by neonbar.video (x264 veryfast,
crf 18). Timed per frame: drawing + readback (`Film.frame`) and encoding (`H264Writer.write`
plus the final flush). Medians over `--runs` runs.

Anchor, same run and size: an empty offscreen frame (clear + readback, no scene, no post), the
floor any Panda3D frame pays here; the ratio says how many empty frames one film frame costs.

Run: .venv/bin/python bench/scene_render.py [--scene neon_alley] [--frames 48] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neonbar.scenes import load_scene  # noqa: E402
from neonbar.video import H264Writer  # noqa: E402


def run_film(scene: str, size: tuple[int, int], frames: int, out: Path) -> tuple[float, float]:
    """(render seconds, encode seconds) for `frames` frames in a fresh window."""
    from client.film.render import Film, _open

    spec = load_scene(scene)
    base = _open(size)
    film = Film(base, spec)
    try:
        film.frame(0.0)  # warm: shaders compile on the first frame
        times = [spec.duration_s * (k + 0.5) / frames for k in range(frames)]
        render = encode = 0.0
        with H264Writer(out, size=size, fps=spec.fps) as video:
            for t in times:
                a = time.perf_counter()
                img = film.frame(t)
                b = time.perf_counter()
                video.write(img)
                encode += time.perf_counter() - b
                render += b - a
            a = time.perf_counter()
        encode += time.perf_counter() - a
        return render, encode
    finally:
        film.destroy()
        base.destroy()


def run_anchor(size: tuple[int, int], frames: int) -> float:
    from client.capture import grab_frame
    from client.film.render import _open

    base = _open(size)
    try:
        base.graphicsEngine.renderFrame()
        a = time.perf_counter()
        for _ in range(frames):
            base.graphicsEngine.renderFrame()
            grab_frame(base)
        return time.perf_counter() - a
    finally:
        base.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default="neon_alley")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="1280x720,640x360")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"scene {args.scene}, {args.frames} frames per run, {args.runs} runs, medians")
    print(f"{'size':>9} {'film fps':>9} {'render ms':>10} {'encode ms':>10} {'render %':>9} "
          f"{'empty ms':>9} {'x empty':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            renders, encodes, anchors = [], [], []
            for r in range(args.runs):
                rs, es = run_film(args.scene, (w, h), args.frames, Path(tmp) / f"b{r}.mp4")
                renders.append(rs / args.frames)
                encodes.append(es / args.frames)
                anchors.append(run_anchor((w, h), args.frames) / args.frames)
            rm, em, am = (statistics.median(x) * 1000 for x in (renders, encodes, anchors))
            print(f"{w:>4}x{h:<4} {1000 / (rm + em):9.2f} {rm:10.1f} {em:10.1f} "
                  f"{100 * rm / (rm + em):8.0f}% {am:9.1f} {rm / am:8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
