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

import numpy as np

from neonbar.protocol import pack_delta

MAX_AVATAR_IDS = 65536
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
    x_cm: np.ndarray  # int16[MAX_AVATAR_IDS]
    y_cm: np.ndarray  # int16
    yaw: np.ndarray  # uint16
    near: dict[int, np.ndarray]  # cell -> sorted avatar ids


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

    def cells_of(self, x_cm: np.ndarray, y_cm: np.ndarray) -> np.ndarray:
        """cell_of for many positions at once."""
        col = np.floor((np.asarray(x_cm, np.float64) + self.half_x_cm) / self.cell_cm)
        row = np.floor((np.asarray(y_cm, np.float64) + self.half_y_cm) / self.cell_cm)
        col = np.clip(col, 0, self.cols - 1).astype(np.int64)
        row = np.clip(row, 0, self.rows - 1).astype(np.int64)
        return row * self.cols + col

    @property
    def tick(self) -> int:
        return -1 if self._now is None else self._now.tick

    # ------------------------------------------------------------------------------- tick

    def begin_tick(
        self,
        tick: int,
        ids: np.ndarray,
        x_cm: np.ndarray,
        y_cm: np.ndarray,
        yaw: np.ndarray,
        cells: np.ndarray | list[int],
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
        slot = tick % len(self._ring)
        state = self._ring[slot]
        if state is None:
            state = _TickState(
                tick,
                np.zeros(MAX_AVATAR_IDS, np.int16),
                np.zeros(MAX_AVATAR_IDS, np.int16),
                np.zeros(MAX_AVATAR_IDS, np.uint16),
                {},
            )
            self._ring[slot] = state
        ids = np.asarray(ids, dtype=np.int64)
        state.tick = tick
        state.x_cm[ids] = x_cm
        state.y_cm[ids] = y_cm
        state.yaw[ids] = yaw
        state.near = {}
        self._now = state
        self._ids = ids
        self._bodies = {}
        self._slices = {}
        self._compute_slices(np.unique(np.asarray(cells, dtype=np.int64)), x_cm, y_cm)

    def _compute_slices(self, cells: np.ndarray, x_cm: np.ndarray, y_cm: np.ndarray) -> None:
        now = self._now
        assert now is not None
        ids, tick, n = self._ids, now.tick, len(self._ids)
        if len(cells) == 0:
            return
        if n == 0:
            for cell in cells.tolist():
                now.near[cell] = _EMPTY_IDS
                self._slices[cell] = _CellView.build(_EMPTY_IDS, _EMPTY_IDS, now)
            return
        centers = self._cell_centers_cm[cells].astype(np.float32)  # (C, 2)
        dx = np.asarray(x_cm, np.float32)[None, :] - centers[:, 0, None]
        dy = np.asarray(y_cm, np.float32)[None, :] - centers[:, 1, None]
        dist2 = dx * dx + dy * dy  # (C, n)
        near_k = min(self.near_k, n)
        inner_k = min(self.near_k + self.mid_k, n)
        kth = [k - 1 for k in sorted({near_k, inner_k}) if 0 < k < n]
        if kth:
            order = np.argpartition(dist2, kth, axis=1)
        else:
            order = np.broadcast_to(np.arange(n), (len(cells), n))
        near_ids = np.sort(ids[order[:, :near_k]], axis=1)
        mid_ids = ids[order[:, near_k:inner_k]]
        # Far: avatars outside near+mid whose turn it is this tick.
        far_turn = (ids + tick) % self.far_every == 0
        inner = np.zeros((len(cells), n), dtype=bool)
        np.put_along_axis(inner, order[:, :inner_k], True, axis=1)
        far_mask = far_turn[None, :] & ~inner
        mid_turn = (mid_ids + tick) % self.mid_every == 0
        for row, cell in enumerate(cells.tolist()):
            near = near_ids[row]
            rest = np.concatenate((mid_ids[row][mid_turn[row]], ids[far_mask[row]]))
            now.near[cell] = near
            self._slices[cell] = _CellView.build(near, rest, now)

    def near(self, cell: int) -> np.ndarray:
        """The sorted ids of the near set of `cell` at the current tick."""
        assert self._now is not None
        if cell not in self._slices:
            self._compute_slices(
                np.array([cell]), self._now.x_cm[self._ids], self._now.y_cm[self._ids]
            )
        return self._slices[cell].near

    # ----------------------------------------------------------------------------- encode

    def pick_base(self, cell: int, ack: int, sent_cells: dict[int, int]) -> int:
        """The base tick for a client served by `cell` now, or -1 for a full snapshot.

        Args:
            ack: the newest snapshot tick the client acknowledged (-1: none).
            sent_cells: tick -> cell, for every snapshot written to this connection recently.

        Snapshots travel in order on one connection, so a client that acknowledged `ack` also
        holds every snapshot written before it. Rounding the base down to a multiple of
        `base_stride` lets clients of a cell whose acks differ by a tick or two share one
        encoded body.
        """
        if ack < 0 or ack not in sent_cells:
            return -1
        aligned = ack - ack % self.base_stride
        if sent_cells.get(aligned) == cell and self.usable_base(cell, aligned):
            return aligned
        if sent_cells[ack] == cell and self.usable_base(cell, ack):
            return ack
        return -1

    def usable_base(self, cell: int, base: int) -> bool:
        """True when a delta against `base` is possible for a client served by `cell` at both."""
        if base < 0 or self._now is None:
            return False
        if not 0 < self._now.tick - base <= self.history_ticks:
            return False
        old = self._ring[base % len(self._ring)]
        return old is not None and old.tick == base and cell in old.near

    def body(self, cell: int, base: int = -1) -> SnapshotBody:
        """The shared snapshot body for clients served by `cell` whose acked base is `base`.

        The caller must have checked that the client was served by `cell` at `base`; a base that
        is too old or unknown gives a full snapshot (base -1).
        """
        if not self.usable_base(cell, base):
            base = -1
        key = (cell, base)
        cached = self._bodies.get(key)
        if cached is not None:
            return cached
        self.near(cell)  # a cell nobody announced at begin_tick is computed now
        body = self._encode(cell, base)
        self._bodies[key] = body
        return body

    def _encode(self, cell: int, base: int) -> SnapshotBody:
        view = self._slices[cell]
        if base < 0:
            return view.full(base)
        old = self._ring[base % len(self._ring)]
        assert old is not None
        near = view.near
        old_near = old.near[cell]
        if len(old_near):
            pos = np.searchsorted(old_near, near)
            np.minimum(pos, len(old_near) - 1, out=pos)
            in_base = old_near[pos] == near
        else:
            in_base = np.zeros(len(near), dtype=bool)
        ddx = view.x - old.x_cm[near]
        ddy = view.y - old.y_cm[near]
        # Yaw wraps: the difference mod 2^16 read as a signed 16-bit number.
        dyaw = (view.yaw - old.yaw[near]).astype(np.int16)
        changed = (ddx != 0) | (ddy != 0) | (dyaw != 0)
        small = (np.abs(ddx) <= _DELTA_LIMIT_CM) & (np.abs(ddy) <= _DELTA_LIMIT_CM)
        as_delta = in_base & changed & small
        as_absolute = ~in_base | (changed & ~small)
        d = b""
        delta_count = int(np.count_nonzero(as_delta))
        if delta_count:
            d = pack_delta(near[as_delta], ddx[as_delta], ddy[as_delta], dyaw[as_delta])
        return view.absolute(base, as_absolute, d, delta_count)


@dataclass
class _CellView:
    """One cell's slices at the current tick, with the columns every group of the cell reuses."""

    near: np.ndarray  # sorted ids (int64)
    x: np.ndarray  # near avatars' state (int32, for delta arithmetic)
    y: np.ndarray
    yaw: np.ndarray
    rest_columns: tuple[bytes, bytes, bytes, bytes]  # mid + far slices, packed per column
    rest_count: int
    _full: SnapshotBody | None = None

    @classmethod
    def build(cls, near: np.ndarray, rest: np.ndarray, now: _TickState) -> _CellView:
        columns = (
            rest.astype("<u2").tobytes(),
            now.x_cm[rest].astype("<i2").tobytes(),
            now.y_cm[rest].astype("<i2").tobytes(),
            now.yaw[rest].astype("<u2").tobytes(),
        )
        return cls(
            near,
            now.x_cm[near].astype(np.int32),
            now.y_cm[near].astype(np.int32),
            now.yaw[near].astype(np.int32),
            columns,
            len(rest),
        )

    def absolute(
        self, base: int, which: np.ndarray | None, d: bytes, delta_count: int
    ) -> SnapshotBody:
        """The body whose absolute section holds the near avatars in `which` + the rest.

        The section is columnar, so each column is the near part followed by the rest's part.
        """
        near = self.near if which is None else self.near[which]
        x = self.x if which is None else self.x[which]
        y = self.y if which is None else self.y[which]
        yaw = self.yaw if which is None else self.yaw[which]
        ri, rx, ry, ryaw = self.rest_columns
        a = b"".join(
            (
                near.astype("<u2").tobytes(),
                ri,
                x.astype("<i2").tobytes(),
                rx,
                y.astype("<i2").tobytes(),
                ry,
                yaw.astype("<u2").tobytes(),
                ryaw,
            )
        )
        return SnapshotBody(base, d, a, delta_count, len(near) + self.rest_count)

    def full(self, base: int) -> SnapshotBody:
        if self._full is None:
            self._full = self.absolute(-1, None, b"", 0)
        return self._full
