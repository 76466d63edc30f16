"""Durable event log: events/s committed, group commit vs one commit per event.

    .venv/bin/python bench/eventlog.py [--events 5000] [--runs 5] [--dir DIR]

Every figure is an event on disk (SQLite WAL) before its callback runs, as the server delivers
it. Modes:

- per-event (the anchor): one transaction per event, the next event after the previous commit
  (what a server that commits each event before broadcasting it does);
- group: every event submitted at once as it is produced, one callback each; the writer thread
  commits whatever waits in one transaction (server/storage.py) -- what the room does;
- group-per-tick: 20 Hz ticks' worth of events per group (the room's tick commit).

Each is measured at synchronous=FULL (fsync per commit, the server's default) and NORMAL.
Prints the median of `--runs` runs and the ratio to per-event at the same setting.

Then a steady stream (events submitted one by one at a fixed rate, as a busy room's chat
arrives): the delay durability adds before an event can be delivered (submit -> committed),
p50 and p99, and the mean group size, at synchronous=FULL.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from server.storage import SqliteStorage, event_write

BODY = {"avatar": 7, "text": "the orange haze rolls in over the bar " * 3}
FRAME = b"\x85" + b"x" * 140


def per_event(path: Path, n: int, sync: str) -> tuple[float, int]:
    store = SqliteStorage(path, threaded=False, synchronous=sync)
    store.load_room("bar", "orange_haze")
    started = time.perf_counter()
    for seq in range(1, n + 1):
        store.submit([event_write("bar", seq, 0.0, "chat", BODY, FRAME)], None)
    elapsed = time.perf_counter() - started
    commits = store.commits - 1
    store.close()
    return n / elapsed, commits


def grouped(path: Path, n: int, sync: str, per_group: int = 1) -> tuple[float, int]:
    store = SqliteStorage(path, threaded=True, synchronous=sync)
    store.load_room("bar", "orange_haze")
    first = store.commits
    done = threading.Event()
    left = [n // per_group]

    def committed() -> None:
        left[0] -= 1
        if left[0] == 0:
            done.set()

    started = time.perf_counter()
    seq = 0
    for _ in range(n // per_group):
        writes = []
        for _ in range(per_group):
            seq += 1
            writes.append(event_write("bar", seq, 0.0, "chat", BODY, FRAME))
        store.submit(writes, committed)
    if not done.wait(600):
        raise RuntimeError("commits did not finish")
    elapsed = time.perf_counter() - started
    commits = store.commits - first
    store.close()
    return seq / elapsed, commits


def stream(path: Path, rate_per_s: float, seconds: float) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, events per commit) for a steady stream through the writer thread."""
    store = SqliteStorage(path, threaded=True, synchronous="FULL")
    store.load_room("bar", "orange_haze")
    first = store.commits
    delays: list[float] = []
    n = int(rate_per_s * seconds)
    done = threading.Event()

    def committed(t0: float) -> None:
        delays.append(time.perf_counter() - t0)
        if len(delays) == n:
            done.set()

    start = time.perf_counter()
    for seq in range(1, n + 1):
        due = start + seq / rate_per_s
        while (now := time.perf_counter()) < due:
            time.sleep(min(0.001, due - now))
        t0 = time.perf_counter()
        store.submit(
            [event_write("bar", seq, 0.0, "chat", BODY, FRAME)], lambda t0=t0: committed(t0)
        )
    if not done.wait(120):
        raise RuntimeError("commits did not finish")
    commits = store.commits - first
    store.close()
    q = statistics.quantiles(delays, n=100)
    return q[49] * 1e3, q[98] * 1e3, n / max(1, commits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per mode (median shown)")
    parser.add_argument("--dir", default=None, help="directory for the databases (default: tmp)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="neonbar-eventlog-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"{args.events} events per run, {args.runs} runs, databases in {root}")
    print(f"{'synchronous':<12}{'mode':<24}{'events/s':>12}{'commits':>10}{'x anchor':>10}")
    try:
        for sync in ("FULL", "NORMAL"):
            modes = {
                "per-event (anchor)": lambda p, s=sync: per_event(p, args.events, s),
                "group (writer thread)": lambda p, s=sync: grouped(p, args.events, s),
                "group per tick (x10)": lambda p, s=sync: grouped(p, args.events, s, 10),
            }
            anchor = 0.0
            for name, fn in modes.items():
                rates, commits = [], []
                for run in range(args.runs):
                    path = root / f"{sync}-{len(name)}-{run}-{time.time_ns()}.db"
                    rate, count = fn(path)
                    rates.append(rate)
                    commits.append(count)
                rate = statistics.median(rates)
                anchor = anchor or rate
                print(
                    f"{sync:<12}{name:<24}{rate:>12,.0f}{int(statistics.median(commits)):>10}"
                    f"{rate / anchor:>9.1f}x"
                )
        print(f"\nsteady stream, synchronous FULL ({args.runs} runs, medians)")
        print(f"{'events/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'events/commit':>16}")
        for rate in (100, 1000, 5000):
            runs = [stream(root / f"stream-{rate}-{r}-{time.time_ns()}.db", rate, 2.0)
                    for r in range(args.runs)]  # fmt: skip
            p50, p99, per = (statistics.median(x) for x in zip(*runs, strict=True))
            print(f"{rate:>10,}{p50:>10.1f}{p99:>10.1f}{per:>16.1f}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
