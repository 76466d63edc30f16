"""Token buckets for per-connection rate limits (sans-I/O: callers pass the time in seconds).

The server keeps three buckets per connection: one that throttles messages (over it, a message is
dropped with a RATE_LIMITED error), a much wider one that detects a flood (over it, the
connection is closed), and one that counts invalid frames. Feeding timestamps instead of reading a
clock keeps the arithmetic testable without sleeping.
"""

from __future__ import annotations


class TokenBucket:
    """Allows `rate_per_s` events per second on average, and bursts of up to `burst` at once.

    Args:
        rate_per_s: tokens added per second.
        burst: bucket capacity; a fresh bucket is full.
        now_s: the time the bucket starts at (any monotonic clock, seconds).
    """

    __slots__ = ("_tokens", "_updated_s", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, now_s: float = 0.0) -> None:
        if rate_per_s < 0 or burst <= 0:
            raise ValueError("rate_per_s must be >= 0 and burst > 0")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._updated_s = float(now_s)

    def _refill(self, now_s: float) -> None:
        # A clock that steps backwards must not mint tokens or go negative.
        elapsed_s = max(0.0, now_s - self._updated_s)
        self._tokens = min(self.burst, self._tokens + elapsed_s * self.rate_per_s)
        self._updated_s = max(self._updated_s, now_s)

    def allow(self, now_s: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens if there are enough; False (and take nothing) otherwise."""
        # Called per message per invite: `_refill` inlined.
        elapsed_s = now_s - self._updated_s
        if elapsed_s > 0:
            tokens = self._tokens + elapsed_s * self.rate_per_s
            self._tokens = tokens if tokens < self.burst else self.burst
            self._updated_s = now_s
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def tokens(self, now_s: float) -> float:
        """Tokens available at `now_s`."""
        self._refill(now_s)
        return self._tokens


class ConnectionLimits:
    """The three buckets one connection is judged by.

    - `throttle`: `rate_per_s` with `burst`; a message over it is dropped (RATE_LIMITED).
    - `flood`: `flood_factor` x the rate, sustained for `flood_window_s`; over it -> close.
    - `invalid`: at most `max_invalid` invalid frames per `invalid_window_s`; over it -> close.
    """

    def __init__(
        self,
        rate_per_s: float = 40.0,
        burst: float = 80.0,
        flood_factor: float = 5.0,
        flood_window_s: float = 2.0,
        max_invalid: int = 50,
        invalid_window_s: float = 10.0,
        now_s: float = 0.0,
    ) -> None:
        flood_rate = rate_per_s * flood_factor
        self.throttle = TokenBucket(rate_per_s, burst, now_s)
        # Capacity = what a flood at twice the flood rate drains in the window, so a burst of
        # legitimate traffic never trips it but sustained abuse does within a few seconds.
        self.flood = TokenBucket(flood_rate, burst + flood_rate * flood_window_s, now_s)
        self.invalid = TokenBucket(max_invalid / invalid_window_s, max_invalid, now_s)

    def on_message(self, now_s: float) -> tuple[bool, bool]:
        """Account one inbound frame. Returns (accepted, flooding)."""
        # Called for every frame of every connection: the common case (both buckets have
        # tokens, the clock moved forward) is inlined.
        flood, throttle = self.flood, self.throttle
        elapsed_f = now_s - flood._updated_s
        elapsed_t = now_s - throttle._updated_s
        if elapsed_f >= 0 and elapsed_t >= 0:
            f = flood._tokens + elapsed_f * flood.rate_per_s
            t = throttle._tokens + elapsed_t * throttle.rate_per_s
            if f >= 1.0 and t >= 1.0:
                flood._tokens = (f if f < flood.burst else flood.burst) - 1.0
                throttle._tokens = (t if t < throttle.burst else throttle.burst) - 1.0
                flood._updated_s = throttle._updated_s = now_s
                return True, False
        flooding = not flood.allow(now_s)
        return throttle.allow(now_s), flooding

    def on_invalid(self, now_s: float) -> bool:
        """Account one invalid frame. Returns True when the connection should be closed."""
        return not self.invalid.allow(now_s)
