"""Render a scene spec: the procedural film as a pure function of (spec, t), out to H.264.

    stats = render_scene(load_scene("dust_storm"), Path("dust.mp4"), size=(640, 360))
    frames = render_frames(spec, times_s=[0.5, 9.0], size=(160, 90))   # RGB arrays, for tests

The clock is slaved to the scene time (`ClockObject.M_slave`), so the neon shaders' flicker
(`osg_FrameTime`), the post chain's grain and every moving part read t and nothing else; the
set is built from the spec's seed. Two renders of one spec give bit-identical frames on the same
machine and driver (tests/client/test_film.py renders twice and compares).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from client.film.shots import (
    Mood,
    Pose,
    Shot,
    camera_pose,
    mood_at,
    plan_shots,
    shot_at,
)
from neonbar.arc import Arc, intended_arc
from neonbar.errors import UserError
from neonbar.scenes import SceneSpec
from neonbar.screenplay import Cue, Screenplay, load_screenplay
from neonbar.video import H264Writer

log = logging.getLogger(__name__)

LETTERBOX = 2.39  # picture aspect inside the frame: scope, bars top and bottom
TITLE_S = 3.2
SLUG_S = 2.6
HAZE = {
    # linear HDR haze colour, cold (tension) and warm (release) ends
    "dust": ((0.15, 0.05, 0.014), (0.3, 0.12, 0.032)),
    "rain": ((0.022, 0.03, 0.065), (0.07, 0.03, 0.04)),
    "clear": ((0.01, 0.022, 0.04), (0.04, 0.025, 0.05)),
}


@dataclass
class RenderStats:
    frames: int = 0
    render_s: float = 0.0
    encode_s: float = 0.0
    total_s: float = 0.0


@dataclass
class Film:
    """The film set, camera, grade and titles in one ShowBase; `pose(t)` sets frame t."""

    base: Any
    spec: SceneSpec
    quality: str = "medium"
    play: Screenplay = field(init=False)
    arc: Arc = field(init=False)
    shots: list[Shot] = field(init=False)

    def __post_init__(self) -> None:
        from panda3d.core import ClockObject

        from client.film.street import Street
        from client.post import PostChain, PostSettings

        spec = self.spec
        if spec.screenplay is None:
            raise UserError(f"scene {spec.name!r} has no screenplay to film")
        self.play = load_screenplay(spec.screenplay, spec.duration_s)
        self.arc = intended_arc(spec)
        self.shots = plan_shots(spec, self.play, self.arc)
        self.cues = self.play.dialogue()
        self.clock = ClockObject.getGlobalClock()
        self.clock.setMode(ClockObject.MSlave)
        self.clock.setFrameTime(0.0)
        base = self.base
        base.disableMouse()
        districts = 1 + max(s.scene_index for s in self.shots)
        self.street = Street(base.render, spec, self.play, base.loader, districts=districts)
        self.street.attach_sheets(base.camera)
        base.camLens.setNear(0.2)
        base.camLens.setFar(900.0)
        settings = PostSettings(
            exposure=1.2,
            bloom_strength=0.85,
            haze_density_per_m=spec.style.haze_density_per_m,
            haze_start_m=3.0,
            haze_glow=0.8,
            grain=0.03,
            vignette=0.5,
        )
        self.post = PostChain(base, look=spec.look_path, quality=self.quality, settings=settings)
        self._build_overlay()

    # ------------------------------------------------------------------ titles

    def _build_overlay(self) -> None:
        from panda3d.core import CardMaker, TextNode, TransparencyAttrib

        from client import fonts

        base = self.base
        aspect = base.getAspectRatio()
        overlay = base.render2d.attachNewNode("film-overlay")
        bar = max(0.0, 1.0 - aspect / LETTERBOX)  # render2d height units (total 2)
        self.picture_top = 1.0 - bar
        for sign in (-1.0, 1.0):
            cm = CardMaker("letterbox")
            lo, hi = (1.0 - bar, 1.0) if sign > 0 else (-1.0, -1.0 + bar)
            cm.setFrame(-1, 1, lo, hi)
            card = overlay.attachNewNode(cm.generate())
            card.setColor(0, 0, 0, 1)
            card.setBin("fixed", 0)
        cm = CardMaker("fade")
        cm.setFrame(-1, 1, -1, 1)
        self.fade = overlay.attachNewNode(cm.generate())
        self.fade.setTransparency(TransparencyAttrib.MAlpha)
        self.fade.setColor(0, 0, 0, 0)
        self.fade.setBin("fixed", 1)
        font = fonts.load_font(base.loader, fonts.latin_font_path())
        a2d = base.aspect2d

        def text(name: str, scale: float, z: float, align: int = TextNode.ACenter) -> Any:
            tn = TextNode(name)
            if font is not None:
                tn.setFont(font)
            tn.setAlign(align)
            tn.setShadow(0.06, 0.06)
            tn.setShadowColor(0, 0, 0, 0.85)
            node = a2d.attachNewNode(tn)
            node.setScale(scale)
            node.setZ(z)
            node.setBin("fixed", 2)
            node.setTransparency(TransparencyAttrib.MAlpha)
            return tn, node

        sub_z = -1.0 + bar * 0.5 - 0.02 if bar > 0.08 else -0.86
        self.subtitle, self.subtitle_np = text("subtitle", 0.052, sub_z)
        self.subtitle.setTextColor(1.0, 0.97, 0.9, 1)
        self.subtitle.setWordwrap(30)
        self.title, self.title_np = text("title", 0.11, 0.05)
        self.title.setTextColor(1.0, 0.96, 0.92, 1)
        self.title.setText(self.spec.title.upper())
        self.credit, self.credit_np = text("credit", 0.04, -0.08)
        self.credit.setTextColor(0.95, 0.85, 0.75, 1)
        self.credit.setText(f"a Neon Bar scene  ·  {self.spec.look.replace('_', ' ')}")
        self.slug, self.slug_np = text("slug", 0.04, self.picture_top - 0.1, TextNode.ALeft)
        self.slug_np.setX(-aspect + 0.08)
        self.slug.setTextColor(1.0, 0.9, 0.7, 1)

    def _overlay_at(self, t_s: float, shot: Shot) -> None:
        # Fade from black at the start, after FADE/DISSOLVE transitions, and out at the end.
        alpha = 0.0
        if shot.fade_in_s > 0:
            alpha = max(alpha, 1.0 - (t_s - shot.start_s) / shot.fade_in_s)
        alpha = max(alpha, 1.0 - (self.spec.duration_s - t_s) / 1.0)
        self.fade.setColor(0, 0, 0, min(max(alpha, 0.0), 1.0))
        # Title card over the opening shot.
        k = _pulse(t_s, 0.4, TITLE_S, 0.6)
        self.title_np.setAlphaScale(k)
        self.credit_np.setAlphaScale(k * 0.9)
        # The scene heading as a slug line for the first seconds of each scene.
        slug, since = "", 99.0
        for e in self.play.elements:
            if e.kind == "scene_heading" and e.start_s <= t_s:
                slug, since = e.text, t_s - e.start_s
        show = _pulse(since, 0.3, SLUG_S, 0.5) if t_s > TITLE_S else 0.0
        self.slug.setText(slug)
        self.slug_np.setAlphaScale(show)
        cue = _cue_at(self.cues, t_s)
        self.subtitle.setText(f"{cue.speaker.title()}: {cue.text}" if cue else "")

    # ------------------------------------------------------------------ per frame

    def pose(self, t_s: float) -> tuple[Shot, Pose, Mood]:
        """Set everything for scene time t_s."""
        t_s = min(max(t_s, 0.0), self.spec.duration_s)
        self.clock.setFrameTime(t_s)
        shot = shot_at(self.shots, t_s)
        mood = mood_at(self.spec, self.arc, t_s)
        pose = camera_pose(shot, t_s, mood.arousal, mood.valence)
        cam = self.base.camera
        cam.setPos(*pose.pos)
        cam.setHpr(*pose.hpr)
        vfov = math.radians(pose.fov_deg)
        hfov = 2.0 * math.atan(math.tan(vfov / 2.0) * self.base.getAspectRatio())
        self.base.camLens.setFov(math.degrees(hfov), pose.fov_deg)
        self.street.update(t_s, pose, mood)
        cold, warm = HAZE[self.spec.style.weather]
        w = 0.5 + 0.5 * mood.warmth
        haze = tuple(c + (h - c) * w for c, h in zip(cold, warm, strict=True))
        density = self.spec.style.haze_density_per_m
        if self.spec.style.weather == "dust":
            density *= 0.6 + 0.8 * mood.precipitation
        self.post.settings.exposure = mood.exposure
        self.post.settings.bloom_strength = 0.75 + 0.35 * mood.arousal
        self.post.set_haze(color=haze, density_per_m=density)  # type: ignore[arg-type]
        self.base.setBackgroundColor(*haze, 1)
        for sheet in self.street.dust_sheets:
            sheet.setShaderInput("u_dust_color", tuple(1.5 * c for c in haze))
        self._overlay_at(t_s, shot)
        return shot, pose, mood

    def frame(self, t_s: float) -> np.ndarray:
        """Render scene time t_s and return it as (H, W, 3) uint8 RGB."""
        from client.capture import grab_frame

        self.pose(t_s)
        self.base.taskMgr.step()  # the post chain's task, then the frame is drawn
        self.clock.setFrameTime(t_s)  # step() ticks the clock; keep it on t for the next pose
        img = grab_frame(self.base)
        if img is None:
            raise RuntimeError("the offscreen buffer returned no frame")
        return img[:, :, ::-1]

    def destroy(self) -> None:
        from panda3d.core import ClockObject

        self.post.cleanup()
        self.clock.setMode(ClockObject.MNormal)


def _pulse(t: float, rise: float, hold: float, fall: float) -> float:
    if t < 0 or t > rise + hold + fall:
        return 0.0
    if t < rise:
        return t / rise
    if t < rise + hold:
        return 1.0
    return 1.0 - (t - rise - hold) / fall


def _cue_at(cues: list[Cue], t_s: float) -> Cue | None:
    current = None
    for cue in cues:
        if cue.start_s <= t_s < cue.end_s + 0.25:  # a subtitle lingers a beat after the line
            current = cue
    return current


def _open(size: tuple[int, int]) -> Any:
    from client.app import make_showbase

    return make_showbase(offscreen=True, size=size, title="Neon Bar film")


def render_frames(
    spec: SceneSpec, times_s: Iterable[float], size: tuple[int, int] = (320, 180),
    quality: str = "medium",
) -> list[np.ndarray]:  # fmt: skip
    """Frames at the given scene times (RGB uint8), in one fresh offscreen window."""
    base = _open(size)
    film = None
    try:
        film = Film(base, spec, quality=quality)
        return [film.frame(t).copy() for t in times_s]
    finally:
        if film is not None:
            film.destroy()
        base.destroy()


def iter_frames(film: Film, fps: int) -> Iterator[tuple[int, float]]:
    count = max(1, round(film.spec.duration_s * fps))
    for k in range(count):
        yield k, (k + 0.5) / fps  # the middle of each frame's interval


def render_scene(
    spec: SceneSpec,
    out: Path,
    size: tuple[int, int] | None = None,
    fps: int | None = None,
    progress: bool = False,
    quality: str = "medium",
) -> RenderStats:
    """Render the whole scene to an H.264 mp4; a failed render leaves no file behind."""
    size = size or spec.size
    fps = fps or spec.fps
    stats = RenderStats()
    t0 = time.perf_counter()
    base = _open(size)
    bar = None
    film = None
    try:
        film = Film(base, spec, quality=quality)
        count = max(1, round(spec.duration_s * fps))
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=count, unit="frame", file=sys.stderr, desc=spec.name,
                       dynamic_ncols=True, mininterval=0.5)  # fmt: skip
        partial = out.with_name(f".{out.name}.{os.getpid()}.part.mp4")  # one per render
        with H264Writer(partial, size=size, fps=fps) as video:
            for _k, t in iter_frames(film, fps):
                a = time.perf_counter()
                img = film.frame(t)
                b = time.perf_counter()
                video.write(img)
                c = time.perf_counter()
                stats.render_s += b - a
                stats.encode_s += c - b
                stats.frames += 1
                if bar is not None:
                    bar.update(1)
            a = time.perf_counter()
        stats.encode_s += time.perf_counter() - a  # flushing the encoder
        partial.replace(out)
    finally:
        if bar is not None:
            bar.close()
        if film is not None:
            film.destroy()
        base.destroy()
    stats.total_s = time.perf_counter() - t0
    return stats
