"""`neonbar react`: the reaction pipeline alone, no 3D client — how a user checks their camera.

Prints each reaction it would send (10 a second) and every micro-expression, then the frame
rate and latency; `--json` prints one object instead. `--calibrate` runs the 20-second
calibration first and stores it in the client data directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from client.reactions.micro import MicroEvent
from client.reactions.sources import VideoFileSource, WebcamSource
from neonbar import reaction as wire
from neonbar.errors import UserError


def _reaction_json(r: wire.Reaction) -> dict[str, Any]:
    packed = wire.pack(r)
    return {
        "t": round(r.t_s, 3),
        "face": bool(r.flags & wire.FLAG_FACE),
        "valence": round(r.valence, 3),
        "arousal": round(r.arousal, 3),
        "intensities": {
            k: round(v, 3) for k, v in zip(wire.INTENSITIES, r.intensities, strict=True)
        },
        "bytes": packed.hex(),
    }


def _micro_json(e: MicroEvent) -> dict[str, Any]:
    return {"at": round(e.apex_s, 3), "kind": e.kind, "strength": round(e.strength, 3),
            "dur_ms": e.dur_ms}  # fmt: skip


def _line(r: wire.Reaction) -> str:
    if not r.flags & wire.FLAG_FACE:
        return f"{r.t_s:8.2f} s  no face"
    levels = " ".join(
        f"{k} {v:.2f}" for k, v in zip(wire.INTENSITIES, r.intensities, strict=True) if v >= 0.1
    )
    return (
        f"{r.t_s:8.2f} s  valence {r.valence:+.2f}  arousal {r.arousal:.2f}  {levels}"
        f"  [{wire.REACTION_BYTES} B]"
    )


def _calibrate(source: Any, args: argparse.Namespace) -> str:
    from client.reactions.calibration import PROMPTS, calibration_path, fit, load_model, prompt_at
    from client.reactions.pipeline import ReactionEngine

    engine = ReactionEngine(model=load_model(args.data))
    samples: dict[str, list[Any]] = {p.name: [] for p in PROMPTS}
    shown = None
    start_t: float | None = None
    from client.reactions.features import features

    for t_s, rgb in source.frames():
        start_t = t_s if start_t is None else start_t
        where = prompt_at(t_s - start_t)
        if where is None:
            break
        prompt, counts = where
        if prompt is not shown:
            print(f"calibration: {prompt.text} ({prompt.seconds:g} s)", file=sys.stderr)
            shown = prompt
        points = engine.tracker.landmarks(rgb)  # type: ignore[attr-defined]
        if counts and points is not None:
            samples[prompt.name].append(features(points))
    try:
        model = fit(engine.model, samples)
    except ValueError as exc:
        raise UserError(f"calibration failed: {exc}; try again facing the camera") from None
    path = calibration_path(args.data)
    model.save(path)
    return str(path)


def run(args: argparse.Namespace) -> int:
    if args.webcam is not None:
        source: Any = WebcamSource(args.webcam)
        name = f"webcam {args.webcam}"
    else:
        source = VideoFileSource(args.video, realtime=False)
        name = str(args.video)
    # the source is checked first: a missing camera or file is refused before torch and
    # mediapipe load (seconds on a small machine)
    from client.reactions.calibration import TOTAL_S, load_model
    from client.reactions.pipeline import ReactionEngine, Reactor

    calibration = None
    if args.calibrate:
        if not args.json:
            print(f"calibration: {TOTAL_S:g} s, follow the prompts", file=sys.stderr)
        calibration = _calibrate(source, args)
        if args.webcam is None:
            source = VideoFileSource(args.video, realtime=False)
    model = load_model(args.data)
    reactor = Reactor(source, engine=ReactionEngine(model=model))
    reactions: list[dict[str, Any]] = []
    micro: list[dict[str, Any]] = []
    wall_start = time.monotonic()
    try:
        for t_s, rgb in source.frames():
            if args.duration is not None and t_s > args.duration:
                break
            reactor.step(t_s, rgb)
            while not reactor.outbox.empty():
                kind, item = reactor.outbox.get()
                if kind == "reaction":
                    assert isinstance(item, wire.Reaction)
                    reactions.append(_reaction_json(item))
                    if not args.json:
                        print(_line(item), flush=True)
                else:
                    assert isinstance(item, MicroEvent)
                    micro.append(_micro_json(item))
                    if not args.json:
                        print(
                            f"{item.apex_s:8.2f} s  micro-expression {item.kind}"
                            f"  strength {item.strength:.2f}  {item.dur_ms} ms",
                            flush=True,
                        )
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    wall_s = time.monotonic() - wall_start
    stats = reactor.stats
    lat = np.asarray(stats.latency_ms or [0.0])
    summary = {
        "source": name,
        "frames": stats.frames,
        "faces": stats.faces,
        "fps": round(stats.fps, 1),
        "wall_fps": round(stats.frames / wall_s, 1) if wall_s > 0 else 0.0,
        "latency_ms": {
            "p50": round(float(np.median(lat)), 2),
            "p95": round(float(np.percentile(lat, 95)), 2),
        },
        "reaction_bytes": wire.REACTION_BYTES,
        "reactions_per_s": wire.REACTION_HZ,
        "calibrated": model.calibrated,
        "calibration": calibration,
        "reactions": reactions,
        "micro": micro,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        if stats.frames and not stats.faces:
            print("no face was found: light your face and look at the camera", file=sys.stderr)
        print(
            f"{name}: {stats.frames} frames, face in {stats.faces}, {summary['fps']} fps "
            f"(pipeline), frame -> reaction p50 {summary['latency_ms']['p50']} ms; "
            f"{len(reactions)} reactions of {wire.REACTION_BYTES} bytes, {len(micro)} micro"
        )
    return 0
