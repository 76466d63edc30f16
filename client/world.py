"""The bar itself, built procedurally from the layout (scenes/bar.toml, format in docs/layout.md).

Everything static is baked and flattened: the neon's light is computed once per vertex
(`MeshBuilder.bake`), so the room needs no dynamic lights and costs a handful of draw calls. The
wet floor is a translucent dark sheet over a mirrored instance of the room — a planar reflection
for free, since the mirror is just a second transform of the same flattened geometry. Signs and
tubes that flicker stay as their own nodes so one task can pulse them.
"""

from __future__ import annotations

import colorsys
import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from direct.showbase.ShowBase import ShowBase
from panda3d.core import (
    CardMaker,
    ColorBlendAttrib,
    CullFaceAttrib,
    DepthWriteAttrib,
    Fog,
    NodePath,
    PNMImage,
    SamplerState,
    TextNode,
    Texture,
    TextureStage,
    TransparencyAttrib,
)

from client import fonts
from client.shapes import MeshBuilder
from neonbar.layout import Box, Circle, Layout, Sign, WallFeature

log = logging.getLogger(__name__)

# The night: a cold ambient under warm, orange dusty air (Deakins' 2049 haze).
AMBIENT = (0.045, 0.038, 0.06)
HAZE_COLOR = (0.085, 0.045, 0.030)
HAZE_DENSITY = 0.028
BACKGROUND = (0.02, 0.012, 0.012, 1.0)
LIGHT_GAIN = 4.0
FLOOR_ALPHA = 0.42  # in a puddle: how much of the floor hides its reflection
FLOOR_DRY_ALPHA = 0.86  # between puddles the floor is only damp
AMBER = (1.0, 0.52, 0.18)
# Decorative neon running under the ceiling along each wall (not in the layout: pure mood).
CORNICE = {"north": (1.0, 0.25, 0.7), "south": (0.18, 0.85, 1.0), "east": (0.69, 0.24, 1.0),
           "west": (1.0, 0.54, 0.12)}  # fmt: skip
CORNICE_DROP_M = 0.45
# English titles shown instead of CJK signs when no CJK font exists on the machine.
CJK_FALLBACK = {"花樣年華": "IN THE MOOD FOR LOVE"}


def additive(np_: NodePath) -> None:
    """Make a node glow: added on top of what is behind it, never hiding anything."""
    np_.setAttrib(
        ColorBlendAttrib.make(
            ColorBlendAttrib.MAdd, ColorBlendAttrib.OIncomingAlpha, ColorBlendAttrib.OOne
        )
    )
    np_.setAttrib(DepthWriteAttrib.make(DepthWriteAttrib.MOff))
    np_.setBin("fixed", 10)
    np_.setLightOff(1)
    np_.setFogOff(1)


def brighten(color: tuple[float, float, float], white: float) -> tuple[float, float, float]:
    """Mix toward white: a tube's core looks white-hot, its colour lives in the halo."""
    return tuple(c + (1 - c) * white for c in color)  # type: ignore[return-value]


@dataclass
class Flicker:
    """One node whose brightness pulses: mains buzz plus occasional dropouts."""

    node: NodePath
    amount: float
    buzz_hz: float
    phase: float
    base: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)


@dataclass
class World:
    """The static bar: build once with `build()`, animate with `update(t_s)` every frame."""

    base: ShowBase
    layout: Layout
    root: NodePath = field(init=False)
    mirror: NodePath = field(init=False)
    screen: NodePath = field(init=False)
    flickers: list[Flicker] = field(default_factory=list)
    lights: list[tuple[float, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.base.render.attachNewNode("world")
        self._static = self.root.attachNewNode("static")
        self._neon = self.root.attachNewNode("neon")
        self._screen_card: NodePath | None = None

    # ------------------------------------------------------------------------------ building

    def build(self) -> World:
        lay = self.layout
        self.lights = self._neon_lights()
        lights = np.array(self.lights, np.float32)

        room = MeshBuilder()
        self._room_shell(room)
        furniture = MeshBuilder()
        for box in lay.boxes:
            self._box_furniture(furniture, box)
        for circle in lay.circles:
            self._round_furniture(furniture, circle)
        self._pendant_lamps(furniture)
        room.bake(lights, AMBIENT)
        furniture.bake(lights, AMBIENT)
        self._static.attachNewNode(room.node("room"))
        self._static.attachNewNode(furniture.node("furniture"))

        floor = MeshBuilder()
        hx, hy = lay.half_x, lay.half_y
        cells = (int(lay.width_m * 3), int(lay.depth_m * 3))
        floor.grid((-hx, -hy, 0), (2 * hx, 0, 0), (0, 2 * hy, 0), cells, (0.12, 0.115, 0.13))
        floor.bake(lights, AMBIENT)
        floor.set_alpha(self._puddles)
        self.floor = self.root.attachNewNode(floor.node("floor"))
        self.floor.setTransparency(TransparencyAttrib.MAlpha)
        self.floor.setBin("background", 10)

        self._bottles()
        for tube in lay.tubes:
            self._tube(tube.points, tube.color, tube.radius_m, tube.flicker, tube.flicker * 8 + 1)
        for points, color in self._cornice():
            self._tube(points, color, 0.025, 0.0, 0.0)
        self._door(lay.door)
        self._screen(lay.screen)
        for sign in lay.signs:
            self._sign(sign)

        self._static.flattenStrong()
        self._make_mirror()
        self._atmosphere()
        return self

    def _puddles(self, xy: np.ndarray) -> np.ndarray:
        """Floor opacity per point: puddles (low, the reflection shows) on a damp floor."""
        rng = np.random.default_rng(2049)
        lay = self.layout
        n = 38
        centres = np.column_stack(
            [rng.uniform(-lay.half_x, lay.half_x, n), rng.uniform(-lay.half_y, lay.half_y, n)]
        )
        radii = rng.uniform(0.8, 2.6, n)
        d2 = ((xy[:, None, :] - centres[None, :, :]) ** 2).sum(-1) / radii[None, :] ** 2
        wet = np.clip(np.exp(-d2 * 1.6).sum(1), 0.0, 1.0)
        return FLOOR_ALPHA + (1.0 - wet) * (FLOOR_DRY_ALPHA - FLOOR_ALPHA)

    def _neon_lights(self) -> list[tuple[float, ...]]:
        """Point lights (x, y, z, r, g, b, intensity) standing in for every glowing thing."""
        lay = self.layout
        out: list[tuple[float, ...]] = []
        for sign in lay.signs:
            x, y = lay.wall_point(sign.wall, sign.along_m, inset_m=0.6)
            width = len(sign.text) * sign.height_m * 0.7
            out.append((x, y, sign.z_m, *sign.color, 2.0 + 2.5 * width * sign.height_m))
        tubes = [(t.points, t.color, t.radius_m) for t in lay.tubes]
        tubes += [(points, color, 0.02) for points, color in self._cornice()]
        for points, color, radius_m in tubes:
            pts = np.array(points, np.float32)
            for p0, p1 in itertools.pairwise(pts):
                n = max(1, int(np.linalg.norm(p1 - p0) / 1.6))
                for k in range(n):
                    p = p0 + (p1 - p0) * (k + 0.5) / n
                    out.append((*p, *color, 0.9 * radius_m / 0.03))
        for box in lay.boxes:
            if box.kind == "back_bar":
                inward = 1.0 if box.cx < 0 else -1.0
                for y in np.arange(box.cy - box.hy + 1.5, box.cy + box.hy, 3.0):
                    out.append((box.cx + inward * (box.hx + 0.4), y, 2.0, *AMBER, 1.6))
            elif box.kind == "jukebox":
                out.append((box.cx - 0.9, box.cy, 1.2, 1.0, 0.25, 0.8, 1.6))
            elif box.kind == "booth_table":
                out.append((box.cx, box.cy, box.height_m + 0.35, 1.0, 0.35, 0.25, 0.45))
            elif box.kind == "counter":
                out.append((box.cx, box.cy, 3.2, *AMBER, 1.2))
        for c in lay.circles:
            if c.kind == "table":
                out.append((c.cx, c.cy, 2.9, 1.0, 0.48, 0.16, 1.3))
        s = lay.screen
        for k in (-1, 0, 1):
            x, y = lay.wall_point(s.wall, s.center_m + k * s.width_m / 3, inset_m=1.0)
            out.append((x, y, s.bottom_m + s.height_m / 2, 0.35, 0.35, 0.9, 1.2))
        x, y = lay.wall_point(lay.door.wall, lay.door.center_m, inset_m=-0.8)
        out.append((x, y, 1.6, 0.25, 0.45, 1.0, 3.0))
        # Neon reads strong in a dark room: scale every light together to set the exposure.
        return [(*row[:6], row[6] * LIGHT_GAIN) for row in out]

    def _cornice(self) -> list[tuple[tuple[tuple[float, float, float], ...], tuple]]:
        """One tube per wall just under the ceiling, inset from the wall face."""
        lay = self.layout
        hx, hy = lay.half_x - 0.06, lay.half_y - 0.06
        z = lay.wall_height_m - CORNICE_DROP_M
        ends = {
            "north": ((-hx, hy), (hx, hy)),
            "south": ((-hx, -hy), (hx, -hy)),
            "east": ((hx, -hy), (hx, hy)),
            "west": ((-hx, -hy), (-hx, hy)),
        }
        return [(((a[0], a[1], z), (b[0], b[1], z)), CORNICE[w]) for w, (a, b) in ends.items()]

    def _room_shell(self, mb: MeshBuilder) -> None:
        """Walls (with the door cut out), ceiling and skirting."""
        lay = self.layout
        hx, hy, h = lay.half_x, lay.half_y, lay.wall_height_m
        wall = (0.16, 0.135, 0.155)
        # Each wall as (corner, along-vector, inward normal) seen from inside the room.
        walls = {
            "north": ((hx, hy, 0.0), (-2 * hx, 0.0, 0.0)),
            "south": ((-hx, -hy, 0.0), (2 * hx, 0.0, 0.0)),
            "east": ((hx, -hy, 0.0), (0.0, 2 * hy, 0.0)),
            "west": ((-hx, hy, 0.0), (0.0, -2 * hy, 0.0)),
        }
        door = lay.door
        for name, (corner, along) in walls.items():
            c, u = np.array(corner), np.array(along)
            length = float(np.linalg.norm(u))
            d = u / length
            pieces = [(0.0, length, 0.0, h)]
            if door.wall == name:
                # along_m runs along +x/+y; this wall's u may run the other way.
                sign = float(d[0] + d[1])
                centre = length / 2 + sign * door.center_m
                a, b = centre - door.width_m / 2, centre + door.width_m / 2
                pieces = [(0.0, a, 0.0, h), (b, length, 0.0, h), (a, b, door.height_m, h)]
            for s0, s1, z0, z1 in pieces:
                cells = (max(1, int((s1 - s0) * 1.5)), max(1, int((z1 - z0) * 1.5)))
                mb.grid(c + d * s0 + [0, 0, z0], d * (s1 - s0), (0, 0, z1 - z0), cells, wall)
            # A dark skirting strip and a cornice catch the light at floor and ceiling.
            mid = c + d * length / 2
            inward = np.array([-d[1], d[0], 0.0])
            half = np.abs(d) * length / 2 + np.abs(inward) * 0.06
            up = np.array([0.0, 0.0, 0.06])
            mb.box(mid + inward * 0.06 + up, half + up, (0.05, 0.05, 0.06))
            self._wall_panels(mb, name, c, d, length)
        mb.grid((-hx, hy, h), (2 * hx, 0, 0), (0, -2 * hy, 0), (32, 24), (0.07, 0.06, 0.07))
        # Ceiling beams give the darkness above some structure.
        for x in np.arange(-hx + 2, hx, 4.0):
            mb.box((x, 0, h - 0.25), (0.15, hy, 0.25), (0.06, 0.05, 0.06))

    def _wall_panels(
        self, mb: MeshBuilder, wall: str, corner: np.ndarray, d: np.ndarray, length: float
    ) -> None:
        """Pilasters every few metres and a dado rail: relief for the baked light to catch.

        Kept clear of whatever hangs on that wall (door, screen, signs).
        """
        lay = self.layout
        sign_dir = float(d[0] + d[1])  # +1 when this wall's direction runs along +x/+y

        def span(center_m: float, half_m: float) -> tuple[float, float]:
            s = length / 2 + sign_dir * center_m
            return s - half_m - 0.3, s + half_m + 0.3

        busy = [span(f.center_m, f.width_m / 2) for f in (lay.door, lay.screen) if f.wall == wall]
        busy += [
            span(g.along_m, len(g.text) * g.height_m * 0.45) for g in lay.signs if g.wall == wall
        ]
        inward = np.array([-d[1], d[0], 0.0])
        h = lay.wall_height_m - CORNICE_DROP_M - 0.15
        panel = (0.1, 0.085, 0.1)
        for s in np.arange(1.5, length - 1.0, 3.0):
            if any(a <= s <= b for a, b in busy):
                continue
            base = corner + d * s + inward * 0.05
            half_up = np.array([0.0, 0.0, h / 2])
            mb.box(base + half_up, np.abs(d) * 0.12 + np.abs(inward) * 0.05 + half_up, panel)
        lo = 0.0
        for a, b in [*sorted(busy), (length, length)]:
            if a - lo > 0.5:  # the rail runs between the things on the wall
                mid = corner + d * (lo + a) / 2 + inward * 0.04 + [0, 0, 1.15]
                mb.box(mid, np.abs(d) * (a - lo) / 2 + np.abs(inward) * 0.04 + [0, 0, 0.03],
                       (0.14, 0.1, 0.1))  # fmt: skip
            lo = max(lo, b)

    def _box_furniture(self, mb: MeshBuilder, b: Box) -> None:
        c, hx, hy, h = (b.cx, b.cy), b.hx, b.hy, b.height_m
        if b.kind == "counter":
            mb.box((*c, h / 2 - 0.04), (hx - 0.06, hy, h / 2 - 0.04), (0.08, 0.05, 0.05))
            mb.box((*c, h - 0.04), (hx + 0.12, hy + 0.1, 0.04), (0.30, 0.26, 0.28))  # glossy top
            mb.box((*c, 0.05), (hx + 0.05, hy + 0.05, 0.05), (0.04, 0.04, 0.05))
        elif b.kind == "back_bar":
            mb.box((*c, h / 2), (hx, hy, h / 2), (0.07, 0.05, 0.05))
            inward = 1.0 if b.cx < 0 else -1.0
            face = b.cx + inward * hx
            for z in (1.1, 1.75, 2.4):
                mb.box((face + inward * 0.12, b.cy, z), (0.16, hy - 0.1, 0.025), (0.25, 0.2, 0.2))
            mb.emissive = True  # the back bar glows amber behind the bottles
            mb.box((face + inward * 0.005, b.cy, 1.8), (0.004, hy - 0.15, 0.85), (0.55, 0.24, 0.06))
            mb.emissive = False
        elif b.kind == "booth":
            leather = (0.42, 0.05, 0.09)
            inward = -1.0 if b.cx > 0 else 1.0
            mb.box((*c, 0.25), (hx, hy, 0.25), (0.06, 0.04, 0.05))
            mb.box((b.cx, b.cy, 0.5), (hx, hy, 0.06), leather)
            mb.box(
                (b.cx - inward * (hx - 0.12), b.cy, h / 2 + 0.2), (0.12, hy, h / 2 - 0.2), leather
            )
        elif b.kind == "booth_table":
            mb.box((*c, h - 0.03), (hx, hy, 0.03), (0.22, 0.18, 0.16))
            mb.box((*c, (h - 0.03) / 2), (0.08, 0.08, (h - 0.03) / 2), (0.05, 0.05, 0.05))
            mb.emissive = True  # a small lamp on each table
            mb.cylinder((*c, h), 0.05, 0.14, (1.0, 0.45, 0.25), top_radius_m=0.035)
            mb.emissive = False
        elif b.kind == "pillar":
            mb.box((*c, h / 2), (hx, hy, h / 2), (0.10, 0.09, 0.11))
            mb.emissive = True  # vertical neon strips on two faces
            for dx, col in ((hx + 0.01, (0.2, 0.9, 1.0)), (-hx - 0.01, (1.0, 0.2, 0.6))):
                mb.box((b.cx + dx, b.cy, h / 2), (0.012, 0.04, h / 2 - 0.3), col)
            mb.emissive = False
        elif b.kind == "jukebox":
            mb.box((*c, h / 2 - 0.15), (hx, hy, h / 2 - 0.15), (0.12, 0.05, 0.14))
            mb.emissive = True
            face = b.cx - hx - 0.01 if b.cx > 0 else b.cx + hx + 0.01
            bands = ((1.0, 0.2, 0.6), (0.2, 0.9, 1.0), (1.0, 0.6, 0.1), (0.7, 0.3, 1.0))
            for k, col in enumerate(bands):
                mb.box((face, b.cy, 0.35 + 0.3 * k), (0.01, hy - 0.15, 0.06), col)
            mb.sphere((b.cx, b.cy, h - 0.3), (hx, hy, 0.3), (0.9, 0.35, 0.85), rings=6)
            mb.emissive = False
        else:
            mb.box((*c, h / 2), (hx, hy, h / 2), (0.12, 0.11, 0.12))

    def _round_furniture(self, mb: MeshBuilder, c: Circle) -> None:
        h, r = c.height_m, c.radius_m
        chrome = (0.35, 0.33, 0.36)
        if c.kind == "stool":
            mb.cylinder((c.cx, c.cy, 0), r * 0.9, 0.04, (0.05, 0.05, 0.05))
            mb.cylinder((c.cx, c.cy, 0.04), 0.035, h - 0.12, chrome, segments=8)
            mb.cylinder((c.cx, c.cy, h - 0.1), r, 0.1, (0.55, 0.06, 0.12))
        elif c.kind == "table":
            mb.cylinder((c.cx, c.cy, 0), r * 0.6, 0.04, (0.05, 0.05, 0.05))
            mb.cylinder((c.cx, c.cy, 0.04), 0.05, h - 0.08, chrome, segments=8)
            mb.cylinder((c.cx, c.cy, h - 0.04), r, 0.04, (0.28, 0.24, 0.24), segments=24)
        else:
            mb.cylinder((c.cx, c.cy, 0), r, h, (0.12, 0.11, 0.12))

    def _pendant_lamps(self, mb: MeshBuilder) -> None:
        """Warm cone lamps over the round tables: the orange pools of light."""
        top = self.layout.wall_height_m
        for c in self.layout.circles:
            if c.kind != "table":
                continue
            mb.rod((c.cx, c.cy, 3.2), (c.cx, c.cy, top), 0.008, (0.1, 0.1, 0.1), segments=4)
            mb.cylinder((c.cx, c.cy, 2.95), 0.32, 0.3, (0.1, 0.07, 0.05), top_radius_m=0.06)
            mb.emissive = True
            mb.cylinder((c.cx, c.cy, 2.94), 0.3, 0.01, (1.0, 0.62, 0.3), caps=True)
            mb.emissive = False

    def _bottles(self) -> None:
        """Rows of glowing bottles on the back bar shelves, one mesh."""
        rng = np.random.default_rng(7)
        mb = MeshBuilder()
        mb.emissive = True  # lit from behind: they read as glowing glass
        hues = (0.02, 0.08, 0.12, 0.33, 0.5, 0.55, 0.83, 0.93)
        for b in self.layout.boxes:
            if b.kind != "back_bar":
                continue
            inward = 1.0 if b.cx < 0 else -1.0
            x = b.cx + inward * (b.hx + 0.12)
            for z in (1.125, 1.775, 2.425):
                y = b.cy - b.hy + 0.25
                while y < b.cy + b.hy - 0.2:
                    hue = hues[rng.integers(len(hues))] + rng.normal(0, 0.01)
                    sat, val = rng.uniform(0.6, 0.95), rng.uniform(0.35, 0.8)
                    col = colorsys.hsv_to_rgb(hue % 1.0, sat, val)
                    body_h = rng.uniform(0.22, 0.34)
                    r = rng.uniform(0.035, 0.055)
                    mb.cylinder((x, y, z), r, body_h, col, segments=8)
                    mb.cylinder((x, y, z + body_h), r, 0.06, col, segments=8, top_radius_m=0.015)
                    mb.cylinder((x, y, z + body_h + 0.06), 0.015, 0.07, col, segments=6)
                    y += r * 2 + rng.uniform(0.03, 0.09)
        self._static.attachNewNode(mb.node("bottles"))

    def _tube(
        self,
        points: tuple[tuple[float, float, float], ...],
        color: tuple[float, float, float],
        radius_m: float,
        flicker: float,
        buzz_hz: float,
    ) -> NodePath:
        """A neon tube: a white-hot core and two additive halos in its colour."""
        core = MeshBuilder()
        core.tube(points, radius_m, brighten(color, 0.55))
        parent = self._neon if flicker > 0 else self._static
        node = parent.attachNewNode("tube")
        core_np = node.attachNewNode(core.node("core"))
        core_np.setLightOff(1)
        core_np.setFogOff(1)
        for scale, alpha in ((3.0, 0.35), (8.0, 0.10)):
            halo = MeshBuilder()
            halo.tube(points, radius_m * scale, (*color, alpha), segments=10)
            additive(node.attachNewNode(halo.node("halo")))
        if flicker > 0:
            self.flickers.append(Flicker(node, flicker, buzz_hz, len(self.flickers) * 1.7))
        return node

    def _door(self, door: WallFeature) -> None:
        """The way out: cold blue street light behind a glowing frame."""
        lay = self.layout
        x, y = lay.wall_point(door.wall, door.center_m, inset_m=-lay.wall_thickness_m)
        h = math.radians(lay.wall_facing_deg(door.wall))
        side = np.array([math.cos(h), math.sin(h), 0.0])  # along the wall
        outside = MeshBuilder()
        outside.emissive = True
        half = side * door.width_m / 2
        outside.quad(
            np.array([x, y, 0.0]) - half,
            side * door.width_m,
            (0, 0, door.height_m),
            (0.1, 0.2, 0.45),
        )
        node = self._static.attachNewNode(outside.node("street"))
        node.setTwoSided(True)
        node.setFogOff(1)
        fx, fy = lay.wall_point(door.wall, door.center_m, inset_m=0.03)
        base = np.array([fx, fy, 0.0])
        hw = door.width_m / 2 + 0.08
        frame = [
            tuple(base - side * hw),
            tuple(base - side * hw + [0, 0, door.height_m + 0.08]),
            tuple(base + side * hw + [0, 0, door.height_m + 0.08]),
            tuple(base + side * hw),
        ]
        self._tube(tuple(frame), (0.18, 0.85, 1.0), 0.025, 0.0, 0.0)  # type: ignore[arg-type]

    def _screen(self, s: WallFeature) -> None:
        """The big screen: a dark panel breathing with faint scanlines until a scene plays."""
        lay = self.layout
        x, y = lay.wall_point(s.wall, s.center_m, inset_m=0.04)
        card = CardMaker("screen")
        card.setFrame(-s.width_m / 2, s.width_m / 2, 0, s.height_m)
        self.screen = self.root.attachNewNode("big-screen")
        # CardMaker builds the card facing -y; turn it to face into the room.
        self.screen.setPos(x, y, s.bottom_m)
        self.screen.setH(lay.wall_facing_deg(s.wall) + 180)
        node = self.screen.attachNewNode(card.generate())
        node.setTexture(_screen_texture())
        node.setLightOff(1)
        node.setFogOff(1)
        self._screen_card = node
        # Between scenes the screen says so, faintly: hide `screen_idle` when a scene plays.
        self.screen_idle = self.screen.attachNewNode("screen-idle")
        for text, z, scale, alpha in (
            (self.layout.name.upper(), 0.56, 0.055, 0.5),
            ("next scene soon", 0.42, 0.03, 0.35),
        ):
            tn = TextNode("screen-text")
            font = fonts.load_font(self.base.loader, fonts.latin_font_path())
            if font is not None:
                tn.setFont(font)
            tn.setText(text)
            tn.setAlign(TextNode.ACenter)
            tn.setTextColor(0.55, 0.6, 1.0, alpha)
            line = self.screen_idle.attachNewNode(tn)
            line.setScale(s.height_m * scale / 0.75 * 1.3)
            line.setPos(0, -0.01, s.height_m * z)
        self.screen_idle.setTransparency(TransparencyAttrib.MAlpha)
        self.screen_idle.setLightOff(1)
        self.screen_idle.setFogOff(1)

    def _sign(self, sign: Sign) -> None:
        """Neon lettering on a wall: a dark backing, bright letters and a soft glow."""
        lay = self.layout
        text = sign.text
        font_path = fonts.latin_font_path()
        if fonts.needs_cjk(text):
            font_path = fonts.cjk_font_path()
            if font_path is None:
                text = CJK_FALLBACK.get(text, "")
                font_path = fonts.latin_font_path()
                if not text:
                    log.warning("skipping sign %r: no font can draw it", sign.text)
                    return
        tn = TextNode(f"sign:{text}")
        font = fonts.load_font(self.base.loader, font_path)
        if font is not None:
            tn.setFont(font)
        tn.setText(text)
        tn.setAlign(TextNode.ACenter)
        x, y = lay.wall_point(sign.wall, sign.along_m, inset_m=0.06)
        node = self._neon.attachNewNode(f"sign:{text}")
        node.setPos(x, y, sign.z_m)
        node.setH(lay.wall_facing_deg(sign.wall) + 180)
        scale = sign.height_m / 0.75  # TextNode cap height is about 0.75 units
        letters = NodePath(tn.generate())
        letters.setScale(scale)
        letters.setZ(-sign.height_m / 2)
        # Glow: the lettering repeated around itself, added; reads as bloom without a shader.
        glow = node.attachNewNode("glow")
        for ring, alpha in ((0.025, 0.22), (0.06, 0.09), (0.12, 0.045)):
            for k in range(8):
                a = k * math.pi / 4
                copy = letters.copyTo(glow)
                copy.setPos(
                    math.cos(a) * ring * scale,
                    -0.01,
                    -sign.height_m / 2 + math.sin(a) * ring * scale,
                )
                copy.setColor(*sign.color, alpha)
        glow.flattenStrong()
        additive(glow)
        core = letters.copyTo(node)
        core.setY(-0.02)
        core.setColor(*brighten(sign.color, 0.45), 1)
        core.setLightOff(1)
        core.setFogOff(1)
        core.flattenStrong()
        # Dark backing plate the tubes are mounted on.
        bounds = letters.getTightBounds()
        plate = MeshBuilder()
        if bounds:
            lo, hi = bounds
            pad = 0.15 * sign.height_m
            plate.box(
                ((lo.x + hi.x) / 2, 0.03, (lo.z + hi.z) / 2 - sign.height_m / 2),
                ((hi.x - lo.x) / 2 + pad, 0.02, (hi.z - lo.z) / 2 + pad),
                (0.03, 0.02, 0.03),
            )
            node.attachNewNode(plate.node("plate")).setLightOff(1)
        self.flickers.append(Flicker(node, sign.flicker, sign.buzz_hz, len(self.flickers) * 2.3))

    def _make_mirror(self) -> None:
        """The wet floor's reflection: the room again, upside down, under the translucent floor."""
        self.mirror = self.base.render.attachNewNode("reflection")
        self.mirror.setScale(1, 1, -1)
        self.mirror.setAttrib(CullFaceAttrib.makeReverse(), 1)
        self.mirror.setBin("background", 0, 1)
        # Name tags skip the depth test to stay readable; their reflections must not.
        self.mirror.setDepthTest(True, 1)
        self.mirror.setColorScale(0.75, 0.72, 0.8, 1)
        self._static.instanceTo(self.mirror)
        self._neon.instanceTo(self.mirror)
        self.screen.instanceTo(self.mirror)

    def _atmosphere(self) -> None:
        fog = Fog("haze")
        fog.setColor(*HAZE_COLOR)
        fog.setExpDensity(HAZE_DENSITY)
        self.base.render.setFog(fog)
        self.base.setBackgroundColor(*BACKGROUND)

    def use_post_haze(self) -> None:
        """The post chain draws depth haze itself; keep only a trace of fixed-function fog."""
        fog = Fog("haze")
        fog.setColor(*HAZE_COLOR)
        fog.setExpDensity(HAZE_DENSITY * 0.35)
        self.base.render.setFog(fog)

    # ------------------------------------------------------------------------------ per frame

    def reflect(self, node: NodePath) -> NodePath:
        """Also show a dynamic node (the avatars) in the wet floor."""
        return node.instanceTo(self.mirror)

    def update(self, t_s: float) -> None:
        """Flicker the neon and keep the idle screen breathing."""
        for f in self.flickers:
            # Mains buzz is a fast shimmer; dropouts are rare, brief and deeper on bad tubes.
            buzz = 1.0 - 0.08 * f.amount * (0.5 + 0.5 * math.sin(2 * math.pi * f.buzz_hz * t_s))
            slow = math.sin(t_s * 2.3 + f.phase) * math.sin(t_s * 0.71 + f.phase * 3.1)
            drop = 0.25 if slow > 1.0 - f.amount * 0.6 else 1.0
            k = buzz * drop
            f.node.setColorScale(k, k, k, 1)
        if self._screen_card is not None:
            self._screen_card.setTexOffset(TextureStage.getDefault(), 0, (t_s * 0.02) % 1.0)
            pulse = 0.85 + 0.15 * math.sin(t_s * 0.6)
            self._screen_card.setColorScale(pulse, pulse, pulse, 1)
            self.screen_idle.setAlphaScale(0.55 + 0.45 * math.sin(t_s * 0.35) ** 2)


def _screen_texture() -> Texture:
    """A deep blue-violet gradient with soft scanlines: a screen that is on, waiting."""
    w, h = 64, 256
    img = PNMImage(w, h, 3)
    ys = np.arange(h) / h
    for j, v in enumerate(ys):
        scan = 0.75 + 0.25 * (math.sin(v * math.pi * 2 * 48) > 0)
        r, g, b = 0.03 + 0.05 * v, 0.03 + 0.02 * v, 0.09 + 0.08 * (1 - v)
        for i in range(w):
            img.setXel(i, j, r * scan, g * scan, b * scan)
    tex = Texture("screen-idle")
    tex.load(img)
    tex.setWrapU(SamplerState.WMRepeat)
    tex.setWrapV(SamplerState.WMRepeat)
    return tex
