"""The neon look on Mesa offscreen: shaders compile, bloom spreads, the LUT grades, haze thickens.

Each test gets its own offscreen ShowBase (one per process at a time) and reads pixels back
from the window after two frames.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("panda3d")

from panda3d.core import (
    CardMaker,
    LineStream,
    NodePath,
    Notify,
    Shader,
    loadPrcFileData,
    unloadPrcFile,
)

from neonbar import lut as L
from neonbar.layout import load_layout

pytestmark = pytest.mark.render

WIDTH, HEIGHT = 320, 180
SHADERS = Path(__file__).resolve().parents[2] / "shaders"
LUTS = Path(__file__).resolve().parents[2] / "assets" / "luts"
RAMP_SHADER = """#version 330
uniform float u_max;
in vec2 v_uv;
out vec4 o_color;
void main() { o_color = vec4(vec3(v_uv.x * u_max), 1.0); }
"""
BLACK_SHADER = """#version 330
in vec2 v_uv;
out vec4 o_color;
void main() { o_color = vec4(0.0, 0.0, 0.0, 1.0); }
"""


class Capture:
    """Panda's notify output, so a shader compile or GL error fails the test."""

    def __init__(self) -> None:
        self.stream = LineStream()
        Notify.ptr().setOstreamPtr(self.stream, False)
        self.lines: list[str] = []

    def errors(self) -> list[str]:
        while self.stream.isTextAvailable():
            self.lines.append(self.stream.getLine())
        return [line for line in self.lines if "error" in line and "gsg" in line]


@pytest.fixture
def base() -> Iterator[object]:
    page = loadPrcFileData(
        "neonbar-test",
        f"load-display p3headlessgl\nwindow-type offscreen\naudio-library-name null\n"
        f"win-size {WIDTH} {HEIGHT}\ngl-version 3 3\ngl-check-errors #t\nsync-video #f\n",
    )
    from direct.showbase.ShowBase import ShowBase

    capture = Capture()
    sb = ShowBase()
    sb.capture = capture  # type: ignore[attr-defined]
    sb.setBackgroundColor(0, 0, 0, 1)
    sb.camLens.setNearFar(0.5, 200.0)
    yield sb
    sb.destroy()
    unloadPrcFile(page)


def frame(sb: object) -> np.ndarray:
    """Render twice (buffers settle) and return the window as float RGB, row 0 at the top."""
    for _ in range(2):
        sb.graphicsEngine.renderFrame()  # type: ignore[attr-defined]
    tex = sb.win.getScreenshot()  # type: ignore[attr-defined]
    data = np.frombuffer(bytes(tex.getRamImageAs("RGB")), np.uint8)
    img = data.reshape(tex.getYSize(), tex.getXSize(), 3)[::-1]
    return img.astype(np.float32) / 255.0


def card(parent: NodePath, name: str, frame_xz: tuple[float, float, float, float]) -> NodePath:
    cm = CardMaker(name)
    cm.setFrame(*frame_xz)
    return parent.attachNewNode(cm.generate())


def plain_settings(**overrides: float) -> object:
    """Post settings with every effect off, so a test sees only the one it turns on."""
    from client.post import PostSettings

    s = PostSettings(
        bloom_strength=0.0,
        haze_density_per_m=0.0,
        haze_glow=0.0,
        grain=0.0,
        vignette=0.0,
        glitch=0.0,
    )
    for key, value in overrides.items():
        setattr(s, key, value)
    return s


def fullscreen_card(sb: object, shader_src: str, depth_m: float = 10.0) -> NodePath:
    """A card exactly filling the view at depth_m (default 60° lens) with an inline shader."""
    lens = sb.camLens  # type: ignore[attr-defined]
    lens.setFov(60, 60 * HEIGHT / WIDTH)
    hw = depth_m * np.tan(np.radians(lens.getFov()[0] / 2))
    hh = depth_m * np.tan(np.radians(lens.getFov()[1] / 2))
    node = card(sb.render, "ramp", (-hw * 1.02, hw * 1.02, -hh * 1.02, hh * 1.02))  # type: ignore[attr-defined]
    node.setY(depth_m)
    vert = (SHADERS / "post.vert").read_text()
    node.setShader(Shader.make(Shader.SL_GLSL, vertex=vert, fragment=shader_src))
    return node


# ------------------------------------------------------------------------------ compile


SCENE_PAIRS = [
    ("scene.vert", "neon.frag"),
    ("scene.vert", "lit.frag"),
    ("scene.vert", "wet_floor.frag"),
    ("glitch.vert", "glitch.frag"),
]


def test_every_scene_shader_compiles_and_links(base: object) -> None:
    from client import neon

    sb = base
    lights = neon.NeonLights.from_layout(load_layout())
    shaders = []
    for k, (vert, frag) in enumerate(SCENE_PAIRS):
        node = card(sb.render, frag, (-0.4, 0.4, -0.4, 0.4))  # type: ignore[attr-defined]
        node.setPos(-1.5 + k, 6, 0)
        shader = Shader.load(
            Shader.SL_GLSL, vertex=str(SHADERS / vert), fragment=str(SHADERS / frag)
        )
        node.setShader(shader)
        lights.apply_to(node)
        for name, value in {
            "u_color": (1.0, 0.3, 0.6), "u_intensity": 4.0, "u_flicker": 0.3, "u_buzz_hz": 50.0,
            "u_phase": 0.0, "u_gloss": 20.0, "u_specular": 0.3, "u_base_color": (0.05,) * 3,
            "u_wetness": 0.7, "u_puddle_scale": 0.35, "u_glitch": 0.5, "u_scene_gamma": 2.2,
        }.items():  # fmt: skip
            node.setShaderInput(name, value)
        shaders.append(shader)
    img = frame(sb)
    for shader in shaders:
        assert not shader.getErrorFlag()
    assert sb.capture.errors() == []  # type: ignore[attr-defined]
    assert img.max() > 0.1  # something was drawn


@pytest.mark.parametrize("quality", ["low", "medium", "high"])
def test_post_chain_compiles_at_every_quality(base: object, quality: str) -> None:
    from client.post import PostChain

    sb = base
    fullscreen_card(sb, RAMP_SHADER).setShaderInput("u_max", 4.0)
    post = PostChain(sb, look="teal_neon", quality=quality)
    img = frame(sb)
    for node, *_ in post._quads:
        attrib = node.getAttrib(__import__("panda3d.core").core.ShaderAttrib)
        assert not attrib.getShader().getErrorFlag()
    assert sb.capture.errors() == []  # type: ignore[attr-defined]
    assert img.shape == (HEIGHT, WIDTH, 3) and img.max() > 0.5
    post.cleanup()
    frame(sb)  # the window renders the scene directly again without errors
    assert sb.capture.errors() == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ pixels


def tube_scene(sb: object) -> int:
    """A thin, very bright horizontal neon tube across the middle of a black frame."""
    from client.neon import apply_neon

    sb.camLens.setFov(60, 60 * HEIGHT / WIDTH)  # type: ignore[attr-defined]
    tube = card(sb.render, "tube", (-3, 3, -0.03, 0.03))  # type: ignore[attr-defined]
    tube.setY(8)
    apply_neon(tube, (1.0, 0.25, 0.7), intensity=8.0, flicker=0.0)
    return HEIGHT // 2


def test_bloom_spreads_light_around_a_bright_tube(base: object) -> None:
    from client.post import PostChain

    sb = base
    row = tube_scene(sb)
    # "high" renders at full resolution, so the thin tube stays one crisp line without bloom.
    post = PostChain(sb, look="neutral", quality="high", settings=plain_settings())
    without = frame(sb)
    post.settings.bloom_strength = 1.0
    post.apply_settings()
    with_bloom = frame(sb)
    cols = slice(WIDTH // 3, 2 * WIDTH // 3)
    # The tube itself is bright either way.
    assert without[row - 1 : row + 2, cols].max() > 0.8
    for offset in (6, 10, 16):
        near_without = without[row - offset, cols].mean()
        near_with = with_bloom[row - offset, cols].mean()
        assert near_with > near_without + 0.03, offset
    # Glow is in the tube's colour: more red than green.
    halo = with_bloom[row - 10, cols].mean(axis=0)
    assert halo[0] > halo[1]
    # And it falls off with distance.
    assert with_bloom[row - 6, cols].mean() > with_bloom[row - 30, cols].mean()


def test_grading_matches_the_cpu_lut(base: object) -> None:
    """A grey ramp through the GPU chain equals ACES + sRGB + the CPU LUT on the same values."""
    from client.post import PostChain

    sb = base
    top = 6.0
    fullscreen_card(sb, RAMP_SHADER).setShaderInput("u_max", top)
    post = PostChain(sb, look="orange_haze", quality="medium", settings=plain_settings())
    img = frame(sb)
    assert sb.capture.errors() == []  # type: ignore[attr-defined]
    row = img[HEIGHT // 2]
    x = (np.arange(WIDTH) + 0.5) / WIDTH
    # Where the card's uv lands on each pixel column (it overhangs the view by 2 %).
    linear = ((x - 0.5) / 1.02 + 0.5) * top
    a = linear * post.settings.exposure
    toned = np.clip((a * (2.51 * a + 0.03)) / (a * (2.43 * a + 0.59) + 0.14), 0, 1)
    encoded = np.where(toned <= 0.0031308, toned * 12.92, 1.055 * toned ** (1 / 2.4) - 0.055)
    grey = np.repeat(encoded[:, None], 3, axis=1).astype(np.float32)
    expected = L.apply(L.read_cube(LUTS / "orange_haze.cube"), grey)
    error = np.abs(row - expected)
    assert error.max() < 0.025, error.max()
    # The look really changed the colours: grey came out amber.
    mid = row[WIDTH // 2]
    assert mid[0] > mid[1] > mid[2]
    # Switching looks at run time regrades the same frame.
    post.set_look("teal_neon")
    teal = frame(sb)[HEIGHT // 2]
    expected_teal = L.apply(L.read_cube(LUTS / "teal_neon.cube"), grey)
    assert np.abs(teal - expected_teal).max() < 0.025


def test_haze_grows_with_depth(base: object) -> None:
    from client.post import PostChain

    sb = base
    sb.camLens.setFov(60, 60 * HEIGHT / WIDTH)  # type: ignore[attr-defined]
    vert = (SHADERS / "post.vert").read_text()
    black = Shader.make(Shader.SL_GLSL, vertex=vert, fragment=BLACK_SHADER)
    # Three black walls side by side at 3, 12 and 40 m, each covering a third of the view.
    columns = []
    for k, depth in enumerate((3.0, 12.0, 40.0)):
        half = depth * np.tan(np.radians(30))
        third = 2 * half / 3
        x0 = -half + k * third
        node = card(sb.render, f"wall{depth}", (x0, x0 + third, -half, half))  # type: ignore[attr-defined]
        node.setY(depth)
        node.setShader(black)
        columns.append(int((k + 0.5) * WIDTH / 3))
    settings = plain_settings(haze_density_per_m=0.05, haze_start_m=1.0)
    post = PostChain(sb, look="neutral", quality="low", settings=settings)
    img = frame(sb)
    levels = [img[HEIGHT // 2, c].mean() for c in columns]
    assert levels[0] < levels[1] < levels[2], levels
    assert levels[2] - levels[0] > 0.08
    # The dust is orange: red over green over blue.
    far = img[HEIGHT // 2, columns[2]]
    assert far[0] > far[1] > far[2]
    # No haze, no difference.
    post.set_haze(density_per_m=0.0)
    clear = frame(sb)
    assert max(clear[HEIGHT // 2, c].mean() for c in columns) < 0.02


def test_glitch_tears_the_frame(base: object) -> None:
    from client.post import PostChain

    sb = base
    fullscreen_card(sb, RAMP_SHADER).setShaderInput("u_max", 2.0)
    post = PostChain(sb, look="neutral", quality="low", settings=plain_settings())
    calm = frame(sb)
    post.set_glitch(1.0)
    assert post.settings.glitch == 1.0
    torn = frame(sb)
    # Scanlines darken every other row; torn bands and the RGB split move colours sideways.
    assert np.abs(torn - calm).mean() > 0.02
    post.set_glitch(0.0)
    assert np.abs(frame(sb) - calm).max() < 0.02


def test_hot_reload_picks_up_an_edited_shader(base: object, tmp_path: Path) -> None:
    from client.post import PostChain

    sb = base
    shader_dir = tmp_path / "shaders"
    shutil.copytree(SHADERS, shader_dir)
    fullscreen_card(sb, RAMP_SHADER).setShaderInput("u_max", 1.0)
    post = PostChain(sb, look="neutral", hot_reload=True, shader_dir=shader_dir)
    before = frame(sb)
    composite = shader_dir / "composite.frag"
    text = composite.read_text()
    marker = "    o_color = vec4(clamp(graded, 0.0, 1.0), 1.0);"
    assert marker in text
    composite.write_text(text.replace(marker, "    o_color = vec4(1.0, 0.0, 0.0, 1.0);"))
    stat = composite.stat()
    os.utime(composite, (stat.st_atime, stat.st_mtime + 5))
    assert post.reload_changed_shaders() == ["composite.frag"]
    after = frame(sb)
    assert np.allclose(after[HEIGHT // 2, WIDTH // 2], (1.0, 0.0, 0.0), atol=0.01)
    assert not np.allclose(before[HEIGHT // 2, WIDTH // 2], (1.0, 0.0, 0.0), atol=0.01)


def test_unknown_look_and_quality_are_user_errors(base: object) -> None:
    from client.post import PostChain
    from neonbar.errors import UserError

    post = PostChain(base, look="neutral", quality="low")
    with pytest.raises(UserError, match="unknown look"):
        post.set_look("film_noir_2")
    with pytest.raises(UserError, match="quality"):
        post.set_quality("ultra")
    post.set_look(LUTS / "mood_for_love.cube")
    assert post.look == "mood_for_love"


def test_neon_lights_from_layout() -> None:
    from client.neon import MAX_LIGHTS, NeonLights, flicker_level, srgb_to_linear

    layout = load_layout()
    lights = NeonLights.from_layout(layout)
    assert len(layout.signs) <= len(lights.positions) <= MAX_LIGHTS
    assert np.all(lights.colors >= 0) and lights.colors.max() > 1.0
    # Inside the room, below the ceiling.
    assert np.all(np.abs(lights.positions[:, 0]) <= layout.half_x)
    assert np.all(np.abs(lights.positions[:, 1]) <= layout.half_y)
    assert srgb_to_linear((1.0, 0.5, 0.0)) == pytest.approx((1.0, 0.214, 0.0), abs=1e-3)
    assert flicker_level(3.0, 0.0, 50.0) == pytest.approx(1.0)
    dips = [flicker_level(t / 12.0, 1.0, 50.0) for t in range(240)]
    assert min(dips) < 0.5 < max(dips)


def test_hot_reload_of_scene_shaders(
    base: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from client import neon

    shader_dir = tmp_path / "shaders"
    shutil.copytree(SHADERS, shader_dir)
    monkeypatch.setattr(neon, "SHADER_DIR", shader_dir)
    page = loadPrcFileData("neonbar-test-hot", "neonbar-shader-hot-reload #t")
    neon._shader.cache_clear()
    try:
        sb = base
        sb.camLens.setFov(60, 60 * HEIGHT / WIDTH)  # type: ignore[attr-defined]
        sign = card(sb.render, "sign", (-3, 3, -2, 2))  # type: ignore[attr-defined]
        sign.setY(6)
        neon.apply_neon(sign, (1.0, 0.2, 0.6), intensity=1.0)
        assert frame(sb)[HEIGHT // 2, WIDTH // 2, 0] > 0.5
        frag = shader_dir / "neon.frag"
        text = frag.read_text().replace(
            "o_color = vec4(to_scene(rgb), alpha);", "o_color = vec4(0, 1, 0, 1);"
        )
        frag.write_text(text)
        stat = frag.stat()
        os.utime(frag, (stat.st_atime, stat.st_mtime + 5))
        assert neon.reload_scene_shaders() == ["neon.frag"]
        assert np.allclose(frame(sb)[HEIGHT // 2, WIDTH // 2], (0, 1, 0), atol=0.01)
    finally:
        unloadPrcFile(page)
        neon._shader.cache_clear()
        neon._LIVE.clear()
        neon._MTIMES.clear()


def test_scaled_chain_follows_a_window_resize(base: object) -> None:
    from client.post import PostChain

    sb = base
    fullscreen_card(sb, RAMP_SHADER).setShaderInput("u_max", 1.0)
    post = PostChain(sb, look="neutral", quality="medium")
    sb.taskMgr.step()  # type: ignore[attr-defined]
    assert post._scene_tex.getXSize() == round(WIDTH * 0.75)
    sb.win.setSize(400, 200)  # type: ignore[attr-defined]
    for _ in range(3):
        sb.taskMgr.step()  # type: ignore[attr-defined]
    assert (post._scene_tex.getXSize(), post._scene_tex.getYSize()) == (300, 150)
    assert sb.capture.errors() == []  # type: ignore[attr-defined]


def test_lit_surfaces_take_the_neon_colour(base: object) -> None:
    from client.neon import NeonLights, apply_lit

    sb = base
    sb.camLens.setFov(60, 60 * HEIGHT / WIDTH)  # type: ignore[attr-defined]
    wall = card(sb.render, "wall", (-4, 4, -3, 3))  # type: ignore[attr-defined]
    wall.setY(6)
    wall.setColor(0.6, 0.6, 0.6, 1)
    # A magenta light in front of the wall's left half.
    apply_lit(wall, NeonLights.from_points([((-2.0, 5.0, 0.0), (1.0, 0.1, 0.8), 3.0)]))
    img = frame(sb)
    left, right = img[HEIGHT // 2, WIDTH // 4], img[HEIGHT // 2, 3 * WIDTH // 4]
    assert left[0] > left[1] + 0.2 and left[2] > left[1]  # magenta, not white
    assert left.sum() > right.sum()  # brighter near the light


def test_wet_floor_mirrors_what_is_beneath(base: object) -> None:
    from client.neon import NeonLights, apply_neon, apply_wet_floor, make_reflection
    from client.shapes import MeshBuilder

    sb = base
    sb.camLens.setFov(60, 60 * HEIGHT / WIDTH)  # type: ignore[attr-defined]
    sb.cam.setPos(0, -4, 1.0)  # type: ignore[attr-defined]
    sb.cam.lookAt(0, 6, 0.2)  # type: ignore[attr-defined]
    glow = card(sb.render, "glow", (-3, 3, 0.5, 2.5))  # type: ignore[attr-defined]
    glow.setY(6)
    apply_neon(glow, (0.2, 0.9, 1.0), intensity=1.0)
    mb = MeshBuilder()
    mb.grid((-8, -4, 0), (16, 0, 0), (0, 12, 0), (8, 6), (1, 1, 1))
    floor = sb.render.attachNewNode(mb.node("floor"))  # type: ignore[attr-defined]
    make_reflection(sb.render, glow)  # type: ignore[attr-defined]
    lights = NeonLights.from_points([((0.0, 5.5, 1.5), (0.2, 0.9, 1.0), 2.0)])
    apply_wet_floor(floor, lights, wetness=1.0)
    wet = frame(sb)
    apply_wet_floor(floor, lights, wetness=0.0)
    dry = frame(sb)
    # Below the horizon line of the card: the floor in front of it shows its cyan reflection.
    rows = slice(int(HEIGHT * 0.62), int(HEIGHT * 0.8))
    cols = slice(WIDTH // 3, 2 * WIDTH // 3)
    assert wet[rows, cols, 2].mean() > dry[rows, cols, 2].mean() + 0.05
    assert sb.capture.errors() == []  # type: ignore[attr-defined]


def test_avatar_glitch_on_and_off(base: object) -> None:
    from client.neon import set_avatar_glitch

    sb = base
    sb.camLens.setFov(60, 60 * HEIGHT / WIDTH)  # type: ignore[attr-defined]
    body = card(sb.render, "avatar", (-1, 1, -2, 2))  # type: ignore[attr-defined]
    body.setY(6)
    body.setColor(0.2, 0.5, 0.9, 1)
    calm = frame(sb)
    set_avatar_glitch(body, 1.0)
    torn = frame(sb)
    assert np.abs(torn - calm).mean() > 0.01
    set_avatar_glitch(body, 0.0)
    assert np.abs(frame(sb) - calm).max() < 0.02
