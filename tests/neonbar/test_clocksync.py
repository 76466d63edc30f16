"""ClockSync: minimum-RTT offset estimation under jitter, slewing, drift."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonbar.clocksync import ClockSync


def exchange(sync: ClockSync, local_s: float, offset_s: float, up_s: float, down_s: float) -> float:
    """One ping at local_s; the server answers with its clock; returns the receive time."""
    server_s = local_s + up_s + offset_s
    received_s = local_s + up_s + down_s
    sync.add_sample(local_s, server_s, received_s)
    return received_s


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    offset_s=st.floats(-1e5, 1e5),
    base_delay_s=st.floats(0.001, 0.1),
    jitter_s=st.floats(0.0, 0.1),
)
def test_offset_converges_under_jitter(seed, offset_s, base_delay_s, jitter_s):
    """With asymmetric random queueing delays the error stays within the best sample's bound."""
    rng = np.random.default_rng(seed)
    sync = ClockSync(window=16)
    local_s = 1000.0
    for _ in range(16):
        up = base_delay_s + rng.exponential(jitter_s) if jitter_s else base_delay_s
        down = base_delay_s + rng.exponential(jitter_s) if jitter_s else base_delay_s
        exchange(sync, local_s, offset_s, up, down)
        local_s += 1.0
    assert sync.min_rtt_s is not None
    error_s = abs(sync.offset_s - offset_s)
    # Error bound of the chosen sample: half its round trip's asymmetry <= rtt / 2.
    assert error_s <= sync.min_rtt_s / 2 + 1e-9
    # And much better than the median sample's error would be when jitter dominates.
    assert error_s <= base_delay_s + jitter_s


def test_min_rtt_sample_wins_over_noisy_ones():
    sync = ClockSync()
    exchange(sync, 0.0, 50.0, 0.2, 0.01)  # congested uplink: bad estimate (+0.095)
    exchange(sync, 1.0, 50.0, 0.005, 0.005)  # clean: exact
    exchange(sync, 2.0, 50.0, 0.01, 0.3)
    assert sync.offset_s == pytest.approx(50.0)


def test_window_slides_to_follow_a_new_offset():
    sync = ClockSync(window=4)
    for k in range(4):
        exchange(sync, float(k), 10.0, 0.001, 0.001)  # very good samples...
    for k in range(4, 8):
        exchange(sync, float(k), 12.0, 0.02, 0.02)  # ...then the server clock moved
    assert sync.offset_s == pytest.approx(12.0)


def test_server_time_is_monotonic_while_slewing_small_corrections():
    sync = ClockSync(max_step_s=0.25, slew_rate=0.05)
    exchange(sync, 0.0, 5.0, 0.01, 0.01)
    before = sync.server_time(1.0)
    exchange(sync, 1.0, 4.9, 0.001, 0.001)  # better sample says 0.1 s earlier
    times = [sync.server_time(1.0 + k * 0.01) for k in range(500)]
    assert np.all(np.diff(times) > 0)
    assert times[0] == pytest.approx(before, abs=1e-3)  # no jump
    assert sync.server_time(10.0) - 10.0 == pytest.approx(4.9)  # caught up after 2 s


def test_large_corrections_are_applied_at_once():
    sync = ClockSync(max_step_s=0.25)
    exchange(sync, 0.0, 5.0, 0.01, 0.01)
    exchange(sync, 1.0, 9.0, 0.001, 0.001)
    assert sync.server_time(1.002) == pytest.approx(10.002)


def test_hint_only_until_the_first_sample():
    sync = ClockSync()
    assert not sync.synced
    sync.hint(server_s=100.0, local_s=10.0)
    assert sync.server_time(11.0) == pytest.approx(101.0)
    exchange(sync, 20.0, 80.0, 0.01, 0.01)
    sync.hint(server_s=0.0, local_s=0.0)  # ignored now
    assert sync.synced
    assert sync.server_time(21.0) == pytest.approx(101.0)


def test_pong_from_the_past_is_ignored():
    sync = ClockSync()
    sync.add_sample(10.0, 5.0, 9.0)
    assert not sync.synced
