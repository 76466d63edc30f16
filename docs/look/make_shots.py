"""Render the screenshots in docs/look/ (offscreen, Mesa is enough).

    .venv/bin/python docs/look/make_shots.py

The bar from scenes/bar.toml as the client builds it (client.world.World), seen from near the
door: without the post chain, through it ungraded (neutral LUT), and with the shipped looks.
A second scene shows the scene shaders of client.neon on their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from panda3d.core import loadPrcFileData

OUT = Path(__file__).resolve().parent


def configure() -> None:
    loadPrcFileData(
        "shots",
        "load-display p3headlessgl\nwindow-type offscreen\naudio-library-name null\n"
        "win-size 1280 720\ngl-version 3 3\nsync-video #f\njpeg-quality 90\n",
    )


def settle(base: object, frames: int = 3) -> None:
    for _ in range(frames):
        base.graphicsEngine.renderFrame()  # type: ignore[attr-defined]


def bar_shots() -> None:
    from direct.showbase.ShowBase import ShowBase

    from client.post import PostChain, display_scene_settings
    from client.world import World
    from neonbar.layout import load_layout

    base = ShowBase()
    world = World(base, load_layout()).build()
    base.camLens.setFov(70)
    base.camLens.setNearFar(0.1, 200)
    base.cam.setPos(2.0, -10.5, 1.7)
    base.cam.lookAt(-3.0, 6.0, 2.2)
    world.update(1.0)
    settle(base)
    base.win.saveScreenshot(str(OUT / "bar_no_post.jpg"))

    # The client's own settings (client/app.py): display-referred bar, post haze instead of fog.
    settings = display_scene_settings()
    settings.exposure, settings.bloom_threshold, settings.bloom_strength = 0.95, 0.55, 0.8
    world.use_post_haze()
    post = PostChain(base, look="neutral", quality="high", settings=settings)
    for look in ("neutral", "orange_haze", "teal_neon", "mood_for_love"):
        post.set_look(look)
        settle(base)
        base.win.saveScreenshot(str(OUT / f"bar_{look}.jpg"))
    post.set_look("orange_haze")
    post.set_glitch(0.8)
    settle(base)
    base.win.saveScreenshot(str(OUT / "bar_glitch.jpg"))
    post.cleanup()
    base.destroy()


def neon_shots() -> None:
    """client.neon's shaders alone: neon lettering and tubes, lit walls, a wet floor."""
    from direct.showbase.ShowBase import ShowBase
    from panda3d.core import TextNode

    from client import fonts
    from client.neon import NeonLights, apply_lit, apply_neon, apply_wet_floor, make_reflection
    from client.post import PostChain
    from client.shapes import MeshBuilder

    base = ShowBase()
    base.setBackgroundColor(0, 0, 0, 1)
    base.camLens.setFov(62)
    base.camLens.setNearFar(0.1, 100)
    pink, cyan, amber, violet = (
        (1.0, 0.18, 0.45),
        (0.18, 0.88, 1.0),
        (1.0, 0.54, 0.12),
        (0.7, 0.24, 1.0),
    )

    room = MeshBuilder()
    room.grid((-8, 6, 0), (16, 0, 0), (0, 0, 6), (16, 6), (0.32, 0.28, 0.3))  # back wall
    room.grid((-8, -6, 0), (0, 12, 0), (0, 0, 6), (12, 6), (0.3, 0.26, 0.28))  # left wall
    room.grid((8, 6, 0), (0, -12, 0), (0, 0, 6), (12, 6), (0.3, 0.26, 0.28))  # right wall
    for x in (-5.0, 0.0, 5.0):
        room.box((x, 5.6, 0.55), (1.2, 0.35, 0.55), (0.35, 0.08, 0.1))  # low red booths
    walls = base.render.attachNewNode(room.node("walls"))
    neon = base.render.attachNewNode("neon")

    text = TextNode("sign")
    font = fonts.load_font(base.loader, fonts.latin_font_path())
    if font is not None:
        text.setFont(font)
    text.setText("NEON BAR")
    text.setAlign(TextNode.ACenter)
    sign = neon.attachNewNode(text.generate())
    sign.setPos(0, 5.95, 3.2)
    sign.setScale(1.1)
    apply_neon(sign, pink, intensity=4.0, flicker=0.0)
    tubes = [
        ([(-7.0, 5.95, 1.6), (-7.0, 5.95, 5.4)], cyan),
        ([(7.0, 5.95, 1.6), (7.0, 5.95, 5.4)], cyan),
        ([(-3.8, 5.95, 2.5), (3.8, 5.95, 2.5)], amber),
        ([(-7.9, -2.0, 3.6), (-7.9, 5.0, 3.6)], violet),
    ]
    for points, color in tubes:
        mb = MeshBuilder()
        mb.tube(points, 0.035, (1, 1, 1))
        apply_neon(neon.attachNewNode(mb.node("tube")), color, intensity=6.0)

    lights = NeonLights.from_points(
        [((0, 5.4, 3.5), pink, 6.0), ((-7.0, 5.5, 3.5), cyan, 3.0), ((7.0, 5.5, 3.5), cyan, 3.0),
         ((0, 5.5, 2.5), amber, 3.0), ((-7.5, 1.5, 3.6), violet, 3.0)]
    )  # fmt: skip
    apply_lit(walls, lights)
    floor_mb = MeshBuilder()
    floor_mb.grid((-8, -6, 0), (16, 0, 0), (0, 12, 0), (16, 12), (1, 1, 1))
    floor = base.render.attachNewNode(floor_mb.node("floor"))
    make_reflection(base.render, walls, neon)
    apply_wet_floor(floor, lights, wetness=0.8)

    base.cam.setPos(1.5, -5.0, 1.7)
    base.cam.lookAt(-0.5, 6.0, 1.2)
    post = PostChain(base, look="teal_neon", quality="high")
    for look in ("neutral", "teal_neon"):
        post.set_look(look)
        settle(base)
        base.win.saveScreenshot(str(OUT / f"shaders_{look}.jpg"))
    post.cleanup()
    base.destroy()


if __name__ == "__main__":
    configure()
    which = sys.argv[1:] or ["bar", "shaders"]
    if "bar" in which:
        bar_shots()
    if "shaders" in which:
        neon_shots()
