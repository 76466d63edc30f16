"""Procedural meshes built with numpy and uploaded as one Geom per builder.

The bar and the avatars are made of boxes, cylinders, spheres and tubes. Building each as its own
GeomNode would cost a draw call apiece; a `MeshBuilder` instead collects many primitives (vertex
positions, normals, colours, triangle indices as numpy arrays) and emits a single GeomNode, so a
whole row of bottles is one draw.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
from panda3d.core import (
    Geom,
    GeomNode,
    GeomTriangles,
    GeomVertexArrayFormat,
    GeomVertexData,
    GeomVertexFormat,
    InternalName,
)

Color = Sequence[float]  # r, g, b[, a] in 0..1


def _float_format() -> GeomVertexFormat:
    # Float colours (not the packed bytes of getV3n3c4) so one numpy block fills the array.
    array = GeomVertexArrayFormat()
    array.addColumn(InternalName.getVertex(), 3, Geom.NTFloat32, Geom.CPoint)
    array.addColumn(InternalName.getNormal(), 3, Geom.NTFloat32, Geom.CNormal)
    array.addColumn(InternalName.getColor(), 4, Geom.NTFloat32, Geom.CColor)
    return GeomVertexFormat.registerFormat(GeomVertexFormat(array))


FORMAT = _float_format()


def _rgba(color: Color) -> tuple[float, float, float, float]:
    if len(color) == 4:
        return (float(color[0]), float(color[1]), float(color[2]), float(color[3]))
    return (float(color[0]), float(color[1]), float(color[2]), 1.0)


class MeshBuilder:
    """Accumulates triangles; `node()` turns them into one GeomNode."""

    def __init__(self) -> None:
        self._pos: list[np.ndarray] = []
        self._nrm: list[np.ndarray] = []
        self._col: list[np.ndarray] = []
        self._tri: list[np.ndarray] = []
        self._glow: list[np.ndarray] = []
        self._count = 0
        self._tint: list[np.ndarray] = []
        self.emissive = False  # pieces added while True are skipped by `bake` (they shine)
        # Pieces added while `tinted` is truthy take a colour given to `node()`: True (or 1) the
        # `tint` argument, 2 the `tint2` argument (a second colour, e.g. hair).
        self.tinted: bool | int = False

    @property
    def empty(self) -> bool:
        return self._count == 0

    def add(self, pos: np.ndarray, nrm: np.ndarray, tri: np.ndarray, color: Color) -> None:
        """Append raw arrays: pos/nrm (n, 3), tri (m, 3) indices local to this piece."""
        n = len(pos)
        self._pos.append(np.asarray(pos, np.float32))
        self._nrm.append(np.asarray(nrm, np.float32))
        self._col.append(np.tile(np.asarray(_rgba(color), np.float32), (n, 1)))
        self._tri.append(np.asarray(tri, np.int64) + self._count)
        self._glow.append(np.full(n, self.emissive))
        self._tint.append(np.full(n, int(self.tinted), np.int8))
        self._count += n

    def set_alpha(self, alpha_of_xy: Callable[[np.ndarray], np.ndarray]) -> None:
        """Set every vertex's alpha from its (x, y) position (the floor's puddles)."""
        for pos, col in zip(self._pos, self._col, strict=True):
            col[:, 3] = alpha_of_xy(pos[:, :2].astype(np.float64))

    def bake(self, lights: np.ndarray, ambient: Color) -> None:
        """Light the non-emissive vertices once, on the CPU, into their colours.

        The neon never moves, so its light is computed here per vertex (diffuse, inverse-square
        with a soft core) instead of every frame: the fixed-function pipeline on a CPU renderer
        could afford only a handful of lights, and Panda3D's shader generator needs Cg.

        Args:
            lights: (L, 7) rows of x, y, z, r, g, b, intensity (metres; intensity ~ watts).
            ambient: base light every surface gets.
        """
        if self.empty or len(lights) == 0:
            return
        pos = np.concatenate(self._pos)
        nrm = np.concatenate(self._nrm)
        glow = np.concatenate(self._glow)
        lit = ~glow
        p, n = pos[lit], nrm[lit]
        total = np.tile(np.asarray(_rgba(ambient)[:3], np.float32), (len(p), 1))
        for row in np.asarray(lights, np.float32):
            d = row[None, :3] - p
            dist2 = np.einsum("ij,ij->i", d, d) + 0.25  # soft core: no hot spot at the tube
            lambert = np.clip(np.einsum("ij,ij->i", d, n) / np.sqrt(dist2), 0.0, 1.0)
            # Half-lambert floor keeps surfaces beside a light from going pitch black.
            lambert = 0.15 + 0.85 * lambert
            total += (row[6] * lambert / dist2)[:, None] * row[None, 3:6]
        col = np.concatenate(self._col)
        col[lit, :3] *= total
        # Write back piece by piece so later `add` calls keep working.
        start = 0
        for k, piece in enumerate(self._col):
            self._col[k] = col[start : start + len(piece)]
            start += len(piece)

    # -------------------------------------------------------------------------------- shapes

    def box(self, center: Sequence[float], half: Sequence[float], color: Color) -> None:
        """An axis-aligned box with flat-shaded faces."""
        c, h = np.asarray(center, np.float32), np.asarray(half, np.float32)
        pos, nrm, tri = [], [], []
        for axis in range(3):
            for sign in (-1.0, 1.0):
                n = np.zeros(3, np.float32)
                n[axis] = sign
                u, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
                u[(axis + 1) % 3] = 1.0
                v[(axis + 2) % 3] = 1.0
                if sign < 0:
                    u, v = v, u  # keep counter-clockwise winding seen from outside
                base = len(pos)
                for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                    pos.append(c + h * (n + a * u + b * v))
                    nrm.append(n)
                tri += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
        self.add(np.array(pos), np.array(nrm), np.array(tri), color)

    def grid(
        self,
        corner: Sequence[float],
        edge_u: Sequence[float],
        edge_v: Sequence[float],
        cells: tuple[int, int],
        color: Color,
    ) -> None:
        """A quad split into cells so baked light can vary across it (floor, walls)."""
        o, u, v = (np.asarray(a, np.float32) for a in (corner, edge_u, edge_v))
        nu, nv = cells
        n = np.cross(u, v)
        n /= np.linalg.norm(n)
        s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
        pos = o + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v
        a = (np.arange(nu)[:, None] * (nv + 1) + np.arange(nv)[None, :]).ravel()
        b = a + nv + 1
        tri = np.concatenate([np.stack([a, b, b + 1], 1), np.stack([a, b + 1, a + 1], 1)])
        self.add(pos, np.tile(n, (len(pos), 1)), tri, color)

    def quad(
        self,
        corner: Sequence[float],
        edge_u: Sequence[float],
        edge_v: Sequence[float],
        color: Color,
    ) -> None:
        """A flat quad, front face where edge_u x edge_v points."""
        o, u, v = (np.asarray(a, np.float32) for a in (corner, edge_u, edge_v))
        n = np.cross(u, v)
        n /= np.linalg.norm(n)
        pos = np.array([o, o + u, o + u + v, o + v])
        self.add(pos, np.tile(n, (4, 1)), np.array([(0, 1, 2), (0, 2, 3)]), color)

    def cylinder(
        self,
        base: Sequence[float],
        radius_m: float,
        height_m: float,
        color: Color,
        segments: int = 16,
        top_radius_m: float | None = None,
        caps: bool = True,
    ) -> None:
        """A vertical (z-up) cylinder or cone frustum standing on `base`."""
        top_r = radius_m if top_radius_m is None else top_radius_m
        ang = np.linspace(0, 2 * math.pi, segments + 1)[:-1]
        ca, sa = np.cos(ang), np.sin(ang)
        slope = (radius_m - top_r) / max(height_m, 1e-6)
        ring_n = np.stack([ca, sa, np.full_like(ca, slope)], 1)
        ring_n /= np.linalg.norm(ring_n, axis=1, keepdims=True)
        b = np.asarray(base, np.float32)
        bottom = b + np.stack([ca * radius_m, sa * radius_m, np.zeros_like(ca)], 1)
        top = b + np.stack([ca * top_r, sa * top_r, np.full_like(ca, height_m)], 1)
        pos = np.concatenate([bottom, top])
        nrm = np.concatenate([ring_n, ring_n])
        i = np.arange(segments)
        j = (i + 1) % segments
        tri = np.concatenate(
            [np.stack([i, j, j + segments], 1), np.stack([i, j + segments, i + segments], 1)]
        )
        self.add(pos, nrm, tri, color)
        if caps:
            for z, r, up in ((0.0, radius_m, -1.0), (height_m, top_r, 1.0)):
                if r <= 0:
                    continue
                rim = b + np.stack([ca * r, sa * r, np.full_like(ca, z)], 1)
                centre = b + np.array([0, 0, z], np.float32)
                p = np.concatenate([[centre], rim])
                n = np.tile(np.array([0, 0, up], np.float32), (segments + 1, 1))
                fan = np.stack([np.zeros(segments, int), i + 1, j + 1], 1)
                if up < 0:
                    fan = fan[:, [0, 2, 1]]
                self.add(p, n, fan, color)

    def sphere(
        self,
        center: Sequence[float],
        radius_m: float | Sequence[float],
        color: Color,
        rings: int = 10,
        segments: int = 16,
    ) -> None:
        """A UV sphere; a 3-sequence radius makes an ellipsoid."""
        r = np.broadcast_to(np.asarray(radius_m, np.float32), (3,))
        th = np.linspace(0, math.pi, rings + 1)
        ph = np.linspace(0, 2 * math.pi, segments + 1)
        tt, pp = np.meshgrid(th, ph, indexing="ij")
        unit = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], -1)
        unit = unit.reshape(-1, 3)
        pos = np.asarray(center, np.float32) + unit * r
        nrm = unit / r
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
        a = (np.arange(rings)[:, None] * (segments + 1) + np.arange(segments)[None, :]).ravel()
        b = a + segments + 1
        tri = np.concatenate([np.stack([a, a + 1, b + 1], 1), np.stack([a, b + 1, b], 1)])
        self.add(pos, nrm, tri[:, [0, 2, 1]], color)

    def rod(
        self,
        p0: Sequence[float],
        p1: Sequence[float],
        radius_m: float,
        color: Color,
        segments: int = 8,
    ) -> None:
        """A cylinder from p0 to p1 in any direction (neon tubes, toothpicks)."""
        a, b = np.asarray(p0, np.float32), np.asarray(p1, np.float32)
        axis = b - a
        length = float(np.linalg.norm(axis))
        if length < 1e-6:
            return
        w = axis / length
        helper = np.array([0, 0, 1], np.float32) if abs(w[2]) < 0.9 else np.array([1, 0, 0])
        u = np.cross(w, helper)
        u /= np.linalg.norm(u)
        v = np.cross(w, u)
        ang = np.linspace(0, 2 * math.pi, segments + 1)[:-1]
        ring = np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * v
        pos = np.concatenate([a + ring * radius_m, b + ring * radius_m])
        nrm = np.concatenate([ring, ring])
        i = np.arange(segments)
        j = (i + 1) % segments
        tri = np.concatenate(
            [np.stack([i, j, j + segments], 1), np.stack([i, j + segments, i + segments], 1)]
        )
        self.add(pos, nrm, tri, color)

    def tube(
        self, points: Sequence[Sequence[float]], radius_m: float, color: Color, segments: int = 8
    ) -> None:
        """A polyline of rods with round joints."""
        for p0, p1 in itertools.pairwise(points):
            self.rod(p0, p1, radius_m, color, segments)
        for p in points:
            self.sphere(p, radius_m, color, rings=4, segments=segments)

    # ---------------------------------------------------------------------------------- output

    def node(self, name: str, tint: Color | None = None, tint2: Color | None = None) -> GeomNode:
        """One GeomNode holding everything added so far; the tints multiply the tinted pieces."""
        node = GeomNode(name)
        if self.empty:
            return node
        pos = np.concatenate(self._pos)
        nrm = np.concatenate(self._nrm)
        col = np.concatenate(self._col)
        groups = np.concatenate(self._tint)
        for group, rgb in ((1, tint), (2, tint2)):
            if rgb is not None:  # col is a fresh array (concatenate), safe to scale in place
                col[groups == group, :3] *= np.asarray(rgb[:3], np.float32)
        tri = np.concatenate(self._tri)
        n = len(pos)
        vdata = GeomVertexData(name, FORMAT, Geom.UHStatic)
        vdata.uncleanSetNumRows(n)
        # FORMAT is one interleaved float32 array: x y z nx ny nz r g b a per vertex.
        array = vdata.modifyArray(0)
        view = memoryview(array).cast("B").cast("f")
        interleaved = np.concatenate([pos, nrm, col], axis=1).astype(np.float32)
        view[:] = interleaved.ravel()
        prim = GeomTriangles(Geom.UHStatic)
        prim.setIndexType(Geom.NTUint32)
        index = prim.modifyVertices()
        index.uncleanSetNumRows(len(tri) * 3)
        memoryview(index).cast("B").cast("I")[:] = tri.astype(np.uint32).ravel()
        geom = Geom(vdata)
        geom.addPrimitive(prim)
        node.addGeom(geom)
        return node
