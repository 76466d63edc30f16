"""Collision per tick: neonbar.collision vs Panda3D's CollisionTraverser + FluidPusher.

Both solvers get the same input stream on scenes/bar.toml: every avatar holds a heading for 0.25 to
3 s, walks (1.5 m/s) or sprints (5 m/s) at 20 Hz, sometimes hitches (a 0.3 s frame at sprint speed
or a 1.6 s stall) and a tenth of the time pushes toward a corner, a stool, a table or a booth gap.
Corner pushes aim from each solver's own position; headings, speeds and targets are shared.

Counted for both, outside the timed part:
  tunnel    the centre's path passed through the body of an obstacle or left the room
            (ours: the traced slide legs; Panda3D: the straight move it makes per tick)
  embedded  an avatar that was clear ended a tick overlapping geometry by more than 1 cm
  stuck     an avatar held a direction for 3 ticks without progress or sideways motion although
            a direction within ~70 degrees of it was open, or stayed embedded for 3 ticks

Usage:
  python bench/collision.py                 ms/tick for 100 and 1,000 avatars, medians of 3 runs
  python bench/collision.py --soak          10^6 moves (1,000 avatars x 1,000 ticks), ours only
  python bench/collision.py --json          one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from neonbar.collision import AVATAR_RADIUS_M, CollisionWorld
from neonbar.layout import Layout, load_layout

RADIUS_M = AVATAR_RADIUS_M
TICK_S = 0.05
ANCHOR_MS = {100: 4.7, 1000: 55.8}  # Panda3D, measured on these machines (DESIGN.md)
EMBED_M = 0.01


class Inputs:
    """The shared input stream: per tick, a heading and speed per avatar, and corner pushes."""

    def __init__(self, layout: Layout, n: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = n
        self.heading = self.rng.uniform(0, 2 * np.pi, n)
        self.hold = np.zeros(n, dtype=int)
        hx, hy = layout.half_x, layout.half_y
        targets = [(sx * hx, sy * hy) for sx in (-1, 1) for sy in (-1, 1)]
        targets += [(c.cx, c.cy) for c in layout.circles]
        targets += [(b.cx + sx * b.hx, b.cy + sy * b.hy) for b in layout.boxes for sx in (-1, 1)
                    for sy in (-1, 1)]  # fmt: skip
        self.targets = np.array(targets)

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unit headings (n, 2), move lengths (n,) m, corner target or NaN (n, 2))."""
        rng, n = self.rng, self.n
        renew = self.hold <= 0
        self.heading[renew] = rng.uniform(0, 2 * np.pi, renew.sum())
        self.hold[renew] = rng.integers(5, 60, renew.sum())
        self.hold -= 1
        speed_mps = np.where(rng.random(n) < 0.35, 5.0, 1.5)
        dt = np.where(rng.random(n) < 0.02, rng.choice([0.3, 1.6], n), TICK_S)
        corner = rng.random(n) < 0.1
        target = np.where(
            corner[:, None], self.targets[rng.integers(0, len(self.targets), n)], np.nan
        )
        u = np.stack([np.cos(self.heading), np.sin(self.heading)], axis=1)
        return u, speed_mps * dt, target


def aim(pos: np.ndarray, u: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Held heading, or toward the corner target where there is one."""
    to = target - pos
    dist = np.hypot(to[:, 0], to[:, 1])
    toward = to / np.maximum(dist, 1e-9)[:, None]
    use = np.isfinite(target[:, 0]) & (dist > 1e-6)
    return np.where(use[:, None], toward, u)


class Checker:
    """Tunnels, embedded avatars and stuck avatars, judged on the layout's geometry."""

    def __init__(self, world: CollisionWorld, n: int) -> None:
        self.world = world
        self.still = np.zeros(n, dtype=int)
        self.embedded_run = np.zeros(n, dtype=int)
        self.tunnels = self.embedded = self.stuck = 0
        angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        self.dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def _through(self, a: np.ndarray, b: np.ndarray, step_m: float = 0.05) -> np.ndarray:
        """True where the centre's straight path a -> b enters an obstacle's body (or the walls)."""
        length = np.hypot(*(b - a).T)
        count = np.ceil(length / step_m).astype(int) + 1
        seg = np.repeat(np.arange(len(a)), count)
        s = (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)) / np.repeat(
            np.maximum(count - 1, 1), count
        )
        pts = a[seg] + s[:, None] * (b[seg] - a[seg])
        # distance() is the gap at the avatar's edge: the centre is inside a body below -radius.
        inside = self.world.distance(pts) < -self.world.radius_m
        bad = np.zeros(len(a), dtype=bool)
        bad[seg[inside]] = True
        return bad

    def _could_progress(self, p: np.ndarray, u: np.ndarray) -> np.ndarray:
        ok = np.zeros(len(p), dtype=bool)
        for v in self.dirs:
            good = u @ v >= 0.3
            for s in (0.002, 0.01, 0.02, 0.035, 0.05):
                good &= self.world.distance(p + s * v) >= 1e-6
            ok |= good
        return ok

    def tick(self, legs: list[tuple[np.ndarray, np.ndarray]], start: np.ndarray, end: np.ndarray,
             u: np.ndarray) -> None:  # fmt: skip
        # Events, not states: an avatar already through a wall or embedded is not counted again.
        gap_before = self.world.distance(start)
        through = np.zeros(len(start), dtype=bool)
        for a, b in legs:
            through |= self._through(a, b)
        self.tunnels += int((through & (gap_before >= -self.world.radius_m)).sum())
        gap = self.world.distance(end)
        embedded = gap < -EMBED_M
        self.embedded += int((embedded & (gap_before >= -EMBED_M)).sum())
        self.embedded_run = np.where(embedded, self.embedded_run + 1, 0)
        gain = ((end - start) * u).sum(axis=1)
        # Going round a rounded corner the move was aimed dead at gains nothing along u for a
        # tick but is motion, not standing still.
        moved = np.hypot(*(end - start).T) > 1e-4
        moving = (gain > 1e-4) | (moved & (gain > -1e-9))
        self.still = np.where(moving, 0, self.still + 1)
        due = np.flatnonzero(self.still == 3)
        if len(due):
            self.stuck += int(self._could_progress(end[due], u[due]).sum())
        self.stuck += int((self.embedded_run == 3).sum())


class PandaCrowd:
    """The layout as Panda3D solids (boxes, capsules), avatars as spheres under a FluidPusher."""

    def __init__(self, layout: Layout, start: np.ndarray) -> None:
        from panda3d.core import (
            CollisionBox,
            CollisionCapsule,
            CollisionHandlerFluidPusher,
            CollisionNode,
            CollisionSphere,
            CollisionTraverser,
            NodePath,
            Point3,
        )

        self.render = NodePath("render")
        geometry = CollisionNode("bar")
        # The outer walls as boxes of the layout's thickness: in Panda3D 1.10.16 the FluidPusher
        # does not push a sphere out of a CollisionPlane at all (a 1 m step walks through it).
        for w in layout.walls():
            cx, cy = (w.x0 + w.x1) / 2, (w.y0 + w.y1) / 2
            half_x = abs(w.x1 - w.x0) / 2 + w.thickness_m / 2
            half_y = abs(w.y1 - w.y0) / 2 + w.thickness_m / 2
            z = layout.wall_height_m / 2
            geometry.addSolid(CollisionBox(Point3(cx, cy, z), half_x, half_y, z))
        for b in layout.boxes:
            geometry.addSolid(
                CollisionBox(Point3(b.cx, b.cy, b.height_m / 2), b.hx, b.hy, b.height_m / 2)
            )
        for c in layout.circles:
            geometry.addSolid(
                CollisionCapsule(Point3(c.cx, c.cy, 0), Point3(c.cx, c.cy, c.height_m), c.radius_m)
            )
        geometry.setIntoCollideMask(1)
        geometry.setFromCollideMask(0)
        self.render.attachNewNode(geometry)
        self.traverser = CollisionTraverser("bench")
        self.traverser.setRespectPrevTransform(True)
        self.pusher = CollisionHandlerFluidPusher()
        self.avatars = []
        z = 0.5  # the sphere's centre: low enough to meet stools (0.8 m) and tables
        for k, (x, y) in enumerate(start):
            avatar = self.render.attachNewNode(f"avatar{k}")
            node = CollisionNode(f"avatar{k}")
            node.addSolid(CollisionSphere(0, 0, z, RADIUS_M))
            node.setFromCollideMask(1)
            node.setIntoCollideMask(0)  # avatars do not push each other here, as in solve_moves
            collider = avatar.attachNewNode(node)
            avatar.setPos(x, y, 0)
            self.pusher.addCollider(collider, avatar)
            self.traverser.addCollider(collider, self.pusher)
            self.avatars.append(avatar)

    def solve_moves(self, pos: np.ndarray, delta: np.ndarray) -> np.ndarray:
        target = pos + delta
        for avatar, (x, y) in zip(self.avatars, target.tolist(), strict=True):
            avatar.setFluidPos(x, y, 0)
        self.traverser.traverse(self.render)
        out = np.empty_like(pos)
        for k, avatar in enumerate(self.avatars):
            out[k, 0] = avatar.getX()
            out[k, 1] = avatar.getY()
        return out


def run(
    name: str,
    solve: Callable[[np.ndarray, np.ndarray], np.ndarray],
    world: CollisionWorld,
    start: np.ndarray,
    ticks: int,
    seed: int,
    traced: bool,
) -> dict:
    """Drive one solver through the input stream; time the solve only, then check the tick."""
    layout = world.layout
    inputs = Inputs(layout, len(start), seed)
    checker = Checker(world, len(start))
    pos = start.copy()
    times_ms = []
    for _ in range(ticks):
        u, length, target = inputs.next()
        u = aim(pos, u, target)
        delta = u * length[:, None]
        t0 = time.perf_counter()
        new = solve(pos, delta)
        times_ms.append((time.perf_counter() - t0) * 1e3)
        if traced:
            trace = world.trace_moves(pos, delta)
            assert np.array_equal(trace[:, -1], new)
            legs = [(trace[:, k], trace[:, k + 1]) for k in range(1, trace.shape[1] - 1)]
        else:
            legs = [(pos, new)]
        checker.tick(legs, pos, new, u)
        pos = new
    return {
        "solver": name,
        "avatars": len(start),
        "ticks": ticks,
        "ms_per_tick_median": statistics.median(times_ms),
        "tunnels": checker.tunnels,
        "embedded": checker.embedded,
        "stuck": checker.stuck,
    }


def bench(runs: int, ticks: int) -> dict:
    layout = load_layout()
    world = CollisionWorld(layout, RADIUS_M)
    out: dict = {"runs": runs, "ticks": ticks, "sizes": {}}
    for n in (100, 1000):
        ours, panda = [], []
        for r in range(runs):
            rng = np.random.default_rng(100 + r)
            start = np.stack(
                [
                    rng.uniform(-layout.half_x, layout.half_x, n),
                    rng.uniform(-layout.half_y, layout.half_y, n),
                ],
                axis=1,
            )
            start = world.depenetrate(start)
            ours.append(run("neonbar", world.solve_moves, world, start, ticks, 7 + r, True))
            crowd = PandaCrowd(layout, start)
            panda.append(run("panda3d", crowd.solve_moves, world, start, ticks, 7 + r, False))
        ours_ms = statistics.median(x["ms_per_tick_median"] for x in ours)
        panda_ms = statistics.median(x["ms_per_tick_median"] for x in panda)
        out["sizes"][str(n)] = {
            "neonbar_ms": ours_ms,
            "panda3d_ms": panda_ms,
            "anchor_panda3d_ms": ANCHOR_MS[n],
            "speedup_vs_panda3d_same_run": panda_ms / ours_ms,
            "neonbar": {k: sum(x[k] for x in ours) for k in ("tunnels", "embedded", "stuck")},
            "panda3d": {k: sum(x[k] for x in panda) for k in ("tunnels", "embedded", "stuck")},
            "moves_each": runs * ticks * n,
            "neonbar_separate_ms": separate_ms(world, start),
        }
    out["single_avatar_us"] = single_avatar_us(world)
    return out


def separate_ms(world: CollisionWorld, start: np.ndarray, ticks: int = 30) -> float:
    """Median ms of one default separate() call on a crowd settling from random positions."""
    pos, times = start.copy(), []
    for _ in range(ticks):
        t0 = time.perf_counter()
        pos = world.separate(pos)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def single_avatar_us(world: CollisionWorld, calls: int = 2000) -> dict[str, float]:
    """Median microseconds of one-avatar calls, as client prediction makes them every frame."""
    hy = world.layout.half_y - world.radius_m - 1e-3
    hx = world.layout.half_x - world.radius_m - 1e-3
    cases = {
        "open floor": ((0.0, -9.0), (0.02, 0.03)),
        "sliding on a wall": ((0.0, hy), (0.05, 0.05)),
        "pushing into a corner": ((hx, hy), (0.05, 0.05)),
    }
    out = {}
    for name, (p, d) in cases.items():
        pos, delta = np.array([p]), np.array([d])
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            world.solve_moves(pos, delta)
            times.append((time.perf_counter() - t0) * 1e6)
        out[name] = statistics.median(times)
    return out


def soak(ticks: int = 1000, n: int = 1000) -> dict:
    layout = load_layout()
    world = CollisionWorld(layout, RADIUS_M)
    rng = np.random.default_rng(2026)
    start = world.depenetrate(np.stack([rng.uniform(-16, 16, n), rng.uniform(-12, 12, n)], axis=1))
    t0 = time.perf_counter()
    result = run("neonbar", world.solve_moves, world, start, ticks, 2026, True)
    result["moves"] = ticks * n
    result["wall_s"] = time.perf_counter() - t0
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per size (median is reported)")
    parser.add_argument("--ticks", type=int, default=100, help="ticks per run")
    parser.add_argument("--soak", action="store_true", help="10^6 moves of ours, with checks")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.soak:
        result = soak()
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"soak: {result['moves']:,} moves ({result['avatars']} avatars x {result['ticks']} "
                f"ticks): median {result['ms_per_tick_median']:.2f} ms/tick, "
                f"tunnels {result['tunnels']}, embedded {result['embedded']}, "
                f"stuck {result['stuck']} ({result['wall_s']:.0f} s with checks)"
            )
        return 0
    result = bench(args.runs, args.ticks)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"collision, bar layout, {args.runs} runs x {args.ticks} ticks, medians (ms/tick)")
    for n, r in result["sizes"].items():
        print(
            f"  {int(n):>5} avatars: neonbar {r['neonbar_ms']:.3f} ms, "
            f"panda3d {r['panda3d_ms']:.2f} ms (anchor {r['anchor_panda3d_ms']} ms), "
            f"ratio {r['speedup_vs_panda3d_same_run']:.1f}x"
        )
        for name in ("neonbar", "panda3d"):
            c = r[name]
            print(
                f"      {name:8} over {r['moves_each']:,} moves: tunnels {c['tunnels']}, "
                f"embedded {c['embedded']}, stuck {c['stuck']}"
            )
        print(f"      neonbar separate() (crowd push + walls): {r['neonbar_separate_ms']:.2f} ms")
    cases = ", ".join(f"{k} {v:.0f} us" for k, v in result["single_avatar_us"].items())
    print(f"  one avatar per call (client prediction): {cases}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
