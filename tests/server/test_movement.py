"""Move validation: the speed cap holds over every window, honest clients are left alone, a crowd
that stands comes to rest (deterministic simulations: no clocks, no sockets)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from neonbar.layout import load_layout
from server.movement import MoveValidator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import crowd  # bench/crowd.py: the crowd simulation these tests share with the bench

LAYOUT = load_layout()
SPEED_MPS = 7.0
SLACK_M = 0.25
ONE = np.array([0])


def _drive(claims: np.ndarray, arrive_s: np.ndarray, start: tuple[float, float]) -> np.ndarray:
    """Feed one avatar's claims (K, 2) arriving at arrive_s (K,); the accepted positions."""
    mv = MoveValidator(LAYOUT, speed_mps=SPEED_MPS, slack_m=SLACK_M)
    pos = np.array([start], dtype=float)
    out, last_s = [], 0.0
    for claim, at_s in zip(claims, arrive_s, strict=True):
        pos = mv.validate(pos, claim[None, :], np.array([at_s - last_s]), ONE)
        out.append(pos[0].copy())
        last_s = float(at_s)
    return np.array(out)


def _worst_window_excess_m(path: np.ndarray, at_s: np.ndarray, start: np.ndarray) -> float:
    """Max over every window [i, j] of (distance covered - speed x (at_j - at_{i-1}))."""
    points = np.vstack([start[None, :], path])
    times = np.concatenate([[0.0], at_s])
    step = np.hypot(*np.diff(points, axis=0).T)
    covered = np.concatenate([[0.0], np.cumsum(step)])
    # covered[j] - covered[i] over times[j] - times[i], every i < j.
    excess = (covered[None, :] - covered[:, None]) - SPEED_MPS * (times[None, :] - times[:, None])
    return float(np.triu(excess, 1).max())


@pytest.mark.parametrize("pattern", ["steady", "bursts", "jittery"])
def test_sustained_speed_never_exceeds_the_cap_over_any_window(pattern: str) -> None:
    rng = np.random.default_rng(4)
    n = 400
    if pattern == "steady":  # claims 12 m/s ahead, every input on time
        at_s = np.arange(1, n + 1) * 0.05
    elif pattern == "bursts":  # inputs bunched: five at once, then a pause
        at_s = np.repeat(np.arange(1, n // 5 + 1) * 0.25, 5) + np.tile(np.arange(5) * 1e-4, n // 5)
    else:  # irregular gaps, some long
        at_s = np.cumsum(rng.choice([0.001, 0.02, 0.05, 0.3], n, p=[0.3, 0.3, 0.3, 0.1]))
    start = np.array([-14.0, -10.5])
    # The cheat: always claim a point 12 m/s x time along the bottom of the room, back and forth.
    along = (12.0 * at_s) % 56.0
    x = np.where(along < 28.0, -14.0 + along, 42.0 - along)
    claims = np.stack([x, np.full(n, -10.5)], axis=1)
    path = _drive(claims, at_s, (-14.0, -10.5))
    assert _worst_window_excess_m(path, at_s, start) <= SLACK_M + 1e-9
    # Over the whole run the avatar averaged the cap, not the 12 m/s it claimed.
    total = np.hypot(*np.diff(np.vstack([start, path]), axis=0).T).sum()
    assert total <= SPEED_MPS * at_s[-1] + SLACK_M + 1e-9
    assert total >= 0.9 * SPEED_MPS * at_s[-1]


def test_the_old_per_input_slack_would_have_let_it_run_at_twelve() -> None:
    """The same cheat judged without per-avatar history (each input alone, as before)."""
    mv = MoveValidator(LAYOUT, speed_mps=SPEED_MPS, slack_m=SLACK_M)
    pos = np.array([[-14.0, -10.5]])
    for k in range(1, 41):
        claim = np.array([[-14.0 + 12.0 * 0.05 * k, -10.5]])
        pos = mv.validate(pos, claim, np.array([0.05]))  # no ids: no memory
    assert pos[0, 0] > -14.0 + 11.0 * 2.0  # ~12 m/s: what the bucket exists to stop


@pytest.mark.parametrize(("speed_mps", "jitter_s"), [(2.4, 0.1), (5.0, 0.05)])
def test_honest_clients_with_jittery_timing_are_never_corrected(
    speed_mps: float, jitter_s: float
) -> None:
    """Walking (2.4 m/s) with 100 ms of jitter, sprinting (5 m/s) with 50 ms: never corrected."""
    rng = np.random.default_rng(9)
    n = 400
    send_s = np.arange(n) * 0.05
    arrive_s = send_s + 0.02 + rng.uniform(0.0, jitter_s, n)
    order = np.argsort(arrive_s, kind="stable")
    # The room keeps only the newest claim: an input overtaken by a later one is dropped.
    newest = np.maximum.accumulate(order)
    order = order[order == newest]
    mv = MoveValidator(LAYOUT, speed_mps=SPEED_MPS, slack_m=SLACK_M)
    pos = np.array([[-14.0, -10.5]])
    last_s = 0.0
    worst = 0.0
    for k in order:
        x = -14.0 + min(speed_mps * send_s[k], 28.0)
        claim = np.rint(np.array([[x, -10.5]]) * 100) / 100  # centimetres, as on the wire
        pos = mv.validate(pos, claim, np.array([arrive_s[k] - last_s]), ONE)
        worst = max(worst, float(np.hypot(*(pos - claim)[0])))
        last_s = float(arrive_s[k])
    assert worst < 1e-9


def test_a_repeated_claim_does_not_pull_a_pushed_avatar_back() -> None:
    mv = MoveValidator(LAYOUT)
    spot = np.array([[0.0, -6.0]])
    pos = mv.validate(spot, spot, np.array([0.05]), ONE)
    pushed = pos + np.array([0.04, 0.0])  # crowd separation moved it
    again = mv.validate(pushed, spot, np.array([0.05]), ONE)
    assert np.array_equal(again, pushed)
    # A new claim is a move again.
    step = mv.validate(pushed, spot + np.array([0.0, 0.1]), np.array([0.05]), ONE)
    assert np.allclose(step, spot + np.array([0.0, 0.1]))


def test_an_echoed_correction_is_not_a_move_back() -> None:
    """A client that adopts the position it was told must not drag its avatar back there."""
    mv = MoveValidator(LAYOUT)
    ids = np.array([0, 1])
    pair = np.array([[0.0, -6.0], [0.3, -6.0]])  # 30 cm inside each other
    pos = mv.validate(pair, pair, np.full(2, 0.05), ids)
    told = mv.separate(pos, ids)  # the snapshot tells both where they now stand
    assert np.hypot(*(told[1] - told[0])) > 0.59
    later = mv.separate(told, ids)  # the crowd moves on (here: nothing left to do)
    echo = np.rint(told * 100) / 100  # both clients adopt the correction
    after = mv.validate(later, echo, np.full(2, 0.05), ids)
    assert np.array_equal(after, later)


def test_a_reused_id_starts_afresh() -> None:
    mv = MoveValidator(LAYOUT)
    pos = np.array([[0.0, -6.0]])
    mv.validate(pos, pos + np.array([5.0, 0.0]), np.array([0.05]), ONE)  # spends the whole bank
    assert mv.bank_m(0) == 0.0
    mv.forget(0)
    assert mv.bank_m(0) == SLACK_M


def test_a_claim_that_is_not_a_number_moves_nothing() -> None:
    mv = MoveValidator(LAYOUT)
    pos = np.array([[0.0, -6.0], [1.0, -6.0]])
    bad = np.array([[np.nan, -6.0], [np.inf, 1e308]])
    out = mv.validate(pos, bad, np.full(2, 0.05), np.array([0, 1]))
    assert np.array_equal(out, pos)
    assert mv.bank_m(0) == mv.bank_m(1) == SLACK_M
    # A finite claim far beyond the room is a claim like any other: capped, then solved.
    far = mv.validate(pos, np.array([[1e308, -6.0], [1.0, -1e308]]), np.full(2, 0.05), None)
    assert np.allclose(np.hypot(*(far - pos).T), SPEED_MPS * 0.05 + SLACK_M)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="speed_mps"):
        MoveValidator(LAYOUT, speed_mps=0.0)


# ---------------------------------------------------------------- the crowd at rest
@pytest.mark.parametrize("scene", ["screen", "wall"])
def test_a_crowd_that_stands_comes_to_rest(scene: str) -> None:
    """DESIGN.md's target: no pair overlapping > 3 cm after 5 s; median jitter < 1 mm/tick."""
    start, goal = crowd.screen_scene(LAYOUT) if scene == "screen" else crowd.wall_scene(LAYOUT)
    ours = crowd.simulate(LAYOUT, crowd.OurServer(LAYOUT), start, goal, scene == "screen")
    assert ours.still_samples > 500
    assert ours.pairs_over_3cm == 0, ours
    assert ours.worst_overlap_cm < 1.0, ours
    assert ours.jitter_median_mm < 1.0, ours
    assert ours.jitter_max_mm < 10.0, ours
    if scene == "screen":
        assert ours.settled_at_s < 20.0, "someone never got to the screen"
        # The same people through the previous movement path stay inside each other.
        before = crowd.simulate(LAYOUT, crowd.PreviousServer(LAYOUT), start, goal, True)
        assert before.pairs_over_3cm > 0


def test_a_slow_walker_near_where_the_server_had_it_still_moves() -> None:
    """Claims that creep by a centimetre are moves, not echoes of an earlier answer."""
    mv = MoveValidator(LAYOUT)
    ids = np.array([0, 1])
    pos = np.array([[0.0, -6.0], [3.0, -6.0]])
    for k in range(1, 30):
        claims = np.array([[0.01 * k, -6.0], [3.0, -6.0]])
        pos = mv.validate(pos, claims, np.full(2, 0.05), ids)
        pos = mv.separate(pos, ids)
    assert pos[0, 0] == pytest.approx(0.29)


def test_the_compiled_echo_check_equals_the_array_version() -> None:
    from server.movement import _NEVER_CM, ECHO_CM, ECHO_TICKS, _repeats, _to_cm

    rng = np.random.default_rng(7)
    n, ids = 500, np.arange(10, 510)
    claim_m = np.full((600, 2), np.nan)
    claim_m[ids[:400]] = rng.uniform(-10, 10, (400, 2))  # the last 100: no claim yet
    told = np.full((600, ECHO_TICKS, 2), _NEVER_CM, np.int32)
    told[ids, : ECHO_TICKS // 2] = np.rint(rng.uniform(-10, 10, (n, ECHO_TICKS // 2, 2)) * 100)
    target = claim_m[ids] + rng.normal(0, 0.1, (n, 2))
    kind = rng.integers(0, 5, n)
    target[kind == 0] = claim_m[ids][kind == 0]  # repeats
    echo = kind == 1  # within a cm of something the server said
    target[echo] = told[ids[echo], 3] / 100 + 0.01
    target[kind == 2] = np.where(rng.random((int((kind == 2).sum()), 2)) < 0.5, np.nan, 1e9)
    target = np.where(np.isnan(target) & (kind != 2)[:, None], 0.0, target)

    # The rule as array operations (what the room did before it was compiled).
    want = (target == claim_m[ids]).all(axis=1)
    claim_cm = _to_cm(target)
    jumped = np.abs(claim_cm - _to_cm(claim_m[ids])).max(axis=1) > ECHO_CM
    off_cm = np.abs(claim_cm[:, None, :] - told[ids].astype(np.int64)).max(axis=2)
    want |= jumped & (off_cm <= ECHO_CM).any(axis=1)

    got = _repeats(target, claim_m, told, ids, ECHO_CM)
    assert want.sum() > 100 and (~want).sum() > 100  # both kinds are in the case
    assert np.array_equal(got, want)
