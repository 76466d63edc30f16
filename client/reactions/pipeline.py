"""The reaction pipeline: frame -> landmarks -> features -> model -> smoothed reaction.

`ReactionEngine` is the per-frame work with no thread and no camera (tests feed it landmarks);
`Reactor` runs it on a frame source in its own thread and hands out what would be sent: one
`Reaction` every 1/REACTION_HZ seconds and every micro-expression as it ends. Nothing but those
numbers leaves the pipeline; frames are dropped as soon as the face mesh has read them.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from client.reactions.features import features
from client.reactions.micro import MicroDetector, MicroEvent
from client.reactions.model import Baseline, ExpressionModel
from neonbar.reaction import (
    FLAG_CALIBRATED,
    FLAG_FACE,
    N_INTENSITIES,
    REACTION_HZ,
    Reaction,
)


class OneEuro:
    """The 1€ filter (Casiez, Roussel & Vogel, CHI 2012) over a vector, per component.

    Low cut-off while a value holds still (no jitter on a neutral face), higher while it moves
    (a smile shows up without lag). `min_cutoff_hz` and `beta` are the paper's two knobs.
    """

    def __init__(self, min_cutoff_hz: float = 1.0, beta: float = 4.0, d_cutoff_hz: float = 1.0):
        self.min_cutoff_hz = min_cutoff_hz
        self.beta = beta
        self.d_cutoff_hz = d_cutoff_hz
        self._x: NDArray[np.float64] | None = None
        self._dx: NDArray[np.float64] | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff: NDArray[np.float64] | float) -> NDArray[np.float64]:
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff, np.float64))
        return np.asarray(1.0 / (1.0 + tau / dt), np.float64)

    def __call__(self, t_s: float, x: NDArray[np.float64]) -> NDArray[np.float64]:
        if self._x is None or self._dx is None or t_s <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t_s
            return x.copy()
        dt = t_s - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(dt, self.d_cutoff_hz) * (dx - self._dx)
        cutoff = self.min_cutoff_hz + self.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(dt, cutoff) * (x - self._x)
        self._t = t_s
        return self._x.copy()


@dataclass(frozen=True)
class Reading:
    """One frame's result. Values are smoothed; `micro` holds events that ended on this frame."""

    t_s: float
    face: bool
    valence: float
    arousal: float
    intensities: NDArray[np.float64]
    micro: list[MicroEvent] = field(default_factory=list)
    z: NDArray[np.float64] | None = None  # baseline-relative features (None: no face/warm-up)


class ReactionEngine:
    """Frames (or landmarks) in, Readings out. Not thread-safe: one per pipeline."""

    def __init__(self, model: ExpressionModel | None = None, tracker: object = None) -> None:
        self.model = model or ExpressionModel.load()
        self.baseline = Baseline(self.model.baseline)
        self.micro = MicroDetector()
        self.smooth = OneEuro()
        self._tracker = tracker
        self._last = np.zeros(2 + N_INTENSITIES)
        self._last[1] = 0.3

    @property
    def tracker(self) -> object:
        if self._tracker is None:
            from client.reactions.tracker import FaceTracker

            self._tracker = FaceTracker(video=True)
        return self._tracker

    def process(self, t_s: float, rgb: NDArray[np.uint8]) -> Reading:
        points = self.tracker.landmarks(rgb)  # type: ignore[attr-defined]
        return self.process_landmarks(t_s, points)

    def process_landmarks(self, t_s: float, points: NDArray[np.float64] | None) -> Reading:
        if points is None:
            v, a = self._last[0], self._last[1]
            return Reading(t_s, False, float(v), float(a), self._last[2:].copy())
        feats = features(points)
        base = self.baseline.update(t_s, feats)
        if base is None:  # warming up: the neutral face is not known yet
            return Reading(t_s, True, 0.0, 0.3, np.zeros(N_INTENSITIES))
        z = self.model.z(feats, base)
        intensity, valence, arousal = self.model.predict(z)
        raw = np.concatenate(([valence, arousal], intensity))
        out = self.smooth(t_s, raw)
        self._last = out
        events = self.micro.update(t_s, z)
        return Reading(t_s, True, float(out[0]), float(out[1]), out[2:].copy(), events, z)

    def reaction(self, reading: Reading, scene_t_s: float) -> Reaction:
        flags = (FLAG_FACE if reading.face else 0) | (
            FLAG_CALIBRATED if self.model.calibrated else 0
        )
        return Reaction(
            scene_t_s,
            reading.valence,
            reading.arousal,
            tuple(float(x) for x in reading.intensities),
            flags,
        )


@dataclass
class Stats:
    frames: int = 0
    faces: int = 0
    reactions: int = 0
    micro: int = 0
    started_s: float = 0.0
    busy_s: float = 0.0  # time spent in the pipeline itself (excludes waiting for frames)
    latency_ms: list[float] = field(default_factory=list)  # frame read -> reading, last 1,000

    @property
    def fps(self) -> float:
        """Frames processed per second of pipeline work (what one core can do)."""
        return self.frames / self.busy_s if self.busy_s > 0 else 0.0


Outgoing = tuple[str, Reaction | MicroEvent]  # ("reaction", r) or ("micro", event)


class Reactor(threading.Thread):
    """Runs a frame source through a ReactionEngine in a daemon thread.

    Args:
        source: WebcamSource or VideoFileSource.
        scene_time: the scene time now (the client's play head), None when nothing plays;
            reactions are stamped with it (or with the source's own clock when None).
        engine: the per-frame work (default: the FACS prior or the user's calibration).
        on_reading: called in the thread with every Reading (the avatar's own face).

    What would be sent lands in `outbox` (a thread-safe queue the client drains).
    """

    def __init__(
        self,
        source: object,
        scene_time: Callable[[], float | None] | None = None,
        engine: ReactionEngine | None = None,
        on_reading: Callable[[Reading], None] | None = None,
    ) -> None:
        super().__init__(name="reactions", daemon=True)
        self.source = source
        self.scene_time = scene_time or (lambda: None)
        self.engine = engine or ReactionEngine()
        self.on_reading = on_reading
        self.outbox: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        self.stats = Stats()
        self.error: str | None = None
        self._halt = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._next_emit_s = 0.0
        self.last: Reading | None = None

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self, paused: bool = True) -> None:
        """Pause (the webcam is released: its light goes off) or resume."""
        if paused and self._running.is_set():
            self._running.clear()
        elif not paused and not self._running.is_set():
            self._running.set()

    def stop(self) -> None:
        self._halt.set()
        self._running.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # the client carries on without reactions and says why
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.source.close()  # type: ignore[attr-defined]

    def _run(self) -> None:
        self.stats.started_s = time.monotonic()
        frames = None
        live = bool(getattr(self.source, "live", False))
        while not self._halt.is_set():
            if frames is None:
                frames = iter(self.source.frames())  # type: ignore[attr-defined]
            for t_s, rgb in frames:
                if self._halt.is_set():
                    return
                if not self._running.is_set():
                    break
                self.step(t_s, rgb)
            else:
                return  # the source ended
            self.last = None
            if live:  # paused: let go of the camera until resumed
                self.source.close()  # type: ignore[attr-defined]
                frames = None
            self._running.wait()
            if self._halt.is_set():
                return
            if live:
                self.source.open()  # type: ignore[attr-defined]

    def step(self, t_s: float, rgb: NDArray[np.uint8]) -> Reading:
        """Process one frame (public so the CLI and the bench drive it without a thread)."""
        start = time.perf_counter()
        reading = self.engine.process(t_s, rgb)
        del rgb  # the frame goes no further
        stats = self.stats
        stats.frames += 1
        stats.faces += reading.face
        if self.on_reading is not None:
            self.on_reading(reading)
        for event in reading.micro:
            stats.micro += 1
            self.outbox.put(("micro", self._micro_at_scene_time(event)))
        if t_s >= self._next_emit_s:
            self._next_emit_s = max(self._next_emit_s + 1.0 / REACTION_HZ, t_s)
            scene_t = self.scene_time()
            reaction = self.engine.reaction(reading, t_s if scene_t is None else scene_t)
            stats.reactions += 1
            self.outbox.put(("reaction", reaction))
        self.last = reading
        elapsed = time.perf_counter() - start
        stats.busy_s += elapsed
        stats.latency_ms.append(elapsed * 1000.0)
        if len(stats.latency_ms) > 1000:
            del stats.latency_ms[:500]
        return reading

    def _micro_at_scene_time(self, event: MicroEvent) -> MicroEvent:
        scene_t = self.scene_time()
        if scene_t is None:
            return event
        # the event ended a moment ago (at the current frame); shift it onto the scene clock
        shift = scene_t - event.offset_s
        return MicroEvent(
            event.kind,
            event.onset_s + shift,
            event.apex_s + shift,
            event.offset_s + shift,
            event.strength,
        )
