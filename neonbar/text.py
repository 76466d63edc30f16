"""The one home for what people may write: chat lines and names.

Everything here is about text that other people read. A character that can hide text, reorder it
or pass for something else has no place in a chat line or a name:

- Unicode categories Cc (controls: DEL, C1 controls such as U+0085 and U+009B, and tab, CR, LF),
  Cf (format: bidi overrides and isolates, zero-width spaces and joiners, soft hyphens, the BOM,
  tag characters), Zl and Zp (line and paragraph separators) are refused, with one exception: a
  zero-width joiner between two symbols, which is how emoji such as 👩‍💻 are built;
- variation selectors are allowed one at a time after a visible character (VS1-16: emoji
  presentation); the supplementary ones (U+E0100-E01EF) are refused (they can carry hidden
  bytes);
- more than ``MAX_MARKS_IN_A_ROW`` combining marks on one character (text that spills over its
  neighbours) is refused.

Names are stricter: they also refuse characters that draw nothing (Hangul fillers, the braille
blank, Khmer inherent vowels, the combining grapheme joiner), leading, trailing or repeated
spaces, and every other space but U+0020; so no name is invisible or looks like another with a
blank in it. `name_key` folds a name to what it looks like (NFKC, case, accents, separators,
common Cyrillic and Greek look-alikes, 0/O, 1/l/I, rn/m, vv/w): the room refuses a name whose
key is already taken.

All checks raise `TextRefused` (a ValueError) with one sentence that says what to change.
"""

from __future__ import annotations

import unicodedata

MAX_MARKS_IN_A_ROW = 4

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_ZWJ = "\u200d"
# Letters and symbols that draw nothing at all: a name of these alone is invisible.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u034f")
_VS_FIRST, _VS_LAST = 0xFE00, 0xFE0F
_VS_SUPPLEMENT = range(0xE0100, 0xE01F0)

# Look-alikes folded after NFKC and casefold (one character each): Cyrillic and Greek letters
# that render as Latin ones, and the digits people use for letters.
_CONFUSABLE = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "l", "ї": "l", "ј": "j",
        "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
        "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ı": "l",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "l", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
        "0": "o", "1": "l", "i": "l", "|": "l", "!": "l", "5": "s", "$": "s", "@": "a",
    }
)  # fmt: skip
# Pairs of letters that pass for one, applied after the single ones.
_CONFUSABLE_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


class TextRefused(ValueError):
    """Text that other people would read wrong; the message is one sentence to act on."""


def check_chat(text: str) -> str:
    """Return text unchanged if it may be shown as a chat line; else raise TextRefused."""
    _check_characters(text, "a message")
    if not text.strip():
        raise TextRefused("a message must have something visible in it")
    return text


def check_name(name: str) -> str:
    """Return name unchanged if it may be a person's name; else raise TextRefused."""
    _check_characters(name, "a name")
    for ch in name:
        if ch in _BLANK:
            raise TextRefused(f"a name cannot contain {_describe(ch)}, which draws nothing")
        if unicodedata.category(ch) == "Zs" and ch != " ":
            raise TextRefused(f"a name may use plain spaces only, not {_describe(ch)}")
    if name != name.strip(" "):
        raise TextRefused("a name cannot start or end with a space")
    if "  " in name:
        raise TextRefused("a name cannot have two spaces in a row")
    if not name_key(name):
        raise TextRefused("a name needs at least one letter, digit or symbol that shows")
    return name


def name_key(name: str) -> str:
    """What a name looks like, for telling whether two names would be mistaken for each other.

    NFKC (full-width and styled letters become plain ones), casefold, accents dropped, spaces,
    punctuation used as separators and invisible characters removed, then common look-alikes
    folded (Cyrillic "а" and Latin "a", "0" and "o", "1", "l" and "I", "rn" and "m"). Two names
    with the same key are the same name to the room. Empty for a name with nothing visible.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    kept = []
    for ch in unicodedata.normalize("NFKD", folded):
        cat = unicodedata.category(ch)
        if cat[0] in "MZC" or ch in _BLANK or ch in " _-.·'’`´":
            continue  # marks, spaces, controls, format, separators people put between words
        kept.append(ch)
    key = "".join(kept).translate(_CONFUSABLE)
    for pair, single in _CONFUSABLE_PAIRS:
        key = key.replace(pair, single)
    return key


def _check_characters(text: str, what: str) -> None:
    marks = 0
    previous = ""
    for index, ch in enumerate(text):
        cat = unicodedata.category(ch)
        code = ord(ch)
        if cat in _REFUSED_CATEGORIES:
            if ch == _ZWJ and _joins_symbols(text, index):
                previous = ch
                continue
            raise TextRefused(f"{what} cannot contain {_describe(ch)}")
        if code in _VS_SUPPLEMENT:
            raise TextRefused(f"{what} cannot contain {_describe(ch)}")
        if _VS_FIRST <= code <= _VS_LAST:
            if not previous or _VS_FIRST <= ord(previous) <= _VS_LAST or previous == _ZWJ:
                raise TextRefused(f"{what} cannot have {_describe(ch)} there")
        elif cat in ("Mn", "Me"):
            marks += 1
            if marks > MAX_MARKS_IN_A_ROW:
                raise TextRefused(
                    f"{what} cannot stack more than {MAX_MARKS_IN_A_ROW} accents on one letter"
                )
        else:
            marks = 0
        previous = ch


def _joins_symbols(text: str, index: int) -> bool:
    """True for a zero-width joiner inside an emoji sequence (symbol, modifiers, ZWJ, symbol)."""
    before = index - 1
    while before >= 0 and (
        _VS_FIRST <= ord(text[before]) <= _VS_LAST or unicodedata.category(text[before]) == "Sk"
    ):
        before -= 1  # emoji presentation selectors and skin tones sit between symbol and joiner
    after = index + 1
    return (
        before >= 0
        and after < len(text)
        and unicodedata.category(text[before]) == "So"
        and unicodedata.category(text[after]) == "So"
    )


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    code = f"U+{ord(ch):04X}"
    return f"{code} ({name.lower()})" if name else code


__all__ = ["MAX_MARKS_IN_A_ROW", "TextRefused", "check_chat", "check_name", "name_key"]
