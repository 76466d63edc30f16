"""Third- and first-person cameras that never look out of the bar.

The third-person camera sits behind and above the avatar's head and eases toward that spot; a
2D ray from the head to the wanted spot is tested against the walls and every piece of furniture
taller than the camera line, and the camera is pulled in front of the first hit. So the lens is
never inside a wall or a pillar, whatever the avatar backs into.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from direct.showbase.ShowBase import ShowBase
from panda3d.core import NodePath

from neonbar.layout import Layout

EYE_Z = 1.64
THIRD_BACK_M = 4.0
THIRD_UP_M = 0.75
LOOK_AHEAD_M = 4.0
WALL_MARGIN_M = 0.3  # the near plane must stay clear of the wall surface


@dataclass
class CameraRig:
    """Moves `base.camera` after the avatar each frame; `toggle()` switches view (V)."""

    base: ShowBase
    layout: Layout
    first_person: bool = False
    smoothing_s: float = 0.12
    _pos: np.ndarray | None = field(default=None, init=False)
    _blockers: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.base.camLens.setNearFar(0.08, 200.0)
        self.base.camLens.setFov(68)
        boxes = [
            (b.cx - b.hx, b.cx + b.hx, b.cy - b.hy, b.cy + b.hy)
            for b in self.layout.boxes
            if b.height_m > EYE_Z  # lower furniture is looked over, not through
        ]
        self._blockers = np.array(boxes, dtype=float).reshape(-1, 4)

    @property
    def camera(self) -> NodePath:
        return self.base.camera

    def toggle(self) -> None:
        self.first_person = not self.first_person
        self._pos = None  # jump, do not glide through the head

    def update(
        self, x_m: float, y_m: float, yaw_rad: float, dt_s: float, orbit_rad: float = 0.0
    ) -> None:
        """Follow the avatar standing at (x_m, y_m) facing yaw_rad.

        orbit_rad swings the third-person camera around the avatar (recordings use a slow
        sway so a standing avatar still gives the room some parallax).
        """
        fx, fy = -math.sin(yaw_rad), math.cos(yaw_rad)
        head = np.array([x_m, y_m, EYE_Z])
        if self.first_person:
            self.camera.setPos(x_m + fx * 0.12, y_m + fy * 0.12, EYE_Z)
            self.camera.setHpr(math.degrees(yaw_rad), -4, 0)
            self._pos = None
            return
        ox, oy = -math.sin(yaw_rad + orbit_rad), math.cos(yaw_rad + orbit_rad)
        want = head + np.array([-ox * THIRD_BACK_M, -oy * THIRD_BACK_M, THIRD_UP_M])
        want[:2] = self.clear_point(head[:2], want[:2])
        # Pulled in by a wall: come down too, or the view would look straight at the floor.
        pulled = float(np.hypot(*(want[:2] - head[:2]))) / THIRD_BACK_M
        want[2] = EYE_Z + THIRD_UP_M * pulled
        if self._pos is None:
            self._pos = want
        else:
            a = 1.0 - math.exp(-max(dt_s, 0.0) / self.smoothing_s)
            self._pos = self._pos + (want - self._pos) * a
            # Smoothing must not carry the lens through a wall: re-clear the eased point.
            self._pos[:2] = self.clear_point(head[:2], self._pos[:2])
        self.camera.setPos(*self._pos.tolist())
        self.camera.lookAt(x_m + fx * LOOK_AHEAD_M, y_m + fy * LOOK_AHEAD_M, EYE_Z - 0.1)

    def clear_point(self, head: np.ndarray, want: np.ndarray) -> np.ndarray:
        """The point on the segment head -> want closest to want that is free of obstacles."""
        d = want - head
        t_hit = 1.0
        # Outer walls, pulled in by the margin.
        hx = self.layout.half_x - WALL_MARGIN_M
        hy = self.layout.half_y - WALL_MARGIN_M
        for axis, limit in ((0, hx), (1, hy)):
            if d[axis] > 1e-9:
                t_hit = min(t_hit, (limit - head[axis]) / d[axis])
            elif d[axis] < -1e-9:
                t_hit = min(t_hit, (-limit - head[axis]) / d[axis])
        if len(self._blockers):
            b = self._blockers + np.array([-1, 1, -1, 1]) * WALL_MARGIN_M
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
                tx0, tx1 = (b[:, 0] - head[0]) * inv[0], (b[:, 1] - head[0]) * inv[0]
                ty0, ty1 = (b[:, 2] - head[1]) * inv[1], (b[:, 3] - head[1]) * inv[1]
            t_near = np.maximum(np.minimum(tx0, tx1), np.minimum(ty0, ty1))
            t_far = np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1))
            hit = (t_near <= t_far) & (t_far >= 0) & (t_near <= t_hit) & (t_near > 0)
            if hit.any():
                t_hit = min(t_hit, float(t_near[hit].min()))
        if t_hit >= 1.0:
            return want.copy()
        return head + d * max(0.0, t_hit) * 0.98  # a little short of the surface
