"""The film's direction as pure functions of (spec, t): shots, camera, weather, grade.

Nothing here touches Panda3D, so the whole plan can be checked without a window:

- **shots**: the film cuts at every screenplay scene heading and, inside a scene, every
  `REST_SHOT_S / cut_rhythm` seconds at rest, down to 40 % of that at full arousal (tension cuts
  faster); never shorter than `MIN_SHOT_S`.
- **camera**: each shot is one move (dolly, crane, orbit, drift, high) along the street in the
  scene's district (`DISTRICT_M` apart, so a new scene is a new place); the spec's camera is the
  establishing move of every scene. Speed and handheld shake grow with arousal; release slows
  the move.
- **mood**: rain or dust density, exposure, warmth, neon flicker and traffic speed from the
  intended arc at t (tension: heavier rain, darker, faster; release: warmer, slower).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from neonbar.arc import Arc
from neonbar.scenes import SceneSpec
from neonbar.screenplay import Screenplay

REST_SHOT_S = 4.5
MIN_SHOT_S = 1.4
DISTRICT_M = 150.0
STREET_HALF_WIDTH_M = 7.0
MOVES = ("dolly", "crane", "orbit", "drift", "high")


def hash01(*values: float) -> float:
    """A stable pseudo-random number in [0, 1) from numbers (no global random state)."""
    x = 0.0
    for k, v in enumerate(values):
        x += math.sin(v * (12.9898 + 7.31 * k) + 78.233 * (k + 1)) * 43758.5453
    return x - math.floor(x)


@dataclass(frozen=True)
class Shot:
    """One continuous camera move between two cuts (seconds)."""

    index: int
    start_s: float
    end_s: float
    scene_index: int
    move: str
    seed: float
    fade_in_s: float = 0.0  # a dip from black after a FADE / DISSOLVE transition

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Pose:
    """Camera position (metres, z up), heading/pitch/roll (degrees), vertical field of view."""

    pos: tuple[float, float, float]
    hpr: tuple[float, float, float]
    fov_deg: float


@dataclass(frozen=True)
class Mood:
    """What the arc asks of the picture at one moment."""

    valence: float
    arousal: float
    precipitation: float  # 0..1 share of rain streaks or dust motes drawn
    exposure: float
    warmth: float  # −1 cold .. 1 warm
    flicker: float  # 0..1 neon dropouts
    traffic_speed: float  # multiplier


def plan_shots(spec: SceneSpec, play: Screenplay, arc: Arc) -> list[Shot]:
    """The cut list for the whole scene, in order, covering [0, duration]."""
    duration = spec.duration_s
    starts = list(play.scene_starts_s) or [0.0]
    if starts[0] > 0.0:
        starts.insert(0, 0.0)
    bounds = [*starts, duration]
    fades = _fade_after(play)
    rhythm = spec.style.cut_rhythm
    shots: list[Shot] = []
    for scene, (a, b) in enumerate(itertools.pairwise(bounds)):
        if b - a <= 1e-6:
            continue
        t = a
        k = 0
        while t < b - 1e-6:
            if rhythm <= 0:
                length = b - t
            else:
                arousal = arc.at(t)[1]
                length = max(MIN_SHOT_S, REST_SHOT_S / rhythm * (1.0 - 0.6 * arousal))
            end = min(b, t + length)
            if b - end < MIN_SHOT_S * 0.75:
                end = b  # no sliver of a shot before the scene's end
            seed = hash01(spec.style.seed, scene, k)
            move = _pick_move(spec.style.camera, hash01(spec.style.seed, scene), k)
            fade = fades.get(scene, 0.0) if k == 0 else 0.0
            shots.append(Shot(len(shots), t, end, scene, move, seed, fade))
            t = end
            k += 1
    return shots


def _fade_after(play: Screenplay) -> dict[int, float]:
    """Scenes entered through a FADE or DISSOLVE transition start with a dip from black."""
    out: dict[int, float] = {}
    pending = 0.0
    for e in play.elements:
        if e.kind == "transition":
            upper = e.text.upper()
            pending = 0.9 if ("FADE" in upper or "DISSOLVE" in upper) else 0.0
        elif e.kind == "scene_heading":
            if pending:
                out[e.scene_index] = pending
            pending = 0.0
    out.setdefault(0, 1.2)  # the film opens from black
    return out


def _pick_move(establishing: str, seed: float, k: int) -> str:
    """The k-th move of a scene: the spec's camera first and every third shot, the other moves
    in between in an order that depends on the scene's seed."""
    others = [m for m in MOVES if m != establishing]
    start = int(seed * len(others))
    others = others[start:] + others[:start]
    if k % 3 == 0:
        return establishing
    return others[(k - 1 - k // 3) % len(others)]


def shot_at(shots: list[Shot], t_s: float) -> Shot:
    for shot in shots:
        if t_s < shot.end_s:
            return shot
    return shots[-1]


def _smooth(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def camera_pose(shot: Shot, t_s: float, arousal: float, valence: float) -> Pose:
    """Where the camera is at t_s inside `shot` (pure; same inputs, same pose)."""
    u = min(max((t_s - shot.start_s) / max(shot.duration_s, 1e-6), 0.0), 1.0)
    s = shot.seed
    base_y = shot.scene_index * DISTRICT_M + 20.0 + 60.0 * hash01(s, 1.0)
    side = -1.0 if hash01(s, 2.0) < 0.5 else 1.0
    # Tension moves faster; release drifts.
    speed = (1.2 + 5.0 * arousal) * (1.0 - 0.35 * max(valence, 0.0))
    travel = speed * (t_s - shot.start_s)
    move = shot.move
    fov = 52.0
    if move == "dolly":
        x = side * (1.5 + 2.5 * hash01(s, 3.0))
        pos = (x, base_y + travel, 1.6 + 0.6 * hash01(s, 4.0))
        hpr = (-side * (6.0 + 10.0 * hash01(s, 5.0)), 4.0, 0.0)
    elif move == "crane":
        x = side * 2.0
        z = 1.5 + 22.0 * _smooth(u)
        pos = (x, base_y + 0.5 * travel, z)
        hpr = (-side * 4.0, 2.0 - 14.0 * _smooth(u), 0.0)
        fov = 58.0
    elif move == "orbit":
        # A low arc round the middle of the street, looking up at the blade signs: the camera
        # swings from one kerb toward the other while turning against the move.
        ang = -side * (-0.5 + u) * 0.9  # radians, ±26 degrees
        r = 4.0
        pos = (math.sin(ang) * r, base_y + 0.4 * travel - math.cos(ang) * r, 1.3 + 0.8 * u)
        hpr = (math.degrees(-ang) * 0.8 - side * 8.0, 16.0, 0.0)
        fov = 50.0
    elif move == "drift":
        # Sideways along the kerb, looking up the street at an angle: signs of both sides
        # stack up behind each other, flattened by a longer lens.
        x = side * 2.2 - side * 0.25 * travel
        pos = (x, base_y + 0.4 * travel, 1.9 + 1.0 * hash01(s, 6.0))
        hpr = (side * (18.0 + 14.0 * hash01(s, 7.0)), 6.0, 0.0)
        fov = 40.0
    else:  # high: over the avenue, traffic below and the skyline ahead
        pos = (side * 3.0, base_y - 30.0 + 2.0 * travel, 32.0 + 6.0 * hash01(s, 8.0))
        hpr = (-side * 5.0, -12.0, 0.0)
        fov = 60.0
    # Handheld shake, only under tension; sums of sines keep it a function of t.
    shake = 0.9 * max(arousal - 0.45, 0.0) ** 1.5
    if shake > 0:
        t = t_s * 6.0 + s * 100.0
        jx = math.sin(t * 1.3) + 0.5 * math.sin(t * 3.7 + 1.0)
        jz = math.sin(t * 1.7 + 2.0) + 0.5 * math.sin(t * 4.3)
        pos = (pos[0] + 0.08 * shake * jx, pos[1], pos[2] + 0.06 * shake * jz)
        hpr = (hpr[0] + 1.2 * shake * jz, hpr[1] + 1.0 * shake * jx, 0.8 * shake * jx)
    return Pose(pos=pos, hpr=hpr, fov_deg=fov)


def mood_at(spec: SceneSpec, arc: Arc, t_s: float) -> Mood:
    valence, arousal = arc.at(t_s)
    weather = spec.style.weather
    precipitation = 0.0 if weather == "clear" else min(1.0, 0.3 + 0.85 * arousal)
    exposure = 1.25 - 0.5 * arousal + 0.2 * max(valence, 0.0)
    return Mood(
        valence=valence,
        arousal=arousal,
        precipitation=precipitation,
        exposure=exposure,
        warmth=max(-1.0, min(1.0, 1.3 * valence)),
        flicker=min(1.0, 0.15 + 0.9 * max(arousal - 0.3, 0.0)),
        traffic_speed=0.7 + 1.6 * arousal,
    )
