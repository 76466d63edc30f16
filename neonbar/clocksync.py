"""Server clock estimation from ping/pong exchanges (NTP-style, minimum-RTT sample).

A client sends `ping{ct}` with its local monotonic time and the server answers `pong{ct, st}`
with its own clock. For one exchange sent at local t0 and received at t1 the server clock read
`st` somewhere inside [t0, t1]; assuming the midpoint gives

    offset = st - (t0 + t1) / 2            error <= rtt / 2

so the sample with the smallest round trip carries the tightest bound. Over a sliding window the
minimum-RTT sample is the estimate; queueing delay only ever adds to the RTT, so jitter is
filtered out instead of averaged in. The window slides so that slow clock drift is followed.

Sans-I/O: fed numbers, never reads a clock itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ClockSample:
    sent_local_s: float
    received_local_s: float
    server_s: float

    @property
    def rtt_s(self) -> float:
        return self.received_local_s - self.sent_local_s

    @property
    def offset_s(self) -> float:
        return self.server_s - (self.sent_local_s + self.received_local_s) / 2


class ClockSync:
    """Estimates `server_time = local_time + offset` from ping/pong samples.

    Args:
        window: how many recent samples compete for the minimum RTT. 16 samples at one ping per
            second follow drift within ~16 s while still finding an uncongested exchange.
        max_step_s: an accepted estimate that moves the offset by more than this is applied at
            once; smaller changes are slewed (see `server_time`) so rendered time never jumps.
        slew_rate: fraction of local time by which a small correction is applied (0.05 = the
            server clock estimate runs at most 5 % fast or slow while catching up).
    """

    def __init__(self, window: int = 16, max_step_s: float = 0.25, slew_rate: float = 0.05):
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self._max_step_s = max_step_s
        self._slew_rate = slew_rate
        self._target_offset_s: float | None = None
        self._offset_s: float = 0.0
        self._offset_at_local_s: float = 0.0
        self.last_rtt_s: float | None = None

    @property
    def synced(self) -> bool:
        """True once at least one ping/pong sample is in (a rough hint does not count)."""
        return bool(self._samples)

    @property
    def min_rtt_s(self) -> float | None:
        return min((s.rtt_s for s in self._samples), default=None)

    @property
    def offset_s(self) -> float:
        """The current target estimate of server_time - local_time."""
        return self._target_offset_s if self._target_offset_s is not None else 0.0

    def hint(self, server_s: float, local_s: float) -> None:
        """A one-way reading (e.g. welcome.st): used only until the first real sample."""
        if self._samples:
            return
        self._set_target(server_s - local_s, local_s, force=True)

    def add_sample(self, sent_local_s: float, server_s: float, received_local_s: float) -> None:
        """Record one ping/pong exchange (times in seconds)."""
        if received_local_s < sent_local_s:
            return  # a pong for a ping from an older clock epoch: meaningless
        sample = ClockSample(sent_local_s, received_local_s, server_s)
        first = not self._samples
        self._samples.append(sample)
        self.last_rtt_s = sample.rtt_s
        best = min(self._samples, key=lambda s: s.rtt_s)
        self._set_target(best.offset_s, received_local_s, force=first)

    def _set_target(self, offset_s: float, local_s: float, force: bool) -> None:
        current = self._current_offset(local_s)
        if force or self._target_offset_s is None or abs(offset_s - current) > self._max_step_s:
            self._offset_s = offset_s
        else:
            self._offset_s = current
        self._offset_at_local_s = local_s
        self._target_offset_s = offset_s

    def _current_offset(self, local_s: float) -> float:
        if self._target_offset_s is None:
            return 0.0
        elapsed_s = max(0.0, local_s - self._offset_at_local_s)
        error_s = self._target_offset_s - self._offset_s
        step_s = min(abs(error_s), elapsed_s * self._slew_rate)
        return self._offset_s + (step_s if error_s > 0 else -step_s)

    def server_time(self, local_s: float) -> float:
        """The estimated server clock at local monotonic time `local_s`.

        Monotonic in `local_s` between samples: small corrections are slewed in gradually.
        """
        return local_s + self._current_offset(local_s)
