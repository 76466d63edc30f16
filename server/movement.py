"""Server-side move validation: the speed cap over time, the bar's walls and its furniture.

Clients send the position they predicted; the server moves the authoritative avatar toward it
through the shared solver (`neonbar.collision.CollisionWorld`), as far as the avatar's distance
budget allows, and the snapshot tells the client where it really is. All avatars with a pending
input are validated together, vectorized, once per tick.

Speed. Each avatar has a token bucket of distance: it earns ``speed_mps`` x the time since its
previous input (at most ``max_elapsed_s``), spends what it moves, and may keep up to ``slack_m``
of what it did not spend. Over any stretch of inputs an avatar therefore covers at most
``speed_mps`` x the elapsed time + ``slack_m``: sustained speed never exceeds ``speed_mps``
(granting the slack per input instead let avatars sustain ~12 m/s against 7). An honest client
walking at 5 m/s banks 2 m/s of unused budget, so inputs that arrive bunched by network jitter
(up to ``slack_m`` / speed_mps = 36 ms early with the defaults) are not corrected.

Standing still. A claim equal to the avatar's previous claim is not a move: the client has not
moved since, so the server keeps its own position, which crowd separation may have changed. Nor
is a claim that jumps to (within ``ECHO_CM`` of) a position the server itself gave this avatar
in the last ``ECHO_TICKS`` ticks:
that is a client taking in a correction (client/prediction.py adopts the position it is told),
not asking to go back there. A client that stands still therefore never drags its avatar back
into the crowd that pushed it out (that tug of war kept standing pairs 4-6 cm inside each other
and, with a 100 ms round trip, made avatars pushed along a wall bounce every tick).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from neonbar.collision import AVATAR_RADIUS_M, CollisionWorld
from neonbar.layout import Layout

_SPAWN_NEIGHBOURS = 96
# Crowd separation per tick (see CollisionWorld.separate): how many relaxation passes over the
# overlapping pairs found once per tick; the walls are resolved once, after them.
CROWD_PASSES = 8
# How many ticks of the server's own answers (cm, as snapshots carry them) are remembered per
# avatar to recognise a client echoing a correction: 800 ms of round trip at 20 Hz.
ECHO_TICKS = 16
ECHO_CM = 2
_NEVER_CM = np.iinfo(np.int32).min

Floats = NDArray[np.float64]


class MoveValidator:
    """Turns claimed positions into accepted ones, and keeps each avatar's distance budget.

    Args:
        layout: the bar.
        speed_mps: top speed (sprint), sustained over any window of inputs.
        slack_m: the most distance an avatar may bank beyond speed x time (jitter between
            inputs); a new avatar starts with a full bank.
        max_elapsed_s: elapsed time is capped so a client idle for a minute cannot teleport.
        radius_m: avatar radius (m).

    Avatars are named by small integer ids (the room's); per-avatar state lives in arrays
    indexed by id. Call `forget` when an id is given to a new avatar.
    """

    def __init__(
        self,
        layout: Layout,
        speed_mps: float = 7.0,
        slack_m: float = 0.25,
        max_elapsed_s: float = 1.0,
        radius_m: float = AVATAR_RADIUS_M,
    ) -> None:
        if not (speed_mps > 0 and slack_m >= 0 and max_elapsed_s > 0):
            raise ValueError("speed_mps and max_elapsed_s must be positive and slack_m >= 0")
        self.layout = layout
        self.speed_mps = float(speed_mps)
        self.slack_m = float(slack_m)
        self.max_elapsed_s = float(max_elapsed_s)
        # A solver that fails to build fails loudly: no avatar may walk through a wall.
        self.world = CollisionWorld(layout, radius_m=radius_m)
        self.crowd = True
        self._bank_m = np.zeros(0)  # unspent distance per avatar id (m)
        self._claim_m = np.zeros((0, 2))  # previous claim per avatar id (NaN: none yet)
        self._walked_m = np.zeros(0)  # moved by its own input since the last separate (m)
        # The positions (cm) separate() left each avatar at, over the last ECHO_TICKS calls.
        self._told_cm = np.full((0, ECHO_TICKS, 2), _NEVER_CM, dtype=np.int32)
        self._told_slot = 0

    # ------------------------------------------------------------------ per-avatar state
    def _ensure(self, ids: NDArray[np.int64]) -> None:
        need = int(ids.max()) + 1 if len(ids) else 0
        have = len(self._bank_m)
        if need <= have:
            return
        size = max(need, 2 * have, 64)
        bank = np.full(size, self.slack_m)
        bank[:have] = self._bank_m
        claim = np.full((size, 2), np.nan)
        claim[:have] = self._claim_m
        walked = np.zeros(size)
        walked[:have] = self._walked_m
        told = np.full((size, ECHO_TICKS, 2), _NEVER_CM, dtype=np.int32)
        told[:have] = self._told_cm
        self._bank_m, self._claim_m, self._walked_m, self._told_cm = bank, claim, walked, told

    def forget(self, avatar_id: int) -> None:
        """A new avatar takes this id: a full bank, no previous claim."""
        ids = np.array([avatar_id], dtype=np.int64)
        self._ensure(ids)
        self._bank_m[avatar_id] = self.slack_m
        self._claim_m[avatar_id] = np.nan
        self._walked_m[avatar_id] = 0.0
        self._told_cm[avatar_id] = _NEVER_CM

    def bank_m(self, avatar_id: int) -> float:
        """The distance (m) avatar_id may still cover beyond speed x time."""
        if avatar_id < len(self._bank_m):
            return float(self._bank_m[avatar_id])
        return self.slack_m

    # ------------------------------------------------------------------ moves
    def validate(
        self,
        pos_m: Floats,
        target_m: Floats,
        elapsed_s: Floats,
        ids: NDArray[np.int64] | None = None,
    ) -> Floats:
        """Accepted positions (N, 2) for avatars at pos_m claiming target_m after elapsed_s.

        Args:
            pos_m: (N, 2) authoritative positions (m).
            target_m: (N, 2) claimed positions (m).
            elapsed_s: (N,) seconds since each avatar's previous input.
            ids: (N,) avatar ids; their budgets and previous claims are used and updated.
                Without ids every avatar is judged alone, with a full bank and no history
                (tools and tests; the room always passes them).
        """
        pos = np.asarray(pos_m, dtype=np.float64)
        target = np.asarray(target_m, dtype=np.float64)
        elapsed = np.minimum(np.maximum(np.asarray(elapsed_s, dtype=np.float64), 0.0),
                             self.max_elapsed_s)  # fmt: skip
        if ids is None:
            bank = np.full(len(pos), self.slack_m)
            repeat = np.zeros(len(pos), dtype=bool)
        else:
            ids = np.asarray(ids, dtype=np.int64)
            self._ensure(ids)
            bank = self._bank_m[ids]
            repeat = _repeats(target, self._claim_m, self._told_cm, ids, ECHO_CM)
        delta = np.where(repeat[:, None], 0.0, target - pos)
        # A claim that is not a pair of finite numbers asks for nothing (the wire's int16 cm
        # cannot carry one; tools can).
        delta = np.where(np.isfinite(delta).all(axis=1, keepdims=True), delta, 0.0)
        dist = np.hypot(delta[:, 0], delta[:, 1])  # no overflow for far-off claims
        allowed = self.speed_mps * elapsed + bank
        granted = np.minimum(dist, allowed)
        scale = np.where(dist > allowed, allowed / np.maximum(dist, 1e-300), 1.0)
        delta = delta * scale[:, None]
        out = np.asarray(self.world.solve_moves(pos, delta), dtype=np.float64)
        if ids is not None:
            self._bank_m[ids] = np.minimum(allowed - granted, self.slack_m)
            self._claim_m[ids] = target
            self._walked_m[ids] = granted
        return out

    def separate(self, pos_m: Floats, ids: NDArray[np.int64] | None = None) -> Floats:
        """Crowd separation: avatars do not stand inside each other.

        Args:
            pos_m: (N, 2) positions (m) after this tick's moves.
            ids: (N,) avatar ids. With them, an avatar that moved by its own input since the
                last call yields to those standing still (it walked into them, it steps back),
                in proportion to how far it walked.
        """
        if len(pos_m) < 2:
            return pos_m
        yielding = None
        if ids is not None:
            ids = np.asarray(ids, dtype=np.int64)
            self._ensure(ids)
            yielding = self._walked_m[ids]
            self._walked_m[:] = 0.0
        out = self.world.separate(pos_m, iterations=CROWD_PASSES, yielding=yielding)
        if ids is not None:
            self._told_cm[ids, self._told_slot] = _to_cm(out)
            self._told_slot = (self._told_slot + 1) % ECHO_TICKS
        return out

    def spawn(self, rng: np.random.Generator, others_m: Floats) -> Floats:
        """A free point in the layout's spawn circle, clear of the avatars standing there."""
        layout = self.layout
        sx, sy = layout.spawn
        # Only avatars near the spawn circle matter; skipping the rest keeps a join cheap.
        reach_m = layout.spawn_radius_m + 1.0
        dist_m = np.hypot(others_m[:, 0] - sx, others_m[:, 1] - sy)
        near = others_m[dist_m < reach_m]
        if len(near) > _SPAWN_NEIGHBOURS:
            # A circle this crowded is full anyway; the nearest few decide where room is.
            nearest = np.argpartition(dist_m, _SPAWN_NEIGHBOURS)[:_SPAWN_NEIGHBOURS]
            near = others_m[nearest]
        return self.world.spawn_point(rng, occupied=near)

    def place(self, pos_m: Floats) -> Floats:
        """Move spawn points out of furniture and walls."""
        return self.world.depenetrate(pos_m)


def _to_cm(pos_m: Floats) -> NDArray[np.int64]:
    """Positions as the wire carries them (whole centimetres, int16 range)."""
    with np.errstate(invalid="ignore"):  # a NaN claim moves nothing, whatever it matches
        cm = np.rint(np.clip(pos_m, -327.68, 327.67) * 100.0)
    return np.where(np.isfinite(cm), cm, 0).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _wire_cm(v: float) -> int:
    """One coordinate as `_to_cm` makes it (NaN: 0)."""
    if np.isnan(v):
        return 0
    return int(np.rint(min(max(v, -327.68), 327.67) * 100.0))


@numba.njit(cache=True, nogil=True)
def _repeats(
    target: Floats,
    claim_m: Floats,
    told_cm: NDArray[np.int32],
    ids: NDArray[np.int64],
    echo_cm: int,
) -> NDArray[np.bool_]:
    """Per claim: is it no move of its own, but a repeat of the avatar's previous claim or
    the client echoing a position the server told it (a correction it adopted)?

    Within a centimetre or two: the client's replay and the wire's rounding move an adopted
    position that much; a walking client moves 12 cm per input. Only a claim that jumped can
    be an adopted correction: a slow walker's claims creep by less than `echo_cm` and are
    moves. One loop instead of a dozen array passes over (N, ECHO_TICKS, 2).
    """
    out = np.zeros(len(ids), np.bool_)
    for k in range(len(ids)):
        a = ids[k]
        tx, ty = target[k, 0], target[k, 1]
        px, py = claim_m[a, 0], claim_m[a, 1]
        if tx == px and ty == py:
            out[k] = True
            continue
        cx, cy = _wire_cm(tx), _wire_cm(ty)
        if max(abs(cx - _wire_cm(px)), abs(cy - _wire_cm(py))) <= echo_cm:
            continue
        for slot in range(told_cm.shape[1]):
            ex, ey = np.int64(told_cm[a, slot, 0]), np.int64(told_cm[a, slot, 1])
            if max(abs(cx - ex), abs(cy - ey)) <= echo_cm:
                out[k] = True
                break
    return out
