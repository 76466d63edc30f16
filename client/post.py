"""The neon look's post-processing chain: bloom, haze, tone mapping, LUT grading, film, glitch.

Usage (the client's app wires it once the world is built)::

    post = PostChain(base, look="orange_haze", quality="medium")
    post.set_look("teal_neon")        # a name in assets/luts, or a path to any .cube
    post.set_quality("low")           # rebuilds the buffers
    post.set_glitch(0.6)              # screen-wide, e.g. while the connection is poor
    post.set_haze(density=0.05)
    post.cleanup()                    # back to plain rendering

The scene renders into a float (HDR) colour buffer with a depth texture (FilterManager; the
Cg-based CommonFilters fails on Mesa, so every pass here is our own GLSL in shaders/):

    scene ─► bright (½) ─► blur H/V (½) ─► blur H/V (¼) ─► blur H/V (⅛)
      │                       │                │                 │
      └──── depth ────────────┴────────────────┴─────────────────┴─► composite ─► window

Quality presets choose the render scale, the number of bloom levels and blur repeats. Options
are also prc variables (`neonbar-look`, `neonbar-post-quality`, `neonbar-shader-hot-reload`),
so `loadPrcFileData("", "neonbar-post-quality low")` works without touching code. With hot
reload on, editing a file in shaders/ takes effect within half a second.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from direct.filter.FilterManager import FilterManager
from direct.showbase.ShowBase import ShowBase
from direct.task.Task import Task
from panda3d.core import (
    ConfigVariableBool,
    ConfigVariableString,
    FrameBufferProperties,
    NodePath,
    SamplerState,
    Shader,
    Texture,
    loadPrcFileData,
)

from neonbar.errors import UserError
from neonbar.lut import Lut3D, read_cube

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SHADER_DIR = ROOT / "shaders"
LUT_DIR = ROOT / "assets" / "luts"
LOOKS = ("orange_haze", "teal_neon", "mood_for_love", "neutral")
TASK_SORT = 49  # after the app's tasks (sort 0) have moved things, before igLoop (50) draws

PRC_LOOK = ConfigVariableString("neonbar-look", "orange_haze", "colour grade: a LUT name or path")
PRC_QUALITY = ConfigVariableString(
    "neonbar-post-quality", "medium", "low, medium, high, or auto (low on a software renderer)"
)
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software")
PRC_HOT_RELOAD = ConfigVariableBool(
    "neonbar-shader-hot-reload", False, "re-read shaders/ when a file changes (development)"
)


@dataclass(frozen=True)
class Quality:
    """What a preset costs: render scale, bloom pyramid depth, blur repeats per level."""

    scale: float
    bloom_levels: int
    blur_passes: int


QUALITY = {
    "low": Quality(scale=0.5, bloom_levels=1, blur_passes=1),
    "medium": Quality(scale=0.75, bloom_levels=2, blur_passes=1),
    "high": Quality(scale=1.0, bloom_levels=3, blur_passes=2),
}
BLOOM_WEIGHTS = {1: (1.0, 0.0, 0.0), 2: (0.6, 0.55, 0.0), 3: (0.5, 0.45, 0.4)}


@dataclass
class PostSettings:
    """The knobs of the composite pass (units in names; colours are linear RGB)."""

    scene_gamma: float = 1.0  # 1: the scene writes linear HDR; 2.2: display-referred colours
    exposure: float = 1.0
    bloom_strength: float = 0.9
    bloom_threshold: float = 1.0
    bloom_knee: float = 0.5
    haze_color: tuple[float, float, float] = (0.045, 0.018, 0.007)
    haze_density_per_m: float = 0.03
    haze_start_m: float = 2.0
    haze_glow: float = 0.6
    lut_mix: float = 1.0
    grain: float = 0.035
    vignette: float = 0.45
    glitch: float = 0.0


def display_scene_settings() -> PostSettings:
    """Settings for a scene whose colours are display values (fixed-function, baked light).

    Such a scene never exceeds 1.0, so it is decoded to linear first and bloom starts lower.
    """
    return PostSettings(scene_gamma=2.2, exposure=1.5, bloom_threshold=0.45, bloom_knee=0.3)


def resolve_look(name_or_path: str | Path) -> Path:
    """A look name ('teal_neon') or a .cube path -> the file; unknown names raise UserError."""
    text = str(name_or_path)
    if text in LOOKS or (LUT_DIR / f"{text}.cube").is_file():
        return LUT_DIR / f"{text}.cube"
    path = Path(text)
    if path.suffix.lower() == ".cube" or path.exists():
        return path
    shipped = ", ".join(sorted(p.stem for p in LUT_DIR.glob("*.cube")))
    raise UserError(f"unknown look {text!r}; use one of {shipped} or a path to a .cube file")


def lut_texture(lut: Lut3D) -> Texture:
    """A 3D texture holding the LUT (x = red fastest, as in the file), linear filtered."""
    n = lut.size
    tex = Texture(f"lut:{lut.title or 'look'}")
    tex.setup3dTexture(n, n, n, Texture.T_float, Texture.F_rgb32)
    # Panda keeps RAM images in BGR order.
    texels = np.ascontiguousarray(lut.file_order()[:, ::-1], dtype=np.float32)
    tex.setRamImage(texels.tobytes())
    for setter in (tex.setWrapU, tex.setWrapV, tex.setWrapW):
        setter(SamplerState.WM_clamp)
    tex.setMinfilter(SamplerState.FT_linear)
    tex.setMagfilter(SamplerState.FT_linear)
    return tex


def load_shader(
    vert: str,
    frag: str,
    defines: dict[str, Any] | None = None,
    shader_dir: Path = SHADER_DIR,
) -> Shader:
    """Read two GLSL files (fresh, never cached), inject #defines after the #version line."""
    sources = []
    for name in (vert, frag):
        text = (shader_dir / name).read_text(encoding="utf-8")
        if defines:
            head, _, rest = text.partition("\n")
            lines = "".join(f"#define {k} {v}\n" for k, v in defines.items())
            text = f"{head}\n{lines}{rest}"
        sources.append(text)
    return Shader.make(Shader.SL_GLSL, vertex=sources[0], fragment=sources[1])


_NPOT_PAGE: list[Any] = []


def _allow_npot_textures() -> None:
    """Render textures must not be padded to powers of two: the passes sample them with plain
    0..1 coordinates. Every GL 3.3 driver handles any size. Set once per process."""
    if not _NPOT_PAGE:
        _NPOT_PAGE.append(loadPrcFileData("neonbar-post", "textures-power-2 none"))


def _float_props() -> FrameBufferProperties:
    props = FrameBufferProperties()
    props.setFloatColor(True)
    props.setRgbaBits(16, 16, 16, 16)
    return props


def _render_texture(name: str) -> Texture:
    tex = Texture(name)
    tex.setWrapU(SamplerState.WM_clamp)
    tex.setWrapV(SamplerState.WM_clamp)
    tex.setMinfilter(SamplerState.FT_linear)
    tex.setMagfilter(SamplerState.FT_linear)
    return tex


@dataclass
class PostChain:
    """Post-processing for one ShowBase window; fields default to that ShowBase's."""

    base: ShowBase
    look: str | Path | None = None
    quality: str | None = None
    hot_reload: bool | None = None
    settings: PostSettings = field(default_factory=PostSettings)
    shader_dir: Path = SHADER_DIR
    win: Any = None
    cam: NodePath | None = None
    task_mgr: Any = None
    lut: Lut3D = field(init=False)

    def __post_init__(self) -> None:
        self.win = self.win or self.base.win
        self.cam = self.cam or self.base.cam
        self.task_mgr = self.task_mgr or self.base.taskMgr
        self.quality = self._resolve_quality(self.quality or PRC_QUALITY.getValue())
        self.hot_reload = PRC_HOT_RELOAD.getValue() if self.hot_reload is None else self.hot_reload
        self._manager: FilterManager | None = None
        self._quads: list[tuple[NodePath, str, str, dict[str, Any]]] = []
        self._composite: NodePath | None = None
        self._mtimes: dict[Path, float] = {}
        self._next_check_s = 0.0
        self._task_name = f"neonbar-post-{id(self)}"
        self.set_look(self.look or PRC_LOOK.getValue())
        self._build()
        self.task_mgr.add(self._update, self._task_name, sort=TASK_SORT)

    # ----------------------------------------------------------------------------- public

    def set_look(self, name_or_path: str | Path) -> Path:
        """Grade with a shipped look ('mood_for_love') or any .cube file; returns its path."""
        path = resolve_look(name_or_path)
        self.lut = read_cube(path)
        self.look = path.stem
        self._lut_tex = lut_texture(self.lut)
        if self._composite is not None:
            self._apply_lut_inputs(self._composite)
        return path

    def set_quality(self, quality: str) -> None:
        """'low' | 'medium' | 'high' | 'auto': rebuilds the buffers (fine on a key press)."""
        quality = self._resolve_quality(quality)
        if quality != self.quality:
            self.quality = quality
            self._teardown()
            self._build()

    def set_glitch(self, strength: float) -> None:
        """Screen-wide glitch, 0 (off) .. 1 (the stream is falling apart)."""
        self.settings.glitch = min(max(float(strength), 0.0), 1.0)
        self._set_inputs(u_glitch=self.settings.glitch)

    def set_haze(
        self,
        color: tuple[float, float, float] | None = None,
        density_per_m: float | None = None,
        start_m: float | None = None,
        glow: float | None = None,
    ) -> None:
        """Change the dust: colour (linear RGB), density per metre, clear distance, neon glow."""
        s = self.settings
        if color is not None:
            s.haze_color = (float(color[0]), float(color[1]), float(color[2]))
        if density_per_m is not None:
            s.haze_density_per_m = max(0.0, float(density_per_m))
        if start_m is not None:
            s.haze_start_m = max(0.0, float(start_m))
        if glow is not None:
            s.haze_glow = max(0.0, float(glow))
        self._apply_settings()

    def apply_settings(self) -> None:
        """Push `settings` to the shaders after changing fields directly."""
        self._apply_settings()

    def cleanup(self) -> None:
        """Remove the chain and its task; the window renders the scene directly again."""
        self.task_mgr.remove(self._task_name)
        self._teardown()

    def _resolve_quality(self, quality: str) -> str:
        """'auto' picks low on a CPU rasteriser (Mesa llvmpipe), where every pixel costs."""
        if quality == "auto":
            renderer = self.win.getGsg().getDriverRenderer().lower()
            return "low" if any(name in renderer for name in SOFTWARE_RENDERERS) else "medium"
        if quality not in QUALITY:
            raise UserError(f"quality must be low, medium, high or auto, not {quality!r}")
        return quality

    # ----------------------------------------------------------------------------- building

    def _build(self) -> None:
        _allow_npot_textures()
        q = QUALITY[self.quality or "medium"]
        width, height = self.win.getXSize(), self.win.getYSize()
        self._built_size = (width, height)
        force = (max(16, round(width * q.scale)), max(16, round(height * q.scale)))
        if q.scale == 1.0:
            force = (0, 0)
        manager = FilterManager(self.win, self.cam, *force)
        self._manager = manager
        self._scene_tex = _render_texture("scene-hdr")
        self._depth_tex = _render_texture("scene-depth")
        # Depth is read one texel per pixel; filtering it costs a lot on CPU rasterisers.
        self._depth_tex.setMinfilter(SamplerState.FT_nearest)
        self._depth_tex.setMagfilter(SamplerState.FT_nearest)
        props = _float_props()
        props.setDepthBits(24)
        quad = manager.renderSceneInto(
            colortex=self._scene_tex, depthtex=self._depth_tex, fbprops=props
        )
        if quad is None:
            raise RuntimeError("could not create the HDR scene buffer")

        bright_tex = _render_texture("bloom-bright")
        bright = manager.renderQuadInto(
            "bloom-bright", div=2, colortex=bright_tex, fbprops=_float_props()
        )
        self._add_pass(bright, "post.vert", "bright.frag", {})
        bright.setShaderInput("u_scene", self._scene_tex)

        levels: list[Texture] = []
        src = bright_tex
        for level in range(q.bloom_levels):
            div = 2 ** (level + 1)
            for repeat in range(q.blur_passes):
                for axis, direction in (("h", (1.0, 0.0)), ("v", (0.0, 1.0))):
                    name = f"bloom-{level}-{repeat}-{axis}"
                    out = _render_texture(name)
                    card = manager.renderQuadInto(
                        name, div=div, colortex=out, fbprops=props_no_depth()
                    )
                    self._add_pass(card, "post.vert", "blur.frag", {})
                    card.setShaderInput("u_src", src)
                    card.setShaderInput("u_direction", direction)
                    card.setShaderInput("u_spread", 1.0 + repeat * 0.75)
                    src = out
            levels.append(src)
        black = _render_texture("black")
        black.setup2dTexture(1, 1, Texture.T_unsigned_byte, Texture.F_rgb)
        black.setRamImage(b"\x00\x00\x00")
        while len(levels) < 3:
            levels.append(black)
        self._bloom_weights = BLOOM_WEIGHTS[q.bloom_levels]

        if q.scale < 1.0:
            # Composite at the render scale too (its cost is per pixel), then upscale.
            composite_tex = _render_texture("composite")
            composite = manager.renderQuadInto("composite", colortex=composite_tex)
            self._add_pass(quad, "post.vert", "present.frag", {})
            quad.setShaderInput("u_src", composite_tex)
        else:
            composite = quad
        self._add_pass(composite, "post.vert", "composite.frag", {"BLOOM_LEVELS": q.bloom_levels})
        composite.setShaderInput("u_scene", self._scene_tex)
        composite.setShaderInput("u_depth", self._depth_tex)
        for k, tex in enumerate(levels):
            composite.setShaderInput(f"u_bloom{k}", tex)
        quad = composite
        self._composite = quad
        self._apply_lut_inputs(quad)
        self._apply_settings()
        self._update_lens()

    def _add_pass(self, card: NodePath, vert: str, frag: str, defines: dict[str, Any]) -> None:
        card.setShader(load_shader(vert, frag, defines, self.shader_dir))
        self._quads.append((card, vert, frag, defines))
        for name in (vert, frag):
            path = self.shader_dir / name
            self._mtimes[path] = path.stat().st_mtime

    def _teardown(self) -> None:
        if self._manager is not None:
            self._manager.cleanup()
            self._manager = None
        self._quads.clear()
        self._composite = None

    def _apply_lut_inputs(self, quad: NodePath) -> None:
        quad.setShaderInput("u_lut", self._lut_tex)
        quad.setShaderInput("u_lut_size", float(self.lut.size))
        quad.setShaderInput("u_lut_domain_min", tuple(self.lut.domain_min))
        quad.setShaderInput("u_lut_domain_max", tuple(self.lut.domain_max))

    def _set_inputs(self, **inputs: Any) -> None:
        if self._composite is not None:
            for name, value in inputs.items():
                self._composite.setShaderInput(name, value)

    def _apply_settings(self) -> None:
        s = self.settings
        self._set_inputs(
            u_bloom_weights=self._bloom_weights,
            u_bloom_strength=s.bloom_strength,
            u_exposure=s.exposure,
            u_scene_gamma=s.scene_gamma,
            u_haze_color=s.haze_color,
            u_haze_density=s.haze_density_per_m,
            u_haze_start_m=s.haze_start_m,
            u_haze_glow=s.haze_glow,
            u_lut_mix=s.lut_mix,
            u_grain=s.grain,
            u_vignette=s.vignette,
            u_glitch=s.glitch,
            u_time=0.0,
        )
        for card, _vert, frag, _defines in self._quads:
            if frag == "bright.frag":
                card.setShaderInput("u_threshold", s.bloom_threshold)
                card.setShaderInput("u_knee", s.bloom_knee)

    # ----------------------------------------------------------------------------- per frame

    def _update_lens(self) -> None:
        lens = self.cam.node().getLens() if self.cam is not None else None
        if lens is not None:
            self._set_inputs(u_near_far=(lens.getNear(), lens.getFar()))

    def _update(self, task: Task) -> int:
        size = (self.win.getXSize(), self.win.getYSize())
        if size != self._built_size and QUALITY[self.quality or "medium"].scale < 1.0:
            # FilterManager resizes its buffers itself only at full scale; a scaled chain was
            # sized from the old window, so rebuild it for the new one.
            self._teardown()
            self._build()
        now = self.base.clock.getFrameTime()
        self._set_inputs(u_time=now % 3600.0)
        self._update_lens()
        if self.hot_reload and now >= self._next_check_s:
            self._next_check_s = now + 0.5
            self.reload_changed_shaders()
        return Task.cont

    def reload_changed_shaders(self) -> list[str]:
        """Re-read shader files whose mtime changed; returns their names (dev hot reload)."""
        changed = []
        for path, seen in list(self._mtimes.items()):
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if not math.isclose(mtime, seen):
                self._mtimes[path] = mtime
                changed.append(path.name)
        if changed:
            for card, vert, frag, defines in self._quads:
                if vert in changed or frag in changed:
                    card.setShader(load_shader(vert, frag, defines, self.shader_dir))
        # The scene shaders of client.neon, if the app uses them (imported lazily: neon
        # imports this module).
        neon = sys.modules.get("client.neon")
        if neon is not None and self.shader_dir == SHADER_DIR:
            changed += neon.reload_scene_shaders()
        if changed:
            log.info("reloaded shaders: %s", ", ".join(changed))
        return changed


def props_no_depth() -> FrameBufferProperties:
    """Blur buffers: float colour, no depth buffer needed."""
    props = _float_props()
    props.setDepthBits(0)
    return props
