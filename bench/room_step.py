"""Where a tick's CPU goes: a real `Room` in-process, N walking clients, each part timed.

The room runs with `server.recording.RecordingHost` (no sockets, no event loop) on a real SQLite
file, as the server runs it: each tick every client's `input` frame goes through
`Room.receive` (rate limits, the fast decoder, the handler), then `Room.step`. Each part is timed
in thread CPU (`time.thread_time_ns`), so another job on the machine changes the figures far
less than wall time would; the storage writer thread's CPU is the process's CPU minus this
thread's. Clients walk toward random targets at 1.5 m/s from where the server last put them.

    .venv/bin/python bench/room_step.py --avatars 1000 --ticks 400 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neonbar.protocol import PROTOCOL_VERSION, encode  # noqa: E402
from neonbar.tokens import mint  # noqa: E402
from server.recording import RecordedLink, RecordingHost  # noqa: E402
from server.room import TICK_HZ  # noqa: E402
from server.storage import SqliteStorage  # noqa: E402

WALK_MPS = 1.5


def timed(parts: dict[str, list[int]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            parts[name][-1] += time.thread_time_ns() - t0

    return wrapper


def run(avatars: int, ticks: int, warmup: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="neonbar-step-") as tmp:
        storage = SqliteStorage(str(Path(tmp) / "neonbar.db"))
        host = RecordingHost(storage=storage)
        room = host.room("bar")
        sessions, links = [], []
        for i in range(avatars):
            link = RecordedLink()
            hello = {"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": f"b{i}",
                     "token": mint(host.secret, "bar", "collaborator")}  # fmt: skip
            sessions.append(room.on_join(link, hello, room.on_auth(hello), host.now))
            links.append(link)
        ids = np.array([s.avatar.id for s in sessions])
        lay = host.layout  # the room is centred on the origin
        span_hi = np.array([lay.width_m / 2 - 1.0, lay.depth_m / 2 - 1.0])
        span_lo = -span_hi
        targets = rng.uniform(span_lo, span_hi, size=(avatars, 2))
        seqs = np.zeros(avatars, np.int64)

        parts: dict[str, list[int]] = defaultdict(list)
        names = ["inputs", "apply_inputs", "separate", "snapshots", "step"]
        room._apply_inputs = timed(parts, "apply_inputs", room._apply_inputs)  # type: ignore[method-assign]
        room.moves.separate = timed(parts, "separate", room.moves.separate)  # type: ignore[method-assign]
        room._send_snapshots = timed(parts, "snapshots", room._send_snapshots)  # type: ignore[method-assign]
        for feature in room._tickers:
            name = f"on_tick:{type(feature).__name__}"
            names.append(name)
            feature.on_tick = timed(parts, name, feature.on_tick)  # type: ignore[method-assign]
        process = []
        dt = 1.0 / TICK_HZ
        for _tick in range(warmup + ticks):
            for name in names:
                parts[name].append(0)
            host.now += dt
            pos = room.pos_m[ids]
            step = targets - pos
            dist = np.hypot(step[:, 0], step[:, 1])
            arrived = dist < 0.3
            targets[arrived] = rng.uniform(span_lo, span_hi, size=(int(arrived.sum()), 2))
            step = targets - pos
            dist = np.maximum(np.hypot(step[:, 0], step[:, 1]), 1e-9)
            claim = pos + step / dist[:, None] * np.minimum(dist, WALK_MPS * dt)[:, None]
            claim_cm = np.rint(claim * 100).astype(np.int64)
            yaw = (np.degrees(np.arctan2(step[:, 1], step[:, 0])) % 360 / 360 * 65535).astype(int)
            seqs += 1
            acks = room.sent_tick[ids].max(axis=1)
            fields = zip(seqs.tolist(), acks.tolist(), claim_cm.tolist(), yaw.tolist(), strict=True)
            frames = [
                encode({"t": "input", "seq": s, "ack": a, "x": x, "y": y, "yaw": w})
                for s, a, (x, y), w in fields
            ]
            p0, t0 = time.process_time_ns(), time.thread_time_ns()
            for session, frame in zip(sessions, frames, strict=True):
                room.receive(session, frame, host.now)
            t1 = time.thread_time_ns()
            parts["inputs"][-1] += t1 - t0
            room.step(host.now)
            parts["step"][-1] += time.thread_time_ns() - t1
            process.append(time.process_time_ns() - p0)
            for link in links:
                link.frames.clear()
        storage.flush()
        storage.close()
    keep = slice(warmup, None)
    out: dict[str, Any] = {"avatars": avatars, "ticks": ticks}
    for name in names:
        out[name] = statistics.median(parts[name][keep]) / 1e6
        out[f"{name} p99"] = float(np.percentile(parts[name][keep], 99)) / 1e6
    main = [a + b for a, b in zip(parts["inputs"][keep], parts["step"][keep], strict=True)]
    out["main_thread"] = statistics.median(main) / 1e6
    out["process"] = statistics.median(process[keep]) / 1e6
    out["other_threads"] = out["process"] - out["main_thread"]
    # Work done once a second (the storage thread's commit) shows in the mean, not the median.
    out["main_thread_mean"] = statistics.fmean(main) / 1e6
    out["process_mean"] = statistics.fmean(process[keep]) / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatars", type=int, default=1000, help="clients in the room")
    ap.add_argument("--ticks", type=int, default=400, help="ticks timed per run")
    ap.add_argument("--warmup", type=int, default=100, help="ticks run before timing")
    ap.add_argument("--runs", type=int, default=3, help="runs; medians over them are printed")
    ap.add_argument("--json", metavar="FILE", help="write the raw figures here")
    args = ap.parse_args()
    results = [run(args.avatars, args.ticks, args.warmup, seed) for seed in range(args.runs)]
    keys = [k for k in results[0] if k not in ("avatars", "ticks")]
    print(f"# {args.avatars} avatars, {args.ticks} ticks x {args.runs} runs, "
          "thread CPU ms per tick (median tick, median of runs)")  # fmt: skip
    for k in keys:
        values = [r[k] for r in results]
        print(
            f"{k:32s} {statistics.median(values):7.3f}   runs: "
            + " ".join(f"{v:.3f}" for v in values)
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
