"""Server-side move validation: the speed cap, the bar's walls and its furniture.

Clients send the position they predicted; the server accepts it when it is reachable from the
authoritative position (speed cap x elapsed time, plus slack for network jitter) and legal
(inside the walls, outside furniture), and corrects it otherwise. All avatars with a pending input
are validated together, vectorized, once per tick.

The shared solver `neonbar.collision.CollisionWorld` is used when it is installed; until then a
simpler fallback clamps into the walls and pushes out of boxes and circles.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from neonbar.layout import Layout

log = logging.getLogger("neonbar.server")

AVATAR_RADIUS_M = 0.3
_SPAWN_NEIGHBOURS = 96
# Crowd separation per tick: one pass that corrects 75 % of each overlap (see MoveValidator).
CROWD_PASSES = 1
CROWD_STIFFNESS = 0.75


class _FallbackWorld:
    """Bounds clamp + push-out of boxes and circles (no sweep: the speed cap keeps steps short)."""

    def __init__(self, layout: Layout, radius_m: float = AVATAR_RADIUS_M) -> None:
        self.radius_m = radius_m
        self.limit_x = layout.half_x - radius_m
        self.limit_y = layout.half_y - radius_m
        boxes = layout.boxes
        self.box_c = np.array([(b.cx, b.cy) for b in boxes], dtype=np.float64).reshape(-1, 2)
        self.box_h = np.array([(b.hx, b.hy) for b in boxes], dtype=np.float64).reshape(-1, 2)
        self.box_h = self.box_h + radius_m
        circles = layout.circles
        self.circ_c = np.array([(c.cx, c.cy) for c in circles], dtype=np.float64).reshape(-1, 2)
        self.circ_r = np.array([c.radius_m + radius_m for c in circles], dtype=np.float64)

    def depenetrate(self, pos: np.ndarray) -> np.ndarray:
        pos = np.array(pos, dtype=np.float64, copy=True).reshape(-1, 2)
        for _ in range(3):  # a few passes settle corners between two obstacles
            for c, h in zip(self.box_c, self.box_h, strict=True):
                rel = pos - c
                pen = h - np.abs(rel)  # > 0 on both axes means inside
                inside = (pen[:, 0] > 0) & (pen[:, 1] > 0)
                if not inside.any():
                    continue
                # Leave along the axis of least penetration.
                along_x = inside & (pen[:, 0] <= pen[:, 1])
                along_y = inside & ~along_x
                sign = np.where(rel >= 0, 1.0, -1.0)
                pos[along_x, 0] = c[0] + sign[along_x, 0] * h[0]
                pos[along_y, 1] = c[1] + sign[along_y, 1] * h[1]
            for c, r in zip(self.circ_c, self.circ_r, strict=True):
                rel = pos - c
                dist = np.hypot(rel[:, 0], rel[:, 1])
                inside = dist < r
                if not inside.any():
                    continue
                safe = np.where(dist[inside] > 1e-9, dist[inside], 1.0)
                direction = rel[inside] / safe[:, None]
                direction[dist[inside] <= 1e-9] = (0.0, -1.0)
                pos[inside] = c + direction * r
            pos[:, 0] = np.clip(pos[:, 0], -self.limit_x, self.limit_x)
            pos[:, 1] = np.clip(pos[:, 1], -self.limit_y, self.limit_y)
        return pos

    def solve_moves(self, pos: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return self.depenetrate(np.asarray(pos) + np.asarray(delta))


def make_world(layout: Layout, radius_m: float = AVATAR_RADIUS_M) -> Any:
    """The shared collision solver when present, else the fallback."""
    try:
        from neonbar.collision import CollisionWorld  # type: ignore[import-not-found]
    except ImportError:
        log.info("neonbar.collision not available: using bounds + push-out move checks")
        return _FallbackWorld(layout, radius_m)
    try:
        return CollisionWorld(layout, radius_m=radius_m)
    except Exception:  # a half-built solver must not keep the server from starting
        log.exception("CollisionWorld failed to build; using bounds + push-out move checks")
        return _FallbackWorld(layout, radius_m)


class MoveValidator:
    """Turns claimed positions into accepted ones.

    Args:
        layout: the bar.
        speed_mps: top speed (sprint).
        slack_m: distance allowed on top of speed x time, for jitter between inputs.
        max_elapsed_s: elapsed time is capped so a client idle for a minute cannot teleport.
    """

    def __init__(
        self,
        layout: Layout,
        speed_mps: float = 7.0,
        slack_m: float = 0.25,
        max_elapsed_s: float = 1.0,
    ) -> None:
        self.layout = layout
        self.speed_mps = speed_mps
        self.slack_m = slack_m
        self.max_elapsed_s = max_elapsed_s
        self.world = make_world(layout)
        self.crowd = hasattr(self.world, "separate")

    def validate(
        self, pos_m: np.ndarray, target_m: np.ndarray, elapsed_s: np.ndarray
    ) -> np.ndarray:
        """Accepted positions (N, 2) for avatars at pos_m claiming target_m after elapsed_s."""
        delta = target_m - pos_m
        dist = np.hypot(delta[:, 0], delta[:, 1])
        allowed = self.speed_mps * np.minimum(elapsed_s, self.max_elapsed_s) + self.slack_m
        scale = np.where(dist > allowed, allowed / np.maximum(dist, 1e-9), 1.0)
        delta = delta * scale[:, None]
        return np.asarray(self.world.solve_moves(pos_m, delta), dtype=np.float64)

    def separate(self, pos_m: np.ndarray) -> np.ndarray:
        """Crowd separation when the solver offers it (avatars do not stand inside each other).

        One pass per tick instead of the solver's default two halves the cost (a neighbour search
        and a wall-checked move for every pushed avatar, ~1 ms each at 1,000 avatars). Its
        stiffness and cap are set so that a lone overlapping pair is corrected as much per tick as
        two default passes would (0.5 + 0.5 x 0.5 of the overlap, up to one radius in all).
        """
        if not self.crowd or len(pos_m) < 2:
            return pos_m
        radius_m = float(self.world.radius_m)
        return np.asarray(
            self.world.separate(
                pos_m, iterations=CROWD_PASSES, stiffness=CROWD_STIFFNESS, max_push_m=radius_m
            ),
            dtype=np.float64,
        )

    def spawn(self, rng: np.random.Generator, others_m: np.ndarray) -> np.ndarray:
        """A free point in the layout's spawn circle, clear of the avatars standing there."""
        layout = self.layout
        sx, sy = layout.spawn
        if hasattr(self.world, "spawn_point"):
            # Only avatars near the spawn circle matter; skipping the rest keeps a join cheap.
            reach_m = layout.spawn_radius_m + 1.0
            dist_m = np.hypot(others_m[:, 0] - sx, others_m[:, 1] - sy)
            near = others_m[dist_m < reach_m]
            if len(near) > _SPAWN_NEIGHBOURS:
                # A circle this crowded is full anyway; the nearest few decide where room is.
                nearest = np.argpartition(dist_m, _SPAWN_NEIGHBOURS)[:_SPAWN_NEIGHBOURS]
                near = others_m[nearest]
            return np.asarray(self.world.spawn_point(rng, occupied=near), dtype=np.float64)
        angle = rng.uniform(0, 2 * np.pi)
        radius_m = layout.spawn_radius_m * np.sqrt(rng.uniform())
        point = np.array([[sx + radius_m * np.cos(angle), sy + radius_m * np.sin(angle)]])
        return self.place(point)[0]

    def place(self, pos_m: np.ndarray) -> np.ndarray:
        """Move spawn points out of furniture and walls."""
        return np.asarray(self.world.depenetrate(pos_m), dtype=np.float64)
