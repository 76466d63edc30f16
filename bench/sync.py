"""Watch together: displayed-frame drift between clients, late-joiner sync, media fetch, frame cost.

    .venv/bin/python bench/sync.py [--clients 2,5] [--jitter-ms 0,50,150] [--runs 1]
                                   [--skip-drift] [--skip-fetch] [--skip-frame]

1. Drift. A real `neonbar server`, a TCP proxy adding 30 ms each way plus exponential jitter
   (mean 0, 50 or 150 ms per chunk, order kept), N real offscreen clients (`neonbar client
   --offscreen --playback-log`, 320x180) with their own --data dirs, and a host driving the
   timeline: play, seek, rate 1.5, rate 1. Every logged frame is compared with the frame due at
   that moment (the server clock is known to ~0.1 ms from loopback pings); drift between two
   clients is the difference of their errors at the same moment, over every pair, in frames
   (1 frame = 41.7 ms at 24 fps), skipping 0.6 s after each change (the news is in flight).
   One more client joins while the scene plays: time from its welcome to being in sync (from
   then on, for 2 s, at least 95 % of its frames within one frame of the frame due).
2. Media fetch throughput: a 720p clip fetched by client.media.fetch from `neonbar server`
   (ranged 4 MB requests, sha256 as it arrives) against the anchor, one plain GET of the same
   file from Python's http.server, in the same run.
3. Client frame cost: Python time of the app's frame task per frame (thread CPU time) with 200
   remote avatars walking (bench/client_frame.py's stand-in session), the idle screen against a
   720p scene playing (decoded on its own thread to a 640x360 texture).

The anchors beside the figures: Syncplay slows down past 1.5 s and seeks past 4 s; Hubs
tolerates 2 s. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "client"))

from watchfixtures import WatchRig  # noqa: E402

from neonbar.playback import frame_errors  # noqa: E402

FRAME_MS = 1000 / 24


def errors(rig: WatchRig, name: str) -> np.ndarray:
    pairs = frame_errors(rig.records(name), rig.host.history, rig.host.server_offset_s, 0.6)
    return np.array(pairs, dtype=float).reshape(-1, 2)


def pair_drift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) < 2 or len(b) < 2:
        return np.zeros(0)
    idx = np.clip(np.searchsorted(b[:, 0], a[:, 0]), 1, len(b) - 1)
    left, right = b[idx - 1], b[idx]
    nearest = np.where((a[:, 0] - left[:, 0] < right[:, 0] - a[:, 0])[:, None], left, right)
    close = np.abs(nearest[:, 0] - a[:, 0]) < 0.05
    return np.abs(a[close, 1] - nearest[close, 1])


def sync_time_s(rig: WatchRig, name: str, hold_s: float = 2.0) -> float | None:
    """Seconds from the client's welcome until it is in sync: the first moment from which, for
    `hold_s`, at least 95 % of its drawn frames are within one frame of the frame due."""
    err = errors(rig, name)
    first = next((r["t"] for r in rig.records(name) if r.get("ver")), None)
    if first is None or not len(err):
        return None
    t, ok = err[:, 0], np.abs(err[:, 1]) <= 1
    for i in range(len(t)):
        window = (t >= t[i]) & (t < t[i] + hold_s)
        if t[-1] >= t[i] + hold_s * 0.75 and ok[window].mean() >= 0.95:
            return float(t[i] - first)
    return None


def drift_run(clients: int, jitter_ms: float, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="neonbar-sync-") as tmp:
        rig = WatchRig(Path(tmp), delay_s=0.03, jitter_s=jitter_ms / 1000, seed=seed)
        try:
            rig.choose()
            names = [f"c{i}" for i in range(clients)]
            for name in names:
                rig.client(name)
            rig.wait_showing(names, timeout_s=120)
            host = rig.host
            host.do("play")
            time.sleep(4.0)
            host.do("seek", pos=10.0)
            time.sleep(2.5)
            rig.client("late")
            rig.wait_showing(["late"], timeout_s=120)
            time.sleep(1.5)
            host.do("rate", rate=1.5)
            time.sleep(4.0)
            host.do("rate", rate=1.0)
            time.sleep(2.5)
            rig.stop_clients()
            errs = {n: errors(rig, n) for n in names}
            drift = np.concatenate(
                [pair_drift(errs[a], errs[b]) for a, b in itertools.combinations(names, 2)]
            )
            own = np.abs(np.concatenate([e[:, 1] for e in errs.values()]))
            fps = [_fps(rig.records(n)) for n in names]
            heard = [_heard_ms(rig, n) for n in names]
            return {
                "clients": clients,
                "jitter_ms": jitter_ms,
                "pairs_samples": len(drift),
                "drift_frames": _pcts(drift),
                "vs_due_frames": _pcts(own),
                "late_sync_s": sync_time_s(rig, "late"),
                "news_ms": _pcts(np.concatenate(heard)),
                "client_fps": round(statistics.median(fps), 1),
            }
        finally:
            rig.close()


def _heard_ms(rig: WatchRig, name: str) -> np.ndarray:
    """How long each timeline change took to reach the client's screen (the first frame drawn
    with that version), milliseconds: the network's share, not drift."""
    first: dict[int, float] = {}
    records = rig.records(name)
    for rec in records:
        first.setdefault(int(rec.get("ver", 0)), float(rec["t"]) + rig.host.server_offset_s)
    started = float(records[0]["t"]) + rig.host.server_offset_s if records else 0.0
    out = []
    for timeline in rig.host.history.versions:
        version = timeline.version
        # Only changes made while the client was there (not the state it found at welcome).
        if version in first and timeline.status == "ready" and timeline.at_s > started:
            out.append((first[version] - timeline.at_s) * 1e3)
    return np.array(out)


def _fps(records: list[dict[str, Any]]) -> float:
    ts = [r["t"] for r in records if r.get("frame") is not None]
    return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 else 0.0


def _pcts(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(values.max())}


# ---------------------------------------------------------------------------------- fetch


def fetch_bench(runs: int) -> dict[str, Any]:
    from clipfixtures import write_numbered_clip

    from client.media import MediaCache, fetch

    with tempfile.TemporaryDirectory(prefix="neonbar-fetch-") as tmp:
        work = Path(tmp)
        rig = WatchRig(work / "rig", frames=48)
        try:
            # A bigger 720p clip imported as a second scene: noise behind the frame code, so
            # it does not compress (120 frames at crf 18).
            big = write_numbered_clip(work / "big.mp4", 120, 24, (1280, 720), gop=None,
                                      noise_seed=0, crf=18, preset="ultrafast")  # fmt: skip
            import os

            from neonbar.scenes import import_clip

            os.environ["NEONBAR_SCENES"] = rig.env["NEONBAR_SCENES"]
            import_clip(big, "Big", name="big")
            timeline = rig.choose("big")
            sha = timeline.media
            assert sha is not None
            size = big.stat().st_size
            ours, anchor = [], []
            handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(work))
            plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=plain.serve_forever, daemon=True).start()
            try:
                for k in range(runs):
                    t = time.perf_counter()
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{plain.server_port}/big.mp4"
                    ) as resp:
                        assert len(resp.read()) == size
                    anchor.append(time.perf_counter() - t)
                    cache = MediaCache(work / f"cache-{k}")
                    t = time.perf_counter()
                    fetch(rig.server.url, sha, cache, rig.token("viewer"))
                    ours.append(time.perf_counter() - t)
            finally:
                plain.shutdown()
            mb = size / 1e6
            return {
                "bytes": size,
                "ours_mb_s": round(mb / statistics.median(ours), 1),
                "anchor_mb_s": round(mb / statistics.median(anchor), 1),
                "ratio": round(statistics.median(anchor) / statistics.median(ours), 2),
            }
        finally:
            rig.close()


# ---------------------------------------------------------------------------- frame cost


def frame_bench(frames: int) -> dict[str, Any]:
    import hashlib
    import shutil

    from clipfixtures import write_numbered_clip

    from client.app import NeonBarApp, make_showbase
    from client.watch import WatchOptions
    from neonbar.playback import Timeline

    with tempfile.TemporaryDirectory(prefix="neonbar-frame-") as tmp:
        work = Path(tmp)
        clip = write_numbered_clip(work / "clip.mp4", 480, 24, (1280, 720))
        digest = hashlib.sha256(clip.read_bytes()).hexdigest()
        (work / "data" / "media").mkdir(parents=True)
        shutil.copy(clip, work / "data" / "media" / f"{digest}.mp4")

        sys.path.insert(0, str(ROOT / "bench"))
        from client_frame import CrowdSession  # 200 remote avatars walking, as there

        session = CrowdSession(200)
        base = make_showbase(offscreen=True, size=(640, 360))  # drawing is not what is timed
        app = NeonBarApp(base, session, name="bench", post=False,
                         watch_options=WatchOptions(data_dir=work / "data"))  # fmt: skip
        task = type("T", (), {"cont": 1})()

        def measure() -> list[float]:
            out = []
            for _ in range(frames):
                timeline = app.watch.timeline
                if timeline.scene and timeline.position(session.server_time()) > 18.0:
                    # Near the end: back to the start (a slow renderer plays 20 s in few frames).
                    back = timeline.seek(0.0, session.server_time())
                    app.watch.on_event({"t": "event", "kind": "timeline", **back.to_wire()})
                t = time.thread_time()
                app._frame(task)
                out.append((time.thread_time() - t) * 1e3)
                base.graphicsEngine.renderFrame()
                base.graphicsEngine.syncFrame()
            return out

        for _ in range(20):
            base.taskMgr.step()
        idle = measure()
        now = session.server_time()
        timeline = Timeline(scene="clip", title="Clip", media=digest, fps=24, frames=480,
                            status="ready", version=1).play(now)  # fmt: skip
        app.watch.on_event({"t": "event", "kind": "timeline", **timeline.to_wire()})
        for _ in range(20):
            base.taskMgr.step()
        uploads_before = app.watch.screen.uploads
        upload_s_before = app.watch.screen.upload_s
        playing = measure()
        screen = app.watch.screen
        uploads = screen.uploads - uploads_before
        source = screen.source
        assert source is not None and app.watch.problem is None
        app.destroy()
        base.destroy()
        return {
            "idle_ms": _med_p95(idle),
            "playing_ms": _med_p95(playing),
            "uploads": uploads,
            "upload_ms": round((screen.upload_s - upload_s_before) / max(1, uploads) * 1e3, 2),
        }


def _med_p95(ms: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(ms), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
    }


# ---------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="2,5")
    ap.add_argument("--jitter-ms", default="0,50,150")
    ap.add_argument("--runs", type=int, default=1, help="drift runs per configuration")
    ap.add_argument("--fetch-runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--skip-drift", action="store_true")
    ap.add_argument("--skip-fetch", action="store_true")
    ap.add_argument("--skip-frame", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if not args.skip_drift:
        rows = []
        for n in (int(v) for v in args.clients.split(",")):
            for jitter in (float(v) for v in args.jitter_ms.split(",")):
                runs = [drift_run(n, jitter, seed) for seed in range(args.runs)]
                row = runs[0] if len(runs) == 1 else _median_row(runs)
                rows.append(row)
                d, o = row["drift_frames"], row["vs_due_frames"]
                print(f"{n} clients, jitter {jitter:>3.0f} ms: drift p50/p95/max "
                      f"{d['p50']:.0f}/{d['p95']:.0f}/{d['max']:.0f} frames "
                      f"({d['p95'] * FRAME_MS:.0f} ms p95); vs due p95 {o['p95']:.0f}; "
                      f"late joiner in sync after {row['late_sync_s']} s; "
                      f"news p50 {row['news_ms']['p50']:.0f} ms; "
                      f"client {row['client_fps']} fps", flush=True)  # fmt: skip
        out["drift"] = rows
    if not args.skip_fetch:
        out["fetch"] = fetch_bench(args.fetch_runs)
        f = out["fetch"]
        print(f"media fetch: {f['ours_mb_s']} MB/s ({f['bytes'] / 1e6:.1f} MB, verified) vs "
              f"plain http.server GET {f['anchor_mb_s']} MB/s: {f['ratio']}x")  # fmt: skip
    if not args.skip_frame:
        out["frame"] = frame_bench(args.frames)
        f = out["frame"]
        print(f"client frame task (Python): idle {f['idle_ms']} ms, scene playing "
              f"{f['playing_ms']} ms (budget 4 ms); upload {f['upload_ms']} ms per new frame",
              flush=True)  # fmt: skip
    print(json.dumps(out))
    return 0


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row = dict(runs[0])
    for key in ("drift_frames", "vs_due_frames", "news_ms"):
        row[key] = {k: statistics.median(r[key][k] for r in runs) for k in ("p50", "p95", "max")}
    late = [r["late_sync_s"] for r in runs if r["late_sync_s"] is not None]
    row["late_sync_s"] = round(statistics.median(late), 2) if late else None
    row["client_fps"] = statistics.median(r["client_fps"] for r in runs)
    row["runs"] = len(runs)
    return row


if __name__ == "__main__":
    sys.exit(main())
