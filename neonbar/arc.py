"""The intended emotional arc of a scene, read from its screenplay.

Each timed element (neonbar.screenplay) is scored offline:

- **valence** (−1..1): VADER's compound score (vaderSentiment 3.3.2, MIT, its lexicon ships in
  the wheel) of the element's text, with `SCREEN_LEXICON` added to VADER's lexicon — words a
  screenplay leans on that VADER scores neutral ("blood", "sirens", "burns", "embrace");
- **arousal** (0..1): how much of the text is not neutral (VADER's 1 − neu) and how strong it is
  (|compound|), plus structure cues — exclamations, ALL-CAPS words, short lines, kinetic or
  calm words (`KINETIC`, `CALM`), NIGHT / DAY in scene headings, SMASH CUT (up) and FADE /
  DISSOLVE (down) transitions.

The scores are laid on the timeline (each element holds its value while it is on screen) at
`SAMPLE_HZ`, smoothed with a Gaussian whose width follows the scene's length, and kept with
the per-element scores and their screenplay lines. An arc is a pure function of the screenplay
text and the scene's duration; `Arc.to_json()` is how it is stored with the scene.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from neonbar.errors import UserError
from neonbar.screenplay import Screenplay, TimedElement, load_screenplay

if TYPE_CHECKING:
    from neonbar.scenes import SceneSpec

ARC_VERSION = 1
SAMPLE_HZ = 10.0

SCREEN_LEXICON = {
    "blood": -2.5, "bleeds": -2.2, "bleeding": -2.2, "burns": -1.8, "burning": -1.8,
    "sirens": -1.4, "siren": -1.4, "gun": -2.0, "gunshot": -2.6, "shot": -1.2, "screams": -2.4,
    "scream": -2.4, "crash": -2.0, "crashes": -2.0, "shatters": -1.8, "shattered": -1.8,
    "corpse": -2.8, "dust": -0.4, "choke": -2.0, "chokes": -2.0, "alone": -1.2, "gone": -1.0,
    "rain": -0.2, "cold": -0.8, "knife": -2.0, "drone": -0.6, "drones": -0.6, "static": -0.4,
    "embrace": 2.2, "embraces": 2.2, "laughs": 2.0, "laugh": 2.0, "warm": 1.6, "warmth": 1.8,
    "dawn": 1.4, "sunrise": 1.8, "home": 1.4, "together": 1.6, "kiss": 2.2, "smiles": 2.0,
    "hand": 0.3, "light": 0.6, "holds": 0.8, "safe": 1.8, "breathes": 0.6, "quiet": 0.4,
}  # fmt: skip


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


KINETIC = _wordset(
    "run runs running races race chase chases crash crashes slams slam smash smashes "
    "explodes explosion shatters shattered screams scream sirens siren gun gunshot fires "
    "fire fall falls dives grabs shoves punches bolts sprints roars howls thunder lightning "
    "storm whips tears burst bursts jolts surges swerves skids blood now go hurry faster kill "
    "jump jumps leaps swarm swarms snap snaps roar"
)
CALM = _wordset(
    "slow slowly still stillness quiet quietly soft softly drift drifts drifting breathe "
    "breathes sleep sleeps settles settle gentle gently hush calm pause lingers linger rest "
    "rests hums waits silence silent"
)
_TOKEN = re.compile(r"[A-Za-z']+")


@cache
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(SCREEN_LEXICON)
    return analyzer


@dataclass(frozen=True)
class ElementScore:
    """One element's raw (unsmoothed) scores and where it is in the script and the scene."""

    line: int
    kind: str
    start_s: float
    end_s: float
    valence: float
    arousal: float
    text: str
    speaker: str = ""


@dataclass(frozen=True)
class Moment:
    """A strong moment of the arc: a peak of arousal or of valence change (per second)."""

    t_s: float
    kind: str  # "arousal" | "valence_change"
    strength: float
    valence: float
    arousal: float
    line: int  # the screenplay line on screen then (0 when none)


def score_element(element: TimedElement) -> tuple[float, float]:
    """(valence −1..1, arousal 0..1) of one element by the rules in the module docstring."""
    text = element.text
    kind = element.kind
    tokens = [w.lower() for w in _TOKEN.findall(text)]
    if kind in ("scene_heading", "transition"):
        upper = text.upper()
        valence, arousal = 0.0, 0.3
        if kind == "scene_heading":
            if "NIGHT" in upper:
                valence, arousal = -0.1, 0.38
            if any(k in upper for k in ("DAY", "DAWN", "MORNING", "SUNRISE")):
                valence, arousal = 0.15, 0.3
            if upper.startswith(("EXT", "I/E", "INT./EXT")):
                arousal += 0.05
        else:
            if "SMASH" in upper or "JUMP" in upper:
                arousal = 0.75
            elif "FADE" in upper or "DISSOLVE" in upper:
                arousal = 0.12
            else:
                arousal = 0.4
        return valence, arousal
    scores = _analyzer().polarity_scores(text)
    valence = float(scores["compound"])
    arousal = 0.18 + 0.35 * (1.0 - float(scores["neu"])) + 0.25 * abs(valence)
    arousal += min(0.3, 0.12 * text.count("!"))
    arousal += min(0.08, 0.04 * text.count("?"))
    caps = [w for w in _TOKEN.findall(text) if len(w) > 1 and w.isupper()]
    if tokens:
        arousal += 0.25 * len(caps) / len(tokens)
    if kind in ("action", "dialogue") and 0 < len(tokens) <= 4:
        arousal += 0.1  # short, clipped lines read fast and tense
    arousal += min(0.35, 0.09 * sum(t in KINETIC for t in tokens))
    arousal -= min(0.3, 0.08 * sum(t in CALM for t in tokens))
    if kind == "parenthetical":
        arousal = 0.5 * arousal + 0.1
    return max(-1.0, min(1.0, valence)), max(0.0, min(1.0, arousal))


def smoothing_s(duration_s: float) -> float:
    """Gaussian sigma: about 1/50 of the scene, 0.6 s for shorts, at most 30 s for features."""
    return min(30.0, max(0.6, duration_s / 50.0))


@dataclass(frozen=True)
class Arc:
    """The intended arc: smoothed valence (−1..1) and arousal (0..1) sampled at SAMPLE_HZ.

    Args:
        times_s: sample times from 0 to the duration, seconds.
        valence, arousal: smoothed values at those times.
        elements: per-element raw scores with their screenplay lines.
        duration_s: the scene's length.
        source_sha256: hash of the screenplay text the arc was computed from.
    """

    times_s: npt.NDArray[np.float64]
    valence: npt.NDArray[np.float64]
    arousal: npt.NDArray[np.float64]
    elements: tuple[ElementScore, ...]
    duration_s: float
    source_sha256: str = ""

    def at(self, t_s: float) -> tuple[float, float]:
        """(valence, arousal) at t_s, linearly interpolated; clamped to the scene's ends."""
        return (
            float(np.interp(t_s, self.times_s, self.valence)),
            float(np.interp(t_s, self.times_s, self.arousal)),
        )

    def element_at(self, t_s: float) -> ElementScore | None:
        """The element on screen at t_s."""
        current = None
        for e in self.elements:
            if e.start_s > t_s:
                break
            if e.end_s > e.start_s:
                current = e
        return current

    def valence_change_per_s(self) -> npt.NDArray[np.float64]:
        return (
            np.abs(np.gradient(self.valence, self.times_s))
            if len(self.times_s) > 1
            else (np.zeros_like(self.valence))
        )

    def strong_moments(self, n: int = 5, min_gap_s: float | None = None) -> list[Moment]:
        """The n strongest moments, in time order: arousal peaks and valence swings.

        Each candidate is a local maximum of arousal or of |d valence / dt|; both are
        normalised by their largest value so the two kinds compete fairly, and a moment
        suppresses weaker ones within `min_gap_s` (default: duration / (2n), at least 1 s).
        """
        if n <= 0 or len(self.times_s) < 3:
            return []
        gap = min_gap_s if min_gap_s is not None else max(1.0, self.duration_s / (2 * n))
        dv = self.valence_change_per_s()
        candidates: list[tuple[float, int, str]] = []
        for kind, series in (("arousal", self.arousal), ("valence_change", dv)):
            top = float(series.max())
            if top <= 1e-9:
                continue
            norm = series / top
            inner = (series[1:-1] >= series[:-2]) & (series[1:-1] > series[2:])
            for k in np.flatnonzero(inner) + 1:
                # An arousal peak counts by its height; a swing by its size relative to the
                # biggest swing, weighted by how much arousal it comes with.
                weight = float(norm[k]) * (
                    1.0 if kind == "arousal" else 0.6 + 0.4 * self.arousal[k]
                )
                candidates.append((weight, int(k), kind))
        candidates.sort(key=lambda c: (-c[0], c[1]))
        chosen: list[tuple[float, int, str]] = []
        for c in candidates:
            if all(abs(self.times_s[c[1]] - self.times_s[o[1]]) >= gap for o in chosen):
                chosen.append(c)
            if len(chosen) == n:
                break
        moments = []
        for weight, k, kind in sorted(chosen, key=lambda c: c[1]):
            t = float(self.times_s[k])
            element = self.element_at(t)
            moments.append(
                Moment(
                    t_s=round(t, 3),
                    kind=kind,
                    strength=round(weight, 4),
                    valence=float(self.valence[k]),
                    arousal=float(self.arousal[k]),
                    line=element.line if element else 0,
                )
            )
        return moments

    # ------------------------------------------------------------------ storage

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": ARC_VERSION,
                "duration_s": self.duration_s,
                "sample_hz": SAMPLE_HZ,
                "source_sha256": self.source_sha256,
                "times_s": [round(float(x), 4) for x in self.times_s],
                "valence": [round(float(x), 5) for x in self.valence],
                "arousal": [round(float(x), 5) for x in self.arousal],
                "elements": [asdict(e) for e in self.elements],
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Arc:
        data = json.loads(text)
        if data.get("version") != ARC_VERSION:
            raise ValueError(f"arc version {data.get('version')!r}, expected {ARC_VERSION}")
        return cls(
            times_s=np.asarray(data["times_s"], np.float64),
            valence=np.asarray(data["valence"], np.float64),
            arousal=np.asarray(data["arousal"], np.float64),
            elements=tuple(ElementScore(**e) for e in data["elements"]),
            duration_s=float(data["duration_s"]),
            source_sha256=str(data["source_sha256"]),
        )


def _gaussian_smooth(
    values: npt.NDArray[np.float64], sigma_samples: float
) -> npt.NDArray[np.float64]:
    if sigma_samples <= 0 or len(values) < 2:
        return values.copy()
    radius = max(1, math.ceil(3 * sigma_samples))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma_samples) ** 2)
    kernel /= kernel.sum()
    # Reflect at the ends so the first and last seconds are not pulled toward zero.
    padded = np.pad(values, radius, mode="reflect" if len(values) > radius else "edge")
    return np.convolve(padded, kernel, mode="valid")


def arc_from_screenplay(play: Screenplay, source_sha256: str = "") -> Arc:
    """Score, lay on the timeline, smooth. `play` should already be fitted to the scene."""
    duration = play.duration_s
    scored = []
    for e in play.elements:
        if e.duration_s <= 0:
            continue
        v, a = score_element(e)
        scored.append(ElementScore(e.line, e.kind, round(e.start_s, 4), round(e.end_s, 4),
                                   round(v, 4), round(a, 4), e.text, e.speaker))  # fmt: skip
    count = max(2, math.floor(duration * SAMPLE_HZ) + 1)
    times = np.linspace(0.0, duration, count)
    # Each element holds its value on [start, end): summed with difference arrays (one pass,
    # not one mask per element: a feature's 2,900 elements x 90,000 samples took 1.2 s).
    lo = np.searchsorted(times, [s.start_s for s in scored], side="left")
    hi = np.searchsorted(times, [s.end_s for s in scored], side="left")
    sums = []
    for values in ([s.valence for s in scored], [s.arousal for s in scored], [1.0] * len(scored)):
        diff = np.zeros(count + 1)
        np.add.at(diff, lo, values)
        np.add.at(diff, hi, np.negative(values))
        sums.append(np.cumsum(diff[:-1]))
    valence, arousal, weight = sums
    weight = np.round(weight, 9)  # cumulative sums of ±1 are exact, but be safe
    covered = weight > 0
    if covered.any():
        idx = np.flatnonzero(covered)
        valence[covered] /= weight[covered]
        arousal[covered] /= weight[covered]
        # Samples past the last element (its end is the duration) hold the last value.
        valence = np.interp(times, times[idx], valence[idx])
        arousal = np.interp(times, times[idx], arousal[idx])
    sigma = smoothing_s(duration) * SAMPLE_HZ
    valence = np.clip(_gaussian_smooth(valence, sigma), -1.0, 1.0)
    arousal = np.clip(_gaussian_smooth(arousal, sigma), 0.0, 1.0)
    return Arc(times, valence, arousal, tuple(scored), float(duration), source_sha256)


def arc_of_text(text: str, duration_s: float | None = None) -> Arc:
    """The arc of Fountain text (fitted to `duration_s` when given)."""
    from neonbar.screenplay import parse_screenplay

    play = parse_screenplay(text)
    if duration_s:
        play = play.fit(duration_s)
    return arc_from_screenplay(play, hashlib.sha256(text.encode()).hexdigest())


def arc_path(spec: SceneSpec) -> Path:
    """Where a scene's arc is stored: beside its spec (`NAME.arc.json`)."""
    path: Path = spec.path.with_name(f"{spec.name}.arc.json")
    return path


def intended_arc(spec: SceneSpec, store: bool = False) -> Arc:
    """The scene's intended arc.

    Read from `NAME.arc.json` beside the spec when it was computed from the same screenplay
    text and duration; computed otherwise (and written there when `store`). A scene without a
    screenplay has no intended arc: UserError.
    """
    if spec.screenplay is None:
        raise UserError(f"scene {spec.name!r} has no screenplay, so it has no intended arc")
    try:
        text = spec.screenplay.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""  # load_screenplay below says what is wrong with it
    digest = hashlib.sha256(f"{ARC_VERSION}:{spec.duration_s}:{text}".encode()).hexdigest()
    stored = arc_path(spec)
    if stored.is_file():
        try:
            arc = Arc.from_json(stored.read_text(encoding="utf-8"))
            if arc.source_sha256 == digest:
                return arc
        except (ValueError, KeyError, TypeError, OSError):
            pass  # stale or damaged: recompute
    play = load_screenplay(spec.screenplay, spec.duration_s)
    arc = arc_from_screenplay(play, digest)
    if store:
        stored.write_text(arc.to_json() + "\n", encoding="utf-8")
    return arc
