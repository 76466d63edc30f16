"""Garbage collection scheduled between ticks instead of inside them.

CPython's cyclic collector runs whenever allocations cross a threshold, wherever the program
happens to be. A server holding 1,000 WebSocket connections tracks a few hundred thousand
container objects; the collector's automatic full passes over them took 30-90 ms, several times
a minute, and whichever tick they landed in missed its 50 ms deadline. Young collections landed
inside ticks too (2-3 ms each).

`TickCollector` turns the automatic collector off and runs it where a pause costs nothing:

* **young** collections (generations 0 and 1: what was allocated since the last one) right after
  a tick, in the slack before the next one, once enough new objects are tracked; the periodic
  `idle()` call does the same when no room is ticking;
* **full** collections (everything, to reclaim cycles that lived long, such as those a closed
  connection can leave behind) only after `full_after_disconnects` disconnects or every
  `full_interval_s`, also right after a tick.

Objects that survive young collections are never rescanned until the next full collection, so
the steady state costs a small, bounded young pass per tick and no long pauses. Refcounting
still frees everything that is not part of a cycle, at once, as usual.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

from server.metrics import ServerMetrics


@dataclass(frozen=True)
class CollectorConfig:
    # New tracked objects before a young collection (CPython's own threshold for generation 0).
    young_threshold: int = 700
    # A full collection after this many disconnects (their leftovers are what it reclaims) ...
    full_after_disconnects: int = 1000
    # ... or after this long, whichever comes first.
    full_interval_s: float = 3600.0


class TickCollector:
    """Owns the process's cyclic garbage collector while installed."""

    def __init__(self, metrics: ServerMetrics, config: CollectorConfig | None = None) -> None:
        self.metrics = metrics
        self.config = config or CollectorConfig()
        self.disconnects = 0
        self._last_full_s = time.monotonic()
        self._was_enabled: bool | None = None

    @property
    def installed(self) -> bool:
        return self._was_enabled is not None

    def install(self) -> None:
        """Turn the automatic collector off (one full pass first, so nothing carries over)."""
        if self.installed:
            return
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._collect(2)
        self._last_full_s = time.monotonic()

    def uninstall(self) -> None:
        """Give the collector back as it was."""
        if self._was_enabled is None:
            return
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None

    def note_disconnect(self) -> None:
        self.disconnects += 1

    def after_tick(self) -> None:
        """Called by a room right after its tick: the cheapest moment for a pause."""
        if not self.installed:
            return
        config = self.config
        if (
            self.disconnects >= config.full_after_disconnects
            or time.monotonic() - self._last_full_s >= config.full_interval_s
        ):
            self.collect_full()
        elif gc.get_count()[0] >= config.young_threshold:
            self._collect(1)

    def idle(self) -> None:
        """Called about once a second whatever the rooms do (no room may be ticking)."""
        self.after_tick()

    def collect_full(self) -> int:
        self.disconnects = 0
        self._last_full_s = time.monotonic()
        return self._collect(2)

    def _collect(self, generation: int) -> int:
        started = time.perf_counter()
        found = gc.collect(generation)
        label = "full" if generation == 2 else "young"
        self.metrics.gc_seconds.labels(label).observe(time.perf_counter() - started)
        if found:
            self.metrics.gc_collected.labels(label).inc(found)
        return found
