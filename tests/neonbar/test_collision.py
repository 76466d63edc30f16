"""Collision: never inside geometry, never through a wall, never stuck, same answer everywhere.

The checks use their own reference geometry, written from the layout here, not the solver's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neonbar.collision import AVATAR_RADIUS_M, CONTACT_SKIN_M, CollisionWorld
from neonbar.layout import Layout, Segment, load_layout, parse_layout

RADIUS_M = AVATAR_RADIUS_M
# Floating-point slack (m) for "not inside": positions are ~10 m, float64 resolves ~1e-15 m.
TOL_M = 1e-9


# ---------------------------------------------------------------- reference geometry
class Reference:
    """Distance (m) from a point to the real (not inflated) geometry, straight from the layout."""

    def __init__(self, layout: Layout, walls: tuple[Segment, ...] = ()) -> None:
        self.layout = layout
        self.boxes = np.array([(b.cx, b.cy, b.hx, b.hy) for b in layout.boxes]).reshape(-1, 4)
        self.circles = np.array([(c.cx, c.cy, c.radius_m) for c in layout.circles]).reshape(-1, 3)
        self.segs = np.array([(s.x0, s.y0, s.x1, s.y1, s.thickness_m) for s in walls]).reshape(
            -1, 5
        )

    def distance(self, p: np.ndarray) -> np.ndarray:
        x, y = p[:, 0:1], p[:, 1:2]
        best = np.minimum(self.layout.half_x - np.abs(x), self.layout.half_y - np.abs(y))[:, 0]
        if len(self.boxes):
            cx, cy, hx, hy = self.boxes.T
            ax, ay = np.abs(x - cx) - hx, np.abs(y - cy) - hy
            out = np.hypot(np.maximum(ax, 0), np.maximum(ay, 0))
            best = np.minimum(best, (out + np.minimum(np.maximum(ax, ay), 0)).min(axis=1))
        if len(self.circles):
            cx, cy, r = self.circles.T
            best = np.minimum(best, (np.hypot(x - cx, y - cy) - r).min(axis=1))
        if len(self.segs):
            x0, y0, x1, y1, t = self.segs.T
            vx, vy = x1 - x0, y1 - y0
            s = np.clip(((x - x0) * vx + (y - y0) * vy) / (vx * vx + vy * vy), 0, 1)
            d = np.hypot(x - (x0 + s * vx), y - (y0 + s * vy)) - t / 2
            best = np.minimum(best, d.min(axis=1))
        return best

    def avatar_inside(self, p: np.ndarray) -> np.ndarray:
        """True where an avatar at p overlaps geometry by more than float slack."""
        return self.distance(p) < RADIUS_M - TOL_M

    def path_overlaps(self, trace: np.ndarray, step_m: float = 0.02) -> np.ndarray:
        """True where an avatar's body overlaps geometry anywhere along its traced path.

        trace is CollisionWorld.trace_moves output; legs run from waypoint 1 (the freed start).
        """
        a, b = trace[:, 1:-1].reshape(-1, 2), trace[:, 2:].reshape(-1, 2)
        owner = np.repeat(np.arange(len(trace)), trace.shape[1] - 2)
        count = np.ceil(np.hypot(*(b - a).T) / step_m).astype(int) + 1
        leg = np.repeat(np.arange(len(a)), count)
        s = (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)) / np.repeat(
            np.maximum(count - 1, 1), count
        )
        pts = a[leg] + s[:, None] * (b[leg] - a[leg])
        bad = np.zeros(len(trace), dtype=bool)
        for lo in range(0, len(pts), 50_000):
            sl = slice(lo, lo + 50_000)
            hit = self.avatar_inside(pts[sl])
            bad[owner[leg[sl][hit]]] = True
        return bad

    def could_progress(self, p: np.ndarray, u: np.ndarray, min_gain: float = 0.3) -> np.ndarray:
        """True where some direction v with v.u >= min_gain keeps the avatar clear for 5 cm."""
        angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        ok = np.zeros(len(p), dtype=bool)
        for v in dirs:
            good = u @ v >= min_gain
            for s in (0.002, 0.01, 0.02, 0.035, 0.05):
                good &= self.distance(p + s * v) >= RADIUS_M + 1e-6
            ok |= good
        return ok


def _room(width_m: float, depth_m: float, furniture: list[dict]) -> Layout:
    return parse_layout(
        {
            "room": {
                "name": "test rig",
                "width_m": width_m,
                "depth_m": depth_m,
                "wall_height_m": 3.0,
                "spawn": [0.0, 0.0],
                "spawn_radius_m": 1.0,
            },
            "door": {"wall": "south", "center_m": 0.0, "width_m": 1.0, "height_m": 2.0},
            "screen": {"wall": "north", "center_m": 0.0, "width_m": 2.0, "height_m": 1.0},
            "furniture": furniture,
        }
    )


def _wedge(ax: float, ay: float, heading_deg: float, angle_deg: float) -> tuple[Segment, ...]:
    """Two thin walls meeting at (ax, ay), opening toward heading_deg, angle_deg apart."""
    out = []
    for side in (-1, 1):
        a = math.radians(heading_deg + side * angle_deg / 2)
        out.append(Segment(ax, ay, ax + 3 * math.cos(a), ay + 3 * math.sin(a), 0.08))
    return tuple(out)


# A 20 x 14 m rig: wedges of 30, 45, 60 and 90 degrees, a thin partition, and a gap between two
# boxes narrower than an avatar (0.5 m for a 0.6 m avatar).
RIG_WALLS = (
    _wedge(-7.0, 4.0, -90.0, 30.0)
    + _wedge(-2.0, 4.0, -90.0, 45.0)
    + _wedge(3.0, 4.0, -90.0, 60.0)
    + _wedge(7.0, -5.0, 90.0, 90.0)
    + (Segment(-8.0, -3.0, -2.0, -4.5, 0.05),)
)
RIG = _room(
    20.0,
    14.0,
    [
        {"kind": "crate", "shape": "box", "center": [2.0, -3.0], "size": [1.0, 1.0], "height_m": 1},
        {"kind": "crate", "shape": "box", "center": [3.5, -3.0], "size": [1.0, 1.0], "height_m": 1},
        {"kind": "stool", "shape": "circle", "center": [-4.0, 0.0], "radius_m": 0.2, "height_m": 1},
        {"kind": "stool", "shape": "circle", "center": [-3.5, 0.0], "radius_m": 0.2, "height_m": 1},
    ],
)

BAR = load_layout()
WORLDS = {
    "bar": (CollisionWorld(BAR, RADIUS_M), Reference(BAR)),
    "rig": (CollisionWorld(RIG, RADIUS_M, extra_walls=RIG_WALLS), Reference(RIG, RIG_WALLS)),
}


def _move_and_check(name: str, p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """solve_moves, asserting that no avatar's body overlaps anything at the end or on the way."""
    world, ref = WORLDS[name]
    trace = world.trace_moves(p, d)
    q = world.solve_moves(p, d)
    assert q.tobytes() == trace[:, -1].copy().tobytes(), "the trace ends where solve_moves does"
    assert not ref.avatar_inside(q).any(), ref.distance(q).min()
    assert not ref.path_overlaps(trace).any()
    return q


def _free_points(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    world, ref = WORLDS[name]
    lay = world.layout
    p = np.stack([rng.uniform(-lay.half_x, lay.half_x, n), rng.uniform(-lay.half_y, lay.half_y, n)])
    p = world.depenetrate(p.T)
    assert not ref.avatar_inside(p).any()
    return p


def _moves(rng: np.random.Generator, n: int, max_len_m: float) -> np.ndarray:
    # Mostly walking and sprinting, with frame hitches up to max_len_m (many radii).
    length = np.where(rng.random(n) < 0.3, rng.uniform(0, max_len_m, n), rng.uniform(0, 0.4, n))
    a = rng.uniform(0, 2 * np.pi, n)
    return np.stack([length * np.cos(a), length * np.sin(a)], axis=1)


def _corner_targets(name: str) -> np.ndarray:
    """Points deep in every corner, wedge apex and gap of a world: where avatars get stuck."""
    world, _ = WORLDS[name]
    lay = world.layout
    hx, hy = lay.half_x, lay.half_y
    pts = [(sx * hx, sy * hy) for sx in (-1, 1) for sy in (-1, 1)]
    pts += [
        (b.cx + sx * b.hx, b.cy + sy * b.hy) for b in lay.boxes for sx in (-1, 1) for sy in (-1, 1)
    ]
    pts += [(c.cx, c.cy) for c in lay.circles]
    if name == "rig":
        pts += [(s.x0, s.y0) for s in RIG_WALLS] + [(2.75, -3.0), (-3.75, 0.0)]
    return np.array(pts, dtype=float)


# ---------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(sorted(WORLDS)),
    max_len_m=st.sampled_from([0.5, 3.0, 12.0, 40.0]),
)
def test_random_moves_never_inside_never_through(seed: int, name: str, max_len_m: float) -> None:
    world, _ = WORLDS[name]
    rng = np.random.default_rng(seed)
    p = _free_points(name, rng, 48)
    for _ in range(4):
        q = _move_and_check(name, p, _moves(rng, len(p), max_len_m))
        assert world.is_free(q).all()
        p = q


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(WORLDS)))
def test_sprints_into_corners_and_gaps(seed: int, name: str) -> None:
    """Avatars aimed at corners, wedge apexes and narrow gaps, in one long step or many short."""
    rng = np.random.default_rng(seed)
    targets = _corner_targets(name)
    p = _free_points(name, rng, len(targets))
    step_m = rng.choice([0.08, 0.3, 1.5, 25.0])
    for _ in range(8):
        aim = targets - p
        dist = np.hypot(*aim.T)[:, None]
        # Overshoot: keep pushing through the target, as a held key does.
        p = _move_and_check(name, p, aim / np.maximum(dist, 1e-9) * step_m)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(sorted(WORLDS)),
    step_m=st.sampled_from([0.05, 0.25, 2.0, 15.0]),
)
def test_holding_a_direction_with_room_to_move_makes_progress(
    seed: int, name: str, step_m: float
) -> None:
    """Nobody is stuck: if some direction within ~70 degrees of the held one is open, we move."""
    world, ref = WORLDS[name]
    rng = np.random.default_rng(seed)
    # Start in contact with things: pushed into corners first, then a random held direction.
    targets = _corner_targets(name)
    p = _free_points(name, rng, len(targets))
    for _ in range(6):
        aim = targets - p
        p = world.solve_moves(p, aim / np.maximum(np.hypot(*aim.T)[:, None], 1e-9) * 2.0)
    a = rng.uniform(0, 2 * np.pi, len(p))
    u = np.stack([np.cos(a), np.sin(a)], axis=1)
    open_ahead = ref.could_progress(p, u)
    start = p
    for _ in range(3):
        p = world.solve_moves(p, u * step_m)
    gain = ((p - start) * u).sum(axis=1)
    assert (gain >= -TOL_M).all(), "a held direction must never pull an avatar backwards"
    assert (gain[open_ahead] > 1e-3).all(), start[open_ahead][gain[open_ahead] <= 1e-3]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_one_avatar_alone_equals_the_same_avatar_in_a_crowd(seed: int) -> None:
    """Client prediction (one row) and server authority (the whole room) agree bit for bit."""
    world, _ = WORLDS["bar"]
    rng = np.random.default_rng(seed)
    p = _free_points("bar", rng, 64)
    # Include starts inside geometry (bad corrections) and non-finite moves.
    p[:4] = _corner_targets("bar")[rng.integers(0, 20, 4)]
    d = _moves(rng, 64, 20.0)
    d[5] = np.nan
    batch = world.solve_moves(p, d)
    perm = rng.permutation(64)
    shuffled = world.solve_moves(p[perm], d[perm])
    for k in range(64):
        alone = world.solve_moves(p[k : k + 1], d[k : k + 1])
        assert alone.tobytes() == batch[k : k + 1].tobytes()
    assert shuffled.tobytes() == batch[perm].tobytes()
    assert world.solve_moves(p, d).tobytes() == batch.tobytes()


def test_a_fresh_world_gives_the_same_answers() -> None:
    rng = np.random.default_rng(7)
    p, d = _free_points("bar", rng, 200), _moves(rng, 200, 10.0)
    again = CollisionWorld(load_layout(), RADIUS_M)
    assert again.solve_moves(p, d).tobytes() == WORLDS["bar"][0].solve_moves(p, d).tobytes()


# ---------------------------------------------------------------- sliding, corners, jitter
def test_sliding_along_a_wall_keeps_the_tangential_move_and_does_not_jitter() -> None:
    world, _ = WORLDS["bar"]
    wall_y = BAR.half_y - RADIUS_M
    p = np.array([[-5.0, wall_y - 0.5]])
    ys, xs = [], []
    for _ in range(40):
        before = p.copy()
        p = world.solve_moves(p, np.array([[0.1, 0.1]]))  # diagonally into the north wall
        xs.append(p[0, 0] - before[0, 0])
        ys.append(p[0, 1])
    # Once against the wall it stays at the same height, tick after tick, and slides the full x.
    assert wall_y - 2 * CONTACT_SKIN_M < ys[-1] < wall_y
    assert len(set(ys[10:])) == 1
    assert np.allclose(xs[10:], 0.1, atol=1e-12)


def test_pushing_into_a_room_corner_settles_without_jitter() -> None:
    world, _ = WORLDS["bar"]
    p = np.array([[12.0, 9.0]])
    seen = []
    for _ in range(30):
        p = world.solve_moves(p, np.array([[0.7, 0.5]]))
        seen.append(p.tobytes())
    assert len(set(seen[-10:])) == 1
    assert p[0, 0] < BAR.half_x - RADIUS_M and p[0, 1] < BAR.half_y - RADIUS_M


@pytest.mark.parametrize("angle_index", [0, 1, 2, 3])
def test_wedge_apex_holds_and_lets_go(angle_index: int) -> None:
    """Into a 30/45/60/90 degree wedge: stops short of the apex, then backs out freely."""
    world, _ = WORLDS["rig"]
    w0, w1 = RIG_WALLS[2 * angle_index], RIG_WALLS[2 * angle_index + 1]
    apex = np.array([w0.x0, w0.y0])
    opening = np.array([w0.x1 + w1.x1, w0.y1 + w1.y1]) / 2 - apex
    opening /= np.hypot(*opening)
    p = (apex + 2.5 * opening)[None, :]
    for _ in range(20):
        p = _move_and_check("rig", p, -opening[None, :] * 0.9)
    assert np.hypot(*(p[0] - apex)) > RADIUS_M
    out = world.solve_moves(p, opening[None, :] * 0.5)
    assert np.allclose(out - p, opening * 0.5, atol=1e-12)


def test_a_gap_narrower_than_an_avatar_stops_it() -> None:
    # The crates leave 0.5 m between x = 2.5 and 3.0; an avatar 0.6 m wide comes from the north.
    p = np.array([[2.75, -1.0]])
    for step_m in (0.1, 5.0):
        q = _move_and_check("rig", p, np.array([[0.0, -step_m]]))
        assert q[0, 1] > -3.0 + 0.5
    # Pushed at a slant into the gap for a while: it slides off a crate, never into the gap.
    for _ in range(20):
        p = _move_and_check("rig", p, np.array([[0.05, -0.4]]))
        # The deepest it can go: touching both crates' corners, above the gap.
        assert p[0, 1] >= -2.5 + math.sqrt(RADIUS_M**2 - 0.25**2) - 1e-9


def test_a_thin_partition_is_never_crossed_by_a_huge_step() -> None:
    seg = RIG_WALLS[-1]
    mid = np.array([(seg.x0 + seg.x1) / 2, (seg.y0 + seg.y1) / 2])
    normal = np.array([-(seg.y1 - seg.y0), seg.x1 - seg.x0])
    normal /= np.hypot(*normal)
    along = np.array([seg.x1 - seg.x0, seg.y1 - seg.y0]) / np.hypot(
        seg.x1 - seg.x0, seg.y1 - seg.y0
    )
    offsets = np.linspace(-2.5, 2.5, 41)
    p = mid + 1.0 * normal + offsets[:, None] * along
    q = _move_and_check("rig", p, np.tile(-normal * 30.0, (len(p), 1)))
    assert ((q - mid) @ normal > 0).all()


# ---------------------------------------------------------------- freeing, crowd, spawning
def test_depenetrate_frees_everything_and_leaves_free_avatars_alone() -> None:
    world, ref = WORLDS["bar"]
    rng = np.random.default_rng(3)
    wild = np.stack([rng.uniform(-40, 40, 500), rng.uniform(-30, 30, 500)], axis=1)
    wild = np.concatenate([wild, _corner_targets("bar"), [[1e6, -1e6]]])
    freed = world.depenetrate(wild)
    assert not ref.avatar_inside(freed).any()
    assert world.is_free(freed).all()
    was_free = world.is_free(wild)
    assert np.array_equal(freed[was_free], wild[was_free])
    # A stool is pushed off by the shortest way: the centre lands on the inflated circle.
    stool = BAR.circles[0]
    near = world.depenetrate(np.array([[stool.cx + 0.1, stool.cy]]))
    assert np.hypot(near[0, 0] - stool.cx, near[0, 1] - stool.cy) == pytest.approx(
        stool.radius_m + RADIUS_M, abs=1e-3
    )


def test_a_start_inside_geometry_is_freed_before_moving() -> None:
    world, ref = WORLDS["bar"]
    inside = np.concatenate([_corner_targets("bar"), [[1e6, 0.0], [0.0, -1e5], [40.0, 40.0]]])
    q = world.solve_moves(inside, np.full_like(inside, 0.2))
    assert not ref.avatar_inside(q).any()
    assert (np.abs(q) <= [BAR.half_x - RADIUS_M, BAR.half_y - RADIUS_M]).all()


@pytest.mark.parametrize(
    ("centre", "count", "shrink"),
    [((0.0, -8.0), 40, 0.05), ((-13.3, 10.0), 60, 0.25)],  # open floor; the corner behind the bar
)
def test_separate_pushes_a_crowd_apart_gently_and_never_into_walls(
    centre: tuple[float, float], count: int, shrink: float
) -> None:
    world, ref = WORLDS["bar"]
    rng = np.random.default_rng(11)
    # A pile of avatars, several on the very same spot.
    p = np.array(centre) + rng.normal(0, 0.4, (count, 2))
    p[:5] = centre
    p = world.depenetrate(p)

    def worst_overlap(x: np.ndarray) -> float:
        gap = np.hypot(*(x[:, None, :] - x[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(gap, np.inf)
        return float(max(0.0, 2 * RADIUS_M - gap.min()))

    overlaps = [worst_overlap(p)]
    for _ in range(40):
        q = world.separate(p)
        step = np.hypot(*(q - p).T)
        assert step.max() <= 2 * RADIUS_M / 2 + 1e-9, "at most max_push_m per iteration"
        assert not ref.avatar_inside(q).any()
        p = q
        overlaps.append(worst_overlap(p))
    assert overlaps[1] > 0.2 * overlaps[0], "one call corrects only part of the overlap"
    assert overlaps[-1] < shrink * overlaps[0]
    assert world.separate(p).tobytes() == world.separate(p.copy()).tobytes()


def test_separate_leaves_a_spread_crowd_untouched() -> None:
    world, _ = WORLDS["bar"]
    xs, ys = np.meshgrid(np.arange(-4.0, 4.0, 0.7), np.arange(-8.0, -6.0, 0.7))
    p = np.stack([xs.ravel(), ys.ravel()], axis=1)
    assert np.array_equal(world.separate(p), p)


def test_spawn_points_are_free_and_clear_of_others() -> None:
    world, ref = WORLDS["bar"]
    rng = np.random.default_rng(5)
    taken = np.empty((0, 2))
    for _ in range(30):
        s = world.spawn_point(rng, occupied=taken)
        assert not ref.avatar_inside(s[None]).any()
        assert np.hypot(*(s - np.array(BAR.spawn))) <= BAR.spawn_radius_m + 1e-9
        if len(taken):
            assert np.hypot(*(taken - s).T).min() >= 2 * RADIUS_M
        taken = np.vstack([taken, s])
    # Asked for a spot inside the counter with no room to search: the nearest free point.
    s = world.spawn_point(rng, near=(-11.5, 0.0), radius_m=0.0)
    assert not ref.avatar_inside(s[None]).any()


def test_shapes_describe_every_obstacle() -> None:
    world, _ = WORLDS["rig"]
    shapes = world.shapes()
    assert len(shapes) == 4 + len(RIG.boxes) + len(RIG.circles) + len(RIG_WALLS)
    for shape in shapes:
        ring = shape.outline(inflate_m=RADIUS_M)
        assert ring.shape[1] == 2 and len(ring) >= 4
    stool = next(s for s in shapes if s.kind == "stool")
    ring = stool.outline(inflate_m=RADIUS_M)
    assert np.allclose(np.hypot(ring[:, 0] - stool.cx, ring[:, 1] - stool.cy), 0.2 + RADIUS_M)


@pytest.mark.parametrize("offset_rad", [0.0, 1e-9, 1e-7, 1e-5, 1e-4, 1e-3])
def test_a_walk_aimed_a_hair_off_a_round_table_gets_past_as_fast_as_one_dead_on(
    offset_rad: float,
) -> None:
    """Aimed 1e-5 rad off a round table's centre, a walk took 7 s to get past instead of 4."""
    table = next(c for c in BAR.circles if c.kind == "table")
    past_y = table.cy + table.radius_m + RADIUS_M

    def ticks_to_get_past(offset: float) -> int:
        p = np.array([[table.cx, table.cy - 2.0]])
        a = math.pi / 2 + offset
        step = np.array([[math.cos(a), math.sin(a)]]) * 1.5 * 0.05  # walking, 20 Hz
        for tick in range(1, 400):
            p = _move_and_check("bar", p, step)
            if p[0, 1] > past_y:
                return tick
        raise AssertionError("never got past the table")

    dead_on = ticks_to_get_past(0.0)
    for sign in (1.0, -1.0):
        assert ticks_to_get_past(sign * offset_rad) <= dead_on + 2
    # Well off-centre, the plain slide is at least as quick.
    assert ticks_to_get_past(0.1) <= dead_on


@pytest.mark.parametrize("length_m", [1e3, 1e150, 1e200, 1e300, 1.7e308])
def test_absurdly_long_moves_are_cut_to_the_room_not_overflowed(length_m: float) -> None:
    world, ref = WORLDS["bar"]
    rng = np.random.default_rng(8)
    p = _free_points("bar", rng, 500)
    a = rng.uniform(0, 2 * np.pi, 500)
    d = np.stack([np.cos(a), np.sin(a)], axis=1) * length_m
    trace = world.trace_moves(p, d)
    q = world.solve_moves(p, d)
    assert np.isfinite(q).all() and np.isfinite(trace).all()
    assert not ref.avatar_inside(q).any()
    assert not ref.path_overlaps(trace).any()
    # The same as the move cut to the room's diagonal, exactly.
    diagonal = math.hypot(BAR.width_m, BAR.depth_m)
    cut = np.stack([np.cos(a), np.sin(a)], axis=1) * diagonal
    assert np.allclose(q, world.solve_moves(p, cut), atol=1e-9)


def test_a_settled_crowd_stays_exactly_where_it_stands() -> None:
    world, _ = WORLDS["bar"]
    rng = np.random.default_rng(12)
    p = world.depenetrate(np.array([0.0, 6.0]) + rng.normal(0, 0.8, (80, 2)))

    def worst(x: np.ndarray) -> float:
        gaps = np.hypot(*(x[:, None, :] - x[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(gaps, np.inf)
        return float(2 * RADIUS_M - gaps.min())

    for _ in range(300):
        if worst(p) < CONTACT_SKIN_M:
            break
        p = world.separate(p)
    assert worst(p) < CONTACT_SKIN_M
    assert np.array_equal(world.separate(p), p), "no shuffling once nobody overlaps"


def test_the_one_who_walked_in_steps_back_and_the_one_standing_stays() -> None:
    world, _ = WORLDS["bar"]
    standing, walker = np.array([0.0, -6.0]), np.array([0.45, -6.0])  # 15 cm inside each other
    p = np.stack([standing, walker])
    q = world.separate(p, yielding=np.array([0.0, 0.12]))
    assert np.array_equal(q[0], standing)
    assert math.isclose(q[1, 0] - q[0, 0], 2 * RADIUS_M, abs_tol=1e-6)
    # Both walked as far: they share the correction.
    q = world.separate(p, yielding=np.array([0.12, 0.12]))
    assert math.isclose(q[0, 0], -0.075, abs_tol=1e-6) and math.isclose(
        q[1, 0], 0.525, abs_tol=1e-6
    )


def test_a_dense_crowd_settles_without_overshooting() -> None:
    """Summed corrections overshoot in a crowd with many neighbours; averaged ones shrink."""
    world, _ = WORLDS["bar"]
    rng = np.random.default_rng(3)
    p = world.depenetrate(np.array([0.0, 0.0]) + rng.normal(0, 0.6, (60, 2)))

    def worst(x: np.ndarray) -> float:
        gaps = np.hypot(*(x[:, None, :] - x[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(gaps, np.inf)
        return float(max(0.0, 2 * RADIUS_M - gaps.min()))

    history = [worst(p)]
    for _ in range(100):
        p = world.separate(p)
        history.append(worst(p))
    assert history[50] < 0.05
    assert history[100] < 1e-3


# ---------------------------------------------------------------- bad input
def test_bad_input_is_refused_with_a_reason() -> None:
    world, _ = WORLDS["bar"]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        world.solve_moves(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        world.solve_moves(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        world.solve_moves(np.array([[np.nan, 0.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="radius_m"):
        CollisionWorld(BAR, radius_m=0.0)
    p = np.array([[0.0, -9.0], [1.0, -9.0]])
    out = world.solve_moves(p, np.array([[np.inf, 0.0], [np.nan, 1.0]]))
    assert np.array_equal(out, p)
    assert world.solve_moves(np.empty((0, 2)), np.empty((0, 2))).shape == (0, 2)


# ---------------------------------------------------------------- soak
@pytest.mark.slow
def test_soak_a_million_moves() -> None:
    """1,000 avatars x 1,000 ticks of held directions, sprints, hitches and corner pushes."""
    world, ref = WORLDS["bar"]
    rng = np.random.default_rng(2026)
    n = 1000
    targets = _corner_targets("bar")
    p = _free_points("bar", rng, n)
    heading = rng.uniform(0, 2 * np.pi, n)
    hold = np.zeros(n, dtype=int)
    still = np.zeros(n, dtype=int)
    inside = crossed = stuck = 0
    for _ in range(1000):
        renew = hold <= 0
        heading[renew] = rng.uniform(0, 2 * np.pi, renew.sum())
        hold[renew] = rng.integers(5, 60, renew.sum())
        hold -= 1
        u = np.stack([np.cos(heading), np.sin(heading)], axis=1)
        speed = rng.choice([0.075, 0.25, 1.5, 8.0], n, p=[0.55, 0.35, 0.08, 0.02])
        to_corner = rng.random(n) < 0.1
        aim = targets[rng.integers(0, len(targets), n)] - p
        aim /= np.maximum(np.hypot(*aim.T), 1e-9)[:, None]
        u = np.where(to_corner[:, None], aim, u)
        trace = world.trace_moves(p, u * speed[:, None])
        q = trace[:, -1]
        inside += int(ref.avatar_inside(q).sum())
        crossed += int(ref.path_overlaps(trace, step_m=0.05).sum())
        gain = ((q - p) * u).sum(axis=1)
        # A tick spent going round a rounded corner the move was aimed dead at gains nothing
        # along u but is not standing still: stuck means 3 ticks with no gain and no motion.
        moving = (gain > 1e-4) | ((np.hypot(*(q - p).T) > 1e-4) & (gain > -1e-9))
        still = np.where(moving, 0, still + 1)
        if (still == 3).any():
            k = np.flatnonzero(still == 3)
            stuck += int(ref.could_progress(q[k], u[k]).sum())
        p = q
    assert (inside, crossed, stuck) == (0, 0, 0)


def test_a_start_exactly_on_a_surface_can_leave_it_and_run_along_it() -> None:
    """Centimetre-quantized corrections land exactly on surfaces built from round numbers."""
    world = WORLDS["bar"][0]
    table = next(b for b in BAR.boxes if b.kind == "booth_table")
    on_face = np.array([[table.cx - table.hx - RADIUS_M, table.cy]])
    assert abs(world.distance(on_face)[0]) < 1e-12
    away = world.solve_moves(on_face, np.array([[-0.3, 0.0]]))
    assert away[0, 0] == pytest.approx(on_face[0, 0] - 0.3)
    along = world.solve_moves(on_face, np.array([[0.0, 0.2]]))
    assert along[0, 1] == pytest.approx(on_face[0, 1] + 0.2)
    into = world.solve_moves(on_face, np.array([[0.3, 0.0]]))
    assert world.distance(into)[0] >= 0.0 and into[0, 0] <= on_face[0, 0] + 1e-9


def test_a_move_aimed_dead_at_a_rounded_corner_goes_round_it() -> None:
    counter = next(b for b in BAR.boxes if b.kind == "counter")
    corner_x, corner_y = counter.cx - counter.hx, counter.cy - counter.hy  # south-west corner
    p = np.array([[corner_x - RADIUS_M, corner_y]])  # on the rounded corner, facing its centre
    for _ in range(12):
        p = _move_and_check("bar", p, np.array([[0.3, 0.0]]))
    assert p[0, 0] > corner_x + 1.0, "held +x at the corner and never got round it"


def _relax_reference(q, i, j, share_i, reach, settled, iterations, stiffness, bounds):  # type: ignore[no-untyped-def]
    """The relaxation passes written as array operations: what `_relax_pairs` must equal."""
    n = len(q)
    share_j = 1.0 - share_i
    x0, x1, y0, y1 = bounds
    for _ in range(iterations):
        dx, dy = q[i, 0] - q[j, 0], q[i, 1] - q[j, 1]
        dist = np.sqrt(dx * dx + dy * dy)
        over = reach - dist
        close = over > settled
        if not close.any():
            break
        ii, jj, dx, dy, dist, over = (
            i[close],
            j[close],
            dx[close],
            dy[close],
            dist[close],
            over[close],
        )
        same = dist == 0
        ux = np.where(same, 1.0, dx / np.where(same, 1.0, dist))
        uy = np.where(same, 0.0, dy / np.where(same, 1.0, dist))
        si, sj = share_i[close] * over, share_j[close] * over
        count = np.bincount(ii, minlength=n) + np.bincount(jj, minlength=n)
        scale = stiffness / np.maximum(count, 1)
        q[:, 0] += (np.bincount(ii, ux * si, n) - np.bincount(jj, ux * sj, n)) * scale
        q[:, 1] += (np.bincount(ii, uy * si, n) - np.bincount(jj, uy * sj, n)) * scale
        np.clip(q[:, 0], x0, x1, out=q[:, 0])
        np.clip(q[:, 1], y0, y1, out=q[:, 1])


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_relaxation_equals_the_array_version_to_the_bit(seed: int) -> None:
    from neonbar.collision import _SETTLED_M, _crowd_pairs, _relax_pairs

    world = CollisionWorld(load_layout())
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 600))
    # Dense clumps (many pairs, long relaxations), spread crowds and two on one spot.
    p = rng.normal((0.0, -4.0), (0.6 + seed * 0.5, 0.6 + seed * 0.5), (n, 2))
    p[1] = p[0]
    reach = 2 * world.radius_m
    i, j = _crowd_pairs(p, reach)
    share_i = rng.uniform(0, 1, len(i)) if seed % 2 else np.full(len(i), 0.5)
    want, got = p.copy(), p.copy()
    _relax_reference(want, i, j, share_i, reach, _SETTLED_M, 8, 0.9, world.bounds_m)
    _relax_pairs(got, i, j, share_i, 1.0 - share_i, reach, _SETTLED_M, 8, 0.9, *world.bounds_m)
    assert len(i) > 0 and not np.array_equal(want, p)  # the case relaxes something
    assert np.array_equal(got, want)
