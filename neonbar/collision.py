"""Avatar collision on the floor plane: one vectorized solver shared by client and server.

Units: metres. The floor plane is x (east) / y (north), as in scenes/bar.toml. Avatars are discs of
radius ``radius_m``; positions and moves are ``(N, 2)`` float64 arrays of avatar centres.

Configuration space. Every static obstacle is inflated by the avatar radius, so an avatar becomes a
point. Everything is one primitive, an oriented *rounded box*: a rectangle of half extents
``(hx, hy)`` swept by a disc of radius ``rho``. A furniture box has ``rho = r``; round furniture of
radius R has ``hx = hy = 0, rho = R + r``; a wall segment of thickness t is a capsule with
``hy = 0, rho = t / 2 + r``; the room's outer walls are thick boxes around the floor, so the free
floor for a centre is ``|x| <= half_x - r, |y| <= half_y - r``.

``solve_moves`` is collide-and-slide with exact ray casts, so it is continuous without sub-steps:
each avatar travels along its move until the first hit with any inflated obstacle, stops a skin
(``CONTACT_SKIN_M``) short of it, drops the normal component of the rest of the move and carries on
along the surface, up to ``MAX_SLIDES`` times per call. When the avatar touches two surfaces at
once (a corner, a gap between two stools) the rest of the move is projected onto the cone of
directions that leave both, which is zero when the corner faces the move: no jitter, no sticky
corner. A slide never runs against the intended move, so holding a key never pulls an avatar back.
A move of any length is cast whole, so nothing tunnels, and an avatar only ever advances along
segments that were proven free, so a result is never inside geometry. An avatar that starts inside
geometry (a layout change, a bad correction) is first moved to about the nearest free point
(``depenetrate``).

Speed. A clearance grid (a lower bound of the distance to the nearest obstacle per cell) lets every
move that cannot reach an obstacle skip the ray cast; the others go through an AABB broad phase
against every obstacle and an exact narrow phase on the candidate pairs only.

Determinism. The solver uses only elementwise IEEE operations (``+ - * /``, ``sqrt``, ``min``,
``max``) per (avatar, obstacle) pair, and nothing in ``solve_moves`` mixes avatars: one avatar
solved alone (client prediction) gives a bit-identical result to the same avatar solved in a batch
(server authority). ``separate`` couples avatars by design, so only the server runs it.

Use. Build one ``CollisionWorld(load_layout())`` per process (avatars of ``AVATAR_RADIUS_M``).
Client prediction calls ``solve_moves`` with its own avatar each frame; the server calls it with
every avatar's move each tick, then ``separate`` for the crowd; ``spawn_point`` places newcomers;
``shapes`` feeds the debug view (client/collision_debug.py); ``trace_moves`` returns the slide legs
for tests.

Crowd. ``separate`` relaxes the overlapping pairs found once per call over several passes,
averaging each avatar's corrections (summing them overshoots in a dense crowd, which then shuffles
forever), and lets whoever walked into someone take the correction (``yielding``): a crowd that
stands comes to rest and stays there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from neonbar.layout import Layout, Segment

Floats = NDArray[np.float64]
Ints = NDArray[np.intp]

# The avatar's radius (m) on the floor plane: the one value the server, client prediction, bots
# and benchmarks share, so prediction always agrees with authority.
AVATAR_RADIUS_M = 0.3

# How far short of a surface a slide stops (m): far above float64 rounding at bar scale (~1e-15 m),
# far below anything visible.
CONTACT_SKIN_M = 1e-4
# A surface within this distance (m) still counts as touched when the next one is hit.
CONTACT_M = 10 * CONTACT_SKIN_M
# Slides per avatar and call: two are enough for a corner; the rest serve long moves past several
# pieces of furniture. A move that still has length left after them ends there, for this tick.
MAX_SLIDES = 6
_TOUCH_M = 1e-9  # a start this close to a surface counts as touching it
_HEAD_ON_COS = 0.999  # a move within ~2.5° of a rounded corner's normal is aimed (nearly) at it
_HEAD_ON_SIN = math.sqrt(1.0 - _HEAD_ON_COS * _HEAD_ON_COS)
# Grazing hits stop at most this many skins back along the ray instead of skin / cos(angle), so a
# ray that brushes a rounded corner still gets (almost) all of its length.
_MAX_BACKOFF_SKINS = 20.0
# Depenetration: projections onto the nearest surface before falling back to the nearest free cell.
_DEPENETRATE_ROUNDS = 8
_FLOAT = np.float64
# Crowd separation indexes a dense grid of 2r cells when the crowd spans at most this many (a bar
# is a few thousand); a crowd spread wider (tests, odd layouts) uses sorted keys instead.
_DENSE_GRID_CELLS = 1 << 18
# Overlaps below this (m) count as contact: a settled crowd is left exactly where it stands.
_SETTLED_M = CONTACT_SKIN_M


@dataclass(frozen=True)
class Shape:
    """One obstacle as drawn: a rectangle of half extents (hx, hy) swept by a disc of radius_m.

    A box has radius_m = 0, a circle hx = hy = 0, a wall segment of thickness t hy = 0 and
    radius_m = t / 2. (ux, uy) is the unit vector of the shape's local x axis.
    """

    kind: str
    cx: float
    cy: float
    ux: float
    uy: float
    hx: float
    hy: float
    radius_m: float

    def outline(self, inflate_m: float = 0.0, points_per_arc: int = 8) -> Floats:
        """Closed outline, counter-clockwise, as a (K, 2) array (m); grown by inflate_m.

        With inflate_m = the avatar radius this is the boundary the avatar centre cannot cross.
        """
        rho = self.radius_m + inflate_m
        corners = (
            (self.hx, self.hy),
            (-self.hx, self.hy),
            (-self.hx, -self.hy),
            (self.hx, -self.hy),
        )
        points: list[tuple[float, float]] = []
        for k, (qx, qy) in enumerate(corners):
            if rho <= 0:
                points.append((qx, qy))
                continue
            for i in range(points_per_arc + 1):
                a = (k + i / points_per_arc) * math.pi / 2
                points.append((qx + rho * math.cos(a), qy + rho * math.sin(a)))
        local = np.array(points, dtype=_FLOAT)
        x = self.cx + local[:, 0] * self.ux - local[:, 1] * self.uy
        y = self.cy + local[:, 0] * self.uy + local[:, 1] * self.ux
        return np.stack([x, y], axis=1)


def _segment_shape(seg: Segment, kind: str = "wall") -> Shape:
    dx, dy = seg.x1 - seg.x0, seg.y1 - seg.y0
    length = math.sqrt(dx * dx + dy * dy)
    ux, uy = (dx / length, dy / length) if length > 0 else (1.0, 0.0)
    return Shape(
        kind, (seg.x0 + seg.x1) / 2, (seg.y0 + seg.y1) / 2, ux, uy, length / 2, 0.0,
        seg.thickness_m / 2,
    )  # fmt: skip


def _outer_walls(layout: Layout, thickness_m: float) -> list[Shape]:
    """The outer walls as boxes whose inner faces are the room's bounds, overlapping at corners."""
    hx, hy, t = layout.half_x, layout.half_y, thickness_m
    return [
        Shape("wall", 0.0, hy + t / 2, 1.0, 0.0, hx + t, t / 2, 0.0),  # north
        Shape("wall", 0.0, -hy - t / 2, 1.0, 0.0, hx + t, t / 2, 0.0),  # south
        Shape("wall", hx + t / 2, 0.0, 1.0, 0.0, t / 2, hy + t, 0.0),  # east
        Shape("wall", -hx - t / 2, 0.0, 1.0, 0.0, t / 2, hy + t, 0.0),  # west
    ]


def _as_points(pos: Floats, name: str) -> Floats:
    arr = np.asarray(pos, dtype=_FLOAT)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of metres, not shape {arr.shape}")
    return arr


class CollisionWorld:
    """The static obstacles of one layout, prepared for avatars of one radius.

    Args:
        layout: the bar (outer walls, boxes, circles).
        radius_m: avatar radius in metres.
        extra_walls: wall segments at any angle inside the room (partitions, test rigs).
        cell_m: clearance grid cell size in metres (speed only; results do not depend on it).
    """

    def __init__(
        self,
        layout: Layout,
        radius_m: float = AVATAR_RADIUS_M,
        extra_walls: Sequence[Segment] = (),
        cell_m: float = 0.25,
    ) -> None:
        if not (radius_m > 0 and math.isfinite(radius_m)):
            raise ValueError(f"radius_m must be a positive number of metres, not {radius_m!r}")
        self.layout = layout
        self.radius_m = float(radius_m)
        drawn = _outer_walls(layout, layout.wall_thickness_m)
        drawn += [Shape(b.kind, b.cx, b.cy, 1.0, 0.0, b.hx, b.hy, 0.0) for b in layout.boxes]
        drawn += [Shape(c.kind, c.cx, c.cy, 1.0, 0.0, 0.0, 0.0, c.radius_m) for c in layout.circles]
        drawn += [_segment_shape(s) for s in extra_walls]
        self._drawn = tuple(drawn)
        # The solver's outer walls are as thick as the room is wide: whatever a bad correction does,
        # the nearest free point of a position beyond a wall is back inside the room.
        thick = 2 * max(layout.width_m, layout.depth_m)
        solid = _outer_walls(layout, thick) + list(drawn[4:])
        self._cx: Floats = np.array([s.cx for s in solid], dtype=_FLOAT)
        self._cy: Floats = np.array([s.cy for s in solid], dtype=_FLOAT)
        self._ux: Floats = np.array([s.ux for s in solid], dtype=_FLOAT)
        self._uy: Floats = np.array([s.uy for s in solid], dtype=_FLOAT)
        self._hx: Floats = np.array([s.hx for s in solid], dtype=_FLOAT)
        self._hy: Floats = np.array([s.hy for s in solid], dtype=_FLOAT)
        self._rho: Floats = np.array([s.radius_m for s in solid], dtype=_FLOAT) + self.radius_m
        # World-axis half extents of each inflated obstacle, for the broad phase.
        ex = np.abs(self._ux) * self._hx + np.abs(self._uy) * self._hy + self._rho
        ey = np.abs(self._uy) * self._hx + np.abs(self._ux) * self._hy + self._rho
        self._x0, self._x1 = self._cx - ex, self._cx + ex
        self._y0, self._y1 = self._cy - ey, self._cy + ey
        # The longest move worth casting (m): across the room, corner to corner.
        self._longest_m = math.hypot(layout.width_m, layout.depth_m)
        # Free region for a centre, used to clamp far-off positions before depenetration.
        self.bounds_m = (
            -layout.half_x + self.radius_m,
            layout.half_x - self.radius_m,
            -layout.half_y + self.radius_m,
            layout.half_y - self.radius_m,
        )
        self._build_clearance_grid(float(cell_m))

    # ------------------------------------------------------------------ description
    def shapes(self) -> tuple[Shape, ...]:
        """Every obstacle as it stands (outer walls at the layout's thickness), for drawing.

        ``shape.outline(world.radius_m)`` is the line an avatar's centre cannot cross.
        """
        return self._drawn

    # ------------------------------------------------------------------ queries
    def distance(self, pos: Floats) -> Floats:
        """Gap (m) between each avatar's edge and the nearest obstacle; negative if overlapping."""
        p = _as_points(pos, "pos")
        out = np.full(len(p), np.inf)
        for start in range(0, len(p), 2048):
            chunk = p[start : start + 2048]
            j = np.arange(len(self._cx))
            d, _, _ = self._sdf(chunk[:, 0:1], chunk[:, 1:2], j[None, :])
            out[start : start + len(chunk)] = d.min(axis=1)
        # Far beyond the walls the wall boxes end; the room's bounds still hold.
        x0, x1, y0, y1 = self.bounds_m
        x, y = p[:, 0], p[:, 1]
        bound = np.minimum(np.minimum(x - x0, x1 - x), np.minimum(y - y0, y1 - y))
        return np.minimum(out, bound)

    def is_free(self, pos: Floats) -> NDArray[np.bool_]:
        """True where an avatar at pos touches no obstacle (contact allowed)."""
        return self.distance(pos) >= 0.0

    # ------------------------------------------------------------------ moves
    def solve_moves(self, pos: Floats, delta: Floats) -> Floats:
        """Move every avatar by its delta (m), sliding along what it hits; returns new positions.

        Args:
            pos: (N, 2) avatar centres (m). Positions inside geometry are first freed with
                ``depenetrate``.
            delta: (N, 2) intended moves (m), any length; a move longer than the room's
                diagonal is cut to it. Non-finite rows count as no move.

        Each row's result depends only on that row (and the layout), bit for bit.
        """
        return self._solve(pos, delta, None)

    def trace_moves(self, pos: Floats, delta: Floats) -> Floats:
        """The path of each avatar through ``solve_moves``, for tests and debugging.

        Returns (N, MAX_SLIDES + 2, 2) waypoints (m): the given start, the start after
        depenetration, then the position after each slide (repeated once the move is done). The
        last waypoint equals what ``solve_moves`` returns; straight legs join the waypoints.
        """
        p = _as_points(pos, "pos")
        trace = np.empty((len(p), MAX_SLIDES + 2, 2))
        trace[:, 0] = p
        self._solve(p, delta, trace)
        return trace

    def _solve(self, pos: Floats, delta: Floats, trace: Floats | None) -> Floats:
        p = _as_points(pos, "pos")
        d = _as_points(delta, "delta")
        if p.shape != d.shape:
            raise ValueError(f"pos {p.shape} and delta {d.shape} must have the same shape")
        if not np.isfinite(p).all():
            raise ValueError("pos holds NaN or infinite coordinates")
        p = p.copy()
        rem = np.where(np.isfinite(d).all(axis=1, keepdims=True), d, 0.0)
        # No move needs to be longer than the room's diagonal; a longer one (1e150 m) would
        # overflow once squared. Scale by the larger component first, which cannot overflow.
        big = np.maximum(np.abs(rem[:, 0]), np.abs(rem[:, 1]))
        rem *= np.where(big > self._longest_m, self._longest_m / np.maximum(big, 1e-300), 1.0)[
            :, None
        ]
        length2 = rem[:, 0] * rem[:, 0] + rem[:, 1] * rem[:, 1]
        too_long = length2 > self._longest_m * self._longest_m
        rem[too_long] *= (self._longest_m / np.sqrt(length2[too_long]))[:, None]
        length2[too_long] = self._longest_m * self._longest_m

        # Moves shorter than the cell's clearance cannot reach anything: no ray cast needed.
        clear = self._clearance_at(p[:, 0], p[:, 1])
        fast = (clear > 0) & (length2 < clear * clear)
        if trace is not None:
            trace[fast, 1] = p[fast]
        p[fast] += rem[fast]
        if trace is not None:
            trace[fast, 2:] = p[fast, None, :]
        slow = np.flatnonzero(~fast)
        if len(slow) == 0:
            return p
        ps = p[slow]
        unsure = np.flatnonzero(clear[slow] <= 0)
        if len(unsure):
            # Near geometry: free whoever starts inside (a bad correction, a layout change).
            ux, uy = ps[unsure, 0], ps[unsure, 1]
            depth, _, _ = self._deepest(ux, uy)
            x0, x1, y0, y1 = self.bounds_m
            stuck = unsure[(depth < 0) | (ux < x0) | (ux > x1) | (uy < y0) | (uy > y1)]
            if len(stuck):
                ps[stuck] = self._depenetrate_points(ps[stuck])
        legs = None if trace is None else np.empty((len(slow), MAX_SLIDES + 1, 2))
        p[slow] = self._slide(ps, rem[slow], legs)
        if trace is not None and legs is not None:
            trace[slow, 1:] = legs
        return p

    def _slide(self, p: Floats, rem: Floats, legs: Floats | None = None) -> Floats:
        """Collide-and-slide from free points p by rem (m); legs, if given, records waypoints."""
        n = len(p)
        d0 = rem.copy()
        prev_j = np.full(n, -1)  # the surface touched by the previous slide, if any
        if legs is not None:
            legs[:] = p[:, None, :]
        for slide in range(MAX_SLIDES):
            live = np.flatnonzero(rem[:, 0] * rem[:, 0] + rem[:, 1] * rem[:, 1] > 0)
            if len(live) == 0:
                break
            ox, oy = p[live, 0], p[live, 1]
            dx, dy = rem[live, 0], rem[live, 1]
            t, j = self._first_hit(ox, oy, dx, dy)
            hit = t <= 1.0
            miss = live[~hit]
            p[miss] += rem[miss]
            rem[miss] = 0.0
            if legs is not None:
                legs[:, slide + 1 :] = p[:, None, :]
            if not hit.any():
                break
            a = live[hit]
            ox, oy, dx, dy, t, j = ox[hit], oy[hit], dx[hit], dy[hit], t[hit], j[hit]
            _, nx, ny = self._sdf(ox + t * dx, oy + t * dy, j)
            length = np.sqrt(dx * dx + dy * dy)
            cos = -(dx * nx + dy * ny) / length
            backoff = CONTACT_SKIN_M / np.maximum(cos, 1.0 / _MAX_BACKOFF_SKINS)
            ts = np.maximum(t - backoff / length, 0.0)
            p[a, 0] = ox + ts * dx
            p[a, 1] = oy + ts * dy
            mx, my = dx - ts * dx, dy - ts * dy
            # The previous surface still touched, if any, forms a crease with this one.
            pj = prev_j[a]
            has_prev = (pj >= 0) & (pj != j)
            qx, qy = np.zeros(len(a)), np.zeros(len(a))
            if has_prev.any():
                k = np.flatnonzero(has_prev)
                sd, gx, gy = self._sdf(p[a[k], 0], p[a[k], 1], pj[k])
                touching = sd < CONTACT_M
                qx[k] = np.where(touching, gx, 0.0)
                qy[k] = np.where(touching, gy, 0.0)
            rx, ry = _leave_both(mx, my, nx, ny, qx, qy)
            rx, ry = self._round_the_corner(p[a], j, mx, my, nx, ny, cos, has_prev, rx, ry)
            # Never slide against the intended move: a held key must not pull an avatar back.
            forward = rx * d0[a, 0] + ry * d0[a, 1] >= 0
            rem[a, 0], rem[a, 1] = np.where(forward, rx, 0.0), np.where(forward, ry, 0.0)
            prev_j[a] = j
            if legs is not None:
                legs[:, slide + 1 :] = p[:, None, :]
        return p

    def _round_the_corner(
        self,
        p: Floats,
        j: Ints,
        mx: Floats,
        my: Floats,
        nx: Floats,
        ny: Floats,
        cos: Floats,
        has_prev: NDArray[np.bool_],
        rx: Floats,
        ry: Floats,
    ) -> tuple[Floats, Floats]:
        """Carry a move aimed (nearly) dead at a rounded (convex) corner round it.

        Head-on, the slide along the surface is zero and the avatar would stand still forever
        while open floor lies a few degrees to either side; a few micro-radians off, the slide is
        that tiny fraction of the move and the avatar creeps (aimed 1e-5 rad off a round table,
        it took 7 s to get past instead of 4). Within ~2.5 degrees of head-on the slide along the
        tangent (to the side the move leans, left when it leans nowhere) is therefore at least
        half the move dead on, falling linearly to the plain slide at 2.5 degrees, so the time
        to get round does not depend on how exactly the move was aimed. Flat faces and creases
        keep stopping a head-on move.
        """
        m_len = np.sqrt(mx * mx + my * my)
        qx, qy = self._local(p[:, 0], p[:, 1], j)
        at_corner = (np.abs(qx) >= self._hx[j]) & (np.abs(qy) >= self._hy[j])
        near = (cos > _HEAD_ON_COS) & ~has_prev & at_corner & (m_len > 0)
        if not near.any():
            return rx, ry
        lean = mx * -ny + my * nx  # component of the move along the left tangent (-ny, nx)
        side = np.where(lean < 0, -1.0, 1.0)
        sin = np.abs(lean) / np.where(m_len > 0, m_len, 1.0)
        floor = 0.5 * np.maximum(1.0 - sin / _HEAD_ON_SIN, 0.0)
        size = m_len * np.maximum(sin, floor)
        tx, ty = side * -ny * size, side * nx * size
        return np.where(near, tx, rx), np.where(near, ty, ry)

    def _first_hit(self, ox: Floats, oy: Floats, dx: Floats, dy: Floats) -> tuple[Floats, Ints]:
        """Earliest hit fraction t in [0, 1] along each move (inf if none) and the obstacle hit."""
        ex, ey = ox + dx, oy + dy
        lo_x, hi_x = np.minimum(ox, ex), np.maximum(ox, ex)
        lo_y, hi_y = np.minimum(oy, ey), np.maximum(oy, ey)
        near = (
            (hi_x[:, None] >= self._x0)
            & (lo_x[:, None] <= self._x1)
            & (hi_y[:, None] >= self._y0)
            & (lo_y[:, None] <= self._y1)
        )
        i, j = np.nonzero(near)
        t_best = np.full(len(ox), np.inf)
        j_best = np.full(len(ox), -1)
        if len(i) == 0:
            return t_best, j_best
        t = self._ray_cast(ox[i], oy[i], dx[i], dy[i], j)
        keep = t <= 1.0
        i, j, t = i[keep], j[keep], t[keep]
        if len(i) == 0:
            return t_best, j_best
        # Per avatar, the earliest hit; ties go to the lower obstacle index (lexsort is stable).
        order = np.lexsort((t, i))
        i, j, t = i[order], j[order], t[order]
        first = np.ones(len(i), dtype=bool)
        first[1:] = i[1:] != i[:-1]
        t_best[i[first]] = t[first]
        j_best[i[first]] = j[first]
        return t_best, j_best

    def _local(self, px: Floats, py: Floats, j: Ints) -> tuple[Floats, Floats]:
        rx, ry = px - self._cx[j], py - self._cy[j]
        ux, uy = self._ux[j], self._uy[j]
        return rx * ux + ry * uy, ry * ux - rx * uy

    def _sdf(self, px: Floats, py: Floats, j: Ints) -> tuple[Floats, Floats, Floats]:
        """Signed distance (m) from point to inflated obstacle j, and its unit gradient (world)."""
        qx, qy = self._local(px, py, j)
        hx, hy, rho = self._hx[j], self._hy[j], self._rho[j]
        ax, ay = np.abs(qx) - hx, np.abs(qy) - hy
        ox, oy = np.maximum(ax, 0.0), np.maximum(ay, 0.0)
        out = np.sqrt(ox * ox + oy * oy)
        dist = out + np.minimum(np.maximum(ax, ay), 0.0) - rho
        sx, sy = np.where(qx >= 0, 1.0, -1.0), np.where(qy >= 0, 1.0, -1.0)
        corner = (ax > 0) & (ay > 0)
        safe = np.where(corner, out, 1.0)
        x_face = ax >= ay
        gx = np.where(corner, sx * ox / safe, np.where(x_face, sx, 0.0))
        gy = np.where(corner, sy * oy / safe, np.where(x_face, 0.0, sy))
        ux, uy = self._ux[j], self._uy[j]
        return dist, gx * ux - gy * uy, gx * uy + gy * ux

    def _ray_cast(self, ox: Floats, oy: Floats, dx: Floats, dy: Floats, j: Ints) -> Floats:
        """Entry fraction t of the segment o -> o + d into inflated obstacle j; inf when it misses.

        A segment that starts inside (rounding, a quantized correction) hits at t = 0 if it heads
        deeper, and is let go if it heads out.
        """
        qx, qy = self._local(ox, oy, j)
        ux: Floats = self._ux[j]
        uy: Floats = self._uy[j]
        ex: Floats = dx * ux + dy * uy
        ey: Floats = dy * ux - dx * uy
        hx, hy, rho = self._hx[j], self._hy[j], self._rho[j]
        # Slab test against the obstacle's bounding rectangle (core grown by rho).
        t_in, t_out = _slab(qx, ex, hx + rho)
        t_in_y, t_out_y = _slab(qy, ey, hy + rho)
        t_in, t_out = np.maximum(t_in, t_in_y), np.minimum(t_out, t_out_y)
        enters = (t_in <= t_out) & (t_out >= 0) & (t_in <= 1.0)
        t0 = np.where(enters, np.maximum(t_in, 0.0), 0.0)
        t = np.where(enters, t0, np.inf)
        # Entering through a corner square: the rounded corner decides (miss it, miss the shape).
        cx_, cy_ = qx + t0 * ex, qy + t0 * ey
        corner = np.isfinite(t) & (np.abs(cx_) > hx) & (np.abs(cy_) > hy)
        if corner.any():
            k = np.flatnonzero(corner)
            wx = qx[k] - np.where(cx_[k] >= 0, hx[k], -hx[k])
            wy = qy[k] - np.where(cy_[k] >= 0, hy[k], -hy[k])
            a = ex[k] * ex[k] + ey[k] * ey[k]
            b = wx * ex[k] + wy * ey[k]
            c = wx * wx + wy * wy - rho[k] * rho[k]
            disc = b * b - a * c
            root = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
            t[k] = np.where((disc >= 0) & (root >= 0) & (root <= 1.0), root, np.inf)
        # Starting inside or on the surface: block only moves that go deeper. Touching counts:
        # positions quantized to centimetres land exactly on surfaces built from round layout
        # numbers, and a slab test alone would "hit" a move that leaves or runs along the face.
        ax, ay = np.abs(qx) - hx, np.abs(qy) - hy
        ox_, oy_ = np.maximum(ax, 0.0), np.maximum(ay, 0.0)
        sd = np.sqrt(ox_ * ox_ + oy_ * oy_) + np.minimum(np.maximum(ax, ay), 0.0) - rho
        inside = sd <= _TOUCH_M
        if inside.any():
            k = np.flatnonzero(inside)
            _, gx, gy = self._sdf(ox[k], oy[k], j[k])
            t[k] = np.where(dx[k] * gx + dy[k] * gy < 0, 0.0, np.inf)
        return t

    # ------------------------------------------------------------------ freeing
    def depenetrate(self, pos: Floats) -> Floats:
        """Move every avatar that overlaps geometry to (about) the nearest free point.

        Free avatars are returned unchanged. Positions beyond the outer walls come back inside.
        """
        p = _as_points(pos, "pos")
        if not np.isfinite(p).all():
            raise ValueError("pos holds NaN or infinite coordinates")
        p = p.copy()
        clear = self._clearance_at(p[:, 0], p[:, 1])
        unsure = np.flatnonzero(~(clear > 0))
        if len(unsure):
            p[unsure] = self._depenetrate_points(p[unsure])
        return p

    def _depenetrate_points(self, p: Floats) -> Floats:
        p = p.copy()
        # Beyond the walls' reach the obstacles say nothing: bring those points into the room.
        x0, x1, y0, y1 = self.bounds_m
        margin = 2 * CONTACT_SKIN_M
        out_x = (p[:, 0] < x0) | (p[:, 0] > x1)
        out_y = (p[:, 1] < y0) | (p[:, 1] > y1)
        p[out_x, 0] = np.clip(p[out_x, 0], x0 + margin, x1 - margin)
        p[out_y, 1] = np.clip(p[out_y, 1], y0 + margin, y1 - margin)
        todo = np.arange(len(p))
        for _ in range(_DEPENETRATE_ROUNDS):
            dist, gx, gy = self._deepest(p[todo, 0], p[todo, 1])
            inside = dist < 0
            todo, dist, gx, gy = todo[inside], dist[inside], gx[inside], gy[inside]
            if len(todo) == 0:
                return p
            push = CONTACT_SKIN_M - dist
            p[todo, 0] += gx * push
            p[todo, 1] += gy * push
        # Pockets where projections ping-pong (a gap narrower than an avatar): start from the
        # nearest free grid point and slide from there back toward the stuck point.
        dist, _, _ = self._deepest(p[todo, 0], p[todo, 1])
        todo = todo[dist < 0]
        if len(todo) == 0:
            return p
        free = self._free_points
        start = np.empty((len(todo), 2))
        for n, k in enumerate(todo):
            d2 = (free[:, 0] - p[k, 0]) ** 2 + (free[:, 1] - p[k, 1]) ** 2
            start[n] = free[int(np.argmin(d2))]
        p[todo] = self._slide(start, p[todo] - start)
        return p

    def _deepest(self, px: Floats, py: Floats) -> tuple[Floats, Floats, Floats]:
        """Most negative signed distance (m) over the obstacles whose box holds each point.

        +inf where no obstacle's box holds the point.
        """
        near = (
            (px[:, None] >= self._x0)
            & (px[:, None] <= self._x1)
            & (py[:, None] >= self._y0)
            & (py[:, None] <= self._y1)
        )
        i, j = np.nonzero(near)
        best = np.full(len(px), np.inf)
        gx_best, gy_best = np.zeros(len(px)), np.zeros(len(px))
        if len(i) == 0:
            return best, gx_best, gy_best
        dist, gx, gy = self._sdf(px[i], py[i], j)
        order = np.lexsort((dist, i))
        i, dist, gx, gy = i[order], dist[order], gx[order], gy[order]
        first = np.ones(len(i), dtype=bool)
        first[1:] = i[1:] != i[:-1]
        best[i[first]] = dist[first]
        gx_best[i[first]], gy_best[i[first]] = gx[first], gy[first]
        return best, gx_best, gy_best

    # ------------------------------------------------------------------ crowd
    def separate(
        self,
        pos: Floats,
        iterations: int = 8,
        stiffness: float = 1.0,
        max_push_m: float | None = None,
        yielding: Floats | None = None,
    ) -> Floats:
        """Push overlapping avatars apart, then resolve the pushes against the walls.

        The pairs closer than two radii are found once; then each of ``iterations`` passes moves
        every avatar by ``stiffness`` x the mean of its pairs' corrections (a pair's overlap,
        shared by the two). The mean, not the sum: summed corrections overshoot in a dense
        crowd (six neighbours, six pushes) and the crowd shuffles forever; averaged ones settle.
        The total push of an avatar is capped at ``max_push_m`` (default: the radius) and goes
        through ``solve_moves``, so nobody ends up in a wall.

        Args:
            pos: (N, 2) avatar centres (m).
            iterations: relaxation passes over the pairs.
            stiffness: fraction of the mean correction applied per pass (0..1].
            max_push_m: most an avatar is moved per call (m).
            yielding: (N,) how far (m) each avatar walked this tick. A pair's correction is
                shared in proportion: whoever walked into the other steps back, and one that
                stands is not pushed by one that walks into it. Default: shared equally.
        """
        p = _as_points(pos, "pos")
        limit = self.radius_m if max_push_m is None else float(max_push_m)
        reach = 2 * self.radius_m
        i, j = _crowd_pairs(p, reach)
        if len(i) == 0:
            return p.copy()
        if yielding is None:
            share_i = np.full(len(i), 0.5)
        else:
            w = np.maximum(np.asarray(yielding, dtype=_FLOAT), 0.0)
            both = w[i] + w[j]
            share_i = np.where(both > 0, w[i] / np.where(both > 0, both, 1.0), 0.5)
        x0, x1, y0, y1 = self.bounds_m
        q = p.copy()
        _relax_pairs(q, i, j, share_i, 1.0 - share_i, reach, _SETTLED_M, int(iterations),
                     float(stiffness), x0, x1, y0, y1)  # fmt: skip
        push = q - p
        size = np.sqrt(push[:, 0] * push[:, 0] + push[:, 1] * push[:, 1])
        push *= np.where(size > limit, limit / np.maximum(size, 1e-300), 1.0)[:, None]
        out = p.copy()
        moving = size > 0
        if moving.any():
            out[moving] = self.solve_moves(p[moving], push[moving])
        return out

    def spawn_point(
        self,
        rng: np.random.Generator,
        near: tuple[float, float] | None = None,
        radius_m: float | None = None,
        occupied: Floats | None = None,
        attempts: int = 256,
    ) -> Floats:
        """A free floor point (m) within radius_m of near, clear of the avatars in occupied.

        Defaults to the layout's spawn circle. Falls back to the nearest free point to near.
        """
        cx, cy = self.layout.spawn if near is None else near
        spread = self.layout.spawn_radius_m if radius_m is None else radius_m
        r = spread * np.sqrt(rng.random(attempts))
        a = rng.random(attempts) * (2 * math.pi)
        cand = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)
        ok = self.distance(cand) >= CONTACT_SKIN_M
        if occupied is not None and len(occupied):
            occ = _as_points(occupied, "occupied")
            gap2 = ((cand[:, None, :] - occ[None, :, :]) ** 2).sum(axis=2).min(axis=1)
            ok &= gap2 >= (2 * self.radius_m) ** 2
        if ok.any():
            point: Floats = cand[int(np.argmax(ok))]
            return point
        nearest: Floats = self.depenetrate(np.array([[cx, cy]], dtype=_FLOAT))[0]
        return nearest

    # ------------------------------------------------------------------ clearance grid
    def _build_clearance_grid(self, cell_m: float) -> None:
        lay = self.layout
        self._cell_m = cell_m
        self._grid_x0, self._grid_y0 = -lay.half_x, -lay.half_y
        self._nx = max(1, math.ceil(lay.width_m / cell_m))
        self._ny = max(1, math.ceil(lay.depth_m / cell_m))
        xs = self._grid_x0 + (np.arange(self._nx) + 0.5) * cell_m
        ys = self._grid_y0 + (np.arange(self._ny) + 0.5) * cell_m
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        centres = np.stack([gx.ravel(), gy.ravel()], axis=1)
        dist = self.distance(centres)
        # The distance is 1-Lipschitz, so the centre's value minus half a diagonal bounds the cell;
        # another skin of margin keeps the shortcut away from ties with the exact ray cast.
        half_diag = cell_m * math.sqrt(0.5)
        self._clearance = (dist - half_diag - CONTACT_SKIN_M).reshape(self._nx, self._ny)
        self._free_points = centres[dist >= CONTACT_SKIN_M]
        if len(self._free_points) == 0:
            raise ValueError("the layout leaves no free floor for an avatar of this radius")

    def _clearance_at(self, x: Floats, y: Floats) -> Floats:
        """Lower bound (m) of the free distance around each point; <= 0 means unknown."""
        fx = (x - self._grid_x0) / self._cell_m
        fy = (y - self._grid_y0) / self._cell_m
        inside = (fx >= 0) & (fx < self._nx) & (fy >= 0) & (fy < self._ny)
        ix = np.clip(fx, 0, self._nx - 1).astype(np.intp)
        iy = np.clip(fy, 0, self._ny - 1).astype(np.intp)
        return np.where(inside, self._clearance[ix, iy], -1.0)


def _slab(q: Floats, e: Floats, half: Floats) -> tuple[Floats, Floats]:
    """Entry and exit fractions of the line q + t e through |x| <= half (±inf when parallel)."""
    parallel = e == 0
    safe = np.where(parallel, 1.0, e)
    t1, t2 = (-half - q) / safe, (half - q) / safe
    t_in, t_out = np.minimum(t1, t2), np.maximum(t1, t2)
    within = np.abs(q) <= half
    t_in = np.where(parallel, np.where(within, -np.inf, np.inf), t_in)
    t_out = np.where(parallel, np.where(within, np.inf, -np.inf), t_out)
    return t_in, t_out


def _leave_both(
    mx: Floats,
    my: Floats,
    nx: Floats,
    ny: Floats,
    qx: Floats,
    qy: Floats,
) -> tuple[Floats, Floats]:
    """Closest move to m that does not head into the surface n nor the touched surface q.

    q = 0 where there is no second contact. In 2D the answer is m itself, m slid along one of the
    two surfaces, or nothing (a corner that faces the move).
    """
    mn, mq = mx * nx + my * ny, mx * qx + my * qy
    # Slide along n (drop the part of m that heads into it).
    ax = np.where(mn < 0, mx - mn * nx, mx)
    ay = np.where(mn < 0, my - mn * ny, my)
    a_ok = ax * qx + ay * qy >= 0
    # Slide along q instead.
    bx = np.where(mq < 0, mx - mq * qx, mx)
    by = np.where(mq < 0, my - mq * qy, my)
    b_ok = bx * nx + by * ny >= 0
    # Prefer the slide that keeps more of the move (the smaller correction).
    use_a = a_ok & (~b_ok | (np.abs(np.minimum(mn, 0.0)) <= np.abs(np.minimum(mq, 0.0))))
    use_b = ~use_a & b_ok
    rx = np.where(use_a, ax, np.where(use_b, bx, 0.0))
    ry = np.where(use_a, ay, np.where(use_b, by, 0.0))
    return rx, ry


def _crowd_pairs(p: Floats, reach: float) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Index pairs (i < j) of avatars whose centres are closer than reach, via a grid of reach."""
    n = len(p)
    none = np.zeros(0, dtype=np.intp)
    if n < 2:
        return none, none
    cell = np.floor(p / reach).astype(np.int64)
    low = cell.min(axis=0)
    cols, rows = (cell.max(axis=0) - low + 3).tolist()  # a one-cell empty border all round
    if cols * rows <= _DENSE_GRID_CELLS:
        # Dense grid over the crowd's extent: each cell's run in the sorted order comes from a
        # prefix sum, so the 9 neighbour lookups per avatar are plain indexing (no binary search).
        keys = (cell[:, 0] - low[0] + 1) * rows + (cell[:, 1] - low[1] + 1)
        order = np.argsort(keys, kind="stable")
        starts = np.zeros(cols * rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=cols * rows), out=starts[1:])
        offsets = np.array([dx * rows + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1)])
        wanted = (keys[:, None] + offsets[None, :]).ravel()
        lo = starts[wanted]
        counts = starts[wanted + 1] - lo
    else:
        span = np.int64(1 << 21)  # cells per row; keys stay unique for floors up to ~600 km
        keys = (cell[:, 0] + span // 2) * span + (cell[:, 1] + span // 2)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        offsets = np.array([dx * span + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1)])
        wanted = (keys[:, None] + offsets[None, :]).ravel()
        lo = np.searchsorted(sorted_keys, wanted, side="left")
        counts = np.searchsorted(sorted_keys, wanted, side="right") - lo
    total = int(counts.sum())
    if total == 0:
        return none, none
    owner = np.repeat(np.repeat(np.arange(n), 9), counts)
    first = np.repeat(lo, counts)
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    other = order[first + (np.arange(total) - run_start)]
    pair = owner < other
    i, j = owner[pair], other[pair]
    dx, dy = p[i, 0] - p[j, 0], p[i, 1] - p[j, 1]
    close = dx * dx + dy * dy < reach * reach
    return i[close].astype(np.intp), j[close].astype(np.intp)


@numba.njit(cache=True, nogil=True)
def _relax_pairs(
    q: Floats,
    i: NDArray[np.int64],
    j: NDArray[np.int64],
    share_i: Floats,
    share_j: Floats,
    reach: float,
    settled: float,
    iterations: int,
    stiffness: float,
    x0: float,
    x1: float,
    y0: float,
    y1: float,
) -> None:
    """The relaxation passes of `CollisionWorld.separate`, in place on `q`.

    One loop over the pairs per pass instead of ~20 array operations, each of which costs a
    pass over memory and Python's call overhead (8 passes at 1,000 avatars: 1.0 ms in numpy).
    The arithmetic and the order of every sum are numpy's (`np.bincount` adds in pair order),
    so the result is the same to the bit (tests/neonbar/test_collision.py checks it).
    """
    n = q.shape[0]
    count = np.zeros(n, np.int64)
    ax, bx = np.zeros(n), np.zeros(n)
    ay, by = np.zeros(n), np.zeros(n)
    for _ in range(iterations):
        count[:] = 0
        ax[:] = 0.0
        bx[:] = 0.0
        ay[:] = 0.0
        by[:] = 0.0
        close = False
        for k in range(len(i)):
            a, b = i[k], j[k]
            dx, dy = q[a, 0] - q[b, 0], q[a, 1] - q[b, 1]
            dist = np.sqrt(dx * dx + dy * dy)
            over = reach - dist
            if not over > settled:
                continue
            close = True
            # Two avatars on the same spot: split them east-west, lower index to the east.
            if dist == 0:
                ux, uy = 1.0, 0.0
            else:
                ux, uy = dx / dist, dy / dist
            si, sj = share_i[k] * over, share_j[k] * over
            count[a] += 1
            count[b] += 1
            ax[a] += ux * si
            bx[b] += ux * sj
            ay[a] += uy * si
            by[b] += uy * sj
        if not close:
            break
        for v in range(n):
            scale = stiffness / max(count[v], 1)
            # The outer walls take part in every pass (furniture only at the end): a crowd
            # pressed against a wall spreads along it instead of into it.
            q[v, 0] = min(max(q[v, 0] + (ax[v] - bx[v]) * scale, x0), x1)
            q[v, 1] = min(max(q[v, 1] + (ay[v] - by[v]) * scale, y0), y1)
