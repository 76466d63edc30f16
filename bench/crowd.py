"""A crowd at rest: 80 avatars walk to the big screen and stand; 16 press against a wall.

Runs the server's movement path for every tick (`MoveValidator.validate`, then `separate`, as
server/room.py does) fed by clients that predict and reconcile with the real client code
(`client.prediction.LocalMotion`): each client turns toward where it is going and holds
"forward", sends its predicted position in centimetres every tick, and hears the server's answer
for it two ticks later (one tick each way, 100 ms round trip). No clocks, no sockets, seeded:
the same figures every run on every machine.

Scenes:
  screen  80 people start spread over the south half and walk (2.4 m/s) to spots in a band in
          front of the big screen (8 x 2.5 m: tighter than 80 people fit); each stops when at
          its spot or when held back (less than a quarter of its walking progress over 0.5 s)
  wall    16 people placed shoulder in shoulder (0.45 m apart: 15 cm inside each other) along
          the north wall, all facing it and holding "forward" the whole time

Figures, 5 s after the last person stopped (screen) or after the start (wall):
  overlap  the deepest pair overlap (cm) at the end, and the pairs overlapping more than 3 cm
  jitter   how far (mm) the server moved an avatar in one tick while its client asked for no
           move (its input unchanged), over the last 2.5 s of those 5 (the first half is the
           crowd spreading out): median, p99 and max over every such avatar-tick

Anchor, same run: the movement path this project had before (0.25 m of slack granted per input,
a repeated claim pulling the avatar back to it, one summed separation pass of stiffness 0.75),
reproduced below as `PreviousServer`.

Also timed (the only timed figure): the crowd step alone for 1,000 avatars walking all over the
floor, median CPU ms per tick, ours and the previous one on the same positions.

Usage:
  python bench/crowd.py            both scenes, ours and the previous path, and the cost
  python bench/crowd.py --json     one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client.prediction import LocalMotion, MoveInput
from neonbar.collision import AVATAR_RADIUS_M, CollisionWorld, _crowd_pairs
from neonbar.layout import Layout, load_layout
from server.movement import MoveValidator

TICK_S = 0.05
LATENCY_TICKS = 1  # each way
SETTLE_S = 5.0
JITTER_FROM_S = 2.5  # jitter is counted over the last half of SETTLE_S (at rest, not settling)
OVERLAP_LIMIT_M = 0.03
ARRIVE_M = 0.4
HELD_BACK_TICKS = 10  # 0.5 s

Server = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class OurServer:
    """This project's path: MoveValidator with per-avatar budgets and yielding separation."""

    def __init__(self, layout: Layout) -> None:
        self.moves = MoveValidator(layout)

    def __call__(self, pos: np.ndarray, claims: np.ndarray, ids: np.ndarray) -> np.ndarray:
        pos = pos.copy()
        pos[ids] = self.moves.validate(pos[ids], claims, np.full(len(ids), TICK_S), ids)
        everyone = np.arange(len(pos))
        return self.moves.separate(pos, everyone)


class PreviousServer:
    """The movement path before: per-input slack, claims pull back, one summed push."""

    def __init__(self, layout: Layout, speed_mps: float = 7.0, slack_m: float = 0.25) -> None:
        self.world = CollisionWorld(layout)
        self.speed_mps, self.slack_m = speed_mps, slack_m

    def __call__(self, pos: np.ndarray, claims: np.ndarray, ids: np.ndarray) -> np.ndarray:
        pos = pos.copy()
        delta = claims - pos[ids]
        dist = np.hypot(delta[:, 0], delta[:, 1])
        allowed = self.speed_mps * TICK_S + self.slack_m
        delta *= np.where(dist > allowed, allowed / np.maximum(dist, 1e-9), 1.0)[:, None]
        pos[ids] = self.world.solve_moves(pos[ids], delta)
        return self.separate_only(pos)

    def separate_only(self, pos: np.ndarray) -> np.ndarray:
        """One pass: half of every overlap, summed per avatar, x 0.75, at most a radius."""
        pos = pos.copy()
        reach = 2 * self.world.radius_m
        i, j = _crowd_pairs(pos, reach)
        d = pos[i] - pos[j]
        dist = np.hypot(d[:, 0], d[:, 1])
        u = np.where(dist[:, None] > 0, d / np.maximum(dist, 1e-300)[:, None], [1.0, 0.0])
        half = (reach - dist) / 2 * 0.75
        push = np.zeros_like(pos)
        for axis in (0, 1):
            push[:, axis] = np.bincount(i, u[:, axis] * half, len(pos)) - np.bincount(
                j, u[:, axis] * half, len(pos)
            )
        size = np.hypot(push[:, 0], push[:, 1])
        push *= np.where(size > self.world.radius_m, self.world.radius_m / np.maximum(size, 1e-300),
                         1.0)[:, None]  # fmt: skip
        moving = size > 0
        pos[moving] = self.world.solve_moves(pos[moving], push[moving])
        return pos


@dataclass
class Result:
    scene: str
    server: str
    people: int
    settled_at_s: float
    worst_overlap_cm: float
    pairs_over_3cm: int
    jitter_median_mm: float
    jitter_p99_mm: float
    jitter_max_mm: float
    still_samples: int


def simulate(
    layout: Layout,
    server: Server,
    start: np.ndarray,
    goal: np.ndarray,
    stop_when_there: bool,
    max_walk_s: float = 30.0,
) -> Result:
    """Drive clients and one server tick by tick; measure the 5 s after everyone stood."""
    n = len(start)
    world = CollisionWorld(layout)
    clients = [LocalMotion(layout, float(x), float(y), collision=world) for x, y in start]
    pos = start.copy()  # the server's positions
    standing = np.zeros(n, dtype=bool)
    uplink: deque[tuple[int, np.ndarray]] = deque()  # (arrives at tick, claims in m)
    downlink: deque[tuple[int, np.ndarray, np.ndarray, int]] = deque()
    sent: dict[int, np.ndarray] = {}  # input seq -> predicted positions that input carried
    progress: deque[np.ndarray] = deque(maxlen=HELD_BACK_TICKS + 1)
    last_claim = np.full((n, 2), np.nan)
    ids = np.arange(n)
    settled_tick = None
    still_moves: list[np.ndarray] = []
    tick = 0
    max_ticks = round((max_walk_s + SETTLE_S) / TICK_S)
    while tick < max_ticks:
        # Clients: turn toward the goal, hold forward unless standing, predict, send.
        predicted = np.empty((n, 2))
        for k, motion in enumerate(clients):
            if standing[k]:
                motion.step(MoveInput(), TICK_S)
            else:
                # Walkers head for their spot; pressers keep the heading they started with.
                dx, dy = goal[k, 0] - motion.x_m, goal[k, 1] - motion.y_m
                if not stop_when_there:
                    dx, dy = goal[k, 0] - start[k, 0], goal[k, 1] - start[k, 1]
                want = math.atan2(-dx, dy)  # yaw 0 faces +y; forward is (-sin, cos)
                turn = (want - motion.yaw_rad + math.pi) % (2 * math.pi) - math.pi
                motion.step(MoveInput(forward=1.0, mouse_turn_rad=turn), TICK_S)
            predicted[k] = motion.x_m, motion.y_m
        sent[tick] = predicted
        claims = np.rint(predicted * 100) / 100  # the wire carries centimetres
        uplink.append((tick + LATENCY_TICKS, claims))
        # Server: this tick's inputs, then the crowd.
        before = pos.copy()
        while uplink and uplink[0][0] <= tick:
            _, arrived = uplink.popleft()
            asked_nothing = (arrived == last_claim).all(axis=1)
            pos = server(pos, arrived, ids)
            last_claim = arrived
            downlink.append((tick + LATENCY_TICKS, np.rint(pos * 100) / 100, asked_nothing,
                             tick - LATENCY_TICKS))  # fmt: skip
            if settled_tick is not None and tick - settled_tick >= round(JITTER_FROM_S / TICK_S):
                still_moves.append(np.hypot(*(pos - before).T)[asked_nothing])
        # Clients hear the server's answer to an earlier input and reconcile.
        while downlink and downlink[0][0] <= tick:
            _, answer, _, seq = downlink.popleft()
            for k, motion in enumerate(clients):
                carried = sent[seq][k]
                motion.reconcile(answer[k, 0], answer[k, 1], seq,
                                 (float(carried[0]), float(carried[1])))  # fmt: skip
            sent.pop(seq - 8, None)
        # People stop at their spot, or when the crowd holds them back.
        if stop_when_there and settled_tick is None:
            here = np.array([(m.x_m, m.y_m) for m in clients])
            left_m = np.hypot(*(goal - here).T)
            progress.append(left_m)
            stop = left_m < ARRIVE_M
            if len(progress) > HELD_BACK_TICKS:
                walked_m = 2.4 * TICK_S * HELD_BACK_TICKS
                stop |= progress[0] - left_m < 0.25 * walked_m
            standing |= stop
            if standing.all() or tick * TICK_S >= max_walk_s:
                standing[:] = True
                settled_tick = tick
        elif settled_tick is None:
            settled_tick = tick
        tick += 1
        if settled_tick is not None and tick - settled_tick >= round(SETTLE_S / TICK_S):
            break
    gaps = _pair_gaps(pos)
    still = np.concatenate(still_moves) if still_moves else np.zeros(0)
    mm = still * 1e3
    return Result(
        scene="",
        server=type(server).__name__,
        people=n,
        settled_at_s=(settled_tick or 0) * TICK_S,
        worst_overlap_cm=float(max(0.0, -gaps.min()) * 100) if len(gaps) else 0.0,
        pairs_over_3cm=int((gaps < -OVERLAP_LIMIT_M).sum()),
        jitter_median_mm=float(np.median(mm)) if len(mm) else 0.0,
        jitter_p99_mm=float(np.percentile(mm, 99)) if len(mm) else 0.0,
        jitter_max_mm=float(mm.max()) if len(mm) else 0.0,
        still_samples=len(mm),
    )


def _pair_gaps(pos: np.ndarray) -> np.ndarray:
    """Gap (m) between the edges of every pair of avatars; negative when they overlap."""
    d = np.hypot(*(pos[:, None, :] - pos[None, :, :]).transpose(2, 0, 1))
    upper = np.triu_indices(len(pos), 1)
    return d[upper] - 2 * AVATAR_RADIUS_M


def screen_scene(layout: Layout, seed: int = 3, people: int = 80) -> tuple[np.ndarray, ...]:
    """Start points over the south half and spots in a band in front of the big screen."""
    rng = np.random.default_rng(seed)
    world = CollisionWorld(layout)
    start = np.empty((0, 2))
    while len(start) < people:
        start = np.vstack([start, world.spawn_point(rng, near=(0.0, -6.0), radius_m=5.0,
                                                    occupied=start)])  # fmt: skip
    front = layout.half_y - AVATAR_RADIUS_M
    goal = np.stack([rng.uniform(-4.0, 4.0, people), rng.uniform(front - 2.5, front, people)], 1)
    return start, goal


def wall_scene(layout: Layout, people: int = 16) -> tuple[np.ndarray, ...]:
    """A row along the north wall, 0.45 m apart, everyone heading into the wall."""
    y = layout.half_y - AVATAR_RADIUS_M - 0.01
    x = (np.arange(people) - (people - 1) / 2) * 0.45
    start = np.stack([x, np.full(people, y)], axis=1)
    goal = start + np.array([0.0, 5.0])
    return start, goal


def separation_cost(layout: Layout, people: int = 1000, ticks: int = 60) -> dict[str, float]:
    """Median CPU ms per tick of the crowd step alone, ours vs the previous one, same crowd.

    CPU time of this thread (time.thread_time), not wall time: on a shared machine a wall
    clock mostly measures the other jobs.

    1,000 avatars spread over the whole floor, each walking (1.5 m/s) in a direction it keeps
    for a second; both paths get the same positions every tick (ours drives them).
    """
    rng = np.random.default_rng(5)
    world = CollisionWorld(layout)
    hx, hy = layout.half_x, layout.half_y
    pos = world.depenetrate(np.stack([rng.uniform(-hx, hx, people),
                                      rng.uniform(-hy, hy, people)], axis=1))  # fmt: skip
    ours, before = OurServer(layout), PreviousServer(layout)
    ids = np.arange(people)
    heading = rng.uniform(0, 2 * np.pi, people)
    ours_ms, before_ms = [], []
    for _ in range(40):  # random points overlap; start timing once the crowd has spread out
        pos = ours.moves.separate(pos)
    for tick in range(ticks):
        if tick % 20 == 0:
            heading = rng.uniform(0, 2 * np.pi, people)
        step = np.stack([np.cos(heading), np.sin(heading)], axis=1) * 1.5 * TICK_S
        claims = np.rint((pos + step) * 100) / 100
        pos[ids] = ours.moves.validate(pos, claims, np.full(people, TICK_S), ids)
        t0 = time.thread_time()
        after = ours.moves.separate(pos, ids)
        ours_ms.append((time.thread_time() - t0) * 1e3)
        t0 = time.thread_time()
        before.separate_only(pos)
        before_ms.append((time.thread_time() - t0) * 1e3)
        pos = after
    return {"ours_ms": statistics.median(ours_ms), "previous_ms": statistics.median(before_ms)}


def run_all(layout: Layout) -> list[Result]:
    out = []
    for scene, (start, goal), stop in (
        ("screen", screen_scene(layout), True),
        ("wall", wall_scene(layout), False),
    ):
        for make in (OurServer, PreviousServer):
            result = simulate(layout, make(layout), start, goal, stop)
            result.scene = scene
            out.append(result)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    layout = load_layout()
    results = run_all(layout)
    cost = separation_cost(layout)
    if args.json:
        payload: dict[str, Any] = {"results": [r.__dict__ for r in results], "cost": cost}
        print(json.dumps(payload))
        return 0
    print("crowd at rest, scenes/bar.toml, 100 ms round trip, 5 s after everyone stood")
    for r in results:
        print(
            f"  {r.scene:6} {r.server:14} {r.people:3} people: worst overlap "
            f"{r.worst_overlap_cm:5.1f} cm, pairs > 3 cm {r.pairs_over_3cm:3}, jitter median "
            f"{r.jitter_median_mm:6.2f} mm, p99 {r.jitter_p99_mm:6.1f} mm, max "
            f"{r.jitter_max_mm:6.1f} mm ({r.still_samples:,} avatar-ticks standing)"
        )
    ours = {r.scene: r for r in results if r.server == "OurServer"}
    before = {r.scene: r for r in results if r.server == "PreviousServer"}
    for scene in ours:
        a, b = ours[scene], before[scene]
        print(
            f"  {scene}: median jitter {b.jitter_median_mm:.2f} -> {a.jitter_median_mm:.2f} mm, "
            f"worst overlap {b.worst_overlap_cm:.1f} -> {a.worst_overlap_cm:.1f} cm"
        )
    print(
        f"  crowd step, 1,000 walking avatars, median CPU per tick: ours {cost['ours_ms']:.2f} ms, "
        f"previous {cost['previous_ms']:.2f} ms, ratio {cost['ours_ms'] / cost['previous_ms']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
