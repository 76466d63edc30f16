"""Beats: commits/s with durability on, key press to seen by others, export time.

    .venv/bin/python bench/beats.py [--runs 3] [--beats 3000] [--bots 50] [--seconds 20]
                                    [--export-beats 10000] [--only commit,latency,export]

Three measurements, each the median of `--runs` runs, each with an anchor measured in the same
run:

1. **commit**: beats through the room's own pipeline with SQLite at synchronous=FULL (fsync per
   commit): validate, hash and link (neonbar.beats.BeatChain), sequence into an event frame
   (server.eventlog.RoomEventLog), commit, and only then deliver the frame to 50 sinks (the
   room's broadcast, without sockets). "per beat" (the anchor) commits and waits for each beat
   before the next, as a server that commits every beat before broadcasting it; "group" hands
   the writer thread everything as it comes (the room's path: one transaction per group).
2. **latency**: a real `neonbar server` (its own process, --data in a temp dir, durability on)
   with `--bots` bots moving, chatting and marking beats (`neonbar bots --beats`), and five
   annotators in this process: one sends a beat, the other four time its event's arrival on
   the same clock (key press = the moment the message is written). Anchor: a ping round trip to
   the same server on the same connections at the same time.
3. **export**: `neonbar export` of a room with `--export-beats` beats in each format, and
   `neonbar verify` of the JSON and OTIO files, in this process from the data directory. Anchor:
   `json.dumps` of the same records (the least any export does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "client"))  # the test clip and the server process

from neonbar.beats import EMOTION_NAMES, BeatChain, validate_fields  # noqa: E402
from server.storage import RoomRecord, SqliteStorage  # noqa: E402

SCENE = "dust_storm"
SINKS = 50


# ------------------------------------------------------------------------------ 1. commits


def _pipeline(path: Path, n: int, group: bool) -> float:
    from server.beats import EVENT_KIND
    from server.eventlog import RoomEventLog

    store = SqliteStorage(path, threaded=True, synchronous="FULL")
    store.load_room("bench", "neutral")
    sinks = [bytearray() for _ in range(SINKS)]
    delivered = [0]
    done = threading.Event()

    def deliver(frames: list[tuple[int, bytes]]) -> None:
        for _, frame in frames:
            for sink in sinks:
                sink += frame  # the room hands one frame to every connection
            delivered[0] += 1
        if delivered[0] >= n:
            done.set()

    def one_done() -> None:
        done.set()

    log = RoomEventLog("bench", store, RoomRecord("bench", "neutral", 0), deliver)
    chain = BeatChain("bench")
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    for k in range(n):
        fields = validate_fields(
            scene=SCENE, t_in_s=float(rng.uniform(0, 30)), emotion_name=EMOTION_NAMES[k % 8],
            intensity=0.6, note="the haze rolls in" if k % 3 == 0 else "",
            scene_duration_s=30.0,
        )  # fmt: skip
        rec = chain.add(fields, author=f"p{k % 50}", role="viewer", server_ms=k)
        log.append(EVENT_KIND, {"avatar": k % 50, "rec": rec.to_dict()}, st=float(k))
        if group:
            log.commit()  # handed over at once; the writer thread groups what waits
        else:
            done.clear()
            log.commit()
            store.flush()  # wait for this beat's commit (and delivery) before the next
    if group and not done.wait(600):
        raise RuntimeError("commits did not finish")
    elapsed = time.perf_counter() - started
    commits = store.commits
    store.close()
    assert delivered[0] == n and len(sinks[0]) > 0
    return n / elapsed, commits


def bench_commit(runs: int, n: int, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, group in (("per beat (anchor)", False), ("group", True)):
        rates, commits = [], []
        for run in range(runs):
            rate, count = _pipeline(root / f"commit-{group}-{run}.db", n, group)
            rates.append(rate)
            commits.append(count)
        out[name] = (statistics.median(rates), int(statistics.median(commits)))
    anchor = out["per beat (anchor)"][0]
    print(f"\n1. beats committed (synchronous=FULL) and delivered to {SINKS} sinks, {n} per run")
    print(f"{'mode':<22}{'beats/s':>10}{'commits':>10}{'x anchor':>10}")
    for name, (rate, count) in out.items():
        print(f"{name:<22}{rate:>10,.0f}{count:>10}{rate / anchor:>9.1f}x")
    return out


# ------------------------------------------------------------------------------ 2. latency


def _token(data: Path, room: str, role: str, avatars: int = 1) -> str:
    cmd = [sys.executable, "-m", "neonbar", "invite", "--room", room, "--role", role,
           "--data", str(data), "--avatars", str(avatars)]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    for word in out.split():
        if "token=" in word:
            return word.split("token=", 1)[1].split("&")[0]
    return out.strip().splitlines()[-1].strip()


async def _annotators(
    url: str, room: str, token: str, seconds: float, scene: str
) -> tuple[list[float], list[float]]:
    import msgpack
    from websockets.asyncio.client import connect

    from neonbar.protocol import PROTOCOL_VERSION, decode_server, encode

    n = 5
    conns = []
    for i in range(n):
        ws = await connect(url, max_size=None)
        await ws.send(encode({"t": "hello", "v": PROTOCOL_VERSION, "room": room,
                              "name": f"annotator-{i}", "token": token}))  # fmt: skip
        conns.append(ws)
    sent: dict[tuple[int, int], float] = {}
    you: dict[int, int] = {}
    latency: list[float] = []
    rtt: list[float] = []
    stop = time.monotonic() + seconds

    async def reader(i: int, ws: Any) -> None:
        tick = 0
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.1, stop - time.monotonic() + 2))
            except (TimeoutError, Exception):
                return
            now = time.perf_counter()
            # The harness must not be the bottleneck: snapshots (20 Hz x 55 avatars x 5
            # connections) are only acknowledged, everything else is decoded and validated.
            msg = msgpack.unpackb(raw, raw=False)
            t = msg.get("t")
            if t != "snap":
                msg = decode_server(raw)
            if t == "welcome":
                you[i] = int(msg["you"])
            elif t == "snap":
                tick += 1
                x, y, yaw, _ = msg["you"]
                await ws.send(encode({"t": "input", "seq": tick, "ack": msg["tick"], "x": x,
                                      "y": y, "yaw": yaw}))  # fmt: skip
            elif t == "pong":
                rtt.append(now - float(msg["ct"]))
            elif t == "event" and msg["kind"] == "beat" and "cid" in msg:
                author = next((k for k, v in you.items() if v == msg["avatar"]), None)
                if author is not None and author != i and (author, msg["cid"]) in sent:
                    latency.append(now - sent[(author, msg["cid"])])

    async def writer(i: int, ws: Any) -> None:
        cid = 0
        await asyncio.sleep(1.0 + 0.1 * i)
        while time.monotonic() < stop:
            cid += 1
            sent[(i, cid)] = time.perf_counter()
            await ws.send(encode({"t": "beat", "scene": scene, "at": float(cid % 29),
                                  "emotion": EMOTION_NAMES[cid % 8], "cid": cid}))  # fmt: skip
            await ws.send(encode({"t": "ping", "ct": time.perf_counter()}))
            await asyncio.sleep(0.3)  # ~3.3 beats/s each, under the 4/s limit

    readers = [asyncio.ensure_future(reader(i, ws)) for i, ws in enumerate(conns)]
    await asyncio.gather(*(writer(i, ws) for i, ws in enumerate(conns)))
    await asyncio.sleep(1.0)
    for ws in conns:
        with contextlib.suppress(Exception):
            await ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    return latency, rtt


def bench_latency(runs: int, bots: int, seconds: float, root: Path) -> dict[str, Any]:
    from clipfixtures import clip_scene
    from netfixtures import ServerProcess

    p50s, p99s, rtt50s, rtt99s, counts, bot_beats, within, loads = [], [], [], [], [], [], [], []
    # A 30 s clip with dust_storm's screenplay in a scene folder of its own: the server plays
    # it and the bots plan beats from its arc without rendering the film.
    scene = "bench_storm"
    env = {**os.environ, "NEONBAR_SCENES": str(clip_scene(root, scene, "Bench Storm"))}
    for run in range(runs):
        data = root / f"latency-{run}"
        data.mkdir(parents=True)
        server = ServerProcess(data, open_rooms=False, env=env)
        url = server.url
        bot_proc = None
        try:
            host = _token(data, "bench", "host", avatars=bots)  # one invite for the crowd
            viewer = _token(data, "bench", "viewer", avatars=5)
            bot_proc = subprocess.Popen(
                [sys.executable, "-m", "neonbar", "bots", "--server", url, "--room", "bench",
                 "--count", str(bots), "--duration", str(seconds + 6), "--token", host,
                 "--play", scene, "--beats", "--json"],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(3.0)  # the bots are in, the scene is playing
            latency, rtt = asyncio.run(_annotators(url, "bench", viewer, seconds, scene))
            loads.append(os.getloadavg()[0])
        finally:
            if bot_proc is not None:
                stdout, _ = bot_proc.communicate(timeout=60)
                with contextlib.suppress(ValueError, KeyError):
                    summary = json.loads(stdout)
                    bot_beats.append(int(summary["beats_sent"]))
                    if summary["connected"] != bots:
                        print(f"warning: {summary['connected']} of {bots} bots connected")
            server.stop(signal.SIGINT)
        lat = np.array(latency) * 1000
        r = np.array(rtt) * 1000
        p50s.append(float(np.percentile(lat, 50)))
        p99s.append(float(np.percentile(lat, 99)))
        rtt50s.append(float(np.percentile(r, 50)))
        rtt99s.append(float(np.percentile(r, 99)))
        counts.append(len(lat))
        within.append(float((lat <= 100.0).mean() * 100))
    out = {
        "p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s),
        "rtt_p50_ms": statistics.median(rtt50s), "rtt_p99_ms": statistics.median(rtt99s),
        "samples": int(statistics.median(counts)),
    }  # fmt: skip
    print(f"\n2. key press -> seen by the other annotators, {bots} bots in the room, loopback")
    print(f"{'':<28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'beat, sender to others':<28}{out['p50_ms']:>10.1f}{out['p99_ms']:>10.1f}")
    print(f"{'ping round trip (anchor)':<28}{out['rtt_p50_ms']:>10.1f}{out['rtt_p99_ms']:>10.1f}")
    print(f"samples per run: {out['samples']}; per-run p99: {', '.join(f'{v:.1f}' for v in p99s)}")
    print(f"beats the bots marked per run: {', '.join(map(str, bot_beats)) or 'unknown'}")
    print(f"seen within 100 ms per run: {', '.join(f'{w:.1f} %' for w in within)}; "
          f"load average after each run: {', '.join(f'{v:.1f}' for v in loads)}")  # fmt: skip
    return out


# ------------------------------------------------------------------------------ 3. export


def bench_export(runs: int, n: int, root: Path) -> dict[str, Any]:
    from neonbar.beatexport import run_export, run_verify
    from server.beats import DB_NAME, EVENT_KIND
    from server.storage import event_write

    data = root / "export"
    data.mkdir(parents=True, exist_ok=True)
    store = SqliteStorage(data / DB_NAME, threaded=False)
    store.load_room("studio", "neutral")
    chain = BeatChain("studio")
    rng = np.random.default_rng(7)
    writes = []
    for k in range(n):
        fields = validate_fields(
            scene=SCENE, t_in_s=float(rng.uniform(0, 29)), emotion_name=EMOTION_NAMES[k % 8],
            intensity=float(rng.uniform(0.2, 1)), note="a note" if k % 4 == 0 else "",
            point=(0.5, 0.5) if k % 5 == 0 else None, scene_duration_s=30.0,
        )  # fmt: skip
        rec = chain.add(fields, author=f"p{k % 12}", role="viewer", server_ms=k)
        writes.append(
            event_write("studio", k + 1, 0.0, EVENT_KIND, {"avatar": 1, "rec": rec.to_dict()}, b"")
        )
    store.submit(writes, None)
    store.close()
    records = [r.to_dict() for r in chain.records]
    quiet = open(os.devnull, "w")  # noqa: SIM115
    results: dict[str, float] = {}

    def timed(fn: Any) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            with contextlib.redirect_stdout(quiet):
                fn()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    results["json.dumps (anchor)"] = timed(lambda: json.dumps(records))
    for fmt in ("json", "otio", "edl", "resolve-edl", "csv"):
        out = root / f"beats.{fmt.replace('resolve-', 'resolve.')}"
        args = SimpleNamespace(data=str(data), room="studio", scene=None, format=fmt, out=str(out))
        results[f"export {fmt}"] = timed(lambda a=args: run_export(a))
    for fmt in ("json", "otio"):
        path = root / f"beats.{fmt}"
        results[f"verify {fmt}"] = timed(lambda p=path: run_verify(SimpleNamespace(file=str(p))))
    anchor = results["json.dumps (anchor)"]
    print(f"\n3. export of {n:,} beats (one scene), from the data directory")
    print(f"{'':<24}{'seconds':>10}{'x anchor':>10}")
    for name, seconds in results.items():
        print(f"{name:<24}{seconds:>10.3f}{seconds / anchor:>9.1f}x")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median shown)")
    parser.add_argument("--beats", type=int, default=3000, help="beats per commit run")
    parser.add_argument("--bots", type=int, default=50, help="bots in the room for latency")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency run length")
    parser.add_argument("--export-beats", type=int, default=10_000, help="beats to export")
    parser.add_argument("--only", default="commit,latency,export", help="which parts to run")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    root = Path(tempfile.mkdtemp(prefix="neonbar-beats-"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    try:
        if "commit" in parts:
            bench_commit(args.runs, args.beats, root)
        if "latency" in parts:
            bench_latency(args.runs, args.bots, args.seconds, root)
        if "export" in parts:
            bench_export(args.runs, args.export_beats, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
