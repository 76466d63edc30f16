"""`neonbar scene list | arc | render | add`: the scenes the bar can play (docs/scenes.md)."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from neonbar.arc import Arc, intended_arc
from neonbar.errors import UserError
from neonbar.scenes import (
    SceneSpec,
    import_clip,
    list_scenes,
    load_scene,
    media_hash,
    render_path,
)

SPARK = "▁▂▃▄▅▆▇█"


def run(args: argparse.Namespace) -> int:
    command = args.scene_command
    if command == "list":
        return run_list(args)
    if command == "arc":
        return run_arc(args)
    if command == "render":
        return run_render(args)
    if command == "add":
        return run_add(args)
    raise UserError(f"unknown scene action {command!r}")


def _has_arc(spec: SceneSpec) -> bool:
    return spec.screenplay is not None


def run_list(args: argparse.Namespace) -> int:
    scenes = list_scenes()
    rows: list[dict[str, Any]] = [
        {
            "name": s.name,
            "title": s.title,
            "duration_s": s.duration_s,
            "fps": s.fps,
            "source": s.source,
            "arc": _has_arc(s),
            "look": s.look,
            "spec": str(s.path),
        }
        for s in scenes
    ]
    if getattr(args, "json", False):
        print(json.dumps({"scenes": rows}))
        return 0
    if not rows:
        print("no scenes")
        return 0
    width = max(len(r["name"]) for r in rows)
    title_w = max(len(r["title"]) for r in rows)
    print(f"{'name':<{width}}  {'title':<{title_w}}  duration  source     arc")
    for r in rows:
        print(
            f"{r['name']:<{width}}  {r['title']:<{title_w}}  {r['duration_s']:>6.1f} s  "
            f"{r['source']:<9}  {'yes' if r['arc'] else 'no'}"
        )
    return 0


def sparkline(values: Any, lo: float, hi: float, width: int = 60) -> str:
    import numpy as np

    v = np.asarray(values, float)
    if len(v) == 0:
        return ""
    idx = np.linspace(0, len(v) - 1, min(width, len(v))).round().astype(int)
    scaled = (v[idx] - lo) / (hi - lo)
    return "".join(SPARK[round(min(max(x, 0.0), 1.0) * (len(SPARK) - 1))] for x in scaled)


def arc_summary(spec: SceneSpec, arc: Arc) -> dict[str, Any]:
    return {
        "name": spec.name,
        "title": spec.title,
        "duration_s": arc.duration_s,
        "sample_hz": 1.0 / float(arc.times_s[1] - arc.times_s[0]) if len(arc.times_s) > 1 else 0,
        "times_s": [round(float(t), 3) for t in arc.times_s],
        "valence": [round(float(x), 4) for x in arc.valence],
        "arousal": [round(float(x), 4) for x in arc.arousal],
        "elements": [e.__dict__ for e in arc.elements],
        "strong_moments": [m.__dict__ for m in arc.strong_moments(5)],
    }


def run_arc(args: argparse.Namespace) -> int:
    spec = load_scene(args.spec)
    png = Path(args.png) if args.png else None
    if png is not None:
        if png.suffix.lower() != ".png":
            raise UserError(f"--png needs a .png file name, not {png}")
        if not png.resolve().parent.is_dir():
            raise UserError(f"cannot write {png}: its folder does not exist")
    arc = intended_arc(spec, store=_writable(spec.path.parent))
    if png is not None:
        plot_arc(spec, arc, png)
    if getattr(args, "json", False):
        print(json.dumps(arc_summary(spec, arc), ensure_ascii=False))
        return 0
    print(f"{spec.name}: {spec.title} ({arc.duration_s:g} s, screenplay {spec.screenplay})")
    print(f"  valence −1..1  {sparkline(arc.valence, -1.0, 1.0)}")
    print(f"  arousal  0..1  {sparkline(arc.arousal, 0.0, 1.0)}")
    print()
    print("   start    end  line  kind           valence  arousal  text")
    for e in arc.elements:
        text = (f"{e.speaker}: " if e.speaker else "") + e.text
        text = text if len(text) <= 56 else text[:55] + "…"
        print(
            f"  {e.start_s:6.1f} {e.end_s:6.1f}  {e.line:4d}  {e.kind:<13} "
            f"{e.valence:+8.2f} {e.arousal:8.2f}  {text}"
        )
    print()
    print("strong moments:")
    for m in arc.strong_moments(5):
        print(
            f"  {m.t_s:6.1f} s  {m.kind:<14} strength {m.strength:.2f}  "
            f"valence {m.valence:+.2f}  arousal {m.arousal:.2f}  line {m.line}"
        )
    if png is not None:
        print(f"plot written to {png}")
    return 0


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK)


def plot_arc(spec: SceneSpec, arc: Arc, png: Path) -> None:
    """Valence and arousal over time with the scene cuts, dialogue and strong moments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_v, ax_a) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True, dpi=110)
    fig.patch.set_facecolor("#0d0b12")
    for ax in (ax_v, ax_a):
        ax.set_facecolor("#15111d")
        ax.tick_params(colors="#c8c0d8")
        for side in ax.spines.values():
            side.set_color("#3a3148")
        ax.grid(color="#2a2336", lw=0.6)
    ax_v.plot(arc.times_s, arc.valence, color="#ff2d95", lw=2.2)
    ax_v.axhline(0.0, color="#6a5f7a", lw=0.8)
    ax_v.set_ylim(-1.05, 1.05)
    ax_v.set_ylabel("valence", color="#ff2d95")
    ax_a.plot(arc.times_s, arc.arousal, color="#2de2ff", lw=2.2)
    ax_a.fill_between(arc.times_s, 0, arc.arousal, color="#2de2ff", alpha=0.12)
    ax_a.set_ylim(0, 1.05)
    ax_a.set_ylabel("arousal", color="#2de2ff")
    ax_a.set_xlabel("scene time (s)", color="#c8c0d8")
    ax_a.set_xlim(0, arc.duration_s)
    for e in arc.elements:
        if e.kind == "scene_heading":
            for ax in (ax_v, ax_a):
                ax.axvline(e.start_s, color="#ffb000", lw=1.0, ls="--", alpha=0.7)
            ax_v.text(e.start_s + 0.2, 0.92, e.text[:34], color="#ffb000", fontsize=7, va="top")
        if e.kind == "dialogue":
            ax_v.plot([e.start_s, e.end_s], [-0.97, -0.97], color="#c8c0d8", lw=3, alpha=0.6)
    for m in arc.strong_moments(5):
        ax_a.plot([m.t_s], [m.arousal], "o", color="#ffffff", ms=6)
        ax_a.annotate(f"L{m.line}", (m.t_s, m.arousal), textcoords="offset points",
                      xytext=(4, 6), color="#ffffff", fontsize=7)  # fmt: skip
    fig.suptitle(f"{spec.title} — intended arc", color="#f0e8ff")
    fig.tight_layout()
    fig.savefig(png, facecolor=fig.get_facecolor())
    plt.close(fig)


def run_render(args: argparse.Namespace) -> int:
    spec = load_scene(args.spec)
    if spec.clip is not None:
        raise UserError(f"scene {spec.name!r} is an imported clip ({spec.clip}); nothing to render")
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out needs an .mp4 file name, not {out}")
    if not out.resolve().parent.is_dir():
        raise UserError(f"cannot write {out}: its folder does not exist")
    size = tuple(args.size) if args.size else spec.size
    if size[0] % 2 or size[1] % 2:
        raise UserError(f"size {size[0]}x{size[1]} must be even (H.264 yuv420p)")
    fps = int(args.fps) if args.fps else spec.fps
    if not 1 <= fps <= 120:
        raise UserError("--fps must be from 1 to 120")
    cached = render_path(spec, (size[0], size[1]), fps)
    if cached.is_file():
        print(f"{spec.name}: cached render {cached}", file=sys.stderr)
    else:
        # The generator needs Panda3D: imported only when a frame has to be drawn.
        render_scene = importlib.import_module("client.film.render").render_scene
        cached.parent.mkdir(parents=True, exist_ok=True)
        stats = render_scene(spec, cached, size=(size[0], size[1]), fps=fps, progress=True)
        print(
            f"{spec.name}: {stats.frames} frames in {stats.total_s:.1f} s "
            f"({stats.frames / max(stats.total_s, 1e-9):.1f} fps; render "
            f"{stats.render_s:.1f} s, encode {stats.encode_s:.1f} s)",
            file=sys.stderr,
        )
    if cached.resolve() != out.resolve():
        shutil.copyfile(cached, out)
    print(f"wrote {out} ({size[0]}x{size[1]}, {fps} fps, H.264, sha256 {media_hash(out)[:16]})")
    return 0


def run_add(args: argparse.Namespace) -> int:
    spec = import_clip(
        args.clip,
        args.title,
        screenplay=args.screenplay,
        name=args.name,
        look=getattr(args, "look", None) or "neutral",
    )
    arc = "with its intended arc" if spec.screenplay else "no screenplay, no intended arc"
    print(
        f"added scene {spec.name!r}: {spec.title}, {spec.duration_s:.2f} s at {spec.fps} fps, "
        f"{arc} ({spec.path})"
    )
    return 0
