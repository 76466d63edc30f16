"""Server clock estimation from ping/pong exchanges (NTP-style, minimum-RTT sample).

A client sends `ping{ct}` with its local monotonic time and the server answers `pong{ct, st}`
with its own clock. For one exchange sent at local t0 and received at t1 the server clock read
`st` somewhere inside [t0, t1]; assuming the midpoint gives

    offset = st - (t0 + t1) / 2            error <= rtt / 2

so the sample with the smallest round trip carries the tightest bound. With NTP's four
timestamps (client send t0, server receive t1, server send t2, client receive t3) the same holds
with the server's own processing time taken out of the delay:

    offset = ((t1 - t0) + (t2 - t3)) / 2   delay = (t3 - t0) - (t2 - t1)   error <= delay / 2

`pong{ct, st}` is the special case t1 = t2 = st. Over a sliding window the
minimum-RTT sample is the estimate; queueing delay only ever adds to the RTT, so jitter is
filtered out instead of averaged in. The window slides so that slow clock drift is followed.

Better still, every sample says the offset lies in [offset - rtt/2, offset + rtt/2]: one sample
whose uplink was quick bounds it from one side, another whose downlink was quick from the
other. When the window's intervals overlap, the middle of their intersection is the estimate
(it lies inside the best sample's interval, so it is never worse); when they do not (skew over
the window outgrew the round trips), the minimum-RTT sample is. Under 50 ms of queueing jitter
each way this halves the error of the minimum-RTT sample alone (tests/neonbar/test_playback.py).

Sans-I/O: fed numbers, never reads a clock itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# A server clock that jumps (a restarted server counts from zero again) makes a new sample's
# offset interval [offset - rtt/2, offset + rtt/2] miss the best one's by far more than clock
# skew could (100 ppm over a 16 s window is 1.6 ms): past this gap the window starts over.
EPOCH_GAP_S = 0.05
# Pings right after connecting, then one per interval: a late joiner has a minimum-delay sample
# of eight within ~0.5 s instead of one per second.
BURST_PINGS = 8
BURST_INTERVAL_S = 0.06


@dataclass(frozen=True)
class ClockSample:
    sent_local_s: float
    received_local_s: float
    server_s: float  # server receive time (t1)
    server_sent_s: float | None = None  # server send time (t2); None: same as server_s

    @property
    def server_hold_s(self) -> float:
        return 0.0 if self.server_sent_s is None else self.server_sent_s - self.server_s

    @property
    def rtt_s(self) -> float:
        """The network delay: round trip minus the server's own processing time."""
        return self.received_local_s - self.sent_local_s - self.server_hold_s

    @property
    def offset_s(self) -> float:
        server_mid_s = self.server_s + self.server_hold_s / 2
        return server_mid_s - (self.sent_local_s + self.received_local_s) / 2


def ping_interval_s(pings_sent: int, interval_s: float = 1.0) -> float:
    """Seconds to wait after the `pings_sent`-th ping of a connection before the next one."""
    return BURST_INTERVAL_S if pings_sent < BURST_PINGS else interval_s


class ClockSync:
    """Estimates `server_time = local_time + offset` from ping/pong samples.

    Args:
        window: how many recent samples compete for the minimum RTT. 16 samples at one ping per
            second follow drift within ~16 s while still finding an uncongested exchange.
        max_step_s: an accepted estimate that moves the offset by more than this is applied at
            once; smaller changes are slewed (see `server_time`) so rendered time never jumps.
        slew_rate: fraction of local time by which a small correction is applied (0.05 = the
            server clock estimate runs at most 5 % fast or slow while catching up).
        settle_samples: until this many samples are in, every correction is applied at once
            (see `settling`); 0 keeps slewing from the second sample on.
    """

    def __init__(
        self,
        window: int = 16,
        max_step_s: float = 0.25,
        slew_rate: float = 0.05,
        settle_samples: int = 0,
    ):
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self._settle_samples = settle_samples
        self._max_step_s = max_step_s
        self._slew_rate = slew_rate
        self._target_offset_s: float | None = None
        self._offset_s: float = 0.0
        self._offset_at_local_s: float = 0.0
        self.last_rtt_s: float | None = None

    @property
    def settling(self) -> bool:
        """Fewer than `settle_samples` samples since the start (or since the server clock
        jumped): corrections are applied at once, not slewed, and a play head should follow
        the estimate exactly. A late joiner's first estimate comes from `welcome.st`, a
        one-way reading off by the network delay: slewing that away at 5 % took ~1 s."""
        return len(self._samples) < self._settle_samples

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
        self.add_exchange(sent_local_s, server_s, server_s, received_local_s)

    def add_exchange(
        self, t0_local_s: float, t1_server_s: float, t2_server_s: float, t3_local_s: float
    ) -> None:
        """Record one four-timestamp exchange: sent, server received, server sent, received."""
        if t3_local_s < t0_local_s or t2_server_s < t1_server_s:
            return  # a pong for a ping from an older clock epoch: meaningless
        sample = ClockSample(t0_local_s, t3_local_s, t1_server_s, t2_server_s)
        if sample.rtt_s < 0:
            return
        first = not self._samples
        if self._samples:
            best = min(self._samples, key=lambda s: s.rtt_s)
            gap_s = abs(sample.offset_s - best.offset_s) - (sample.rtt_s + best.rtt_s) / 2
            if gap_s > EPOCH_GAP_S:
                # The server clock jumped: old samples mean nothing (the change itself is still
                # slewed when small, applied at once when large).
                self._samples.clear()
        received_local_s = t3_local_s
        self._samples.append(sample)
        self.last_rtt_s = sample.rtt_s
        self._set_target(self._estimate(), received_local_s, force=first or self.settling)

    def _estimate(self) -> float:
        """The middle of the window's interval intersection, else the minimum-RTT sample's."""
        lo = max(s.offset_s - s.rtt_s / 2 for s in self._samples)
        hi = min(s.offset_s + s.rtt_s / 2 for s in self._samples)
        if lo <= hi:
            return (lo + hi) / 2
        return min(self._samples, key=lambda s: s.rtt_s).offset_s

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
