"""The film's set: a neon street between towers, a skyline, flying traffic, rain and dust.

Everything is built once from the spec (its seed, palette and weather) with a private
`random.Random`, and every moving part is placed by `Street.update(t, pose, mood)` from the scene
time alone, so a frame depends only on (spec, t). Units: metres, z up; the street runs along +y,
its kerbs at x = ±STREET_HALF_WIDTH_M; each screenplay scene plays in its own district
(`shots.DISTRICT_M` of street).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

import numpy as np
from panda3d.core import (
    CardMaker,
    ColorBlendAttrib,
    CullFaceAttrib,
    DepthWriteAttrib,
    Geom,
    GeomLines,
    GeomNode,
    GeomVertexData,
    GeomVertexFormat,
    GeomVertexWriter,
    NodePath,
    OmniBoundingVolume,
    Shader,
    TextNode,
    TransparencyAttrib,
)

from client import fonts
from client.film.shots import DISTRICT_M, STREET_HALF_WIDTH_M, Mood, Pose, hash01
from client.neon import NeonLights, apply_neon, apply_wet_floor, srgb_to_linear
from client.post import SHADER_DIR
from client.shapes import MeshBuilder
from neonbar.scenes import SceneSpec
from neonbar.screenplay import Screenplay

LATIN_WORDS = ("HOTEL", "BAR", "NOODLE", "KARAOKE", "24H", "RAMEN", "ARCADE", "MOTEL", "LIQUOR",
               "PACHINKO", "OPEN", "TATTOO", "CYBER", "DREAM", "CLINIC", "SUSHI", "VIDEO", "JAZZ",
               "TAXI", "PAWN")  # fmt: skip
CJK_WORDS = ("酒吧", "拉麵", "夜", "旅館", "電影", "雨", "愛", "花樣年華", "麻雀", "茶")
RAIN_COLOR = (0.55, 0.62, 0.75)
DUST_STREAK_COLOR = (0.9, 0.45, 0.16)
STREET_LENGTH_M = 700.0


def _shader(vert: str, frag: str) -> Shader:
    texts = [(SHADER_DIR / name).read_text(encoding="utf-8") for name in (vert, frag)]
    return Shader.make(Shader.SL_GLSL, vertex=texts[0], fragment=texts[1])


def _hex(color: str) -> tuple[float, float, float]:
    return tuple(int(color[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


def sign_words(play: Screenplay | None) -> list[str]:
    """Words for the signs: ALL-CAPS phrases the screenplay's action names (its own signs,
    'HOTEL PARADISO'), then the stock of a night street."""
    found: list[str] = []
    if play is not None:
        speakers = {e.speaker for e in play.elements if e.speaker}
        for e in play.elements:
            if e.kind != "action":
                continue
            for m in re.finditer(r"\b[A-Z][A-Z0-9]{2,}(?: [A-Z][A-Z0-9]{2,})*\b", e.text):
                phrase = m.group(0)
                words_ = [w for w in phrase.split() if w not in speakers]
                if words_ and " ".join(words_) not in found:
                    found.append(" ".join(words_))
    return found


@dataclass
class Car:
    lane_x_m: float
    lane_z_m: float
    speed_mps: float
    offset_m: float
    node: NodePath


@dataclass
class Street:
    """The set, built under `parent` (usually base.render)."""

    parent: NodePath
    spec: SceneSpec
    play: Screenplay | None
    loader: object
    districts: int = 1
    root: NodePath = field(init=False)
    light_points: list[tuple[tuple[float, float, float], tuple[float, float, float], float]] = (
        field(default_factory=list)
    )
    signs: list[NodePath] = field(default_factory=list)
    cars: list[Car] = field(default_factory=list)
    _boards: list[NodePath] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.spec.style.seed)
        self.palette = [_hex(c) for c in self.spec.style.palette]
        self.root = self.parent.attachNewNode("film-set")
        self.city = self.root.attachNewNode("city")
        self.neon = self.root.attachNewNode("neon")
        self.length_m = max(STREET_LENGTH_M, (self.districts + 1) * DISTRICT_M + 100.0)
        weather = self.spec.style.weather
        self.wetness = {"rain": 0.85, "dust": 0.12, "clear": 0.45}[weather]
        self._facade_shader = _shader("scene.vert", "film_facade.frag")
        self._words = sign_words(self.play)
        self._facade_inputs(self.root)
        self._build_buildings()
        self._build_skyline()
        self._build_signs()
        self._build_traffic()
        self._build_ground()
        self._build_weather()

    # ------------------------------------------------------------------ building

    def _facade(self, node: NodePath) -> None:
        node.setShader(self._facade_shader, 5)

    def _facade_inputs(self, node: NodePath) -> None:
        """Window colours and levels, set once on the set's root and inherited below it."""
        warm = srgb_to_linear((1.0, 0.72, 0.42))
        cool = srgb_to_linear((0.6, 0.85, 1.0))
        if self.spec.style.weather == "dust":
            cool = srgb_to_linear((1.0, 0.6, 0.35))
        node.setShaderInput("u_window_warm", warm)
        node.setShaderInput("u_window_cool", cool)
        node.setShaderInput("u_window_level", 0.8)
        # A dust-choked city is half dead: fewer lit rooms.
        node.setShaderInput("u_window_share", 0.12 if self.spec.style.weather == "dust" else 0.24)

    def _build_buildings(self) -> None:
        mb = MeshBuilder()
        rng = self.rng
        for side in (-1.0, 1.0):
            y = -40.0
            while y < self.length_m:
                width = rng.uniform(9.0, 24.0)
                depth = rng.uniform(12.0, 22.0)
                height = rng.choice((rng.uniform(9.0, 18.0), rng.uniform(18.0, 46.0)))
                setback = rng.uniform(0.0, 1.5)
                x = side * (STREET_HALF_WIDTH_M + 1.2 + setback + depth / 2)
                tone = rng.uniform(0.035, 0.07)
                pitch = rng.random()
                mb.box((x, y + width / 2, height / 2), (depth / 2, width / 2 - 0.3, height / 2),
                       (tone, tone * 0.95, tone * 1.1, pitch))  # fmt: skip
                # Rooftop clutter: a tank or a box of air handlers.
                if rng.random() < 0.5:
                    mb.box((x + rng.uniform(-3, 3), y + width / 2, height + 1.2),
                           (1.5, 1.5, 1.2), (0.03, 0.03, 0.035, 0.5))  # fmt: skip
                # Ground floor shopfront: a lit strip under an awning.
                self._shopfront(side, y + 0.6, width - 1.2, setback)
                y += width
            # Pavement kerb.
            mb.box((side * (STREET_HALF_WIDTH_M + 0.8), self.length_m / 2 - 40, 0.08),
                   (0.8, self.length_m / 2, 0.08), (0.05, 0.05, 0.055, 0.5))  # fmt: skip
        node = self.city.attachNewNode(mb.node("buildings"))
        self._facade(node)

    def _shopfront(self, side: float, y0: float, width: float, setback: float) -> None:
        rng = self.rng
        if rng.random() < 0.25:
            return
        color = rng.choice(self.palette)
        x = side * (STREET_HALF_WIDTH_M + 1.15 + setback)
        mb = MeshBuilder()
        mb.box((x, y0 + width / 2, 3.1), (0.05, width / 2, 0.06), (1, 1, 1, 1))
        strip = self.neon.attachNewNode(mb.node("shop-strip"))
        apply_neon(strip, color, intensity=3.0, flicker=0.1, phase=rng.uniform(0, 50))
        self.light_points.append(((x - side * 1.0, y0 + width / 2, 2.8), color, 4.0))
        # The shop's window: panes of warm light between dark mullions, some of them dark.
        warm = rng.choice(((1.0, 0.62, 0.35), (0.75, 0.85, 1.0), color))
        panes = max(2, int((width - 1.2) / 1.6))
        pane_w = (width - 1.2) / panes
        glow = MeshBuilder()
        for p in range(panes):
            if rng.random() < 0.3:
                continue
            top = rng.uniform(1.2, 2.2)
            glow.quad((x - side * 0.02, y0 + 0.6 + p * pane_w + 0.08, 0.5), (0, pane_w - 0.16, 0),
                      (0, 0, top), (1, 1, 1, 1))  # fmt: skip
        if not glow.empty:
            win = self.city.attachNewNode(glow.node("shop-window"))
            apply_neon(win, warm, intensity=rng.uniform(0.05, 0.14), phase=rng.uniform(0, 50))
            win.setTwoSided(True)

    def _build_skyline(self) -> None:
        rng = self.rng
        mb = MeshBuilder()
        # Towers behind the street blocks and at the end of the avenue.
        for _ in range(90):
            side = rng.choice((-1.0, 1.0))
            x = side * rng.uniform(45.0, 160.0)
            y = rng.uniform(-20.0, self.length_m + 250.0)
            w = rng.uniform(12.0, 30.0)
            h = rng.uniform(50.0, 190.0)
            mb.box((x, y, h / 2), (w / 2, w / 2, h / 2), (0.04, 0.04, 0.05, rng.random()))
        for _ in range(26):
            x = rng.uniform(-120.0, 120.0)
            y = self.length_m + rng.uniform(40.0, 260.0)
            w = rng.uniform(16.0, 36.0)
            h = rng.uniform(80.0, 260.0)
            mb.box((x, y, h / 2), (w / 2, w / 2, h / 2), (0.04, 0.04, 0.05, rng.random()))
        node = self.city.attachNewNode(mb.node("skyline"))
        self._facade(node)
        # Giant signs on the towers, seen down the avenue and from above.
        for k in range(8):
            color = self.palette[k % len(self.palette)]
            text = self._word(k + 100)
            y = (
                self.length_m + rng.uniform(20.0, 120.0)
                if k < 3
                else rng.uniform(80, self.length_m)
            )
            x = rng.uniform(-40, 40) if k < 3 else rng.choice((-1, 1)) * rng.uniform(40, 70)
            z = rng.uniform(45.0, 110.0)
            heading = 0.0 if k < 3 else (90.0 if x < 0 else -90.0)
            sign = self._text_sign(text, color, height_m=rng.uniform(6.0, 10.0), vertical=False,
                                   intensity=5.0)  # fmt: skip
            sign.setPos(x, y, z)
            sign.setH(heading)

    def _word(self, k: int) -> str:
        words = list(self._words)
        stock: list[str] = list(LATIN_WORDS)
        if fonts.cjk_font_path() is not None:
            stock += list(CJK_WORDS)
        rng = random.Random(self.spec.style.seed * 1000 + k)
        if words and k % 5 == 0:
            return words[(k // 5) % len(words)]
        return rng.choice(stock)

    def _text_sign(
        self, text: str, color: tuple[float, float, float], height_m: float, vertical: bool,
        intensity: float = 5.0,
    ) -> NodePath:  # fmt: skip
        """Neon lettering on a dark board with a tube frame; the board's centre is the origin,
        the lettering faces -y (toward a camera travelling up the street)."""
        font_path = fonts.cjk_font_path() if fonts.needs_cjk(text) else fonts.latin_font_path()
        font = fonts.load_font(self.loader, font_path)
        node = self.neon.attachNewNode(f"sign:{text}")
        letters = node.attachNewNode("letters")
        glyphs = list(text.replace(" ", "")) if vertical else [text]
        scale = height_m / 0.75 if not vertical else height_m / max(len(glyphs), 1) / 0.9
        for i, glyph in enumerate(glyphs):
            tn = TextNode(f"glyph:{glyph}")
            if font is not None:
                tn.setFont(font)  # type: ignore[arg-type]
            tn.setText(glyph)
            tn.setAlign(TextNode.ACenter)
            g = letters.attachNewNode(tn.generate())
            g.setScale(scale)
            if vertical:
                g.setZ(height_m / 2 - (i + 0.8) * scale * 0.9)
            else:
                g.setZ(-0.36 * scale)
        bounds = letters.getTightBounds()
        if bounds is None:
            return node
        lo, hi = bounds
        letters.setY(-0.12)
        apply_neon(letters, color, intensity=intensity, flicker=0.15,
                   phase=hash01(len(self.signs), self.spec.style.seed) * 60)  # fmt: skip
        if vertical:
            # A blade sign is read from both ends of the street: letters on both faces.
            back = letters.copyTo(node)
            back.setH(180.0)
            back.setY(0.12)
        pad = 0.18 * (height_m if not vertical else scale)
        cx, cz = (lo.x + hi.x) / 2, (lo.z + hi.z) / 2
        hx, hz = (hi.x - lo.x) / 2 + pad, (hi.z - lo.z) / 2 + pad
        board = MeshBuilder()
        board.box((cx, 0.0, cz), (hx, 0.08, hz), (0.02, 0.018, 0.025, 1.0))
        board_np = node.attachNewNode(board.node("board"))
        self._boards.append(board_np)
        frame = MeshBuilder()
        corners = [(cx - hx, -0.1, cz - hz), (cx + hx, -0.1, cz - hz),
                   (cx + hx, -0.1, cz + hz), (cx - hx, -0.1, cz + hz)]  # fmt: skip
        frame.tube([*corners, corners[0]], 0.035 * max(1.0, height_m / 3), (1, 1, 1, 1), segments=6)
        frame_color = self.palette[(self.palette.index(color) + 1) % len(self.palette)] if (
            color in self.palette) else color  # fmt: skip
        frame_np = node.attachNewNode(frame.node("frame"))
        apply_neon(frame_np, frame_color, intensity=3.5, flicker=0.1,
                   phase=hash01(len(self.signs), 3.0) * 60)  # fmt: skip
        self.signs.append(node)
        return node

    def _build_signs(self) -> None:
        rng = self.rng
        k = 0
        for side in (-1.0, 1.0):
            y = rng.uniform(0.0, 8.0)
            while y < self.length_m:
                color = self.palette[k % len(self.palette)]
                word = self._word(k)
                vertical = rng.random() < 0.55 and len(word.replace(" ", "")) <= 8
                z = rng.uniform(4.5, 12.0)
                if vertical:
                    h = rng.uniform(3.2, 6.5)
                    sign = self._text_sign(word, color, h, vertical=True, intensity=4.2)
                    # A blade sign sticks out of the facade, readable up and down the street.
                    sign.setPos(side * (STREET_HALF_WIDTH_M + 0.2), y, z + h / 2)
                    rng.random()  # keeps the set's random sequence (and so every sign) as it was
                else:
                    h = rng.uniform(0.9, 1.8)
                    # Flat signs face the lens broadside: dimmer, or bloom melts the letters.
                    sign = self._text_sign(word, color, h, vertical=False, intensity=2.6)
                    sign.setPos(side * (STREET_HALF_WIDTH_M + 1.05), y, z)
                    sign.setH(90.0 if side < 0 else -90.0)  # flat on the facade, facing the street
                px = side * (STREET_HALF_WIDTH_M - 0.8)
                self.light_points.append(((px, y, z + 1.0), color, 10.0 if vertical else 6.0))
                y += rng.uniform(7.0, 16.0)
                k += 1
        for board in self._boards:
            board.setShader(self._facade_shader, 6)
            board.setShaderInput("u_window_level", 0.0)

    def _build_traffic(self) -> None:
        rng = self.rng
        for i in range(self.spec.style.traffic):
            mb = MeshBuilder()
            mb.box((0, 0, 0), (0.9, 2.2, 0.45), (0.05, 0.05, 0.06, 0.5))
            car = self.city.attachNewNode("car")
            body = car.attachNewNode(mb.node("body"))
            self._facade(body)
            body.setShaderInput("u_window_level", 0.0)
            lamps = MeshBuilder()
            for lx in (-0.6, 0.6):
                lamps.box((lx, 2.22, 0.05), (0.22, 0.04, 0.08), (1, 1, 1, 1))
            head = car.attachNewNode(lamps.node("head"))
            apply_neon(head, (1.0, 0.95, 0.85), intensity=9.0, phase=float(i))
            tails = MeshBuilder()
            for lx in (-0.6, 0.6):
                tails.box((lx, -2.22, 0.05), (0.26, 0.04, 0.06), (1, 1, 1, 1))
            tail = car.attachNewNode(tails.node("tail"))
            apply_neon(tail, (1.0, 0.12, 0.1), intensity=7.0, phase=float(i) + 0.5)
            underglow = MeshBuilder()
            underglow.box((0, 0, -0.48), (0.7, 1.9, 0.02), (1, 1, 1, 1))
            glow = car.attachNewNode(underglow.node("glow"))
            apply_neon(glow, self.palette[i % len(self.palette)], intensity=2.5, phase=float(i))
            lane = i % 6
            direction = 1.0 if lane % 2 == 0 else -1.0
            self.cars.append(
                Car(
                    lane_x_m=(-1.0 if lane < 3 else 1.0) * rng.uniform(0.5, 5.0),
                    lane_z_m=16.0 + 7.0 * (lane % 3) + rng.uniform(-1.5, 1.5),
                    speed_mps=direction * rng.uniform(14.0, 28.0),
                    offset_m=rng.uniform(0.0, self.length_m),
                    node=car,
                )
            )
            if direction < 0:
                car.setH(180.0)

    def _build_ground(self) -> None:
        mb = MeshBuilder()
        mb.quad((-60.0, -60.0, 0.0), (120.0, 0.0, 0.0), (0.0, self.length_m + 120.0, 0.0),
                (1, 1, 1, 1))  # fmt: skip
        self.ground = self.root.attachNewNode(mb.node("street"))
        self.lights = NeonLights.from_points(self.light_points[:16])
        base = (0.045, 0.04, 0.045) if self.spec.style.weather != "dust" else (0.06, 0.04, 0.03)
        apply_wet_floor(self.ground, self.lights, base_color=base, wetness=self.wetness,
                        puddles_per_m=0.28)  # fmt: skip
        self.mirror: NodePath | None = None
        if self.wetness >= 0.3:
            self.mirror = self.root.attachNewNode("reflection")
            self.mirror.setScale(1, 1, -1)
            self.mirror.setAttrib(CullFaceAttrib.makeReverse(), 1)
            self.mirror.setBin("background", 0, 1)
            self.mirror.setColorScale(0.7, 0.7, 0.75, 1)
            self.city.instanceTo(self.mirror)
            self.neon.instanceTo(self.mirror)

    def _streaks(self, name: str, count: int, seed: int) -> NodePath:
        rng = np.random.default_rng(seed)
        vdata = GeomVertexData(name, GeomVertexFormat.getV3c4(), Geom.UHStatic)
        vdata.setNumRows(count * 2)
        vw, cw = GeomVertexWriter(vdata, "vertex"), GeomVertexWriter(vdata, "color")
        base = rng.random((count, 3))
        keep = rng.random(count)
        bright = rng.random(count)
        for i in range(count):
            for tail in (0.0, 1.0):
                vw.addData3(*map(float, base[i]))
                cw.addData4(float(keep[i]), tail, float(bright[i]), 1.0)
        lines = GeomLines(Geom.UHStatic)
        for i in range(count):
            lines.addVertices(2 * i, 2 * i + 1)
        geom = Geom(vdata)
        geom.addPrimitive(lines)
        gn = GeomNode(name)
        gn.addGeom(geom)
        gn.setBounds(OmniBoundingVolume())
        gn.setFinal(True)
        node = self.root.attachNewNode(gn)
        node.setShader(_shader("film_streaks.vert", "film_streaks.frag"), 20)
        node.setAttrib(ColorBlendAttrib.make(ColorBlendAttrib.MAdd, ColorBlendAttrib.OIncomingAlpha,
                                             ColorBlendAttrib.OOne))  # fmt: skip
        node.setAttrib(DepthWriteAttrib.make(DepthWriteAttrib.MOff))
        node.setBin("fixed", 20)
        node.setLightOff(1)
        return node

    def _build_weather(self) -> None:
        weather = self.spec.style.weather
        self.rain: NodePath | None = None
        self.dust_streaks: NodePath | None = None
        self.dust_sheets: list[NodePath] = []
        if weather in ("rain", "clear"):
            self.rain = self._streaks("rain", 6000, self.spec.style.seed)
            self.rain.setShaderInput("u_box", (34.0, 40.0, 22.0))
            self.rain.setShaderInput("u_velocity", (1.2, 0.0, -11.0))
            self.rain.setShaderInput("u_streak_s", 0.06)
            self.rain.setShaderInput("u_color", tuple(c * 0.75 for c in RAIN_COLOR))
            self.rain.setRenderModeThickness(1.5)
        if weather == "dust":
            # The sun behind the storm: a disc far down the avenue that only its bloom crosses
            # the haze with (bloom is added after the haze in composite.frag).
            sun = MeshBuilder()
            sun.sphere((0.0, self.length_m + 420.0, 70.0), 38.0, (1, 1, 1, 1), rings=8, segments=16)
            sun_np = self.root.attachNewNode(sun.node("sun"))
            apply_neon(sun_np, (1.0, 0.62, 0.3), intensity=14.0, phase=0.0)
            self.dust_streaks = self._streaks("dust", 5000, self.spec.style.seed + 1)
            self.dust_streaks.setShaderInput("u_box", (40.0, 40.0, 16.0))
            self.dust_streaks.setShaderInput("u_velocity", (13.0, 4.0, -0.6))
            self.dust_streaks.setShaderInput("u_streak_s", 0.05)
            self.dust_streaks.setShaderInput("u_color", DUST_STREAK_COLOR)
            shader = _shader("scene.vert", "film_dust.frag")
            for k, dist in enumerate((7.0, 16.0, 30.0)):
                w, h = dist * 1.6, dist * 0.9
                card = CardMaker(f"dust-sheet-{k}")
                card.setFrame(-w / 2, w / 2, -h / 2, h / 2)
                card.setColor(1, 1, 1, 0.9 - 0.15 * k)
                sheet = NodePath(card.generate())
                sheet.setY(dist)
                sheet.setShader(shader, 20)
                sheet.setShaderInput("u_layer", float(k))
                sheet.setShaderInput("u_dust_color", srgb_to_linear(DUST_STREAK_COLOR))
                sheet.setShaderInput("u_wind", (0.35 + 0.1 * k, 0.03))
                sheet.setTransparency(TransparencyAttrib.MAlpha)
                sheet.setDepthWrite(False)
                sheet.setTwoSided(True)
                sheet.setBin("fixed", 15 - k)
                sheet.setLightOff(1)
                self.dust_sheets.append(sheet)

    # ------------------------------------------------------------------ per frame

    def attach_sheets(self, camera: NodePath) -> None:
        for sheet in self.dust_sheets:
            sheet.reparentTo(camera)

    def update(self, t_s: float, pose: Pose, mood: Mood) -> None:
        """Place everything that moves for scene time t_s (no state carried between frames)."""
        cam = pose.pos
        for car in self.cars:
            y = (car.offset_m + car.speed_mps * mood.traffic_speed * t_s) % self.length_m - 30.0
            bob = 0.25 * math.sin(t_s * 0.9 + car.offset_m)
            car.node.setPos(car.lane_x_m, y, car.lane_z_m + bob)
        # The 16 neon lights nearest the camera light the set (the shaders take 16).
        pts = self.light_points
        order = sorted(range(len(pts)), key=lambda i: (
            (pts[i][0][0] - cam[0]) ** 2 + ((pts[i][0][1] - cam[1] - 12.0) ** 2)
            + (pts[i][0][2] - cam[2]) ** 2, i))  # fmt: skip
        flick = 1.0 - 0.35 * mood.flicker * (0.5 + 0.5 * math.sin(t_s * 23.0))
        near = [(pts[i][0], pts[i][1], pts[i][2] * flick) for i in order[:16]]
        lights = NeonLights.from_points(near)
        lights.ambient = (0.010, 0.009, 0.014) if self.spec.style.weather != "dust" else (
            0.014, 0.006, 0.0025)  # fmt: skip
        lights.apply_to(self.root)
        for sign in self.signs:
            for child in sign.getChildren():
                if child.getName() in ("letters", "frame"):
                    child.setShaderInput("u_flicker", float(mood.flicker))
        time_inputs = {"u_time": float(t_s), "u_cam": tuple(float(c) for c in cam)}
        if self.rain is not None:
            density = mood.precipitation if self.spec.style.weather == "rain" else 0.0
            self.rain.setShaderInput("u_density", float(density))
            for k, v in time_inputs.items():
                self.rain.setShaderInput(k, v)
        if self.dust_streaks is not None:
            self.dust_streaks.setShaderInput("u_density", float(mood.precipitation))
            for k, v in time_inputs.items():
                self.dust_streaks.setShaderInput(k, v)
        for sheet in self.dust_sheets:
            sheet.setShaderInput("u_time", float(t_s))
            sheet.setShaderInput("u_density", float(0.1 + 0.4 * mood.precipitation))
