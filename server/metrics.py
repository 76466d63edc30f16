"""Prometheus metrics of one server process (own registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Durations measured against the 50 ms tick: fine below 25 ms (the target), coarse above.
TICK_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.1, 0.25)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("neonbar_connections", "Open WebSocket connections", registry=r)
        self.rooms = Gauge("neonbar_rooms", "Rooms alive", registry=r)
        self.avatars = Gauge("neonbar_avatars", "Avatars in all rooms (incl. away)", registry=r)

        def timing(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, buckets=TICK_BUCKETS_S, registry=r)

        self.tick_seconds = timing(
            "neonbar_tick_seconds", "Duration of one room tick (moves + snapshots)"
        )
        self.tick_cpu_seconds = timing(
            "neonbar_tick_cpu_seconds", "CPU time of one room tick on the event loop's thread"
        )
        self.tick_late_seconds = timing(
            "neonbar_tick_late_seconds", "How long after its scheduled time a room tick started"
        )
        self.send_seconds = timing(
            "neonbar_send_seconds", "Writing one tick's snapshot batch on the sender thread"
        )
        self.send_done_seconds = timing(
            "neonbar_send_done_seconds",
            "From the tick handing its snapshot batch over to the last frame written",
        )
        self.send_partial = Counter(
            "neonbar_send_partial",
            "Snapshot frames the sender thread could not write whole (finished by the event loop)",
            registry=r,
        )
        self.gc_seconds = Histogram(
            "neonbar_gc_seconds",
            "Garbage collector pauses, run between ticks (young or full)",
            ["kind"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.gc_collected = Counter(
            "neonbar_gc_collected", "Unreachable objects the collector found", ["kind"], registry=r
        )
        self.snapshots_sent = Counter(
            "neonbar_snapshots_sent", "Snapshots written to clients", registry=r
        )
        self.snapshots_skipped = Counter(
            "neonbar_snapshots_skipped",
            "Snapshots skipped because the client's write buffer was full",
            registry=r,
        )
        self.bytes_out = Counter(
            "neonbar_bytes_out", "Bytes of frames written", ["kind"], registry=r
        )
        self.events = Counter("neonbar_events", "Reliable events sequenced", ["kind"], registry=r)
        self.errors = Counter(
            "neonbar_errors", "Error messages sent to clients", ["code"], registry=r
        )
        self.drops = Counter(
            "neonbar_drops", "Connections closed by the server", ["reason"], registry=r
        )
        self.exceptions = Counter(
            "neonbar_exceptions", "Unexpected exceptions caught in handlers", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
