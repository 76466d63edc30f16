"""Scene shaders of the neon look: glowing tubes and signs, a wet floor, surfaces lit by neon.

All take a NodePath and set a GLSL shader (shaders/*.vert|frag) plus its inputs on it; colours
are given as in the layout (sRGB 0..1, e.g. `Sign.color`) and converted to linear here. They
write linear HDR colour, which only looks right under `client.post.PostChain` (tone mapping,
bloom) with its default settings; without the chain, emissive parts clip to white. (The bar
of client/world.py bakes display-referred colours and runs the chain with
`display_scene_settings()`; mixing the two in one scene would decode these shaders' output
twice.)

Calls for client/world.py::

    from client.neon import (NeonLights, apply_lit, apply_neon, apply_wet_floor,
                             make_reflection, set_avatar_glitch)

    lights = NeonLights.from_layout(layout)              # ≤ 16 point lights from signs + tubes
    apply_neon(sign_np, sign.color, intensity=5.0, flicker=sign.flicker, buzz_hz=sign.buzz_hz)
    apply_neon(tube_np, tube.color, intensity=6.0, flicker=tube.flicker)
    apply_lit(room_np, lights)                           # walls, furniture, avatars
    mirror = make_reflection(base.render, room_np, neon_np)   # the room upside down, z < 0
    apply_wet_floor(floor_np, lights, wetness=0.7)       # draw the floor after the mirror
    set_avatar_glitch(avatar_np, 0.8)                    # poor connection; 0 takes it off
    lights.apply_to(base.render)                         # after moving/adding lights

The shaders read `osg_FrameTime`, so flicker and ripples animate with no per-frame Python.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from panda3d.core import (
    CullFaceAttrib,
    NodePath,
    PTA_LVecBase4f,
    Shader,
    TransparencyAttrib,
    Vec4,
)

from client.post import PRC_HOT_RELOAD, SHADER_DIR
from neonbar.layout import Layout

MAX_LIGHTS = 16  # must match MAX_LIGHTS in lit.frag and wet_floor.frag
Color = Sequence[float]


def srgb_to_linear(color: Color) -> tuple[float, float, float]:
    """Layout colours are display values ('#ff8a1f'); light adds up in linear RGB."""

    def one(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return one(float(color[0])), one(float(color[1])), one(float(color[2]))


@cache
def _shader(vert: str, frag: str) -> Shader:
    # Made from the text rather than Shader.load, whose pool would keep serving the old file.
    texts = [(SHADER_DIR / name).read_text(encoding="utf-8") for name in (vert, frag)]
    return Shader.make(Shader.SL_GLSL, vertex=texts[0], fragment=texts[1])


# Dev hot reload (prc neonbar-shader-hot-reload): nodes given a scene shader, by node key, so an
# edited file can be put back on them. Only filled in dev mode: it keeps the nodes alive.
_LIVE: dict[int, tuple[NodePath, str, str, int]] = {}
_MTIMES: dict[str, float] = {}


def _set_shader(node: NodePath, vert: str, frag: str, priority: int) -> None:
    node.setShader(_shader(vert, frag), priority)
    if PRC_HOT_RELOAD.getValue():
        _LIVE[node.getKey()] = (node, vert, frag, priority)
        for name in (vert, frag):
            _MTIMES.setdefault(name, (SHADER_DIR / name).stat().st_mtime)


def reload_scene_shaders() -> list[str]:
    """Re-read scene shader files whose mtime changed and re-apply them (dev hot reload).

    PostChain calls this from its update task when hot reload is on.
    """
    changed = []
    for name, seen in list(_MTIMES.items()):
        try:
            mtime = (SHADER_DIR / name).stat().st_mtime
        except OSError:
            continue
        if mtime != seen:
            _MTIMES[name] = mtime
            changed.append(name)
    if changed:
        _shader.cache_clear()
        for key, (node, vert, frag, priority) in list(_LIVE.items()):
            if node.isEmpty():
                del _LIVE[key]
            elif vert in changed or frag in changed:
                node.setShader(_shader(vert, frag), priority)
    return changed


def neon_shader() -> Shader:
    return _shader("scene.vert", "neon.frag")


def lit_shader() -> Shader:
    return _shader("scene.vert", "lit.frag")


def wet_floor_shader() -> Shader:
    return _shader("scene.vert", "wet_floor.frag")


def glitch_shader() -> Shader:
    return _shader("glitch.vert", "glitch.frag")


@dataclass
class NeonLights:
    """Point lights standing in for the neon: world positions (metres), linear colour × power."""

    positions: np.ndarray  # (n, 3)
    colors: np.ndarray  # (n, 3) linear rgb * intensity
    ambient: tuple[float, float, float] = (0.012, 0.010, 0.016)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, np.float32).reshape(-1, 3)
        self.colors = np.asarray(self.colors, np.float32).reshape(-1, 3)
        if len(self.positions) != len(self.colors):
            raise ValueError("every light needs one position and one colour")
        if len(self.positions) > MAX_LIGHTS:
            # Keep the strongest: the weakest contribute least to what anyone sees.
            keep = np.argsort(-self.colors.sum(axis=1))[:MAX_LIGHTS]
            self.positions, self.colors = self.positions[keep], self.colors[keep]

    @classmethod
    def from_points(cls, lights: Iterable[tuple[Sequence[float], Color, float]]) -> NeonLights:
        """From (position, sRGB colour, intensity) triples."""
        pos, col = [], []
        for p, c, power in lights:
            pos.append(p)
            col.append(np.array(srgb_to_linear(c)) * power)
        return cls(np.array(pos, np.float32), np.array(col, np.float32))

    @classmethod
    def from_layout(cls, layout: Layout, max_lights: int = MAX_LIGHTS) -> NeonLights:
        """One light per sign, the rest spread along the tubes in proportion to their length."""
        points: list[tuple[Sequence[float], Color, float]] = []
        for sign in layout.signs:
            x, y = layout.wall_point(sign.wall, sign.along_m, inset_m=0.5)
            area = len(sign.text) * sign.height_m**2 * 0.7
            points.append(((x, y, sign.z_m), sign.color, 2.5 + 3.0 * area))
        budget = max(0, max_lights - len(points))
        lengths = [_polyline_length(t.points) for t in layout.tubes]
        total = sum(lengths) or 1.0
        for tube, length in zip(layout.tubes, lengths, strict=True):
            count = max(1, round(budget * length / total))
            for k in range(count):
                p = _point_along(tube.points, length * (k + 0.5) / count)
                power = 0.9 * (length / count) / 1.6 * tube.radius_m / 0.03
                points.append((p, tube.color, power))
        return cls.from_points(points)

    def apply_to(self, node: NodePath) -> None:
        """Set the light arrays on a node (children inherit them)."""
        pos, col = PTA_LVecBase4f.emptyArray(MAX_LIGHTS), PTA_LVecBase4f.emptyArray(MAX_LIGHTS)
        for i, (p, c) in enumerate(zip(self.positions, self.colors, strict=True)):
            pos[i] = Vec4(*map(float, p), 1.0)
            col[i] = Vec4(*map(float, c), 1.0)
        node.setShaderInput("u_light_pos", pos)
        node.setShaderInput("u_light_color", col)
        node.setShaderInput("u_light_count", len(self.positions))
        node.setShaderInput("u_ambient", tuple(float(a) for a in self.ambient))


def _polyline_length(points: Sequence[Sequence[float]]) -> float:
    pts = np.asarray(points, np.float64)
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def _point_along(points: Sequence[Sequence[float]], distance_m: float) -> tuple[float, ...]:
    pts = np.asarray(points, np.float64)
    for a, b in itertools.pairwise(pts):
        seg = float(np.linalg.norm(b - a))
        if distance_m <= seg or seg == 0.0:
            t = 0.0 if seg == 0.0 else distance_m / seg
            return tuple(a + (b - a) * t)
        distance_m -= seg
    return tuple(pts[-1])


def apply_neon(
    node: NodePath,
    color: Color,
    intensity: float = 5.0,
    flicker: float = 0.0,
    buzz_hz: float = 50.0,
    phase: float | None = None,
    scene_gamma: float = 1.0,
) -> NodePath:
    """Make a tube or sign glow: sRGB colour, HDR intensity, flicker 0..1, mains hum in Hz.

    Works on text (TextNode geometry: the glyph texture's alpha cuts the letters out) and on
    meshes (normals give the white-hot core). The node is left out of lighting and fog.
    `scene_gamma` matches the chain's `PostSettings.scene_gamma` (2.2 in a display-referred
    scene such as the baked bar), so the light arrives linear either way; the same holds for the
    other apply_* calls.
    """
    _set_shader(node, "scene.vert", "neon.frag", 10)
    node.setShaderInput("u_color", srgb_to_linear(color))
    node.setShaderInput("u_intensity", float(intensity))
    node.setShaderInput("u_flicker", float(min(max(flicker, 0.0), 1.0)))
    node.setShaderInput("u_buzz_hz", float(buzz_hz))
    # A stable per-node phase so two signs never drop out together.
    seed = phase if phase is not None else (hash(node.getName()) % 1000) * 0.37
    node.setShaderInput("u_phase", float(seed))
    node.setShaderInput("u_scene_gamma", float(scene_gamma))
    node.setTransparency(TransparencyAttrib.MAlpha)
    node.setLightOff(1)
    node.setFogOff(1)
    return node


def apply_lit(
    node: NodePath,
    lights: NeonLights,
    gloss: float = 24.0,
    specular: float = 0.25,
    scene_gamma: float = 1.0,
) -> NodePath:
    """Light walls, furniture or avatars with the neon: vertex colour/texture is the albedo."""
    _set_shader(node, "scene.vert", "lit.frag", 5)
    lights.apply_to(node)
    node.setShaderInput("u_gloss", float(gloss))
    node.setShaderInput("u_specular", float(specular))
    node.setShaderInput("u_scene_gamma", float(scene_gamma))
    return node


def apply_wet_floor(
    node: NodePath,
    lights: NeonLights,
    base_color: Color = (0.05, 0.045, 0.05),
    wetness: float = 0.7,
    puddles_per_m: float = 0.35,
    scene_gamma: float = 1.0,
) -> NodePath:
    """A dark glossy floor whose puddles mirror what is drawn beneath it (see make_reflection).

    The floor is alpha-blended: where it is wet it turns transparent so the mirrored room shows.
    Without a reflection under it, it is simply a dark floor with neon highlights.
    """
    _set_shader(node, "scene.vert", "wet_floor.frag", 5)
    lights.apply_to(node)
    node.setShaderInput("u_base_color", tuple(float(c) for c in base_color[:3]))
    node.setShaderInput("u_wetness", float(min(max(wetness, 0.0), 1.0)))
    node.setShaderInput("u_puddle_scale", float(puddles_per_m))
    node.setShaderInput("u_scene_gamma", float(scene_gamma))
    node.setTransparency(TransparencyAttrib.MAlpha)
    # After the mirror (background bin) and before the room's transparent neon halos.
    node.setBin("background", 10)
    node.setDepthWrite(True)
    return node


def make_reflection(
    parent: NodePath, *nodes: NodePath, floor_z_m: float = 0.0, dim: float = 0.8
) -> NodePath:
    """The planar reflection: instances of `nodes` mirrored in the floor plane, drawn first.

    Instancing costs no memory and keeps shaders, flicker and animation in step with the
    originals; mirroring flips winding, so culling is reversed.
    """
    mirror = parent.attachNewNode("reflection")
    mirror.setZ(2 * floor_z_m)
    mirror.setScale(1, 1, -1)
    mirror.setAttrib(CullFaceAttrib.makeReverse(), 1)
    mirror.setBin("background", 0, 1)
    mirror.setColorScale(dim, dim, dim, 1)
    for node in nodes:
        node.instanceTo(mirror)
    return mirror


def set_avatar_glitch(
    node: NodePath, strength: float, lights: NeonLights | None = None, scene_gamma: float = 1.0
) -> None:
    """Tear and colour-split an avatar whose connection is poor; 0 puts its normal look back.

    With `lights`, strength 0 restores the lit shader; otherwise the shader is cleared so the
    avatar falls back to whatever it had before (inherited shader or fixed function).
    """
    strength = min(max(float(strength), 0.0), 1.0)
    if strength <= 0.0:
        if lights is not None:
            apply_lit(node, lights, scene_gamma=scene_gamma)
        else:
            node.clearShader()
            _LIVE.pop(node.getKey(), None)
        return
    _set_shader(node, "glitch.vert", "glitch.frag", 20)
    node.setShaderInput("u_glitch", strength)
    node.setShaderInput("u_scene_gamma", float(scene_gamma))


def flicker_level(t_s: float, flicker: float, buzz_hz: float, phase: float = 0.0) -> float:
    """The neon shader's brightness factor at time t_s, for CPU-side light that follows a sign."""
    t = t_s + phase
    buzz = 1.0 - 0.10 * flicker * (0.5 + 0.5 * math.sin(2 * math.pi * buzz_hz * t))
    slot = math.floor(t * 12.0)
    dark = _hash11(slot + phase * 31.0) >= 1.0 - 0.3 * flicker
    level = 0.12 + 0.25 * _hash11(slot * 1.37 + 5.0) if dark else 1.0
    return buzz * level * (1.0 - 0.05 * flicker * math.sin(t * 1.7 + phase))


def _hash11(n: float) -> float:
    x = math.sin(n * 12.9898 + 78.233) * 43758.5453
    return x - math.floor(x)
