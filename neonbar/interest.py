"""Interest management and delta encoding of snapshots (sans-I/O, numpy).

The floor is split into square cells. Every client is served by the cell its avatar stands in,
and every client of a cell sees the same three slices of the room at each tick:

- near: the `near_k` avatars closest to the cell centre, sent every tick;
- mid: the next `mid_k`, each sent on ticks where (id + tick) % `mid_every` == 0;
- far: everyone else, each sent on ticks where (id + tick) % `far_every` == 0.

A snapshot for (cell, tick) may be delta-encoded against a base tick B the client acknowledged,
when the client was served by the same cell at B. Avatars in near(cell, now) that were also in
near(cell, B) are omitted when unchanged, sent as a small delta when they moved at most 127 cm
per axis, and sent absolute otherwise; everything else is absolute. The client holds the exact
state at B of every avatar in near(cell, B): it was in snapshot B, either explicitly or omitted
because unchanged against that snapshot's own base (by induction).

The bytes depend only on (cell, base, tick), so they are encoded once per tick and shared by every
client in the same group; per client only the small message header differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

MAX_AVATAR_IDS = 65536
_MIN_CAPACITY = 256
_DELTA_LIMIT_CM = 127
_EMPTY_IDS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class SnapshotBody:
    """The shared part of a snapshot: base tick (-1 = full) and the two binary sections."""

    base: int
    d: bytes
    a: bytes
    delta_count: int
    absolute_count: int


@dataclass
class _TickState:
    """The quantized world at one tick, indexed by avatar id (values of absent ids are stale)."""

    tick: int
    x_cm: npt.NDArray[np.int16]  # [capacity], indexed by avatar id
    y_cm: npt.NDArray[np.int16]
    yaw: npt.NDArray[np.uint16]
    near: dict[int, npt.NDArray[np.int64]]  # cell -> sorted avatar ids


class SnapshotEncoder:
    """Encodes the shared snapshot bodies of a room, tick after tick.

    Args:
        half_x_m, half_y_m: the floor's half extents (metres); positions outside are clamped
            into the border cells.
        cell_m: cell edge (metres).
        near_k, mid_k: sizes of the near and mid sets.
        mid_every, far_every: the mid and far slices' periods (ticks).
        history_ticks: how far back (ticks) a base may be; older acks get a full snapshot.
        base_stride: bases are rounded down to multiples of this when the client holds them.
    """

    def __init__(
        self,
        half_x_m: float,
        half_y_m: float,
        cell_m: float = 2.5,
        near_k: int = 32,
        mid_k: int = 64,
        mid_every: int = 4,
        far_every: int = 20,
        history_ticks: int = 16,
        base_stride: int = 4,
    ) -> None:
        self.half_x_cm = half_x_m * 100.0
        self.half_y_cm = half_y_m * 100.0
        self.cell_cm = cell_m * 100.0
        self.cols = max(1, int(np.ceil(2 * self.half_x_cm / self.cell_cm)))
        self.rows = max(1, int(np.ceil(2 * self.half_y_cm / self.cell_cm)))
        self.near_k = near_k
        self.mid_k = mid_k
        self.mid_every = mid_every
        self.far_every = far_every
        self.history_ticks = history_ticks
        self.base_stride = max(1, base_stride)
        # One slot more than the history: the current tick plus history_ticks bases.
        self._ring: list[_TickState | None] = [None] * (history_ticks + 1)
        self._now: _TickState | None = None
        self._ids = _EMPTY_IDS
        self._slices: dict[int, _CellView] = {}
        self._bodies: dict[tuple[int, int], SnapshotBody] = {}
        # usable_base answers of the current tick: a room's clients share a few (cell, base) pairs.
        self._usable: dict[tuple[int, int], bool] = {}
        self._cell_centers_cm = np.stack(
            np.meshgrid(
                -self.half_x_cm + (np.arange(self.cols) + 0.5) * self.cell_cm,
                -self.half_y_cm + (np.arange(self.rows) + 0.5) * self.cell_cm,
            ),
            axis=-1,
        ).reshape(-1, 2)  # row-major: cell = row * cols + col

    # ------------------------------------------------------------------------------ cells

    def cell_of(self, x_cm: float, y_cm: float) -> int:
        """The cell that serves a client whose avatar stands at (x_cm, y_cm)."""
        col = int((x_cm + self.half_x_cm) // self.cell_cm)
        row = int((y_cm + self.half_y_cm) // self.cell_cm)
        col = min(max(col, 0), self.cols - 1)
        row = min(max(row, 0), self.rows - 1)
        return row * self.cols + col

    def cells_of(
        self, x_cm: npt.NDArray[np.integer[Any]], y_cm: npt.NDArray[np.integer[Any]]
    ) -> npt.NDArray[np.int64]:
        """cell_of for many positions at once."""
        col = np.floor((np.asarray(x_cm, np.float64) + self.half_x_cm) / self.cell_cm)
        row = np.floor((np.asarray(y_cm, np.float64) + self.half_y_cm) / self.cell_cm)
        col = np.clip(col, 0, self.cols - 1).astype(np.int64)
        row = np.clip(row, 0, self.rows - 1).astype(np.int64)
        cells: npt.NDArray[np.int64] = row * self.cols + col
        return cells

    @property
    def tick(self) -> int:
        return -1 if self._now is None else self._now.tick

    # ------------------------------------------------------------------------------- tick

    def begin_tick(
        self,
        tick: int,
        ids: npt.NDArray[np.integer[Any]],
        x_cm: npt.NDArray[np.integer[Any]],
        y_cm: npt.NDArray[np.integer[Any]],
        yaw: npt.NDArray[np.integer[Any]],
        cells: npt.NDArray[np.integer[Any]] | list[int],
    ) -> None:
        """Record the world at `tick` and compute the slices of every cell in `cells`.

        Args:
            tick: strictly increasing tick number.
            ids: avatar ids present (unique, < 65536).
            x_cm, y_cm: quantized positions (int16 range); yaw: 16-bit yaw.
            cells: the cells clients will ask for this tick.
        """
        if self._now is not None and tick <= self._now.tick:
            raise ValueError("ticks must increase")
        ids = np.asarray(ids, dtype=np.int64)
        slot = tick % len(self._ring)
        state = self._ring[slot]
        # Dense per-id arrays, as long as the highest id needs (rooms are mostly small).
        needed = int(ids.max()) + 1 if len(ids) else 1
        if state is None or len(state.x_cm) < needed:
            size = min(MAX_AVATAR_IDS, max(_MIN_CAPACITY, 1 << (needed - 1).bit_length()))
            state = _TickState(
                tick,
                np.zeros(size, np.int16),
                np.zeros(size, np.int16),
                np.zeros(size, np.uint16),
                {},
            )
            self._ring[slot] = state
        state.tick = tick
        state.x_cm[ids] = x_cm
        state.y_cm[ids] = y_cm
        state.yaw[ids] = yaw
        state.near = {}
        self._now = state
        self._ids = cast(npt.NDArray[np.int64], ids)  # the asarray above
        self._bodies = {}
        self._slices = {}
        self._usable = {}
        self._compute_slices(np.unique(np.asarray(cells, dtype=np.int64)), x_cm, y_cm)

    def _compute_slices(
        self,
        cells: npt.NDArray[np.int64],
        x_cm: npt.NDArray[np.integer[Any]],
        y_cm: npt.NDArray[np.integer[Any]],
    ) -> None:
        now = self._now
        assert now is not None
        ids, tick, n = self._ids, now.tick, len(self._ids)
        if len(cells) == 0:
            return
        if n == 0:
            empty = _CellView.empty()
            for cell in cells.tolist():
                now.near[cell] = _EMPTY_IDS
                self._slices[cell] = empty
            return
        rows = np.arange(len(cells))[:, None]
        centers = self._cell_centers_cm[cells].astype(np.float32)  # (C, 2)
        dx = np.asarray(x_cm, np.float32)[None, :] - centers[:, 0, None]
        dy = np.asarray(y_cm, np.float32)[None, :] - centers[:, 1, None]
        dist2 = dx * dx + dy * dy  # (C, n)
        near_k = min(self.near_k, n)
        inner_k = min(self.near_k + self.mid_k, n)
        # Two stages (inner set out of everyone, then near out of inner) beat one two-kth
        # partition of the whole row.
        if inner_k < n:
            order = np.argpartition(dist2, inner_k - 1, axis=1)[:, :inner_k]
        else:
            order = np.broadcast_to(np.arange(n), (len(cells), n))
        if 0 < near_k < inner_k:
            inner_dist2 = np.take_along_axis(dist2, order, axis=1)
            order = np.take_along_axis(
                order, np.argpartition(inner_dist2, near_k - 1, axis=1), axis=1
            )
        near_ids = np.sort(ids[order[:, :near_k]], axis=1)  # (C, K)
        # Membership masks over the present avatars: near, near + mid.
        is_near = np.zeros((len(cells), n), dtype=bool)
        is_near[rows, order[:, :near_k]] = True
        is_inner = is_near.copy()
        is_inner[rows, order[:, near_k:inner_k]] = True
        mid_turn = (ids + tick) % self.mid_every == 0
        far_turn = (ids + tick) % self.far_every == 0
        rest = (is_inner & ~is_near & mid_turn[None, :]) | (far_turn[None, :] & ~is_inner)
        # Gather every cell's rest at once, then cut per cell: one numpy call per column.
        rest_rows, rest_cols = np.nonzero(rest)
        bounds = np.searchsorted(rest_rows, np.arange(len(cells) + 1)).tolist()
        columns = (
            ids[rest_cols].astype("<u2"),
            np.asarray(x_cm)[rest_cols].astype("<i2"),
            np.asarray(y_cm)[rest_cols].astype("<i2"),
            now.yaw[ids[rest_cols]].astype("<u2"),
        )
        nx = now.x_cm[near_ids].astype(np.int32)
        ny = now.y_cm[near_ids].astype(np.int32)
        nyaw = now.yaw[near_ids].astype(np.int32)
        for row, cell in enumerate(cells.tolist()):
            lo, hi = bounds[row], bounds[row + 1]
            near = near_ids[row]
            now.near[cell] = near
            self._slices[cell] = _CellView(
                near,
                nx[row],
                ny[row],
                nyaw[row],
                tuple(c[lo:hi].tobytes() for c in columns),  # type: ignore[arg-type]
                hi - lo,
            )

    def near(self, cell: int) -> npt.NDArray[np.int64]:
        """The sorted ids of the near set of `cell` at the current tick."""
        assert self._now is not None
        if cell not in self._slices:
            self._compute_slices(
                np.array([cell]), self._now.x_cm[self._ids], self._now.y_cm[self._ids]
            )
        return self._slices[cell].near

    # ----------------------------------------------------------------------------- encode

    @property
    def sent_slots(self) -> int:
        """Slots of the ring a caller keeps per client for `pick_bases` (tick % slots)."""
        return self.history_ticks + 4

    def pick_bases(
        self,
        cells: npt.NDArray[np.int64],
        acks: npt.NDArray[np.int64],
        sent_tick: npt.NDArray[np.int64],
        sent_cell: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64]:
        """Each client's base tick (-1: a full snapshot), for many clients at once.

        Args:
            cells: the cell serving each client now.
            acks: the newest snapshot tick each client acknowledged (-1: none).
            sent_tick, sent_cell: (clients, `sent_slots`) rings of the snapshots written to each
                client: slot t % sent_slots holds tick t (-1: none) and the cell that served it.

        Snapshots travel in order on one connection, so a client that acknowledged `ack` also
        holds every snapshot written before it. Rounding the base down to a multiple of
        `base_stride` lets clients of a cell whose acks differ by a tick or two share one
        encoded body.
        """
        rows = np.arange(len(cells))
        slots = sent_tick.shape[1]
        # The ack must be a snapshot written to this client.
        known = (acks >= 0) & (sent_tick[rows, acks % slots] == acks)
        aligned = acks - acks % self.base_stride
        slot = aligned % slots
        same_aligned = known & (sent_tick[rows, slot] == aligned) & (sent_cell[rows, slot] == cells)
        same_ack = known & (sent_cell[rows, acks % slots] == cells)
        use_aligned = self._usable_mask(same_aligned, cells, aligned)
        use_ack = self._usable_mask(same_ack & ~use_aligned, cells, acks)
        return np.where(use_aligned, aligned, np.where(use_ack, acks, -1))

    def _usable_mask(
        self,
        mask: npt.NDArray[np.bool_],
        cells: npt.NDArray[np.int64],
        bases: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """usable_base for the masked clients, asked once per distinct (cell, base)."""
        out = np.zeros(len(mask), dtype=bool)
        rows = np.flatnonzero(mask)
        if len(rows):
            pairs, inverse = np.unique(cells[rows] << 32 | bases[rows], return_inverse=True)
            answers = [self.usable_base(p >> 32, p & 0xFFFFFFFF) for p in pairs.tolist()]
            out[rows] = np.asarray(answers, dtype=bool)[inverse]
        return out

    def usable_base(self, cell: int, base: int) -> bool:
        """True when a delta against `base` is possible for a client served by `cell` at both."""
        known = self._usable.get((cell, base))
        if known is not None:
            return known
        if base < 0 or self._now is None:
            return False
        if not 0 < self._now.tick - base <= self.history_ticks:
            usable = False
        else:
            old = self._ring[base % len(self._ring)]
            usable = old is not None and old.tick == base and cell in old.near
        self._usable[(cell, base)] = usable
        return usable

    def body(self, cell: int, base: int = -1) -> SnapshotBody:
        """The shared snapshot body for clients served by `cell` whose base is `base`.

        `base` should come from `pick_bases`; a base that is not usable gives a full snapshot.
        """
        return self.bodies([(cell, base)])[0]

    def bodies(
        self, keys: list[tuple[int, int]], bases_checked: bool = False
    ) -> list[SnapshotBody]:
        """Bodies for many (cell, base) groups at once (vectorized across groups).

        Args:
            keys: (cell, base) per client.
            bases_checked: every base came from `pick_bases` this tick (skips re-checking).
        """
        todo: dict[tuple[int, int], None] = {}  # ordered set of groups not encoded yet
        if bases_checked:
            normalized = keys
        else:
            normalized = [
                (cell, base if base < 0 or self.usable_base(cell, base) else -1)
                for cell, base in keys
            ]
        cached = self._bodies
        for key in normalized:
            if key not in cached:
                todo[key] = None
        if todo:
            missing = np.array(sorted({c for c, _ in todo if c not in self._slices}), np.int64)
            if len(missing):
                now = self._now
                assert now is not None
                self._compute_slices(missing, now.x_cm[self._ids], now.y_cm[self._ids])
            deltas = []
            for key in todo:
                if key[1] < 0:
                    self._bodies[key] = self._slices[key[0]].full()
                else:
                    deltas.append(key)
            if deltas:
                for key, body in zip(deltas, self._encode_deltas(deltas), strict=True):
                    self._bodies[key] = body
        return [self._bodies[key] for key in normalized]

    def _encode_deltas(self, keys: list[tuple[int, int]]) -> list[SnapshotBody]:
        views = [self._slices[cell] for cell, _ in keys]
        width = len(views[0].near)
        if width == 0:
            return [v.full_with_base(base) for v, (_, base) in zip(views, keys, strict=True)]
        near = np.stack([v.near for v in views])  # (G, K), every near set has width K
        x = np.stack([v.x for v in views])
        y = np.stack([v.y for v in views])
        yaw = np.stack([v.yaw for v in views])
        ring = self._ring
        old_sets = [ring[base % len(ring)].near[cell] for cell, base in keys]  # type: ignore[union-attr]
        old_width = max(len(s) for s in old_sets)
        old_near = np.full((len(keys), max(old_width, 1)), -1, dtype=np.int64)
        for g, old in enumerate(old_sets):
            old_near[g, : len(old)] = old
        in_base = (near[:, :, None] == old_near[:, None, :]).any(axis=2)
        # Each group's base state of its near avatars, gathered once per distinct base tick.
        old_x = np.empty_like(x)
        old_y = np.empty_like(y)
        old_yaw = np.empty_like(yaw)
        bases = np.array([base for _, base in keys])
        for base in np.unique(bases).tolist():
            rows = bases == base
            state = ring[base % len(ring)]
            assert state is not None
            # Ids beyond that tick's arrays joined later: not in its near set, masked out below.
            ids = np.minimum(near[rows], len(state.x_cm) - 1)
            old_x[rows] = state.x_cm[ids]
            old_y[rows] = state.y_cm[ids]
            old_yaw[rows] = state.yaw[ids]
        ddx = x - old_x
        ddy = y - old_y
        # Yaw wraps: the difference mod 2^16 read as a signed 16-bit number.
        dyaw = (yaw - old_yaw).astype(np.int16)
        changed = (ddx != 0) | (ddy != 0) | (dyaw != 0)
        small = (np.abs(ddx) <= _DELTA_LIMIT_CM) & (np.abs(ddy) <= _DELTA_LIMIT_CM)
        as_delta = in_base & changed & small
        as_absolute = ~in_base | (changed & ~small)
        # Move each row's selected records to its front, then cut row by row.
        d_order = np.argsort(~as_delta, axis=1, kind="stable")
        d_cols = [
            np.take_along_axis(near, d_order, 1).astype("<u2"),
            np.take_along_axis(ddx, d_order, 1).astype("i1"),
            np.take_along_axis(ddy, d_order, 1).astype("i1"),
            np.take_along_axis(dyaw, d_order, 1).astype("<i2"),
        ]
        a_order = np.argsort(~as_absolute, axis=1, kind="stable")
        a_cols = [
            np.take_along_axis(near, a_order, 1).astype("<u2"),
            np.take_along_axis(x, a_order, 1).astype("<i2"),
            np.take_along_axis(y, a_order, 1).astype("<i2"),
            np.take_along_axis(yaw, a_order, 1).astype("<u2"),
        ]
        d_counts = as_delta.sum(axis=1).tolist()
        a_counts = as_absolute.sum(axis=1).tolist()
        out = []
        for g, (view, (_, base)) in enumerate(zip(views, keys, strict=True)):
            nd, na = d_counts[g], a_counts[g]
            d = b"".join([c[g, :nd].tobytes() for c in d_cols]) if nd else b""
            ri, rx, ry, ryaw = view.rest_columns
            a = b"".join(
                (
                    a_cols[0][g, :na].tobytes(),
                    ri,
                    a_cols[1][g, :na].tobytes(),
                    rx,
                    a_cols[2][g, :na].tobytes(),
                    ry,
                    a_cols[3][g, :na].tobytes(),
                    ryaw,
                )
            )
            out.append(SnapshotBody(base, d, a, nd, na + view.rest_count))
        return out


@dataclass
class _CellView:
    """One cell's slices at the current tick, with the columns every group of the cell reuses."""

    near: npt.NDArray[np.int64]  # sorted ids
    x: npt.NDArray[np.int32]  # near avatars' state (int32, for delta arithmetic)
    y: npt.NDArray[np.int32]
    yaw: npt.NDArray[np.int32]
    rest_columns: tuple[bytes, bytes, bytes, bytes]  # mid + far slices, packed per column
    rest_count: int
    _full: SnapshotBody | None = None

    @classmethod
    def empty(cls) -> _CellView:
        none = np.zeros(0, dtype=np.int32)
        return cls(_EMPTY_IDS, none, none, none, (b"", b"", b"", b""), 0)

    def full(self) -> SnapshotBody:
        """Every slice as absolute records (base -1)."""
        if self._full is None:
            self._full = self.full_with_base(-1)
        return self._full

    def full_with_base(self, base: int) -> SnapshotBody:
        ri, rx, ry, ryaw = self.rest_columns
        a = b"".join(
            (
                self.near.astype("<u2").tobytes(),
                ri,
                self.x.astype("<i2").tobytes(),
                rx,
                self.y.astype("<i2").tobytes(),
                ry,
                self.yaw.astype("<u2").tobytes(),
                ryaw,
            )
        )
        return SnapshotBody(base, b"", a, 0, len(self.near) + self.rest_count)
