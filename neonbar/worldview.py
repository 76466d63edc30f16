"""What a client knows of the room's avatars: snapshot reconstruction and interpolation.

Sans-I/O and engine-free: fed decoded `snap` messages (neonbar.protocol) and times in seconds,
it answers with the tick to acknowledge and with interpolated positions for rendering.

Two parts:

* `WorldView` rebuilds the server's view tick by tick. A snapshot is either full (base = -1,
  every record absolute) or a delta against an older snapshot the client acknowledged, so the
  decoded state of the last `history_ticks` ticks is kept. A delta whose base is gone (or that
  refers to an avatar the base lacks) cannot be applied: the client answers ack = -1 and the
  server sends a full snapshot.
* `InterpolationBuffer` keeps the last few timestamped samples of every avatar and renders
  them a little in the past, interpolating between the two samples around the render time.
  Everything is computed with numpy over all avatars at once (rows of fixed-size arrays), so the
  per-frame cost does not grow with a Python loop per avatar.

Interest management makes update rates differ per avatar (20 Hz near, ~5 Hz mid, ~1 Hz far),
so each avatar is rendered behind by its own update period as well: a far avatar moves smoothly
from one 1 Hz sample to the next instead of jumping once a second. That extra delay is slewed
when an avatar changes rate, so it never jumps in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from neonbar import protocol
from neonbar.protocol import CM_PER_M, YAW_UNITS, ProtocolError

TWO_PI = 2 * math.pi
_YAW_RAD_PER_UNIT = TWO_PI / YAW_UNITS
_MAX_IDS = 65536


@dataclass
class AvatarStates:
    """Decoded state of every avatar at one tick; ids sorted ascending."""

    ids: npt.NDArray[np.int64]
    x_cm: npt.NDArray[np.int32]
    y_cm: npt.NDArray[np.int32]
    yaw_units: npt.NDArray[np.int32]  # 0..65535

    @classmethod
    def empty(cls) -> AvatarStates:
        return cls(
            np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int32),
            np.empty(0, np.int32),
        )  # fmt: skip

    def copy(self) -> AvatarStates:
        return AvatarStates(self.ids.copy(), self.x_cm.copy(), self.y_cm.copy(),
                            self.yaw_units.copy())  # fmt: skip

    def without(self, avatar_id: int) -> AvatarStates:
        keep = self.ids != avatar_id
        return AvatarStates(self.ids[keep], self.x_cm[keep], self.y_cm[keep],
                            self.yaw_units[keep])  # fmt: skip


class MissingBase(Exception):
    """A delta snapshot refers to a tick (or an avatar) this client no longer holds."""


def apply_sections(base: AvatarStates, delta: bytes, absolute: bytes) -> AvatarStates:
    """The state at a tick: `base` updated by the delta records, then by the absolute records.

    Raises:
        MissingBase: a delta record names an avatar that `base` does not hold.
        ProtocolError: a section is malformed.
    """
    state = base.copy()
    d_ids, dx, dy, dyaw = protocol.unpack_delta(delta)
    if len(d_ids):
        d_ids = d_ids.astype(np.int64)
        if len(state.ids) == 0:
            raise MissingBase("delta for avatars the base does not hold")
        idx = np.minimum(np.searchsorted(state.ids, d_ids), len(state.ids) - 1)
        if not np.array_equal(state.ids[idx], d_ids):
            raise MissingBase("delta for avatars the base does not hold")
        state.x_cm[idx] += dx
        state.y_cm[idx] += dy
        state.yaw_units[idx] = (state.yaw_units[idx] + dyaw) % YAW_UNITS
    a_ids, ax, ay, ayaw = protocol.unpack_absolute(absolute)
    if len(a_ids):
        a_ids = a_ids.astype(np.int64)
        if len(state.ids):
            idx = np.minimum(np.searchsorted(state.ids, a_ids), len(state.ids) - 1)
            found = state.ids[idx] == a_ids
        else:
            idx = np.zeros(len(a_ids), np.int64)
            found = np.zeros(len(a_ids), bool)
        hit = idx[found]
        state.x_cm[hit] = ax[found]
        state.y_cm[hit] = ay[found]
        state.yaw_units[hit] = ayaw[found]
        new = ~found
        if new.any():
            ids = np.concatenate([state.ids, a_ids[new]])
            order = np.argsort(ids, kind="stable")
            state = AvatarStates(
                ids[order],
                np.concatenate([state.x_cm, ax[new].astype(np.int32)])[order],
                np.concatenate([state.y_cm, ay[new].astype(np.int32)])[order],
                np.concatenate([state.yaw_units, ayaw[new].astype(np.int32)])[order],
            )
    return state


@dataclass
class SnapshotResult:
    """What applying one snapshot did."""

    ack: int  # tick to acknowledge in the next input; -1 asks for a full snapshot
    applied: bool
    updated_ids: npt.NDArray[np.int64]  # avatars that had a record in this snapshot


class WorldView:
    """The client's reconstruction of the room, tick by tick.

    Args:
        history_ticks: decoded states kept for delta bases (the server deltas against a tick the
            client acknowledged, which is a round trip old: 32 ticks = 1.6 s of slack).
        interpolate: keep an `InterpolationBuffer` (a load-test bot can skip it).
        tick_s: the server's tick period.
    """

    def __init__(self, history_ticks: int = 32, interpolate: bool = True, tick_s: float = 0.05):
        self.history_ticks = history_ticks
        self._states: dict[int, AvatarStates] = {}
        self.latest_tick: int = -1
        self.ack: int = -1
        self.you: tuple[int, int, int, int] | None = None  # x_cm, y_cm, yaw, last_seq
        self.snapshots = 0
        self.missing_bases = 0
        self._seen = np.zeros(_MAX_IDS, bool)
        self.buffer = InterpolationBuffer(tick_s=tick_s) if interpolate else None

    @property
    def avatars_seen(self) -> int:
        """Distinct avatars that ever had a record in a snapshot."""
        return int(self._seen.sum())

    def seen_ids(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self._seen)

    def current(self) -> AvatarStates:
        """The state at the latest applied tick (empty before the first snapshot)."""
        return self._states.get(self.latest_tick) or AvatarStates.empty()

    def reset(self) -> None:
        """Forget everything (a new session, not a resumed one)."""
        self._states.clear()
        self.latest_tick = -1
        self.ack = -1
        self.you = None
        if self.buffer is not None:
            self.buffer.clear()

    def remove(self, avatar_id: int) -> None:
        """An avatar left (reliable `leave` event): drop it from every kept tick."""
        self._states = {t: s.without(avatar_id) for t, s in self._states.items()}
        if self.buffer is not None:
            self.buffer.remove(avatar_id)

    def apply(self, snap: dict[str, Any]) -> SnapshotResult:
        """Apply one decoded, validated `snap` message.

        Raises:
            ProtocolError: a malformed section (the snapshot is dropped, state is unchanged).
        """
        tick, base_tick = snap["tick"], snap["base"]
        if tick <= self.latest_tick and base_tick != -1:
            # Older than what we hold (cannot happen on one TCP stream, but a resumed connection
            # may overlap): ignore, keep acking the newest.
            return SnapshotResult(self.ack, False, np.empty(0, np.int64))
        if base_tick == -1:
            base = AvatarStates.empty()
        else:
            held = self._states.get(base_tick)
            if held is None:
                return self._lost_base()
            base = held
        try:
            state = apply_sections(base, snap["d"], snap["a"])
        except MissingBase:
            return self._lost_base()
        # Older views stay: the server may still send a delta against a tick acked before a
        # full snapshot (its acks lag a round trip behind).
        self._states[tick] = state
        self.latest_tick = max(self.latest_tick, tick)
        for old in [t for t in self._states if t <= self.latest_tick - self.history_ticks]:
            del self._states[old]
        self.ack = tick
        self.snapshots += 1
        you = snap.get("you")
        if isinstance(you, list) and len(you) == 4:
            self.you = (you[0], you[1], you[2] % YAW_UNITS, you[3])
        d_ids = np.frombuffer(snap["d"], "<u2", len(snap["d"]) // protocol.DELTA_RECORD_BYTES)
        a_ids = np.frombuffer(snap["a"], "<u2", len(snap["a"]) // protocol.ABS_RECORD_BYTES)
        updated = np.unique(np.concatenate([d_ids, a_ids]).astype(np.int64))
        self._seen[updated] = True
        if self.buffer is not None and len(updated):
            idx = np.searchsorted(state.ids, updated)
            self.buffer.push(
                updated,
                state.x_cm[idx] / CM_PER_M,
                state.y_cm[idx] / CM_PER_M,
                state.yaw_units[idx] * _YAW_RAD_PER_UNIT,
                float(snap["st"]),
            )
        return SnapshotResult(tick, True, updated)

    def sample(
        self, render_time_s: float, exclude: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Interpolated avatars at server time `render_time_s`; see `InterpolationBuffer`."""
        if self.buffer is None:
            raise RuntimeError("this WorldView was built without interpolation")
        return self.buffer.sample(render_time_s, exclude)

    def _lost_base(self) -> SnapshotResult:
        self.missing_bases += 1
        self.ack = -1
        return SnapshotResult(-1, False, np.empty(0, np.int64))


def _wrap_pi(angle_rad: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Angles to [-π, π): the short way round."""
    return (angle_rad + math.pi) % TWO_PI - math.pi


class InterpolationBuffer:
    """Timestamped samples per avatar, sampled in the past with numpy over all avatars.

    Each avatar owns one row of (capacity, depth) arrays; the newest sample is in the last
    column and older ones shift left, NaN where there is none yet.

    Args:
        depth: samples kept per avatar.
        tick_s: server tick period (the fastest update period).
        max_period_s: slowest expected update period (far avatars ~1 Hz). A longer gap means
            the avatar stood still (unchanged near avatars are not resent), so a "hold" sample
            is inserted one period before the new one instead of gliding across the whole gap;
            shorter pauses of near avatars are recognised by the distance covered.
        extrapolate_cap_s: how far past its newest sample an avatar is predicted when
            snapshots stall; beyond that it waits.
        delay_slew: rate (s of delay per s) at which an avatar's extra delay follows a change
            of its update period: 0.5 means it plays at 0.5x-1.5x speed while adapting.
    """

    _ids: npt.NDArray[np.int64]  # avatar id of each row, -1 when free
    _active: npt.NDArray[np.bool_]  # per row

    def __init__(
        self,
        depth: int = 8,
        tick_s: float = 0.05,
        max_period_s: float = 1.25,
        extrapolate_cap_s: float = 0.1,
        delay_slew: float = 0.5,
        capacity: int = 64,
    ) -> None:
        self.depth = depth
        self.tick_s = tick_s
        self.max_period_s = max_period_s
        self.extrapolate_cap_s = extrapolate_cap_s
        self.delay_slew = delay_slew
        self._row_of = np.full(_MAX_IDS, -1, np.int64)
        self._free: list[int] = []
        self.latest_st: float = -math.inf
        self._last_render_s: float | None = None
        self._alloc(capacity)
        self._active_rows = np.empty(0, np.int64)
        self._rows_dirty = False

    def _alloc(self, capacity: int) -> None:
        old = getattr(self, "_t", None)
        n_old = 0 if old is None else old.shape[0]
        shape = (capacity, self.depth)

        def grow(
            arr: npt.NDArray[np.float64] | None, fill: float, two_d: bool
        ) -> npt.NDArray[np.float64]:
            new = np.full(shape if two_d else (capacity,), fill, np.float64)
            if arr is not None:
                new[:n_old] = arr
            return new

        self._t = grow(old, math.nan, True)
        self._x = grow(getattr(self, "_x", None), 0.0, True)
        self._y = grow(getattr(self, "_y", None), 0.0, True)
        self._yaw = grow(getattr(self, "_yaw", None), 0.0, True)
        self._period = grow(getattr(self, "_period", None), self.tick_s, False)
        self._extra = grow(getattr(self, "_extra", None), 0.0, False)
        ids = np.full(capacity, -1, np.int64)
        active = np.zeros(capacity, bool)
        if n_old:
            ids[:n_old] = self._ids
            active[:n_old] = self._active
        self._ids, self._active = ids, active
        self._free.extend(range(capacity - 1, n_old - 1, -1))

    def __len__(self) -> int:
        return int(self._active.sum())

    def clear(self) -> None:
        for avatar_id in self._ids[self._active]:
            self.remove(int(avatar_id))
        self.latest_st = -math.inf

    def remove(self, avatar_id: int) -> None:
        row = int(self._row_of[avatar_id]) if 0 <= avatar_id < _MAX_IDS else -1
        if row < 0:
            return
        self._row_of[avatar_id] = -1
        self._active[row] = False
        self._ids[row] = -1
        self._t[row] = math.nan
        self._free.append(row)
        self._rows_dirty = True

    def _rows_for(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        rows = self._row_of[ids]
        for i in np.flatnonzero(rows < 0):  # only avatars never seen before: rare
            if not self._free:
                self._alloc(self._t.shape[0] * 2)
            row = self._free.pop()
            avatar_id = int(ids[i])
            self._row_of[avatar_id] = row
            self._ids[row] = avatar_id
            self._active[row] = True
            self._period[row] = self.tick_s
            self._extra[row] = 0.0
            rows[i] = row
            self._rows_dirty = True
        return rows

    def _shift_in(
        self,
        rows: npt.NDArray[np.integer[Any]],
        t: float | npt.NDArray[np.float64],
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.float64],
        yaw: npt.NDArray[np.float64],
    ) -> None:
        for arr, value in ((self._t, t), (self._x, x), (self._y, y), (self._yaw, yaw)):
            arr[rows, :-1] = arr[rows, 1:]
            arr[rows, -1] = value

    def push(
        self,
        ids: npt.NDArray[np.integer[Any]],
        x_m: npt.NDArray[np.float64],
        y_m: npt.NDArray[np.float64],
        yaw_rad: npt.NDArray[np.float64],
        st_s: float,
    ) -> None:
        """Record the new states of `ids` (distinct) as of server time `st_s`."""
        rows = self._rows_for(np.asarray(ids, np.int64))
        self.latest_st = max(self.latest_st, st_s)
        last_t = self._t[rows, -1]
        fresh = np.isnan(last_t)
        newer = fresh | (st_s > last_t)
        if not newer.all():  # a replayed or out-of-order record: keep the newer sample
            rows, x_m, y_m, yaw_rad = rows[newer], x_m[newer], y_m[newer], yaw_rad[newer]
            last_t, fresh = last_t[newer], fresh[newer]
        gap_s = st_s - last_t
        with np.errstate(invalid="ignore", divide="ignore"):
            still = ~fresh & (gap_s > self.max_period_s)
            # A near avatar (updated every tick) that stood still is omitted while unchanged;
            # when it walks on, the gap is not an update period. Told apart from a move to a
            # slower interest tier by distance: it covered about one tick of its old speed,
            # not a whole gap's worth.
            prev_t = self._t[rows, -2]
            seg_s = last_t - prev_t
            last_dx = self._x[rows, -1] - self._x[rows, -2]
            last_dy = self._y[rows, -1] - self._y[rows, -2]
            prev_speed = np.hypot(last_dx, last_dy) / seg_s
            moved_m = np.hypot(x_m - self._x[rows, -1], y_m - self._y[rows, -1])
            paused = (
                ~fresh
                & ~still
                & (self._period[rows] <= 1.5 * self.tick_s)
                & (gap_s > 2.5 * self.tick_s)
                & (moved_m < 0.5 * prev_speed * gap_s)
            )
            still |= paused
        if still.any():
            hold = rows[still]
            hold_t = st_s - self._period[hold]
            self._shift_in(hold, hold_t, self._x[hold, -1], self._y[hold, -1], self._yaw[hold, -1])
        moving = ~fresh & ~still
        period = np.clip(gap_s[moving], self.tick_s, self.max_period_s)
        self._period[rows[moving]] = period
        # Until an avatar has a few samples its delay has nothing to slew from.
        young = rows[moving][np.isnan(self._t[rows[moving], -3])]
        self._extra[young] = np.maximum(0.0, self._period[young] - self.tick_s)
        self._shift_in(rows, st_s, x_m, y_m, yaw_rad)

    def _rows(self) -> npt.NDArray[np.intp]:
        if self._rows_dirty:
            self._active_rows = np.flatnonzero(self._active)
            self._rows_dirty = False
        return self._active_rows

    def sample(
        self, render_time_s: float, exclude: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Positions of every avatar at server time `render_time_s` (already delayed).

        Returns:
            ids (N,) int64, pos_m (N, 2) float64, yaw_rad (N,) float64 in [0, 2π).
        """
        rows = self._rows()
        if exclude is not None and 0 <= exclude < _MAX_IDS and self._row_of[exclude] >= 0:
            rows = rows[rows != self._row_of[exclude]]
        n = len(rows)
        if n == 0:
            return np.empty(0, np.int64), np.empty((0, 2)), np.empty(0)
        k = self.depth
        # Slew each avatar's extra delay toward one update period (beyond the tick period).
        if self._last_render_s is None:
            step_s = 0.0
        else:
            step_s = min(max(render_time_s - self._last_render_s, 0.0), 0.25) * self.delay_slew
        self._last_render_s = render_time_s
        target = np.maximum(0.0, self._period[rows] - self.tick_s)
        extra = self._extra[rows]
        extra += np.clip(target - extra, -step_s, step_s)
        self._extra[rows] = extra
        r = render_time_s - extra

        t = self._t[rows]
        with np.errstate(invalid="ignore"):
            n_after = (t > r[:, None]).sum(axis=1)
        n_valid = k - np.isnan(t).sum(axis=1)
        oldest = k - n_valid
        k1 = k - n_after  # first sample after r (k when r is past the newest)
        past_end = k1 >= k
        before_start = k1 <= oldest
        k1c = np.clip(k1, 1, k - 1)
        k0 = k1c - 1
        # Rows with a single sample, or r before the oldest: hold one sample.
        single = past_end & (n_valid < 2) | before_start
        k0 = np.where(single, np.where(past_end, k - 1, oldest), k0)
        k1c = np.where(single, k0, k1c)

        ar = np.arange(n)
        t0, t1 = t[ar, k0], t[ar, k1c]
        span = t1 - t0
        safe_span = np.where(span > 0, span, 1.0)
        alpha = np.where(span > 0, (r - t0) / safe_span, 0.0)
        # Past the newest sample: predict only while no snapshot that should have carried
        # this avatar has arrived (a stall); otherwise it simply stands still.
        stalled = self.latest_st < t1 + 0.9 * self._period[rows]
        over_s = np.minimum(r - t1, self.extrapolate_cap_s)
        extrap = past_end & ~single & stalled
        alpha = np.where(past_end & ~single, np.where(extrap, 1.0 + over_s / safe_span, 1.0), alpha)

        x0, x1 = self._x[rows, k0], self._x[rows, k1c]
        y0, y1 = self._y[rows, k0], self._y[rows, k1c]
        w0, w1 = self._yaw[rows, k0], self._yaw[rows, k1c]
        pos = np.empty((n, 2))
        pos[:, 0] = x0 + (x1 - x0) * alpha
        pos[:, 1] = y0 + (y1 - y0) * alpha
        yaw = (w0 + _wrap_pi(w1 - w0) * alpha) % TWO_PI
        return self._ids[rows], pos, yaw


__all__ = [
    "AvatarStates",
    "InterpolationBuffer",
    "MissingBase",
    "ProtocolError",
    "SnapshotResult",
    "WorldView",
    "apply_sections",
]
