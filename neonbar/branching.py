"""Branch points in screenplays, and choosing a branch from the room's felt arc.

The convention (docs/reactions.md) is a Fountain note, which other Fountain tools ignore:

    [[branch: <name> at <T>s over <W>s on <measure>
        below -> <scene> "<label>"
        above -> <scene> "<label>"
        else -> <scene> "<label>"]]

`<measure>` is `tension` (felt arousal against intended arousal) or `mood` (valence). When the
play head reaches T, the mean of felt minus intended over the W seconds before T decides:
more than BRANCH_MARGIN below picks `below`, more than BRANCH_MARGIN above picks `above` (when
given), anything else or no reactions at all picks `else`. The host may override; the decision
carries a sentence that says why, which every client shows on the timeline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neonbar.errors import UserError
from neonbar.reaction import BRANCH_MARGIN, FeltArc

MEASURES = {"tension": 1, "arousal": 1, "mood": 0, "valence": 0}  # column in (valence, arousal)

_NOTE = re.compile(r"\[\[\s*branch\s*:(?P<body>.*?)\]\]", re.S | re.I)
_HEAD = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9_.-]+)\s+at\s+(?P<at>\d+(?:\.\d+)?)\s*s\s+over\s+"
    r"(?P<over>\d+(?:\.\d+)?)\s*s\s+on\s+(?P<measure>[a-z]+)\s*$",
    re.I,
)
_CHOICE = re.compile(
    r"^\s*(?P<cond>below|above|else)\s*->\s*(?P<scene>[A-Za-z0-9_.-]+)\s*"
    r"(?:\"(?P<label>[^\"]{0,120})\")?\s*$",
    re.I,
)


@dataclass(frozen=True)
class BranchChoice:
    scene: str
    label: str


@dataclass(frozen=True)
class BranchPoint:
    """A branch point read from a screenplay; times in seconds of scene time."""

    name: str
    at_s: float
    over_s: float
    measure: str
    choices: dict[str, BranchChoice]  # "below" / "above" / "else"
    line: int = 0  # screenplay line of the note (1-based)

    @property
    def default(self) -> BranchChoice:
        return self.choices["else"]


@dataclass(frozen=True)
class BranchDecision:
    point: str
    condition: str  # "below", "above", "else" or "host"
    choice: BranchChoice
    felt: float  # mean felt value over the window (NaN when nobody reacted)
    intended: float  # mean intended value over the same window
    samples: int
    watchers: int
    reason: str


def parse_branches(text: str, source: str = "screenplay") -> list[BranchPoint]:
    """Every `[[branch: …]]` note in a Fountain text, in order. UserError for a malformed one."""
    points: list[BranchPoint] = []
    for match in _NOTE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        where = f"{source}, line {line}"
        parts = [p for p in re.split(r"\n|;", match.group("body")) if p.strip()]
        head = _HEAD.match(parts[0]) if parts else None
        if head is None:
            raise UserError(
                f"{where}: a branch note starts 'branch: NAME at Ts over Ws on tension|mood'"
            )
        measure = head.group("measure").lower()
        if measure not in MEASURES:
            raise UserError(f"{where}: branch measure must be one of {', '.join(MEASURES)}")
        choices: dict[str, BranchChoice] = {}
        for part in parts[1:]:
            m = _CHOICE.match(part)
            if m is None:
                raise UserError(f"{where}: {part.strip()!r} is not 'below|above|else -> SCENE'")
            cond = m.group("cond").lower()
            label = m.group("label") or m.group("scene")
            choices[cond] = BranchChoice(m.group("scene"), label)
        if "else" not in choices or len(choices) < 2:
            raise UserError(f"{where}: a branch needs 'else -> SCENE' and one of below/above")
        over_s = float(head.group("over"))
        if not 0 < over_s <= float(head.group("at")) + 1e-9:
            raise UserError(f"{where}: the window must be positive and start at or after 0 s")
        points.append(
            BranchPoint(head.group("name"), float(head.group("at")), over_s, measure, choices, line)
        )
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: two branch points share a name")
    return points


def read_branches(path: str | Path) -> list[BranchPoint]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read screenplay {path}: {exc.strerror}") from None
    return parse_branches(text, source=path.name)


IntendedAt = Callable[[float], tuple[float, float]]  # scene time (s) -> (valence, arousal)


def choose(
    point: BranchPoint,
    felt: FeltArc,
    intended: IntendedAt,
    margin: float = BRANCH_MARGIN,
    override: str | None = None,
) -> BranchDecision:
    """Pick the branch at `point` from the felt arc over the window before it.

    Felt and intended are compared bucket by bucket (each non-empty bucket weighted by its sample
    count), so a window in which only the quiet half had watchers compares with the quiet half
    of the intended arc. `override` is a host's choice: a scene named in the point's choices.
    """
    col = MEASURES[point.measure]
    start = point.at_s - point.over_s
    t, valence, arousal, n = felt.window_curve(start, point.at_s)
    samples = int(n.sum())
    if samples:
        felt_v = valence if col == 0 else arousal
        want = np.array([intended(float(x))[col] for x in t])
        felt_mean = float(np.average(felt_v, weights=n))
        intended_mean = float(np.average(want, weights=n))
    else:
        grid = np.linspace(start, point.at_s, 9)
        felt_mean = math.nan
        intended_mean = float(np.mean([intended(float(x))[col] for x in grid]))
    word = "tension" if col == 1 else "mood"
    who = f"{samples} reactions from {len(felt.watchers)} watchers"
    window = f"over the {point.over_s:g} s before {point.at_s:g} s"
    if override is not None:
        for choice in point.choices.values():
            if choice.scene == override:
                reason = f"the host chose {choice.label!r}"
                return BranchDecision(
                    point.name, "host", choice, felt_mean, intended_mean, samples,
                    len(felt.watchers), reason,
                )  # fmt: skip
        raise UserError(
            f"{override!r} is not a branch of {point.name}; "
            f"choose one of {', '.join(c.scene for c in point.choices.values())}"
        )
    if not samples:
        cond = "else"
        reason = f"nobody reacted {window}: playing {point.default.label!r}"
    else:
        delta = felt_mean - intended_mean
        if delta < -margin and "below" in point.choices:
            cond = "below"
        elif delta > margin and "above" in point.choices:
            cond = "above"
        else:
            cond = "else"
        relation = {"below": "below", "above": "above"}.get(cond, "close to")
        reason = (
            f"felt {word} {felt_mean:.2f} {relation} intended {intended_mean:.2f} {window} "
            f"({who}): {point.choices[cond].label!r}"
        )
    return BranchDecision(
        point.name, cond, point.choices[cond], felt_mean, intended_mean, samples,
        len(felt.watchers), reason,
    )  # fmt: skip
