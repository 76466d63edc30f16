"""Avatars: a stylized procedural figure, the crowd of remote ones, drinks, emotes.

Each figure shares one set of template meshes (built once, copied by reference), tinted per user
with a colour scale. The crowd is updated from `NetSession.remote_avatars()` arrays: walk bob,
sway, tipsiness and fades are computed for everyone at once with numpy, and the only per-avatar
Python left per frame is one `setPosHpr` call. Emotes, bubbles and fades touch only the few
avatars they concern.

Figure coordinates: metres, z up, facing +y (Panda3D heading 0), feet at the origin.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from direct.showbase.ShowBase import ShowBase
from panda3d.core import (
    AmbientLight,
    DepthTestAttrib,
    DirectionalLight,
    NodePath,
    RenderAttrib,
    TextNode,
    TransparencyAttrib,
)

from client import fonts
from client.shapes import MeshBuilder
from client.world import additive, brighten
from neonbar.clink import CLINK_RADIUS_M, CLINK_WINDOW_S

log = logging.getLogger(__name__)

HEAD_Z = 1.62
HIP_Z = 0.84
STRIDE_DEG = 26.0  # leg swing at a full walk
LEG_LOD_M = 8.0  # farther than this from the camera, limbs stay still (small on screen)
TAG_Z = 2.02
BUBBLE_Z = 2.32
FADE_S = 0.6
CHEERS_S = 1.6
WAVE_S = 1.8
BUBBLE_S = 6.0
GONE_S = 2.0  # after a leave, positions still buffered for that avatar are ignored this long
DEFAULT_COLOR = "#ff8a1f"
# Hair: mostly dark, some bleached, some dyed neon.
HAIR = (
    (0.07, 0.05, 0.06), (0.05, 0.05, 0.07), (0.2, 0.1, 0.06), (0.85, 0.82, 0.75),
    (0.9, 0.2, 0.55), (0.2, 0.45, 0.95), (0.6, 0.6, 0.65), (0.55, 0.22, 0.08),
)  # fmt: skip


def hex_rgb(color: str | None, default: str = DEFAULT_COLOR) -> tuple[float, float, float]:
    """'#rrggbb' -> floats in 0..1 (a bad or missing value gives the default)."""
    text = color if isinstance(color, str) and len(color) == 7 and color[0] == "#" else default
    try:
        return tuple(int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]
    except ValueError:
        return hex_rgb(default)


# ------------------------------------------------------------------------------------ templates


@dataclass
class Templates:
    """The figure's meshes, built once; each figure makes its own tinted copies.

    Few meshes per figure keep the draw count down (a crowd of 200 is drawn twice, once in the
    wet floor): torso and head are one mesh, each limb another (they swing), and the unlit neon
    trim, the eyes and the mouth are small ones of their own (the last two change shape with
    expressions).
    """

    body: MeshBuilder
    trim: MeshBuilder
    eyes: MeshBuilder
    mouth: MeshBuilder
    arm: MeshBuilder
    leg: MeshBuilder


def _build_templates() -> Templates:
    dark = (0.06, 0.06, 0.08)
    white = (1.0, 1.0, 1.0)
    skin = (0.78, 0.66, 0.62)

    body = MeshBuilder()
    leg = MeshBuilder()  # hangs from the hip pivot along -z, the shoe at its end
    leg.cylinder((0, 0, -HIP_Z + 0.06), 0.075, HIP_Z - 0.06, dark, segments=10, top_radius_m=0.09)
    leg.box((0, 0.04, -HIP_Z + 0.045), (0.07, 0.13, 0.045), (0.02, 0.02, 0.02))
    body.cylinder((0, 0, 1.42), 0.06, 0.1, skin, segments=8)
    body.sphere((0, 0, HEAD_Z), (0.14, 0.15, 0.17), skin, rings=10, segments=16)
    body.tinted = 2  # hair, in a colour of its own
    body.sphere((0, -0.02, HEAD_Z + 0.08), (0.15, 0.15, 0.12), white, rings=6, segments=16)
    body.tinted = True  # the jacket, in the user's colour
    body.cylinder((0, 0, 0.8), 0.19, 0.62, white, segments=16, top_radius_m=0.23)
    body.sphere((0, 0, 1.4), (0.26, 0.16, 0.1), white, rings=6, segments=16)
    body.cylinder((0, 0.0, 1.44), 0.1, 0.08, white, segments=12, top_radius_m=0.085)  # collar
    body.tinted = False
    trim = MeshBuilder()  # neon accents in the user's colour, unlit
    trim.tinted = True
    trim.cylinder((0, 0, 0.86), 0.195, 0.035, white, segments=16, caps=False)
    trim.rod((-0.08, 0.205, 1.38), (0.08, 0.15, 0.95), 0.012, white, segments=4)
    trim.cylinder((0, 0, 1.5), 0.087, 0.022, white, segments=12, caps=False)
    eyes = MeshBuilder()  # around the eyes pivot (head front)
    eyes.emissive = True
    for x in (-0.055, 0.055):
        eyes.sphere((x, 0, 0), (0.028, 0.012, 0.02), white, rings=4, segments=8)
    mouth = MeshBuilder()  # around the mouth pivot
    mouth.box((0, 0, 0), (0.04, 0.006, 0.008), (0.25, 0.05, 0.07))
    arm = MeshBuilder()  # hangs from the shoulder pivot along -z, the hand at its end
    arm.sphere((0, 0, -0.62), 0.05, skin, rings=4, segments=8)
    arm.tinted = True
    arm.cylinder((0, 0, -0.6), 0.05, 0.6, white, segments=8, top_radius_m=0.065)
    return Templates(body=body, trim=trim, eyes=eyes, mouth=mouth, arm=arm, leg=leg)


_templates: Templates | None = None


def templates() -> Templates:
    global _templates
    if _templates is None:
        _templates = _build_templates()
    return _templates


# ------------------------------------------------------------------------------------- drinks


def build_glass(color: str, glow: float, garnish: str) -> NodePath:
    """A martini glass with the drink in it, held at the hand's origin."""
    rgb = hex_rgb(color)
    glass = MeshBuilder()
    glass.cylinder((0, 0, -0.02), 0.035, 0.006, (0.8, 0.85, 0.9, 0.5), segments=12)
    glass.cylinder((0, 0, -0.015), 0.005, 0.09, (0.8, 0.85, 0.9, 0.5), segments=6)
    glass.cylinder(
        (0, 0, 0.07),
        0.006,
        0.09,
        (0.75, 0.85, 1.0, 0.28),
        segments=14,
        top_radius_m=0.075,
        caps=False,
    )
    root = NodePath("glass")
    g = root.attachNewNode(glass.node("glass"))
    g.setTransparency(TransparencyAttrib.MAlpha)
    g.setTwoSided(True)
    g.setDepthWrite(False)
    g.setBin("transparent", 20)
    liquid = MeshBuilder()
    liquid.emissive = True
    lit = tuple(c * (0.55 + 0.45 * glow) for c in rgb)
    liquid.cylinder(
        (0, 0, 0.08), 0.01, 0.065, brighten(lit, 0.15 * glow), segments=14, top_radius_m=0.062
    )
    liq = root.attachNewNode(liquid.node("liquid"))
    liq.setLightOff(1)
    if glow > 0.05:
        halo = MeshBuilder()
        halo.sphere((0, 0, 0.13), 0.11 + 0.08 * glow, (*rgb, 0.28 * glow), rings=6, segments=10)
        additive(root.attachNewNode(halo.node("drink-glow")))
    _garnish(root, garnish)
    return root


def _garnish(root: NodePath, garnish: str) -> None:
    mb = MeshBuilder()
    pick = (0.85, 0.8, 0.7)
    if garnish in ("olive", "neural_olive"):
        mb.rod((0.05, 0.0, 0.2), (-0.01, 0.0, 0.1), 0.0025, pick, segments=4)
        if garnish == "olive":
            mb.sphere((0.0, 0.0, 0.115), (0.016, 0.016, 0.02), (0.35, 0.45, 0.12), rings=5)
            root.attachNewNode(mb.node("olive"))
            return
        # The seed's glowing neural implant on a nanofiber toothpick.
        root.attachNewNode(mb.node("toothpick"))
        implant = MeshBuilder()
        implant.emissive = True
        implant.sphere((0.0, 0.0, 0.115), 0.019, (0.3, 1.0, 0.8), rings=6, segments=10)
        implant.rod((-0.024, 0, 0.115), (0.024, 0, 0.115), 0.004, (1.0, 0.3, 0.9), segments=6)
        core = root.attachNewNode(implant.node("neural-olive"))
        core.setLightOff(1)
        halo = MeshBuilder()
        halo.sphere((0.0, 0.0, 0.115), 0.05, (0.3, 1.0, 0.8, 0.35), rings=5, segments=8)
        additive(root.attachNewNode(halo.node("implant-glow")))
        return
    if garnish == "lime":
        mb.cylinder((0.06, 0, 0.14), 0.025, 0.008, (0.5, 0.9, 0.2), segments=10)
    elif garnish == "cherry":
        mb.sphere((0.02, 0, 0.15), 0.015, (0.8, 0.02, 0.08), rings=5)
        mb.rod((0.02, 0, 0.16), (0.03, 0, 0.2), 0.002, (0.2, 0.4, 0.1), segments=4)
    elif garnish == "umbrella":
        mb.rod((0.03, 0, 0.12), (0.05, 0, 0.24), 0.002, pick, segments=4)
        mb.cylinder((0.05, 0, 0.22), 0.06, 0.03, (1.0, 0.3, 0.6), segments=8, top_radius_m=0.0)
    elif garnish == "orange_peel":
        mb.rod((0.06, 0, 0.145), (0.02, 0.03, 0.15), 0.006, (1.0, 0.55, 0.1), segments=6)
    if not mb.empty:
        root.attachNewNode(mb.node(garnish))


# ------------------------------------------------------------------------------------- figure


class AvatarFigure:
    """One avatar's scene graph; see the module docstring for its coordinates."""

    def __init__(
        self, parent: NodePath, labels: NodePath, avatar_id: int, name: str, color: str
    ) -> None:
        t = templates()
        self.avatar_id = avatar_id
        self.root = parent.attachNewNode(f"avatar:{avatar_id}")
        # Name tag and bubbles ride on the figure (no per-frame placement of their own); the
        # billboard turns them to the camera whatever the figure's sway.
        self.label = self.root.attachNewNode(f"label:{avatar_id}")
        self.body = self.root.attachNewNode("body")
        # Everyone a little different in build, stable per avatar: a crowd, not clones.
        tall, broad = ((avatar_id * 2654435761) % 1000 / 1000.0, (avatar_id * 40503) % 997 / 997.0)
        self.body.setScale(0.95 + 0.1 * broad, 1.0, 0.94 + 0.12 * tall)
        rgb = hex_rgb(color)
        self.hair = HAIR[sum(map(ord, name)) % len(HAIR)]  # stable per name across sessions
        self.suit = self.body.attachNewNode(t.body.node("suit", rgb, self.hair))
        self.trim = self.body.attachNewNode(t.trim.node("trim", brighten(rgb, 0.3)))
        self.trim.setLightOff(1)
        self.head = self.body.attachNewNode("head")
        self.head.setZ(HEAD_Z)
        self.eyes = self.head.attachNewNode(t.eyes.node("eyes"))
        self.eyes.setPos(0, 0.13, 0.02)
        self.eyes.setLightOff(1)
        self.mouth = self.head.attachNewNode(t.mouth.node("mouth"))
        self.mouth.setPos(0, 0.14, -0.07)
        self.arm_r = self._arm(0.27, rgb)
        self.arm_l = self._arm(-0.27, rgb)
        self.leg_r = self._leg(0.1)
        self.leg_l = self._leg(-0.1)
        self.hand_r = self.arm_r.find("hand")
        self.glass: NodePath | None = None
        self.tag = self._text_tag(name)
        self.bubble: NodePath | None = None
        self.bubble_until = 0.0
        self.emote = ""
        self.emote_t0 = 0.0
        self.expression = "neutral"
        self.color = color
        self._tag_text.setTextColor(*brighten(rgb, 0.35), 1)
        self.drink: dict[str, Any] | None = None

    def _leg(self, x: float) -> NodePath:
        pivot = self.body.attachNewNode("leg")
        pivot.setPos(x, 0, HIP_Z)
        pivot.attachNewNode(templates().leg.node("leg-mesh"))
        return pivot

    def _arm(self, x: float, rgb: tuple[float, float, float]) -> NodePath:
        pivot = self.body.attachNewNode("arm")
        pivot.setPos(x, 0, 1.38)
        pivot.setR(8 if x > 0 else -8)  # arms hang slightly away from the body
        pivot.attachNewNode(templates().arm.node("arm-mesh", rgb))
        pivot.attachNewNode("hand").setZ(-0.62)
        return pivot

    def _text_tag(self, name: str) -> NodePath:
        tn = TextNode(f"tag:{self.avatar_id}")
        path = fonts.cjk_font_path() if fonts.needs_cjk(name) else fonts.latin_font_path()
        font = fonts.load_font(_loader(), path)
        if font is not None:
            tn.setFont(font)
        tn.setText(name)
        tn.setAlign(TextNode.ACenter)
        tn.setCardColor(0.02, 0.01, 0.04, 0.55)
        tn.setCardAsMargin(0.3, 0.3, 0.12, 0.08)
        tn.setCardDecal(False)  # no depth test on tags: card, then text, in order
        tag = self.label.attachNewNode(tn)
        tag.setScale(0.16)
        tag.setZ(TAG_Z)
        tag.setBillboardPointEye()
        tag.setLightOff(1)
        tag.setFogOff(1)
        tag.setTransparency(TransparencyAttrib.MAlpha)
        tag.setBin("fixed", 40)
        _always_on_top(tag)
        self._tag_text = tn
        return tag

    def set_name(self, name: str) -> None:
        self._tag_text.setText(name)

    def set_color(self, color: str) -> None:
        """Re-tint the jacket, arms and neon trim (a profile change)."""
        if color == self.color:
            return
        t = templates()
        rgb = hex_rgb(color)
        self.color = color
        _swap_geom(self.suit, t.body.node("suit", rgb, self.hair))
        _swap_geom(self.trim, t.trim.node("trim", brighten(rgb, 0.3)))
        for pivot in (self.arm_r, self.arm_l):
            _swap_geom(pivot.getChild(0), t.arm.node("arm-mesh", rgb))
        self._tag_text.setTextColor(*brighten(rgb, 0.35), 1)

    def set_drink(self, drink: dict[str, Any] | None) -> None:
        """Put a glass in the right hand (None empties it)."""
        if self.glass is not None:
            self.glass.removeNode()
            self.glass = None
        self.drink = drink
        if drink:
            glow = float(drink.get("glow", 0.0) or 0.0)
            self.glass = build_glass(drink.get("color", "#ffffff"), glow, drink.get("garnish", ""))
            self.glass.reparentTo(self.hand_r)
            self.glass.setPos(0, 0.03, -0.02)
            # The arm pivot is rolled; keep the glass upright.
            self.glass.setR(-8)

    def set_expression(self, expression: str) -> None:
        """neutral | smile | surprised | tipsy: eyes and mouth change shape."""
        self.expression = expression
        eyes, mouth = {
            "neutral": ((1, 1, 1), (1, 1, 1)),
            "smile": ((1, 1, 0.6), (1.4, 1, 1.8)),
            "surprised": ((1.2, 1, 1.6), (0.7, 1, 4.0)),
            "tipsy": ((1, 1, 0.35), (1.1, 1, 1.2)),
        }.get(expression, ((1, 1, 1), (1, 1, 1)))
        self.eyes.setScale(*eyes)
        self.mouth.setScale(*mouth)

    def say(self, text: str, now_s: float) -> None:
        """Show a chat bubble above the head for a few seconds."""
        if self.bubble is not None:
            self.bubble.removeNode()
        tn = TextNode("bubble")
        font = fonts.load_font(
            _loader(), fonts.cjk_font_path() if fonts.needs_cjk(text) else fonts.latin_font_path()
        )
        if font is not None:
            tn.setFont(font)
        tn.setText(text if len(text) <= 140 else text[:139] + "…")
        tn.setWordwrap(14)
        tn.setAlign(TextNode.ACenter)
        tn.setTextColor(0.05, 0.03, 0.08, 1)
        tn.setCardColor(0.95, 0.92, 1.0, 0.9)
        tn.setCardAsMargin(0.4, 0.4, 0.25, 0.2)
        tn.setCardDecal(False)  # no depth test on tags: card, then text, in order
        b = self.label.attachNewNode(tn)
        b.setScale(0.14)
        lines = max(1, tn.getNumRows())
        b.setZ(BUBBLE_Z + 0.14 * (lines - 1))
        b.setBillboardPointEye()
        b.setLightOff(1)
        b.setFogOff(1)
        b.setTransparency(TransparencyAttrib.MAlpha)
        b.setBin("fixed", 41)
        _always_on_top(b)
        self.bubble = b
        self.bubble_until = now_s + BUBBLE_S + 0.04 * len(text)

    def start_emote(self, emote: str, now_s: float) -> None:
        self.emote, self.emote_t0 = emote, now_s
        if emote == "cheers":
            self.set_expression("smile")

    def animate(self, now_s: float) -> None:
        """Arms for the running emote; expire bubbles. Called only for avatars that need it."""
        if self.bubble is not None and now_s >= self.bubble_until:
            self.bubble.removeNode()
            self.bubble = None
        if not self.emote:
            return
        age = now_s - self.emote_t0
        if self.emote == "cheers":
            # Raise the glass up and forward, hold, lower: a smooth bump over CHEERS_S.
            k = _bump(age / CHEERS_S)
            self.arm_r.setHpr(0, 150 * k, 8 * (1 - k) - 12 * k)
            done = age >= CHEERS_S
        elif self.emote == "wave":
            k = _bump(age / WAVE_S)
            self.arm_l.setHpr(0, 0, -8 - 150 * k + 18 * k * math.sin(age * 14))
            done = age >= WAVE_S
        else:
            # Other emotes (clap, dance): a small happy bounce of the whole body.
            self.body.setZ(0.06 * abs(math.sin(age * 8)) * _bump(age / 1.5))
            done = age >= 1.5
        if done:
            self.emote = ""
            self.arm_r.setHpr(0, 0, 8)
            self.arm_l.setHpr(0, 0, -8)
            self.body.setZ(0)
            if self.expression == "smile":
                self.set_expression("neutral")

    @property
    def busy(self) -> bool:
        return bool(self.emote) or self.bubble is not None

    def remove(self) -> None:
        self.root.removeNode()
        self.label.removeNode()


def _swap_geom(node: NodePath, new: Any) -> None:
    gnode = node.node()
    gnode.removeAllGeoms()
    gnode.addGeomsFrom(new)


def _always_on_top(node: NodePath) -> None:
    """Draw over everything but still write depth.

    A disabled depth test would also stop depth writes (OpenGL), and the post chain's haze reads
    depth: the tag would be fogged like the far wall behind it. "Always pass" keeps the writes.
    """
    node.setAttrib(DepthTestAttrib.make(RenderAttrib.MAlways))
    node.setDepthWrite(True)


def _bump(u: float) -> float:
    """0 -> 1 -> 0 over u in [0, 1], flat on top: ease up, hold, ease down."""
    if u <= 0 or u >= 1:
        return 0.0
    if u < 0.2:
        return 0.5 - 0.5 * math.cos(math.pi * u / 0.2)
    if u > 0.75:
        return 0.5 + 0.5 * math.cos(math.pi * (u - 0.75) / 0.25)
    return 1.0


_base_loader: Any = None


def _loader() -> Any:
    return _base_loader


# -------------------------------------------------------------------------------------- crowd


@dataclass
class Crowd:
    """Every avatar in the room, remote and local, drawn from arrays each frame.

    Per-slot state lives in numpy arrays indexed like `self.figures`; a slot is freed after its
    avatar has faded out.
    """

    base: ShowBase
    root: NodePath = field(init=False)
    figures: list[AvatarFigure | None] = field(default_factory=list)
    slot_of: dict[int, int] = field(default_factory=dict)
    local_id: int | None = None
    clinks: list[tuple[float, tuple[float, float]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        global _base_loader
        _base_loader = self.base.loader
        self.root = self.base.render.attachNewNode("avatars")
        self.labels = self.base.render.attachNewNode("avatar-labels")
        self.effects = self.base.render.attachNewNode("avatar-effects")
        self._flashes: list[tuple[float, NodePath]] = []
        self._light()
        cap = 16
        self._pos = np.zeros((cap, 2))
        self._prev = np.zeros((cap, 2))
        self._yaw = np.zeros(cap)
        self._speed = np.zeros(cap)
        self._phase = np.zeros(cap)
        self._tipsy = np.zeros(cap)
        self._stride = np.zeros(cap)  # leg swing shown, degrees
        self._fade = np.zeros(cap)  # 0..1 visibility
        self._fade_dir = np.zeros(cap)  # +1 fading in, -1 fading out, 0 steady
        self._seen = np.zeros(cap, bool)  # has a position
        self._cheer_t = np.full(cap, -1e9)
        self._busy: set[int] = set()
        self._fading: set[int] = set()
        self._gone: dict[int, float] = {}  # avatar id -> monotonic time until it may reappear
        self._faces: dict[int, Any] = {}  # avatar id -> client.reactions.face.FaceRig

    def _light(self) -> None:
        # Avatars move, so they get real (fixed-function, per-vertex) lights: a dim cool fill,
        # a warm key from above the bar and a magenta rim from the screen side.
        amb = AmbientLight("avatar-ambient")
        amb.setColor((0.22, 0.2, 0.26, 1))
        key = DirectionalLight("avatar-key")
        key.setColor((0.85, 0.62, 0.48, 1))
        rim = DirectionalLight("avatar-rim")
        rim.setColor((0.45, 0.25, 0.75, 1))
        for light, hpr in ((key, (-60, -50, 0)), (rim, (160, -20, 0))):
            np_ = self.root.attachNewNode(light)
            np_.setHpr(*hpr)
            self.root.setLight(np_)
        self.root.setLight(self.root.attachNewNode(amb))

    # --------------------------------------------------------------------------- membership

    def _grow(self) -> None:
        n = len(self._pos) * 2
        for name in ("_pos", "_prev"):
            arr = getattr(self, name)
            new = np.zeros((n, 2))
            new[: len(arr)] = arr
            setattr(self, name, new)
        for name, fill in (
            ("_yaw", 0.0),
            ("_speed", 0.0),
            ("_phase", 0.0),
            ("_tipsy", 0.0),
            ("_stride", 0.0),
            ("_fade", 0.0),
            ("_fade_dir", 0.0),
            ("_seen", False),
            ("_cheer_t", -1e9),
        ):
            arr = getattr(self, name)
            new = np.full(n, fill, dtype=arr.dtype)
            new[: len(arr)] = arr
            setattr(self, name, new)

    def ensure(self, avatar_id: int, name: str = "", color: str | None = None) -> AvatarFigure:
        """The figure for an avatar, created (fading in) if new."""
        self._gone.pop(avatar_id, None)
        slot = self.slot_of.get(avatar_id)
        if slot is not None:
            fig = self.figures[slot]
            assert fig is not None
            if self._fade_dir[slot] < 0:  # left and came back (resume): fade in again
                self._fade_dir[slot] = 1
                self._fading.add(slot)
            return fig
        try:
            slot = self.figures.index(None)
        except ValueError:
            slot = len(self.figures)
            self.figures.append(None)
        if slot >= len(self._pos):
            self._grow()
        fig = AvatarFigure(
            self.root, self.labels, avatar_id, name or f"guest {avatar_id}", color or DEFAULT_COLOR
        )
        fig.root.hide()
        fig.label.hide()
        self.figures[slot] = fig
        self.slot_of[avatar_id] = slot
        self._fade[slot], self._fade_dir[slot] = 0.0, 1.0
        self._seen[slot] = False
        self._speed[slot] = self._tipsy[slot] = self._stride[slot] = 0.0
        self._phase[slot] = (avatar_id * 0.37) % (2 * math.pi)
        self._cheer_t[slot] = -1e9
        fig.root.setTransparency(TransparencyAttrib.MAlpha)
        self._fading.add(slot)
        return fig

    def leave(self, avatar_id: int) -> None:
        """Fade an avatar out; its slot is freed when the fade ends."""
        # A snapshot or two may still carry it: do not bring it back from those.
        self._gone[avatar_id] = time.monotonic() + GONE_S
        slot = self.slot_of.get(avatar_id)
        if slot is None:
            return
        self._fade_dir[slot] = -1.0
        self._fading.add(slot)
        self._faces.pop(avatar_id, None)
        fig = self.figures[slot]
        if fig is not None:
            fig.root.setTransparency(TransparencyAttrib.MAlpha)

    def set_face(self, avatar_id: int, reaction: Any) -> None:
        """Show a reaction (neonbar.reaction.Reaction) on the avatar's face, eased in."""
        rig = self._faces.get(avatar_id)
        fig = self.figure(avatar_id)
        if rig is not None and rig.figure is not fig:
            rig.remove()
            rig = None
        if rig is None:
            if fig is None:
                return
            from client.reactions.face import FaceRig

            rig = self._faces[avatar_id] = FaceRig(fig)
        rig.set(reaction)

    def figure(self, avatar_id: int) -> AvatarFigure | None:
        slot = self.slot_of.get(avatar_id)
        return None if slot is None else self.figures[slot]

    def position(self, avatar_id: int) -> tuple[float, float] | None:
        slot = self.slot_of.get(avatar_id)
        if slot is None or not self._seen[slot]:
            return None
        return float(self._pos[slot, 0]), float(self._pos[slot, 1])

    def set_tipsy(self, avatar_id: int, level: float) -> None:
        slot = self.slot_of.get(avatar_id)
        if slot is not None:
            self._tipsy[slot] = max(0.0, min(1.0, level))

    def tipsy(self, avatar_id: int) -> float:
        slot = self.slot_of.get(avatar_id)
        return 0.0 if slot is None else float(self._tipsy[slot])

    # ------------------------------------------------------------------------------- social

    def emote(self, avatar_id: int, emote: str, now_s: float, clink: bool = True) -> list[int]:
        """Start an emote; for cheers returns the avatars whose glasses clink with this one.

        `clink=False` when a server decides clinks (it sends them as events: `clink()`)."""
        slot = self.slot_of.get(avatar_id)
        fig = None if slot is None else self.figures[slot]
        if fig is None or slot is None:
            return []
        fig.start_emote(emote, now_s)
        self._busy.add(slot)
        if emote != "cheers" or not clink:
            return []
        self._cheer_t[slot] = now_s
        live = np.flatnonzero(
            (np.abs(self._cheer_t - now_s) <= CLINK_WINDOW_S) & self._seen & (self._fade_dir >= 0)
        )
        live = live[live != slot]
        if len(live) == 0:
            return []
        d = np.hypot(*(self._pos[live] - self._pos[slot]).T)
        near = live[d <= CLINK_RADIUS_M]
        partners = []
        for other in near.tolist():
            ofig = self.figures[other]
            if ofig is None:
                continue
            partners.append(ofig.avatar_id)
            mid = (self._pos[slot] + self._pos[other]) / 2
            self.clinks.append((now_s, (float(mid[0]), float(mid[1]))))
            self._flash(float(mid[0]), float(mid[1]), now_s)
        return partners

    def clink(self, avatar_id: int, partners: list[int], now_s: float) -> None:
        """Glasses touch (decided by the server): a flash between `avatar_id` and each partner."""
        slot = self.slot_of.get(avatar_id)
        if slot is None:
            return
        for other in partners:
            other_slot = self.slot_of.get(other)
            if other_slot is None:
                continue
            mid = (self._pos[slot] + self._pos[other_slot]) / 2
            self.clinks.append((now_s, (float(mid[0]), float(mid[1]))))
            self._flash(float(mid[0]), float(mid[1]), now_s)

    def _flash(self, x: float, y: float, now_s: float) -> None:
        """The clink: a burst of light where the two glasses meet."""
        mb = MeshBuilder()
        mb.sphere((0, 0, 0), 0.06, (1.0, 0.95, 0.85, 1.0), rings=6, segments=10)
        mb.sphere((0, 0, 0), 0.14, (1.0, 0.8, 0.5, 0.5), rings=6, segments=10)
        mb.sphere((0, 0, 0), 0.3, (1.0, 0.45, 0.75, 0.18), rings=6, segments=10)
        node = self.effects.attachNewNode(mb.node("clink"))
        node.setPos(x, y, 2.05)
        additive(node)
        self._flashes.append((now_s, node))

    def say(self, avatar_id: int, text: str, now_s: float) -> None:
        slot = self.slot_of.get(avatar_id)
        fig = None if slot is None else self.figures[slot]
        if fig is not None and slot is not None:
            fig.say(text, now_s)
            self._busy.add(slot)

    # ---------------------------------------------------------------------------- per frame

    def update(
        self,
        ids: np.ndarray,
        pos_m: np.ndarray,
        yaw_rad: np.ndarray,
        now_s: float,
        dt_s: float,
    ) -> None:
        """Place every avatar given by arrays (remote ones, plus the local one appended).

        Avatars not yet known get a figure; known avatars missing from `ids` stay where they
        were (interest management may skip far ones for a while).
        """
        dt_s = max(dt_s, 1e-4)
        n = len(ids)
        if n:
            slot_of = self.slot_of
            missing = [int(i) for i in ids.tolist() if int(i) not in slot_of]
            if missing and self._gone:
                now = time.monotonic()
                self._gone = {k: t for k, t in self._gone.items() if t > now}
                keep = np.array([int(i) not in self._gone for i in ids.tolist()], bool)
                ids, pos_m, yaw_rad = ids[keep], pos_m[keep], yaw_rad[keep]
                missing = [i for i in missing if i not in self._gone]
                n = len(ids)
            for avatar_id in missing:
                self.ensure(avatar_id)
            slots = np.fromiter((slot_of[int(i)] for i in ids.tolist()), dtype=np.int64, count=n)
            first = ~self._seen[slots]
            self._prev[slots] = np.where(first[:, None], pos_m, self._pos[slots])
            self._pos[slots] = pos_m
            self._yaw[slots] = yaw_rad
            self._seen[slots] = True
            step = np.hypot(*(self._pos[slots] - self._prev[slots]).T) / dt_s
            # Smooth the speed: snapshots arrive at 20 Hz, frames at 60.
            a = min(1.0, dt_s * 8.0)
            self._speed[slots] += (np.minimum(step, 8.0) - self._speed[slots]) * a

        active = np.flatnonzero(self._seen)
        if len(active) == 0:
            self._update_fades(dt_s)
            return
        speed = self._speed[active]
        moving = np.clip(speed / 2.0, 0.0, 1.0)
        # Walk cycle: two bobs per stride; stride rate grows with speed.
        self._phase[active] += dt_s * (2.0 + 3.2 * np.minimum(speed, 6.0))
        phase = self._phase[active]
        tipsy = self._tipsy[active]
        bob = 0.045 * np.abs(np.sin(phase)) * moving
        breathe = 0.008 * np.sin(now_s * 1.7 + active * 0.9) * (1 - moving)
        sway = 3.5 * np.sin(phase) * moving + tipsy * 9.0 * np.sin(now_s * 1.3 + active * 1.1)
        lean = tipsy * 4.0 * np.sin(now_s * 0.9 + active * 0.5) + 4.0 * moving
        x = self._pos[active, 0].tolist()
        y = self._pos[active, 1].tolist()
        z = (bob + breathe).tolist()
        h = np.degrees(self._yaw[active]).tolist()
        p = (-lean).tolist()
        r = sway.tolist()
        figs = self.figures
        for k, slot in enumerate(active.tolist()):
            fig = figs[slot]
            if fig is not None:
                fig.root.setPosHpr(x[k], y[k], z[k], h[k], p[k], r[k])
        # Legs swing only for those walking (or coming to rest) near enough for it to show:
        # standing or far-off crowds cost nothing.
        cam = self.base.camera.getPos(self.base.render)
        near = np.hypot(self._pos[active, 0] - cam.x, self._pos[active, 1] - cam.y) < LEG_LOD_M
        stride = STRIDE_DEG * np.sin(phase) * moving * near
        swinging = (np.abs(stride) > 0.2) | (np.abs(self._stride[active]) > 0.2)
        self._stride[active] = np.where(np.abs(stride) > 0.2, stride, 0.0)
        busy = self._busy
        for slot, angle in zip(
            active[swinging].tolist(), self._stride[active][swinging].tolist(), strict=True
        ):
            fig = figs[slot]
            if fig is not None:
                fig.leg_r.setP(angle)
                fig.leg_l.setP(-angle)
                if slot not in busy:  # an emote owns the arms while it plays
                    fig.arm_r.setP(-0.7 * angle)
                    fig.arm_l.setP(0.7 * angle)

        for slot in list(self._busy):
            fig = figs[slot]
            if fig is None:
                self._busy.discard(slot)
                continue
            fig.animate(now_s)
            if not fig.busy:
                self._busy.discard(slot)
        self._update_fades(dt_s)
        for rig in self._faces.values():
            rig.update(dt_s)
        self.clinks = [c for c in self.clinks if now_s - c[0] < 1.0]
        self._update_flashes(now_s)

    def _update_flashes(self, now_s: float) -> None:
        keep = []
        for t0, node in self._flashes:
            age = now_s - t0
            if age > 0.6:
                node.removeNode()
                continue
            node.setScale(0.6 + 2.5 * age)
            node.setAlphaScale(max(0.0, 1.0 - age / 0.6))
            keep.append((t0, node))
        self._flashes = keep

    def _update_fades(self, dt_s: float) -> None:
        for slot in list(self._fading):
            fig = self.figures[slot]
            if fig is None:
                self._fading.discard(slot)
                continue
            if not self._seen[slot]:
                continue  # fade in only once it has a place
            fig.root.show()
            fig.label.show()
            self._fade[slot] = min(
                1.0, max(0.0, self._fade[slot] + self._fade_dir[slot] * dt_s / FADE_S)
            )
            fig.root.setAlphaScale(float(self._fade[slot]))
            fig.label.setAlphaScale(float(self._fade[slot]))
            if self._fade_dir[slot] > 0 and self._fade[slot] >= 1.0:
                self._fade_dir[slot] = 0
                fig.root.clearTransparency()
                fig.root.clearColorScale()
                fig.label.clearColorScale()
                self._fading.discard(slot)
            elif self._fade_dir[slot] < 0 and self._fade[slot] <= 0.0:
                fig.remove()
                self.figures[slot] = None
                del self.slot_of[fig.avatar_id]
                self._seen[slot] = False
                self._fading.discard(slot)
                self._busy.discard(slot)

    def __len__(self) -> int:
        return len(self.slot_of)
