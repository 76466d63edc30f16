"""The local avatar's movement: predicted at once, reconciled with the server without a snap.

Plain Python + numpy (no Panda3D), so it is tested without a window. The client moves its own
avatar through the shared collision solver the instant a key is down, sends the resulting position
(`NetSession.set_local_state`), and the server answers with where it really put us. The inputs are
absolute positions, so the server's answer is either one of the positions we sent (accepted) or a
different one (corrected: speed cap, a wall, someone else's chair). Only the second case moves us:
the error is added to an offset that is drawn down over `blend_s`, never applied in one frame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from neonbar.collision import AVATAR_RADIUS_M, CollisionWorld
from neonbar.layout import Layout

WALK_MPS = 2.4
SPRINT_MPS = 5.0
TURN_RAD_S = 2.6
ACCEPT_M = 0.05  # a server position this close to one we sent means "accepted"
TELEPORT_M = 4.0  # an error this large (resume, kick back to spawn) is applied at once


def make_collision(layout: Layout, radius_m: float = AVATAR_RADIUS_M) -> CollisionWorld:
    """The shared solver, built as the server builds it, so prediction matches authority."""
    return CollisionWorld(layout, radius_m=radius_m)


@dataclass
class MoveInput:
    """What the player is asking for this frame (from the keyboard and mouse)."""

    forward: float = 0.0  # -1 back .. 1 forward
    strafe: float = 0.0  # -1 left .. 1 right
    turn: float = 0.0  # -1 right (clockwise) .. 1 left, as yaw grows counter-clockwise
    sprint: bool = False
    mouse_turn_rad: float = 0.0  # extra yaw from the mouse this frame


@dataclass
class LocalMotion:
    """Predicted position of our avatar, plus the smoothed server correction.

    `pos`/`yaw_rad` are the prediction (what we send); `shown()` adds the fading correction
    offset, which is what the camera and the figure follow.
    """

    layout: Layout
    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    blend_s: float = 0.15
    collision: CollisionWorld | None = None
    speed_mps: float = 0.0  # actual speed over the last step, for the walk animation
    _offset: np.ndarray = field(default_factory=lambda: np.zeros(2))
    # Recent predictions (x_m, y_m) with the sum of corrections applied before each.
    _sent: deque[tuple[float, float, float, float]] = field(
        default_factory=lambda: deque(maxlen=120)
    )
    _shift: np.ndarray = field(default_factory=lambda: np.zeros(2))
    _last_seq: int = -1

    def place(self, x_m: float, y_m: float, yaw_rad: float | None = None) -> None:
        """Jump to a position (welcome, resume) with no blending."""
        self.x_m, self.y_m = float(x_m), float(y_m)
        if yaw_rad is not None:
            self.yaw_rad = float(yaw_rad)
        self._offset[:] = 0.0
        self._sent.clear()

    def step(self, move: MoveInput, dt_s: float) -> tuple[float, float, float]:
        """Advance the prediction by one frame; returns the new (x_m, y_m, yaw_rad)."""
        dt_s = min(max(dt_s, 0.0), 0.1)  # a hitch must not become a teleport
        self.yaw_rad = _wrap(self.yaw_rad + move.turn * TURN_RAD_S * dt_s + move.mouse_turn_rad)
        fwd = max(-1.0, min(1.0, move.forward))
        side = max(-1.0, min(1.0, move.strafe))
        norm = math.hypot(fwd, side)
        if norm > 1.0:
            fwd, side = fwd / norm, side / norm
        speed = (SPRINT_MPS if move.sprint else WALK_MPS) * dt_s
        # Yaw 0 faces +y; forward is (-sin, cos), right is (cos, sin).
        s, c = math.sin(self.yaw_rad), math.cos(self.yaw_rad)
        dx = (-s * fwd + c * side) * speed
        dy = (c * fwd + s * side) * speed
        x0, y0 = self.x_m, self.y_m
        self.x_m, self.y_m = self._solve(self.x_m, self.y_m, dx, dy)
        self.speed_mps = math.hypot(self.x_m - x0, self.y_m - y0) / dt_s if dt_s > 0 else 0.0
        self._decay(dt_s)
        self._sent.append((self.x_m, self.y_m, float(self._shift[0]), float(self._shift[1])))
        return self.x_m, self.y_m, self.yaw_rad

    def _solve(self, x: float, y: float, dx: float, dy: float) -> tuple[float, float]:
        if self.collision is not None:
            out = self.collision.solve_moves(np.array([[x, y]]), np.array([[dx, dy]]))
            return float(out[0, 0]), float(out[0, 1])
        margin = AVATAR_RADIUS_M
        hx, hy = self.layout.half_x - margin, self.layout.half_y - margin
        return min(max(x + dx, -hx), hx), min(max(y + dy, -hy), hy)

    def _decay(self, dt_s: float) -> None:
        # Exponential draw-down: ~95% of an error is gone after blend_s.
        if self.blend_s > 0:
            self._offset *= math.exp(-3.0 * dt_s / self.blend_s)
        else:
            self._offset[:] = 0.0

    def reconcile(
        self,
        x_m: float,
        y_m: float,
        last_seq: int,
        sent: tuple[float, float] | None = None,
    ) -> bool:
        """Take the server's position for us; returns True when it was a real correction.

        Args:
            x_m, y_m: where the server put us after applying input `last_seq`.
            last_seq: the last input the server applied.
            sent: the position input `last_seq` carried (`NetSession.sent_state`), if known.
                Without it, the recent predictions stand in for it.

        Inputs already on their way when we corrected carry the uncorrected prediction, and the
        server's answers to them still show the same error: each prediction remembers the
        corrections made before it (`_shift`), so an error is applied once, not once per input
        in flight.
        """
        if last_seq == self._last_seq:
            return False
        self._last_seq = last_seq
        history = self._sent
        if sent is None:
            if not history:
                return False
            recent = np.array(history)
            # Where each recent prediction would be now, with the corrections made since.
            now = recent[:, :2] + (self._shift - recent[:, 2:])
            k = int(np.argmin(np.hypot(now[:, 0] - x_m, now[:, 1] - y_m)))
            sent = (float(recent[k, 0]), float(recent[k, 1]))
            shift_then = recent[k, 2:]
        else:
            shift_then = self._shift_when(sent)
        # Where `sent` stands after the corrections made since it was predicted.
        then_x = sent[0] + float(self._shift[0] - shift_then[0])
        then_y = sent[1] + float(self._shift[1] - shift_then[1])
        err = math.hypot(x_m - then_x, y_m - then_y)
        if err <= ACCEPT_M:
            return False
        if err >= TELEPORT_M:
            self.place(x_m, y_m)
            return True
        # Replay: what we moved since that input, re-applied from where the server put us.
        shown = np.array(self.shown()[:2])
        before = np.array([self.x_m, self.y_m])
        self.x_m, self.y_m = self._solve(x_m, y_m, self.x_m - then_x, self.y_m - then_y)
        self._shift += np.array([self.x_m, self.y_m]) - before
        # ... and the jump is not shown: it fades out of the offset over blend_s.
        self._offset = shown - np.array([self.x_m, self.y_m])
        return True

    def _shift_when(self, sent: tuple[float, float]) -> np.ndarray:
        """The corrections made before the prediction `sent` (newest match; now if unknown)."""
        for x, y, sx, sy in reversed(self._sent):
            if x == sent[0] and y == sent[1]:
                return np.array([sx, sy])
        return self._shift.copy()

    def shown(self) -> tuple[float, float, float]:
        """Where to draw our avatar: the prediction plus what is left of the last correction."""
        return self.x_m + float(self._offset[0]), self.y_m + float(self._offset[1]), self.yaw_rad

    @property
    def correction_m(self) -> float:
        """Length of the correction still being blended out (m)."""
        return float(np.hypot(*self._offset))


def _wrap(angle_rad: float) -> float:
    return (angle_rad + math.pi) % (2 * math.pi) - math.pi
