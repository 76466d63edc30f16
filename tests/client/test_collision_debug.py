"""The F3 collision view: builds a line per shape outline, toggles, and shows up in a frame."""

from __future__ import annotations

import numpy as np
import pytest
from panda3d.core import GeomNode, NodePath

from client.collision_debug import CollisionDebugView
from neonbar.collision import CollisionWorld
from neonbar.layout import load_layout


@pytest.fixture(scope="module")
def world() -> CollisionWorld:
    return CollisionWorld(load_layout(), radius_m=0.3)


def test_draws_every_shape_and_its_reach(world: CollisionWorld) -> None:
    root = NodePath("render")
    view = CollisionDebugView(root, world)
    geom_node = view.node.node()
    assert isinstance(geom_node, GeomNode)
    vertices = sum(
        geom_node.getGeom(i).getVertexData().getNumRows() for i in range(geom_node.getNumGeoms())
    )
    expected = sum(len(s.outline()) + len(s.outline(world.radius_m)) + 2 for s in world.shapes())
    assert vertices >= expected - 2 * len(world.shapes())
    # The lines span the room's floor, walls included.
    lo, hi = view.node.getTightBounds()
    assert lo.x <= -world.layout.half_x and hi.x >= world.layout.half_x
    assert lo.y <= -world.layout.half_y and hi.y >= world.layout.half_y


def test_toggles_and_starts_hidden(world: CollisionWorld) -> None:
    root = NodePath("render")
    view = CollisionDebugView(root, world)
    assert not view.visible
    assert view.toggle() is True and view.visible
    assert view.toggle() is False and not view.visible
    view.show()
    assert view.visible
    view.destroy()
    assert root.getNumChildren() == 0


@pytest.mark.render
def test_lines_show_in_an_offscreen_frame(world: CollisionWorld) -> None:
    from panda3d.core import loadPrcFileData

    loadPrcFileData(
        "collision-debug-test",
        "window-type offscreen\naudio-library-name null\nwin-size 160 120\n"
        "notify-level-display fatal\n",
    )
    from direct.showbase.ShowBase import ShowBase

    try:
        base = ShowBase(windowType="offscreen")
    except Exception as exc:  # no GL on this machine
        pytest.skip(f"no offscreen rendering: {exc}")
    try:
        base.setBackgroundColor(0, 0, 0, 1)
        base.cam.setPos(0, 0, 40)
        base.cam.lookAt(0, 0, 0)
        view = CollisionDebugView(base.render, world)

        def frame() -> np.ndarray:
            base.graphicsEngine.renderFrame()
            base.graphicsEngine.renderFrame()
            tex = base.win.getScreenshot()
            data = np.frombuffer(bytes(tex.getRamImageAs("RGB")), dtype=np.uint8)
            return data.reshape(-1, 3)

        assert (frame().max(axis=1) > 100).sum() == 0
        view.show()
        lit = frame()
        # Both colours appear: green obstacle outlines and magenta reach outlines.
        assert ((lit[:, 1] > 150) & (lit[:, 0] < 100)).sum() > 50
        assert ((lit[:, 0] > 150) & (lit[:, 1] < 100)).sum() > 50
    finally:
        base.destroy()
