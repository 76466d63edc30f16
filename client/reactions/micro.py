"""Micro-expressions: brief onset–apex–offset movements (at most 500 ms) against the baseline.

Ekman's micro-expressions last 1/25 to 1/2 s; what lasts longer is an ordinary expression and
is the expression model's business, not this detector's. Each channel watches one signed,
baseline-relative feature in units of a full action (the model's z):

    smile      corner lift (AU12)             surprise   brow raise (AU1+2)
    frown      inner brow lowered (AU4)       lip_press  red lip thinned (AU23/24)
    contempt   one corner lifted (AU14, unilateral)

A channel is active from the first sample above half the threshold (onset) through its largest
value (apex) until it falls back below half the threshold (offset). The event counts when the
apex reaches the threshold, the whole movement took at most `max_ms`, and at least two samples
were above half the threshold (one frame alone is more likely a landmark glitch). The threshold
is max(`threshold`, 4 x the channel's own noise), the noise being a running mean absolute value
while idle — a twitchy face needs a bigger movement to count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from client.reactions.features import FEATURES
from neonbar.reaction import MICRO_MAX_MS

# kind -> (feature, sign): the direction in which the feature moves for that action
CHANNELS = {
    "smile": ("smile", 1.0),
    "surprise": ("brow_raise", 1.0),
    "frown": ("brow_inner", -1.0),
    "lip_press": ("lip_press", -1.0),
    "contempt": ("smile_asym", 1.0),
}
_INDEX = np.array([FEATURES.index(f) for f, _ in CHANNELS.values()])
_SIGN = np.array([s for _, s in CHANNELS.values()])
_KINDS = tuple(CHANNELS)


@dataclass(frozen=True)
class MicroEvent:
    kind: str
    onset_s: float
    apex_s: float
    offset_s: float
    strength: float  # apex in full actions, capped at 1

    @property
    def dur_ms(self) -> int:
        return max(1, round((self.offset_s - self.onset_s) * 1000.0))


class MicroDetector:
    """Feed z vectors (features relative to the baseline, per full action) with their times."""

    def __init__(
        self, threshold: float = 0.3, max_ms: float = MICRO_MAX_MS, noise_factor: float = 4.0
    ) -> None:
        self.threshold = threshold
        self.max_s = max_ms / 1000.0
        self.noise_factor = noise_factor
        n = len(_KINDS)
        self._noise = np.full(n, threshold / noise_factor / 2.0)
        self._active = np.zeros(n, bool)
        self._onset = np.zeros(n)
        self._apex = np.zeros(n)
        self._apex_t = np.zeros(n)
        self._count = np.zeros(n, np.int64)
        self._last_t = np.zeros(n)

    def thresholds(self) -> NDArray[np.float64]:
        return np.maximum(self.threshold, self.noise_factor * self._noise)

    def update(self, t_s: float, z: NDArray[np.float64]) -> list[MicroEvent]:
        d = z[_INDEX] * _SIGN
        thr = self.thresholds()
        half = thr / 2.0
        out: list[MicroEvent] = []
        for k in range(len(_KINDS)):
            v = float(d[k])
            if not self._active[k]:
                if v > half[k]:
                    self._active[k] = True
                    self._onset[k] = t_s
                    self._apex[k] = v
                    self._apex_t[k] = t_s
                    self._count[k] = 1
                else:  # idle: learn how noisy this channel is (slowly, robustly)
                    self._noise[k] += 0.02 * (abs(v) - self._noise[k])
                continue
            if v > half[k]:
                self._count[k] += 1
                if v > self._apex[k]:
                    self._apex[k] = v
                    self._apex_t[k] = t_s
                continue
            self._active[k] = False
            duration = t_s - self._onset[k]
            if self._apex[k] >= thr[k] and duration <= self.max_s and self._count[k] >= 2:
                out.append(
                    MicroEvent(
                        _KINDS[k],
                        float(self._onset[k]),
                        float(self._apex_t[k]),
                        t_s,
                        float(min(1.0, self._apex[k])),
                    )
                )
        return out
