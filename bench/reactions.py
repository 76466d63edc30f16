"""The Empathy Engine's costs: pipeline fps on one core, latency, bytes, client and server cost.

    .venv/bin/python bench/reactions.py [--runs 3] [--seconds 10] [--watchers 200]

1. Pipeline, pinned to one core (sched_setaffinity, torch at one thread), 640x480 face video
   (client/reactions/synthetic.py: the Grace Hopper photo, warped and moving):
   - anchor: mediapipe's face mesh alone (FaceTracker.landmarks) per frame;
   - the whole per-frame pipeline (landmarks -> features -> torch model -> 1€ -> micro ->
     reaction), frames already decoded;
   - end to end from the file (PyAV decode + pipeline), frames per second of wall time;
   - frame -> message latency: from a decoded frame to its reaction packed for the wire.
2. Wire: bytes per reaction and per `react` message; per watcher per second.
3. Client: Python per frame (main thread CPU, and wall time of a task-manager step) with 200
   remote avatars, the pipeline off, then on (reading the face video in its thread).
4. Server: a real Room with 200 watchers each sending 10 reactions a second while a scene
   plays: CPU per second for the `react` handler and the feature's tick (fold into the felt
   arc, faces), against the 20 Hz tick's 50 ms; beside it, in the same room, the handler
   alone and an `input` through the same receive path.

Prints medians over runs and one JSON line for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _pin_one_core() -> int:
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    import torch

    torch.set_num_threads(1)
    return core


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
    }


def bench_pipeline(video: Path, runs: int) -> dict[str, Any]:
    from client.reactions.pipeline import ReactionEngine, Reactor
    from client.reactions.sources import VideoFileSource
    from client.reactions.tracker import FaceTracker
    from neonbar import reaction as wire

    frames = [(t, rgb) for t, rgb in VideoFileSource(video).frames()]
    mesh_fps, pipe_fps, e2e_fps, e2e_cpu_fps = [], [], [], []
    mesh_cpu: list[float] = []
    pipe_cpu: list[float] = []
    mesh_ms: list[float] = []
    pipe_ms: list[float] = []
    latency_ms: list[float] = []
    for _ in range(runs):
        with FaceTracker(video=True) as tracker:
            tracker.landmarks(frames[0][1])  # model load and first detection
            times = []
            c0 = time.process_time()
            for _, rgb in frames:
                t0 = time.perf_counter()
                tracker.landmarks(rgb)
                times.append(time.perf_counter() - t0)
            mesh_cpu.append((time.process_time() - c0) / len(frames) * 1e3)
        mesh_ms += [x * 1e3 for x in times]
        mesh_fps.append(len(times) / sum(times))

        reactor = Reactor(None, engine=ReactionEngine())
        reactor.step(*frames[0])
        times = []
        c0 = time.process_time()
        for t, rgb in frames:
            t0 = time.perf_counter()
            reading = reactor.step(t, rgb)
            while not reactor.outbox.empty():
                kind, item = reactor.outbox.get()
                if kind == "reaction":
                    wire.pack(item)
                    latency_ms.append((time.perf_counter() - t0) * 1e3)
            times.append(time.perf_counter() - t0)
            del reading
        pipe_cpu.append((time.process_time() - c0) / len(frames) * 1e3)
        pipe_ms += [x * 1e3 for x in times]
        pipe_fps.append(len(times) / sum(times))

        reactor = Reactor(None, engine=ReactionEngine())
        t0, c0 = time.perf_counter(), time.process_time()
        n = 0
        for t, rgb in VideoFileSource(video).frames():
            reactor.step(t, rgb)
            n += 1
        e2e_fps.append(n / (time.perf_counter() - t0))
        e2e_cpu_fps.append(n / (time.process_time() - c0))
    return {
        "frames": len(frames),
        "size": f"{frames[0][1].shape[1]}x{frames[0][1].shape[0]}",
        "mesh_alone": {
            **_ms(mesh_ms),
            "fps": round(statistics.median(mesh_fps), 1),
            "cpu_ms": round(statistics.median(mesh_cpu), 3),
        },
        "pipeline": {
            **_ms(pipe_ms),
            "fps": round(statistics.median(pipe_fps), 1),
            "cpu_ms": round(statistics.median(pipe_cpu), 3),
        },
        "end_to_end_fps": round(statistics.median(e2e_fps), 1),
        "end_to_end_cpu_fps": round(statistics.median(e2e_cpu_fps), 1),
        "runs_end_to_end_fps": [round(x, 1) for x in e2e_fps],
        "frame_to_message": _ms(latency_ms),
    }


def bench_wire() -> dict[str, Any]:
    from neonbar import protocol
    from neonbar import reaction as wire

    r = wire.Reaction(123.4, 0.5, 0.6, (0.5,) * 7)
    one = len(protocol.encode({"t": "react", "r": wire.pack(r)}))
    faces = len(
        protocol.encode(
            {"t": "faces", "d": wire.pack_faces(list(range(200)), [wire.pack(r)] * 200)}
        )
    )
    return {
        "reaction_bytes": wire.REACTION_BYTES,
        "react_message_bytes": one,
        "up_bytes_per_s": round(one * wire.REACTION_HZ),
        "faces_message_bytes_200": faces,
        "down_bytes_per_s_200_all_changing": round(faces * wire.FACES_HZ),
    }


def bench_client(video: Path, avatars: int, frames: int) -> dict[str, Any]:
    """Python per frame (the app's frame task and the share's, main-thread CPU) and whole
    frames (wall, rasterizer synced) with the pipeline off, then on."""
    from bench.client_frame import CrowdSession
    from client.app import NeonBarApp, make_showbase

    base = make_showbase(offscreen=True, size=(640, 360))
    task = type("T", (), {"cont": 1})()
    out: dict[str, Any] = {}
    for label, source in (("off", (None, None)), ("on", (None, str(video)))):
        session = CrowdSession(avatars)
        app = NeonBarApp(base, session, name="bench", post=False, reaction_source=source)  # type: ignore[arg-type]
        for _ in range(30):
            base.taskMgr.step()
        time.sleep(2.0)  # the reactor has loaded its models and is reading frames
        python, wall = [], []
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(frames):
            t0, c0 = time.perf_counter(), time.thread_time()
            app._frame(task)
            app.share._frame(task)
            python.append((time.thread_time() - c0) * 1e3)
            base.graphicsEngine.renderFrame()
            base.graphicsEngine.syncFrame()
            wall.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start_wall
        process_cpu = time.process_time() - start_cpu
        share = app.share
        out[label] = {
            "python_per_frame": _ms(python),
            "frame_wall_640x360": _ms(wall),
            "process_cores_busy": round(process_cpu / elapsed, 3),
            "reactions_sent": share.sent,
            "pipeline_fps": round(share.reactor.stats.fps, 1) if share.reactor else None,
        }
        app.destroy()
    base.destroy()
    return out


def bench_server(watchers: int, seconds: float) -> dict[str, Any]:
    import server.playback
    import server.reactions  # noqa: F401
    from neonbar import reaction as wire
    from neonbar.playback import Timeline
    from neonbar.protocol import PROTOCOL_VERSION, encode
    from server.recording import RecordedLink, RecordingHost
    from server.room import Grant

    host = RecordingHost()
    room = host.room("bench")
    room.features["playback"].timeline = Timeline(
        scene="neon_alley", title="bench", media="0" * 64, fps=24.0, frames=24 * 3600,
        playing=True, pos_s=0.0, at_s=0.0, status="ready",
    )  # fmt: skip
    feature = room.features["reactions"]
    sessions = []
    for i in range(watchers):
        link = RecordedLink(peer=f"w{i}")
        hello = {"t": "hello", "v": PROTOCOL_VERSION, "room": "bench", "name": f"w{i}"}
        sessions.append((room.on_join(link, hello, Grant("viewer", f"w{i}", False), 0.0), link))
    rng = np.random.default_rng(3)
    handler_s = 0.0
    tick_s = 0.0
    ticks = round(seconds * 20)
    messages = 0
    for k in range(ticks):
        host.now = k / 20.0
        for i, (session, _) in enumerate(sessions):
            if (i + k) % 2:
                continue  # 10 Hz each
            r = wire.Reaction(host.now, float(rng.uniform(-1, 1)), float(rng.uniform(0, 1)),
                              tuple(rng.uniform(0, 1, 7)))  # fmt: skip
            frame = encode({"t": "react", "r": wire.pack(r)})
            t0 = time.perf_counter()
            room.receive(session, frame, host.now)
            handler_s += time.perf_counter() - t0
            messages += 1
        t0 = time.perf_counter()
        feature.on_tick(host.now)
        tick_s += time.perf_counter() - t0
        for _, link in sessions:
            link.frames.clear()
    per_s = (handler_s + tick_s) / seconds
    # the same room's costs for comparison: the handler alone (message already decoded), and an
    # `input` through the same receive path (its fast decoder)
    session = sessions[0][0]
    msg = {"t": "react", "r": wire.pack(wire.Reaction(1.0, 0.1, 0.2))}
    t0 = time.perf_counter()
    for _ in range(2000):
        feature.on_react(session, msg, host.now)
    handler_alone_us = (time.perf_counter() - t0) / 2000 * 1e6
    feature.waiting.clear()
    inputs = [encode({"t": "input", "seq": k + 1, "ack": -1, "x": 0, "y": -900, "yaw": 0})
              for k in range(2000)]  # fmt: skip
    t0 = time.perf_counter()
    for k, frame in enumerate(inputs):
        room.receive(sessions[1 + k % (watchers - 1)][0], frame, host.now + k * 1e-3)
    input_us = (time.perf_counter() - t0) / 2000 * 1e6
    return {
        "watchers": watchers,
        "reactions_per_s": round(messages / seconds),
        "handler_us_per_message": round(handler_s / messages * 1e6, 1),
        "react_handler_alone_us": round(handler_alone_us, 2),
        "input_receive_us": round(input_us, 1),
        "tick_ms": round(tick_s / ticks * 1e3, 3),
        "cpu_ms_per_s": round(per_s * 1e3, 1),
        "share_of_one_core": round(per_s, 4),
        "felt_arc_samples": feature.arcs["neon_alley"].count,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the face video")
    ap.add_argument("--watchers", type=int, default=200)
    ap.add_argument("--client-frames", type=int, default=240)
    ap.add_argument("--skip-client", action="store_true")
    ap.add_argument("--only-pipeline", action="store_true")
    ap.add_argument("--only-client", action="store_true")
    args = ap.parse_args()
    results: dict[str, Any] = {"wire": bench_wire(), "load_before": os.getloadavg()[0]}
    if not args.only_pipeline and not args.only_client:
        results["server"] = bench_server(args.watchers, 20.0)
    with tempfile.TemporaryDirectory() as tmp:
        from client.reactions.synthetic import write_video

        video = write_video(Path(tmp) / "face.mp4", duration_s=args.seconds)
        if not args.skip_client and not args.only_pipeline:
            results["client"] = bench_client(video, 200, args.client_frames)
        if not args.only_client:
            results["core"] = _pin_one_core()  # last: the client above may use both cores
            results["pipeline"] = bench_pipeline(video, args.runs)
    results["load_after"] = os.getloadavg()[0]
    w = results["wire"]
    p = results.get("pipeline")
    if p is not None:
        _print_pipeline(p, args.runs)
    print(f"wire: {w}")
    if "client" in results:
        c = results["client"]
        print(f"client, 200 avatars: Python per frame off {c['off']['python_per_frame']} / on "
              f"{c['on']['python_per_frame']}; frame off {c['off']['frame_wall_640x360']} / on "
              f"{c['on']['frame_wall_640x360']}; cores busy off "
              f"{c['off']['process_cores_busy']} / on {c['on']['process_cores_busy']}")  # fmt: skip
    if "server" in results:
        s = results["server"]
        print(f"server, {s['watchers']} watchers at 10 Hz: {s['handler_us_per_message']} us/msg, "
              f"tick {s['tick_ms']} ms, {s['cpu_ms_per_s']} ms CPU per s "
              f"({s['share_of_one_core'] * 100:.2f} % of a core)")  # fmt: skip
    print(f"load average {results['load_before']:.1f} before, {results['load_after']:.1f} after")
    print(json.dumps(results))
    return 0


def _print_pipeline(p: dict[str, Any], runs: int) -> None:
    print(f"pipeline on one core ({p['size']}, {p['frames']} frames x {runs} runs):")
    mesh, pipe = p["mesh_alone"], p["pipeline"]
    print(f"  mediapipe face mesh alone: {mesh['median_ms']} ms wall, "
          f"{mesh['cpu_ms']} ms CPU ({mesh['fps']} fps)  <- anchor")  # fmt: skip
    ratio = p["pipeline"]["median_ms"] / p["mesh_alone"]["median_ms"]
    print(f"  whole pipeline per frame:  {pipe['median_ms']} ms wall, "
          f"{pipe['cpu_ms']} ms CPU ({pipe['fps']} fps, {ratio:.2f}x the mesh)")  # fmt: skip
    print(
        f"  end to end from the file:  {p['end_to_end_fps']} fps wall, "
        f"{p['end_to_end_cpu_fps']} fps of CPU time (target 60; OpenSeeFace 44-68)"
    )
    print(f"  frame -> message: {p['frame_to_message']}")


if __name__ == "__main__":
    sys.exit(main())
