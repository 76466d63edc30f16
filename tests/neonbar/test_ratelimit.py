"""Token buckets fed with timestamps."""

from __future__ import annotations

import pytest

from neonbar.ratelimit import ConnectionLimits, TokenBucket


def test_burst_then_rate():
    bucket = TokenBucket(rate_per_s=10, burst=5, now_s=0)
    assert [bucket.allow(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.allow(0.1) and not bucket.allow(0.1)
    assert bucket.tokens(100.0) == 5  # never above the burst


def test_clock_going_backwards_mints_nothing():
    bucket = TokenBucket(rate_per_s=10, burst=1, now_s=10)
    assert bucket.allow(10)
    assert not bucket.allow(5)
    assert not bucket.allow(10.05)
    assert bucket.allow(10.11)


def test_invalid_parameters():
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=-1, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=1, burst=0)


def test_steady_traffic_at_the_rate_is_never_refused():
    limits = ConnectionLimits(rate_per_s=40, burst=80)
    for i in range(2000):
        assert limits.on_message(i / 40) == (True, False)


def test_flood_is_throttled_first_then_detected():
    limits = ConnectionLimits(rate_per_s=40, burst=80, flood_factor=5, flood_window_s=2)
    results = [limits.on_message(i / 1000) for i in range(5000)]  # 1,000 msgs/s
    first_drop = next(i for i, (ok, _) in enumerate(results) if not ok)
    first_flood = next(i for i, (_, flood) in enumerate(results) if flood)
    assert 80 <= first_drop < 100
    assert first_drop < first_flood < 1000  # flagged within about a second at 25x the rate


def test_invalid_frames_budget():
    limits = ConnectionLimits(max_invalid=50, invalid_window_s=10)
    assert not any(limits.on_invalid(0.0) for _ in range(50))
    assert limits.on_invalid(0.0)
    assert not limits.on_invalid(0.3)  # refills at 5 per second
