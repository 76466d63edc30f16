"""A Fountain screenplay as timed elements: what happens when, on which line of the script.

Parsing is fountain-py's (`fountain.FountainParser`); this module only decides how long each
element lasts on screen. The rule (docs/scenes.md has it for writers):

- action, centered text: read at `ACTION_WORDS_PER_S` (2.5 words/s), at least 1.5 s;
- dialogue: spoken at `SPEECH_WORDS_PER_S` (2.6 words/s, about 155 wpm) plus a 0.3 s breath,
  at least 1.0 s; one element per speech (the cue's consecutive dialogue lines), with its speaker;
- lyrics: sung at half the speech rate; parenthetical 0.6 s; scene heading 1.2 s (the
  establishing beat); transition 0.8 s;
- an explicit duration in a note overrides the rule: ``[[4s]]``, ``[[hold 2.5 s]]`` or
  ``[[duration: 6s]]`` on the element's own line, or as a note on the line right after it;
- title page, sections, synopses, notes, boneyard and page breaks take no time.

Elements follow each other with no gaps (a dual dialogue's two speeches start together and the
next element waits for the longer). `Screenplay.fit(duration_s)` scales every time so the
script fills a scene of that length: the shape is the script's, the length is the scene's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from fountain import ElementType, FountainElement, FountainParser

from neonbar.errors import UserError

ACTION_WORDS_PER_S = 2.5
SPEECH_WORDS_PER_S = 2.6
BREATH_S = 0.3
MIN_ACTION_S = 1.5
MIN_DIALOGUE_S = 1.0
SCENE_HEADING_S = 1.2
TRANSITION_S = 0.8
PARENTHETICAL_S = 0.6

# "[[4s]]", "[[hold 2.5 s]]", "[[duration: 6s]]", "[[6 sec]]"
_DURATION_NOTE = re.compile(
    r"\[\[\s*(?:duration|hold|length)?\s*:?\s*(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds)\s*\]\]",
    re.IGNORECASE,
)
_WORD = re.compile(r"[\w'’-]+")

TIMED_KINDS = ("scene_heading", "action", "dialogue", "parenthetical", "transition", "centered",
               "lyrics")  # fmt: skip


@dataclass(frozen=True)
class TimedElement:
    """One element of the script on the scene's timeline.

    Args:
        kind: fountain-py's element type value ('action', 'dialogue', 'scene_heading', ...).
        text: the element's text (a speech's lines joined by a space).
        line: 1-based line in the .fountain file where it starts.
        start_s: when it starts, seconds from the scene's start.
        duration_s: how long it lasts on screen.
        speaker: the character for dialogue and parentheticals, else "".
        scene_index: 0-based index of the scene (heading) it belongs to; -1 before the first.
        explicit: its duration came from a note rather than the rule.
    """

    kind: str
    text: str
    line: int
    start_s: float
    duration_s: float
    speaker: str = ""
    scene_index: int = -1
    explicit: bool = False

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Cue:
    """A subtitle: who says what, from when to when (seconds)."""

    start_s: float
    end_s: float
    speaker: str
    text: str
    line: int


@dataclass(frozen=True)
class Screenplay:
    """A parsed, timed script. `elements` are in script order; times in seconds."""

    path: Path | None
    title: str
    elements: tuple[TimedElement, ...]
    duration_s: float

    @property
    def scene_starts_s(self) -> tuple[float, ...]:
        """Start time of every scene heading: where the film cuts to a new place."""
        return tuple(e.start_s for e in self.elements if e.kind == "scene_heading")

    def fit(self, duration_s: float) -> Screenplay:
        """The same script with every time scaled so it lasts `duration_s`."""
        if duration_s <= 0:
            raise UserError("a scene's duration must be positive")
        k = duration_s / self.duration_s
        scaled = tuple(
            replace(e, start_s=e.start_s * k, duration_s=e.duration_s * k) for e in self.elements
        )
        return replace(self, elements=scaled, duration_s=float(duration_s))

    def dialogue(self) -> list[Cue]:
        """The subtitles: one cue per speech, at its screenplay time."""
        return [
            Cue(e.start_s, e.end_s, e.speaker, e.text, e.line)
            for e in self.elements
            if e.kind == "dialogue"
        ]

    def at(self, t_s: float) -> TimedElement | None:
        """The element on screen at t_s (the last one to start, for simultaneous speeches)."""
        current = None
        for e in self.elements:
            if e.start_s > t_s:
                break
            if e.duration_s > 0:
                current = e
        return current


def words(text: str) -> int:
    return len(_WORD.findall(text))


def rule_duration_s(kind: str, text: str) -> float:
    """How long an element lasts by the documented rule (no note)."""
    n = words(text)
    if kind in ("action", "centered"):
        return max(MIN_ACTION_S, n / ACTION_WORDS_PER_S)
    if kind == "dialogue":
        return max(MIN_DIALOGUE_S, n / SPEECH_WORDS_PER_S + BREATH_S)
    if kind == "lyrics":
        return max(MIN_DIALOGUE_S, 2.0 * n / SPEECH_WORDS_PER_S)
    if kind == "scene_heading":
        return SCENE_HEADING_S
    if kind == "transition":
        return TRANSITION_S
    if kind == "parenthetical":
        return PARENTHETICAL_S
    return 0.0


def note_duration_s(note: str) -> float | None:
    """The duration written in a note ('[[4s]]', '[[hold 2 s]]'), or None."""
    m = _DURATION_NOTE.search(note)
    return float(m.group(1)) if m else None


def parse_screenplay(text: str, path: Path | None = None) -> Screenplay:
    """Parse Fountain text and time it; UserError when it holds nothing that takes time."""
    name = str(path) if path else "the screenplay"
    doc = FountainParser().parse(text)
    source_lines = text.splitlines()
    raw: list[_Raw] = []
    speaker = ""
    dual_groups = 0

    def inline_note(line: int) -> float | None:
        # fountain-py removes inline notes from the element's text; read them from its line.
        if 1 <= line <= len(source_lines):
            return note_duration_s(source_lines[line - 1])
        return None

    def add(kind: str, body: str, line: int, who: str = "", group: int = -1, side: int = 0) -> None:
        raw.append(_Raw(kind, body, line, who, inline_note(line), group, side))

    elements = doc.elements
    i = 0
    while i < len(elements):
        el = elements[i]
        kind = el.type
        if kind is ElementType.CHARACTER:
            speaker = el.text
        elif kind is ElementType.DIALOGUE:
            # Consecutive dialogue lines of one cue are one speech (one subtitle).
            lines = [el.text]
            while i + 1 < len(elements) and elements[i + 1].type is ElementType.DIALOGUE:
                i += 1
                lines.append(elements[i].text)
            add("dialogue", " ".join(lines), el.line_number, speaker)
        elif kind is ElementType.PARENTHETICAL:
            add("parenthetical", el.text, el.line_number, speaker)
        elif kind is ElementType.DUAL_DIALOGUE:
            dual_groups += 1
            for side, name_ in enumerate(("left", "right")):
                who = el.metadata.get(f"{name_}_character")
                said = el.metadata.get(f"{name_}_dialogue")
                character = who if isinstance(who, FountainElement) else None
                speaker = character.text if character is not None else ""
                line = character.line_number + 1 if character is not None else el.line_number
                said_list: list[object] = list(said) if isinstance(said, list) else []
                pieces = [x.text if isinstance(x, FountainElement) else str(x) for x in said_list]
                spoken: list[str] = []
                for piece in [*pieces, ""]:
                    is_paren = piece.startswith("(") and piece.endswith(")")
                    if (is_paren or not piece) and spoken:
                        add("dialogue", " ".join(spoken), line, speaker, dual_groups, side)
                        spoken = []
                    if is_paren:
                        add("parenthetical", piece, line, speaker, dual_groups, side)
                    elif piece:
                        spoken.append(piece)
        elif kind is ElementType.NOTE:
            seconds = note_duration_s(el.text)
            if seconds is not None and raw and raw[-1].explicit_s is None:
                raw[-1].explicit_s = seconds
        elif kind.value in TIMED_KINDS:
            add(kind.value, el.text, el.line_number)
        i += 1

    timed: list[TimedElement] = []
    t = 0.0
    scene = -1
    side_t: dict[tuple[int, int], float] = {}
    for r in raw:
        if r.kind == "scene_heading":
            scene += 1
        explicit = r.explicit_s is not None
        seconds = (
            float(r.explicit_s) if r.explicit_s is not None else rule_duration_s(r.kind, r.text)
        )
        if r.group >= 0:
            # A dual dialogue: both sides start together, each side's pieces in sequence; the
            # next element waits for the longer side.
            start = side_t.get((r.group, r.side), t)
            side_t[(r.group, r.side)] = start + seconds
        else:
            t = max([t, *side_t.values()])
            side_t.clear()
            start = t
            t += seconds
        timed.append(
            TimedElement(
                kind=r.kind,
                text=r.text,
                line=r.line,
                start_s=start,
                duration_s=seconds,
                speaker=r.speaker,
                scene_index=scene,
                explicit=explicit,
            )
        )
    total = max([t, *side_t.values()])
    if total <= 0.0:
        raise UserError(f"{name} has no scene headings, action or dialogue to time")
    title = doc.metadata.get("title", "") or (path.stem if path else "")
    return Screenplay(path=path, title=title, elements=tuple(timed), duration_s=total)


@dataclass
class _Raw:
    kind: str
    text: str
    line: int
    speaker: str
    explicit_s: float | None
    group: int = -1
    side: int = 0


def load_screenplay(path: str | Path, duration_s: float | None = None) -> Screenplay:
    """Read and time a .fountain file, scaled to `duration_s` when given.

    Raises:
        UserError: the file cannot be read, is not text, or holds nothing to time.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"screenplay {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"screenplay {path} is a folder, not a .fountain file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise UserError(f"cannot read screenplay {path}: {reason}") from None
    if not text.strip():
        raise UserError(f"screenplay {path} is empty")
    play = parse_screenplay(text, path)
    return play.fit(duration_s) if duration_s else play
