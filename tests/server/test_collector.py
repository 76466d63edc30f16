"""The tick-aligned garbage collector: nothing automatic, young passes after ticks, full rarely."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from server.collector import CollectorConfig, TickCollector
from server.metrics import ServerMetrics


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def collector() -> Iterator[TickCollector]:
    was_enabled = gc.isenabled()
    config = CollectorConfig(young_threshold=100, full_after_disconnects=3)
    c = TickCollector(ServerMetrics(), config)
    c.install()
    yield c
    c.uninstall()
    assert gc.isenabled() == was_enabled


def sample(metrics: ServerMetrics, name: str, kind: str) -> float:
    value = metrics.registry.get_sample_value(name, {"kind": kind})
    return value or 0.0


def test_install_turns_the_automatic_collector_off_and_uninstall_restores_it() -> None:
    gc.enable()
    c = TickCollector(ServerMetrics())
    c.install()
    try:
        assert not gc.isenabled()
        assert c.installed
    finally:
        c.uninstall()
    assert gc.isenabled()
    assert not c.installed


def test_cycles_wait_for_the_tick_then_a_young_pass_reclaims_them(collector: TickCollector) -> None:
    ref = make_cycle()
    # Far past CPython's own threshold: with the automatic collector on, this would collect.
    keep = [[i] for i in range(5000)]
    assert ref() is not None
    collector.after_tick()
    assert ref() is None
    assert sample(collector.metrics, "neonbar_gc_seconds_count", "young") >= 1
    assert sample(collector.metrics, "neonbar_gc_collected_total", "young") >= 2
    del keep


def test_a_young_pass_waits_for_enough_new_objects() -> None:
    c = TickCollector(ServerMetrics(), CollectorConfig(young_threshold=10**9))
    c.install()
    try:
        ref = make_cycle()
        c.after_tick()
        assert ref() is not None
        assert sample(c.metrics, "neonbar_gc_seconds_count", "young") == 0
    finally:
        c.uninstall()
        gc.collect()


def test_long_lived_cycles_are_reclaimed_by_the_full_pass_after_disconnects(
    collector: TickCollector,
) -> None:
    ref = make_cycle()
    holder = Node()
    holder.other = ref()  # keeps the cycle alive through two young passes: now it is old
    collector._collect(1)
    collector._collect(1)
    holder.other = None
    keep = [[i] for i in range(500)]
    collector.after_tick()  # a young pass does not look at old objects
    assert ref() is not None
    for _ in range(3):
        collector.note_disconnect()
    collector.after_tick()
    assert ref() is None
    assert collector.disconnects == 0
    assert sample(collector.metrics, "neonbar_gc_seconds_count", "full") >= 2  # install + this
    del keep
