"""Client networking inside a 60 Hz frame loop: a network thread vs stepping asyncio per frame.

    .venv/bin/python bench/client_net.py [--avatars 200] [--seconds 10]

Starts `neonbar server --open` on 127.0.0.1 and `neonbar bots` (N avatars walking), then runs a
frame loop without Panda3D that does per frame what the desktop client does with the network:
set the local state, poll messages, sample the interpolated remote avatars. Two ways:

* thread: `NetSession`, the asyncio loop in a daemon thread; the frame calls non-blocking methods.
* step:   an `AsyncSession` on a loop owned by the frame thread, advanced once per frame with
          `loop.run_until_complete(asyncio.sleep(0))` (what a Panda3D task would do).

It reports the main thread's time per frame spent on networking (p50/p99/max, ms), the frame
start jitter against a 60 Hz schedule (p99, ms), and the snapshots received per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from client.net import AsyncSession, ConnectionState, NetSession  # noqa: E402

FRAME_S = 1 / 60


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "neonbar", "server", "--open", "--port", "0",
         "--data", str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if line.startswith("listening on "):
                return proc, line.split()[-1]
    proc.kill()
    raise RuntimeError("server did not start")


def frame_loop(seconds: float, per_frame: Any, snapshots: Any) -> dict[str, float]:
    """Run `per_frame()` at 60 Hz; time it and the lateness of each frame's start."""
    costs, late = [], []
    start = time.perf_counter()
    next_s = start
    snaps0 = snapshots()
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        late.append(now - next_s)
        t0 = time.perf_counter()
        per_frame(now - start)
        costs.append(time.perf_counter() - t0)
        # The renderer's share of the frame (a CPU renderer is busy, not sleeping: spin).
        busy_until = time.perf_counter() + 0.004
        while time.perf_counter() < busy_until:
            pass
        next_s += FRAME_S
        if time.perf_counter() - next_s > FRAME_S:
            next_s = time.perf_counter()  # a missed frame is dropped, not caught up
        time.sleep(max(0.0, next_s - time.perf_counter()))
    c, jitter = np.array(costs) * 1000, np.array(late) * 1000
    return {
        "frames": len(costs),
        "net_ms_p50": round(float(np.percentile(c, 50)), 3),
        "net_ms_p99": round(float(np.percentile(c, 99)), 3),
        "net_ms_max": round(float(c.max()), 3),
        "jitter_ms_p99": round(float(np.percentile(jitter, 99)), 3),
        "snapshots_per_s": round((snapshots() - snaps0) / seconds, 2),
    }


def run_thread(url: str, seconds: float) -> dict[str, Any]:
    net = NetSession(url, "clientbench", "viewer")
    net.start()
    deadline = time.monotonic() + 10
    while net.state is not ConnectionState.CONNECTED and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # the first snapshots and the clock sync are in
    seen: list[int] = []

    def per_frame(t: float) -> None:
        net.set_local_state(0.5 * np.sin(t), -8.0, 0.0)
        net.poll()
        ids, _, _ = net.remote_avatars()
        seen.append(len(ids))

    try:
        result = frame_loop(seconds, per_frame, lambda: net.stats.snapshots)
    finally:
        net.stop()
    return {"mode": "thread", "remote_avatars": int(np.median(seen)), **result}


def run_step(url: str, seconds: float) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    session = AsyncSession(url, "clientbench", "viewer", retry_first_connect=True)
    task = loop.create_task(session.run())
    deadline = time.monotonic() + 10
    while session.state is not ConnectionState.CONNECTED and time.monotonic() < deadline:
        loop.run_until_complete(asyncio.sleep(0.01))
    loop.run_until_complete(asyncio.sleep(1.5))
    seen: list[int] = []

    def per_frame(t: float) -> None:
        session.set_local_state(0.5 * np.sin(t), -8.0, 0.0)
        loop.run_until_complete(asyncio.sleep(0))  # one pass over ready callbacks and sockets
        session.inbox.clear()
        ids, _, _ = session.view.sample(session.server_time() - 0.1, exclude=session.you)
        seen.append(len(ids))

    try:
        result = frame_loop(seconds, per_frame, lambda: session.stats.snapshots)
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()
    return {"mode": "step", "remote_avatars": int(np.median(seen)), **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--avatars", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="sys.setswitchinterval for the run (how soon a waiting thread gets the GIL)",
    )
    args = parser.parse_args()
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    results = []
    with tempfile.TemporaryDirectory(prefix="neonbar-clientbench-") as tmp:
        server, url = start_server(Path(tmp))
        bots = subprocess.Popen(
            [sys.executable, "-m", "neonbar", "bots", "--server", url, "--room", "clientbench",
             "--count", str(args.avatars), "--duration",
             str(args.runs * 2 * (args.seconds + 6) + 20), "--chatty", "2", "--json"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(3 + args.avatars / 50)  # the bots are in
            for _ in range(args.runs):
                for run in (run_thread, run_step):
                    result = run(url, args.seconds)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        finally:
            bots.send_signal(signal.SIGINT)
            try:
                bots.wait(15)
            except subprocess.TimeoutExpired:
                bots.kill()
            server.send_signal(signal.SIGTERM)
            server.wait(15)
    print("\n| mode | remote avatars | net ms/frame p50 | p99 | max | frame jitter p99 ms "
          "| snapshots/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['mode']} | {r['remote_avatars']} | {r['net_ms_p50']} | {r['net_ms_p99']} "
            f"| {r['net_ms_max']} | {r['jitter_ms_p99']} | {r['snapshots_per_s']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
