"""A synthetic audience for bots (`neonbar bots --react`): reactions that follow the intended arc.

Each bot has a temperament (how strongly it feels, a mood bias, how often it looks away) and
slow noise of its own (an AR(1) process, ~3 s memory), so the room's felt arc follows the
screenplay's intended arc roughly, not exactly — enough for a demo's felt arc and its branches.
Near the arc's strong moments some bots show a micro-expression. Intensities are made from
valence and arousal by the inverse of the FACS prior's main relationships (smile with positive
valence, brows down with negative, brows up and mouth open with arousal), plus blinks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neonbar import reaction as wire

log = logging.getLogger("neonbar.bots.reactions")

IntendedAt = Callable[[float], tuple[float, float]]


def intended_for(scene: str) -> tuple[IntendedAt, list[tuple[float, float]]]:
    """The scene's intended arc and its strong moments (time, valence); flat if unknown."""
    try:
        from neonbar.arc import intended_arc
        from neonbar.scenes import load_scene

        arc = intended_arc(load_scene(scene))
    except Exception as exc:  # a scene without screenplay: a flat, neutral arc
        log.info("scene %s has no intended arc (%s); bots react neutrally", scene, exc)
        return (lambda t: (0.0, 0.3)), []
    moments = [(m.t_s, m.valence) for m in arc.strong_moments(4)]
    return arc.at, moments


def intensities_for(valence: float, arousal: float, blink: bool) -> tuple[float, ...]:
    """Seven intensities (neonbar.reaction.INTENSITIES order) for a felt valence/arousal."""
    lift = max(0.0, arousal - 0.3) / 0.7
    smile = min(1.0, max(0.0, 1.3 * valence))
    brow_lower = min(1.0, max(0.0, -1.2 * valence) * (0.5 + lift))
    brow_raise = min(1.0, lift * (1.0 - abs(valence)) * 1.2)
    mouth_open = min(1.0, 0.8 * lift * lift)
    eye_widen = min(1.0, 0.9 * lift * (1.0 - max(0.0, valence)))
    lip_press = min(1.0, max(0.0, -valence) * 0.6 * (1.0 - lift))
    eye_close = 1.0 if blink else 0.0
    return (smile, brow_raise, brow_lower, mouth_open, eye_widen, eye_close, lip_press)


@dataclass
class Viewer:
    gain: float  # how strongly the arc moves this one
    mood: float  # valence bias
    away: float  # chance per reading of looking away
    noise_v: float = 0.0
    noise_a: float = 0.0


class SyntheticAudience:
    """Reactions for `count` bots at REACTION_HZ while a scene plays."""

    def __init__(self, count: int, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.viewers = [
            Viewer(
                gain=float(self.rng.uniform(0.6, 1.3)),
                mood=float(self.rng.normal(0.0, 0.08)),
                away=float(self.rng.uniform(0.0, 0.05)),
            )
            for _ in range(count)
        ]
        self.scene: str | None = None
        self.timeline: Any = None
        self._intended: IntendedAt = lambda t: (0.0, 0.3)
        self._moments: list[tuple[float, float]] = []
        self._micro_done: set[tuple[int, int]] = set()
        self.sent = 0
        self.micro_sent = 0

    def on_message(self, msg: dict[str, Any]) -> None:
        """Follow the room's timeline (welcome.timeline and `timeline` events)."""
        wire_timeline = msg.get("timeline") if msg.get("t") == "welcome" else msg
        if msg.get("t") != "welcome" and msg.get("kind") != "timeline":
            return
        from neonbar.playback import Timeline

        try:
            timeline = Timeline.from_wire(wire_timeline)
        except ValueError:
            return
        self.timeline = timeline
        if timeline.scene != self.scene:
            self.scene = timeline.scene
            self._micro_done.clear()
            if timeline.scene is not None:
                self._intended, self._moments = intended_for(timeline.scene)

    def scene_time(self, server_s: float) -> float | None:
        t = self.timeline
        if t is None or t.scene is None or not t.playing or t.status != "ready":
            return None
        return float(t.position(server_s))

    def messages(self, i: int, server_s: float, dt_s: float) -> list[dict[str, Any]]:
        """What bot i sends now (call at REACTION_HZ): a `react` and maybe a `micro`."""
        scene_t = self.scene_time(server_s)
        if scene_t is None:
            return []
        v = self.viewers[i]
        keep = math.exp(-dt_s / 3.0)
        kick = math.sqrt(1.0 - keep * keep)
        v.noise_v = keep * v.noise_v + kick * float(self.rng.normal(0.0, 0.12))
        v.noise_a = keep * v.noise_a + kick * float(self.rng.normal(0.0, 0.08))
        want_v, want_a = self._intended(scene_t)
        valence = max(-1.0, min(1.0, v.gain * want_v + v.mood + v.noise_v))
        arousal = max(0.0, min(1.0, 0.3 + v.gain * (want_a - 0.3) + v.noise_a))
        looked_away = self.rng.random() < v.away
        blink = self.rng.random() < 0.03
        flags = wire.FLAG_SYNTHETIC | (0 if looked_away else wire.FLAG_FACE)
        reaction = wire.Reaction(
            scene_t, valence, arousal, intensities_for(valence, arousal, blink), flags
        )
        out: list[dict[str, Any]] = [{"t": "react", "r": wire.pack(reaction)}]
        self.sent += 1
        for k, (at_s, moment_v) in enumerate(self._moments):
            if (i, k) in self._micro_done or not at_s <= scene_t < at_s + 1.0:
                continue
            self._micro_done.add((i, k))
            if self.rng.random() < 0.35 * v.gain:
                kind = "smile" if moment_v > 0.1 else ("frown" if moment_v < -0.1 else "surprise")
                out.append({
                    "t": "micro", "at": max(0.0, scene_t - 0.2), "kind": kind,
                    "strength": float(self.rng.uniform(0.3, 0.9)),
                    "dur_ms": int(self.rng.integers(120, 450)),
                })  # fmt: skip
                self.micro_sent += 1
        return out
