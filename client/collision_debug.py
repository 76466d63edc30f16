"""The collision debug view (F3): what the solver sees, drawn as bright lines on the floor.

Two outlines per obstacle: the obstacle itself, and the same shape grown by the avatar radius,
the line an avatar's centre cannot cross (``neonbar.collision`` works in that inflated space).
"""

from __future__ import annotations

from collections.abc import Sequence

from panda3d.core import LineSegs, NodePath

from neonbar.collision import CollisionWorld

Color = Sequence[float]


class CollisionDebugView:
    """Lines for every collision shape under parent, hidden until shown.

    Args:
        parent: where to attach (usually ``base.render``).
        world: the solver whose shapes to draw.
        z_m: height of the lines above the floor (m).
        shape_color: the obstacles' own outlines (r, g, b, a).
        reach_color: the outlines grown by the avatar radius.
    """

    def __init__(
        self,
        parent: NodePath,
        world: CollisionWorld,
        z_m: float = 0.03,
        shape_color: Color = (0.1, 1.0, 0.35, 1.0),
        reach_color: Color = (1.0, 0.15, 0.8, 1.0),
    ) -> None:
        self.world = world
        lines = LineSegs("collision-debug")
        lines.setThickness(2.0)
        for shape in world.shapes():
            for inflate_m, color in ((0.0, shape_color), (world.radius_m, reach_color)):
                ring = shape.outline(inflate_m=inflate_m)
                lines.setColor(*color)
                lines.moveTo(float(ring[0, 0]), float(ring[0, 1]), z_m)
                for x, y in [*ring[1:].tolist(), ring[0].tolist()]:
                    lines.drawTo(x, y, z_m)
        self.node: NodePath = parent.attachNewNode(lines.create())
        # A debug overlay: unlit, unfogged, drawn over the floor and furniture.
        self.node.setLightOff(1)
        self.node.setFogOff(1)
        self.node.setDepthTest(False)
        self.node.setDepthWrite(False)
        self.node.setBin("fixed", 100)
        self.node.hide()

    @property
    def visible(self) -> bool:
        return not self.node.isHidden()

    def show(self) -> None:
        self.node.show()

    def hide(self) -> None:
        self.node.hide()

    def toggle(self) -> bool:
        """Flip visibility (bind to F3); returns whether the view is now shown."""
        if self.visible:
            self.hide()
        else:
            self.show()
        return self.visible

    def destroy(self) -> None:
        self.node.removeNode()
