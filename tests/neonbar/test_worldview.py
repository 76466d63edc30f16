"""WorldView: snapshot reconstruction (against a reference encoder) and interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonbar import protocol
from neonbar.protocol import ProtocolError
from neonbar.worldview import InterpolationBuffer, WorldView

TICK_S = 0.05


def snap(tick: int, base: int, d: bytes = b"", a: bytes = b"", st_s: float | None = None) -> dict:
    return {
        "t": "snap",
        "tick": tick,
        "base": base,
        "st": tick * TICK_S if st_s is None else st_s,
        "you": [0, 0, 0, 0],
        "d": d,
        "a": a,
    }


def absolute(states: dict[int, tuple[int, int, int]]) -> bytes:
    ids = np.array(sorted(states), np.int64)
    cols = np.array([states[i] for i in ids], np.int64).reshape(-1, 3)
    return protocol.pack_absolute(ids, cols[:, 0], cols[:, 1], cols[:, 2])


class ReferenceServer:
    """The encoder as docs/protocol.md section 6 describes it, one client, dicts everywhere."""

    def __init__(self) -> None:
        self.sent: dict[int, dict[int, tuple[int, int, int]]] = {}  # tick -> client's view

    def encode(
        self, tick: int, ack: int, truth: dict[int, tuple[int, int, int]], visible: set[int]
    ) -> dict:
        base_view = self.sent.get(ack) if ack >= 0 else None
        base = ack if base_view is not None else -1
        view = dict(base_view or {})
        d_rows, a_rows = [], []
        for avatar in sorted(visible if base_view is not None else truth):
            x, y, yaw = truth[avatar]
            old = view.get(avatar)
            if old is not None and abs(x - old[0]) <= 127 and abs(y - old[1]) <= 127:
                dyaw = (yaw - old[2] + 32768) % 65536 - 32768
                d_rows.append((avatar, x - old[0], y - old[1], dyaw))
            else:
                a_rows.append((avatar, x, y, yaw))
            view[avatar] = (x, y, yaw)
        self.sent[tick] = view
        d = np.array(d_rows, np.int64).reshape(-1, 4)
        a = np.array(a_rows, np.int64).reshape(-1, 4)
        return snap(
            tick,
            base,
            protocol.pack_delta(d[:, 0], d[:, 1], d[:, 2], d[:, 3]),
            protocol.pack_absolute(a[:, 0], a[:, 1], a[:, 2], a[:, 3]),
        )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_avatars=st.integers(1, 40),
    ticks=st.integers(2, 60),
    loss=st.floats(0.0, 0.4),
    lag_ticks=st.integers(0, 6),
)
def test_snapshots_reconstruct_the_servers_view(seed, n_avatars, ticks, loss, lag_ticks):
    """Whatever is lost or acked late, the client's view equals what the server encoded."""
    rng = np.random.default_rng(seed)
    server, view = ReferenceServer(), WorldView(interpolate=False)
    truth = {
        i: (
            int(rng.integers(-1500, 1500)),
            int(rng.integers(-1100, 1100)),
            int(rng.integers(65536)),
        )
        for i in range(1, n_avatars + 1)
    }
    acks: list[int] = []
    for tick in range(1, ticks + 1):
        for avatar, (x, y, yaw) in truth.items():
            # Mostly small steps (deltas), sometimes a jump (absolute record), yaw wrapping.
            step = 300 if rng.random() < 0.05 else 8
            truth[avatar] = (
                int(np.clip(x + rng.integers(-step, step + 1), -1500, 1500)),
                int(np.clip(y + rng.integers(-step, step + 1), -1100, 1100)),
                int((yaw + rng.integers(-3000, 3000)) % 65536),
            )
        visible = {a for a in truth if rng.random() < 0.6}
        ack = acks[-1 - lag_ticks] if len(acks) > lag_ticks else -1
        msg = server.encode(tick, ack, truth, visible)
        if rng.random() < loss and tick != ticks:
            continue  # a skipped snapshot: never applied, never acked
        result = view.apply(protocol.validate_server(msg))
        assert result.applied
        acks.append(result.ack)
        expected = server.sent[tick]
        state = view.current()
        got = {
            int(i): (int(x), int(y), int(w))
            for i, x, y, w in zip(state.ids, state.x_cm, state.y_cm, state.yaw_units, strict=True)
        }
        assert got == expected


def test_missing_base_asks_for_a_full_snapshot():
    view = WorldView(interpolate=False)
    view.apply(snap(1, -1, a=absolute({1: (0, 0, 0)})))
    result = view.apply(snap(50, 7, d=protocol.pack_delta(*(np.array([1]),) * 4)))
    assert (result.applied, result.ack, view.ack) == (False, -1, -1)
    assert view.missing_bases == 1
    result = view.apply(snap(51, -1, a=absolute({1: (5, 6, 7), 2: (8, 9, 10)})))
    assert result.ack == 51
    assert view.current().ids.tolist() == [1, 2]


def test_delta_for_an_avatar_the_base_lacks_is_refused():
    view = WorldView(interpolate=False)
    view.apply(snap(1, -1, a=absolute({1: (0, 0, 0)})))
    one = np.array([2])
    assert view.apply(snap(2, 1, d=protocol.pack_delta(one, one, one, one))).ack == -1
    assert view.current().ids.tolist() == [1]


def test_history_is_bounded():
    view = WorldView(history_ticks=32, interpolate=False)
    view.apply(snap(1, -1, a=absolute({1: (0, 0, 0)})))
    for tick in range(2, 100):
        view.apply(snap(tick, tick - 1))
    assert len(view._states) <= 32
    assert view.apply(snap(100, 10)).ack == -1


def test_malformed_section_raises_protocol_error_and_keeps_state():
    view = WorldView()
    view.apply(snap(1, -1, a=absolute({1: (10, 20, 30)})))
    with pytest.raises(ProtocolError):
        view.apply(snap(2, 1, d=b"\x00" * 7))
    assert view.ack == 1
    assert view.current().x_cm.tolist() == [10]


def test_yaw_delta_wraps():
    view = WorldView(interpolate=False)
    view.apply(snap(1, -1, a=absolute({1: (0, 0, 65530)})))
    one, zero = np.array([1]), np.array([0])
    view.apply(snap(2, 1, d=protocol.pack_delta(one, zero, zero, np.array([10]))))
    assert view.current().yaw_units.tolist() == [4]


def test_leave_removes_the_avatar_everywhere():
    view = WorldView()
    view.apply(snap(1, -1, a=absolute({1: (0, 0, 0), 2: (100, 0, 0)})))
    view.remove(2)
    assert view.current().ids.tolist() == [1]
    ids, _, _ = view.sample(1 * TICK_S)
    assert ids.tolist() == [1]
    # A later delta against the old base does not resurrect it.
    one = np.array([1])
    view.apply(snap(2, 1, d=protocol.pack_delta(one, one, one, one)))
    assert view.current().ids.tolist() == [1]


def test_you_and_avatars_seen():
    view = WorldView()
    msg = snap(1, -1, a=absolute({1: (0, 0, 0), 9: (0, 0, 0)}))
    msg["you"] = [120, -40, 70000 % 65536, 17]
    view.apply(msg)
    assert view.you == (120, -40, 4464, 17)
    assert view.avatars_seen == 2
    ids, _, _ = view.sample(0.05, exclude=9)
    assert ids.tolist() == [1]


# ----------------------------------------------------------------------------- interpolation


def push_one(buf: InterpolationBuffer, avatar: int, t_s: float, x: float, y: float, yaw: float):
    buf.push(np.array([avatar]), np.array([x]), np.array([y]), np.array([yaw]), t_s)


def test_linear_motion_is_interpolated_exactly():
    buf = InterpolationBuffer()
    for k in range(20):
        push_one(buf, 3, k * TICK_S, 2.0 * k * TICK_S, -1.0, 0.0)
    ids, pos, _ = buf.sample(0.8125)  # inside the kept window (depth 8)
    assert ids.tolist() == [3]
    assert pos[0] == pytest.approx([1.625, -1.0])


def test_yaw_goes_the_short_way_round():
    buf = InterpolationBuffer()
    a, b = math.radians(350), math.radians(10)
    push_one(buf, 1, 0.0, 0, 0, a)
    push_one(buf, 1, 0.05, 0, 0, b)
    _, _, yaw = buf.sample(0.025)
    assert math.degrees(yaw[0]) % 360 == pytest.approx(0.0, abs=1e-6) or math.degrees(
        yaw[0]
    ) == pytest.approx(360.0, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    vx=st.floats(-3, 3),
    vy=st.floats(-3, 3),
    period_ticks=st.sampled_from([1, 4, 20]),
    omega=st.floats(-6, 6),
)
def test_interpolation_is_continuous(vx, vy, period_ticks, omega):
    """Rendered 60 times a second, an avatar never jumps more than its speed allows."""
    buf = InterpolationBuffer()
    period_s = period_ticks * TICK_S
    updates = int(6.0 / period_s)
    for k in range(updates):
        t = k * period_s
        push_one(buf, 1, t, vx * t, vy * t, (omega * t) % (2 * math.pi))
    speed = math.hypot(vx, vy)
    prev_pos = prev_yaw = None
    frame_s = 1 / 60
    # Sample from after warm-up to just before the end of the data.
    t = 2.0
    while t < (updates - 2) * period_s - 0.1:
        _, pos, yaw = buf.sample(t)
        if prev_pos is not None:
            # The slewed per-avatar delay can replay at most 1.5x speed.
            assert np.hypot(*(pos[0] - prev_pos)) <= 1.5 * speed * frame_s + 1e-6
            turn = abs((yaw[0] - prev_yaw + math.pi) % (2 * math.pi) - math.pi)
            assert turn <= 1.5 * abs(omega) * frame_s + 1e-6
        prev_pos, prev_yaw = pos[0].copy(), yaw[0]
        t += frame_s


def test_far_avatar_glides_between_its_1hz_updates():
    buf = InterpolationBuffer()
    for k in range(10):
        push_one(buf, 1, k * 1.0, k * 1.0, 0.0, 0.0)  # 1 m/s, sampled once a second
    xs = [buf.sample(t)[1][0, 0] for t in np.arange(5.0, 7.0, 0.05)]
    steps = np.diff(xs)
    assert steps.min() > 0.0  # it keeps moving
    assert steps.max() <= 0.05 * 1.0 + 1e-9  # and never faster than it walks


def test_extrapolation_is_capped_during_a_stall():
    buf = InterpolationBuffer(extrapolate_cap_s=0.1)
    for k in range(10):
        push_one(buf, 1, k * TICK_S, 2.0 * k * TICK_S, 0.0, 0.0)
    last_x = 2.0 * 9 * TICK_S
    _, pos, _ = buf.sample(9 * TICK_S + 5.0)  # snapshots stopped coming
    assert pos[0, 0] == pytest.approx(last_x + 2.0 * 0.1)


def test_an_avatar_that_stopped_is_not_extrapolated():
    buf = InterpolationBuffer()
    for k in range(10):
        push_one(buf, 1, k * TICK_S, 2.0 * k * TICK_S, 0.0, 0.0)
    # Later snapshots carry other avatars but not this one: it stands still.
    for k in range(10, 20):
        push_one(buf, 2, k * TICK_S, 5.0, 5.0, 0.0)
    _, pos, _ = buf.sample(15 * TICK_S)
    assert pos[0, 0] == pytest.approx(2.0 * 9 * TICK_S)


def test_a_long_pause_holds_instead_of_gliding():
    buf = InterpolationBuffer()
    push_one(buf, 1, 0.0, 0.0, 0.0, 0.0)
    push_one(buf, 1, 0.05, 0.1, 0.0, 0.0)
    push_one(buf, 1, 5.0, 0.2, 0.0, 0.0)  # stood still 5 s, then moved again
    _, pos, _ = buf.sample(3.0)
    assert pos[0, 0] == pytest.approx(0.1)


def test_sample_200_avatars_gives_every_avatar():
    # Its cost is measured by bench/client_frame.py (the client's budget is 4 ms per frame).
    buf = InterpolationBuffer()
    rng = np.random.default_rng(1)
    ids = np.arange(200)
    for k in range(10):
        buf.push(ids, rng.random(200), rng.random(200), rng.random(200), k * TICK_S)
    for i in range(200):
        out_ids, pos, yaw = buf.sample(0.3 + i * 0.001)
        assert out_ids.shape == (200,) and pos.shape == (200, 2) and yaw.shape == (200,)
        assert np.all(np.isfinite(pos))


def test_a_near_avatar_that_pauses_stands_still_then_walks_on():
    buf = InterpolationBuffer()
    stop_x = 2.0 * 9 * TICK_S
    xs = {}
    for k in range(40):  # snapshots arrive; the app renders 100 ms behind
        t = k * TICK_S
        if k < 10:  # walking east at 2 m/s
            push_one(buf, 1, t, 2.0 * t, 0.0, 0.0)
        elif k >= 20:  # unchanged (omitted by the server) for 0.5 s, then on again
            push_one(buf, 1, t, stop_x + 2.0 * (k - 19) * TICK_S, 0.0, 0.0)
        push_one(buf, 2, t, 0.0, 0.0, 0.0)  # another avatar keeps snapshots coming
        xs[k] = buf.sample(t - 0.1)[1][0, 0]
    assert xs[16] == pytest.approx(stop_x)  # standing at 0.7 s, not gliding to the restart
    assert xs[21] == pytest.approx(stop_x)  # still standing at 0.95 s
    assert xs[23] == pytest.approx(stop_x + 2.0 * 2 * TICK_S)  # at 1.05 s walking, on time


def test_moving_to_a_slower_interest_tier_stays_smooth():
    buf = InterpolationBuffer()
    t, x, times = 0.0, 0.0, []
    while t < 6.0:  # 1.5 m/s; near (every tick) for 3 s, then mid (every 4 ticks)
        push_one(buf, 1, t, x, 0.0, 0.0)
        times.append(t)
        step = TICK_S if t < 3.0 else 4 * TICK_S
        t, x = t + step, x + 1.5 * step
    prev = None
    for t in np.arange(2.0, 5.5, 1 / 60):
        pos = buf.sample(t)[1][0, 0]
        if prev is not None:
            assert 0.0 <= pos - prev <= 1.5 * 1.5 / 60 + 1e-9  # never back, never > 1.5x speed
        prev = pos


def test_views_repeat_base_values_but_what_is_drawn_is_each_avatars_latest_record():
    """docs/protocol.md section 6: a view at tick T starts from an older base, so an avatar
    updated after that base shows its base value again in the view; the per-avatar states
    (what is drawn) keep its newest record."""
    view = WorldView(history_ticks=32)
    view.apply(snap(10, -1, a=absolute({1: (0, 0, 0), 2: (500, 0, 0)})))
    # Tick 11: a delta against 10 moves avatar 2 (an absolute record: a mid avatar's update).
    view.apply(snap(11, 10, a=absolute({2: (600, 0, 0)})))
    # Tick 12: a delta against 10 again (acks lag) that only moves avatar 1.
    view.apply(snap(12, 10, d=protocol.pack_delta(
        np.array([1]), np.array([10]), np.array([0]), np.array([0]))))  # fmt: skip
    state = view.current()
    row = int(np.flatnonzero(state.ids == 2)[0])
    assert state.x_cm[row] == 500  # the view repeats the base's value for avatar 2
    ids, pos_m, _ = view.sample(12 * TICK_S + 1.0)  # long after: each at its newest record
    drawn = dict(zip(ids.tolist(), pos_m[:, 0].tolist(), strict=True))
    assert drawn[2] == pytest.approx(6.0)  # not the 5.0 the view at tick 12 still holds
    assert drawn[1] > 0.0
