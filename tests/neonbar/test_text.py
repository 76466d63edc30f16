"""Text rules: nothing that hides or reorders text, no invisible names, no copied names."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neonbar.protocol import PROTOCOL_VERSION, ErrorCode, ProtocolError, decode_client, encode
from neonbar.text import MAX_MARKS_IN_A_ROW, TextRefused, check_chat, check_name, name_key

HIDING = [
    "\x7f",  # DEL
    "\x85",  # NEL, a C1 control
    "\x9b",  # CSI, a C1 control
    "\x00",
    "\t",
    "\n",
    "\r",
    "\x1b",
    "\u202e",  # right-to-left override
    "\u202a",  # left-to-right embedding
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u061c",  # Arabic letter mark
    "\u200e",  # left-to-right mark
    "\u200b",  # zero width space
    "\u200c",  # zero width non-joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
    "\u180e",  # Mongolian vowel separator
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\U000e0041",  # tag latin capital letter A (hidden "ASCII smuggling")
    "\U000e0100",  # variation selector 17
]


@pytest.mark.parametrize("ch", HIDING, ids=[f"U+{ord(c):04X}" for c in HIDING])
def test_chat_and_names_refuse_characters_that_hide_or_reorder_text(ch: str) -> None:
    for text in (f"cheers{ch}", f"{ch}cheers", f"ch{ch}eers"):
        with pytest.raises(TextRefused, match=f"U\\+{ord(ch):04X}"):
            check_chat(text)
        with pytest.raises(TextRefused):
            check_name(text)


def test_every_control_format_and_separator_character_is_refused() -> None:
    """Exhaustive over the code space: categories Cc, Cf, Zl, Zp never pass."""
    passed = []
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            try:
                check_chat(f"a{ch}b")
            except TextRefused:
                continue
            passed.append(f"U+{code:04X}")
    assert passed == []


@pytest.mark.parametrize(
    "text",
    [
        "Cheers! 🍸",
        "Deakins' orange haze — Wong Kar-wai palettes",
        "Ça va? Größe, naïve, São Paulo",
        "東京の夜 / 서울의 밤 / ночной бар / مرحبا / שלום",
        "👩‍💻 and 👨🏽‍🚀 and ❤️‍🔥 and 🏳️‍🌈",  # emoji built with zero-width joiners
        "ếệ",  # Vietnamese: two marks on a letter
    ],
)
def test_ordinary_chat_passes_unchanged(text: str) -> None:
    assert check_chat(text) is text
    assert check_chat(unicodedata.normalize("NFD", text)) == unicodedata.normalize("NFD", text)


def test_a_joiner_outside_an_emoji_and_stray_selectors_are_refused() -> None:
    for text in (
        "ab\u200dcd",
        "🍸\u200d",
        "\u200d🍸",
        "\ufe0fa",
        "a\ufe0f\ufe0f",
        "🍸\u200d\ufe0f",
    ):
        with pytest.raises(TextRefused):
            check_chat(text)


def test_stacked_accents_are_refused_past_the_limit() -> None:
    assert check_chat("a" + "\u0301" * MAX_MARKS_IN_A_ROW)
    with pytest.raises(TextRefused, match="accents"):
        check_chat("Z" + "\u0301\u0300\u0302\u0303\u0304" * 4)


def test_blank_chat_is_refused() -> None:
    for text in (" ", "\u3000", "   \u00a0"):
        with pytest.raises(TextRefused, match="visible"):
            check_chat(text)


@pytest.mark.parametrize(
    "name",
    [
        "\u200b",  # zero width space only
        "\u3164",  # Hangul filler only
        "\u3164\u3164",
        "\u115f",
        "\uffa0",
        "\u2800",  # braille blank
        "\u034f",
        "\u17b4",
        " ",
        "\u3000",  # ideographic space
        "\u00a0",  # no-break space
        "A\u3164B",  # a blank inside a name
        " Ana",
        "Ana ",
        "Ana  Lee",
        "...",  # nothing that shows a letter, digit or symbol
    ],
)
def test_invisible_and_padded_names_are_refused(name: str) -> None:
    with pytest.raises(TextRefused):
        check_name(name)


@pytest.mark.parametrize("name", ["Director", "Ana Lee", "coder_42", "Zoë", "金城", "🎬 Wong"])
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name) is name


@pytest.mark.parametrize(
    ("original", "copy"),
    [
        ("Director", "director"),
        ("Director", "DIRECTOR"),
        ("Director", "Dіrector"),  # Cyrillic і
        ("Director", "Dírector"),  # an accent
        ("Director", "Ｄｉｒｅｃｔｏｒ"),  # full-width
        ("Director", "𝐃𝐢𝐫𝐞𝐜𝐭𝐨𝐫"),  # mathematical bold
        ("Director", "Dir ector"),
        ("Director", "Dir_ector"),
        ("Director", "D1rector"),
        ("Director", "Dlrector"),
        ("Director", "Dir\u0435ct\u043er"),  # Cyrillic е and о
        ("Bono", "B0n0"),
        ("Marnie", "Mamie"),  # rn and m
        ("Iris", "lris"),
        ("Wong", "VVong"),
    ],
)
def test_look_alike_names_share_a_key(original: str, copy: str) -> None:
    assert name_key(original) == name_key(copy)


@pytest.mark.parametrize(("a", "b"), [("Ana", "Anna"), ("Director", "Directors"), ("Lee", "Leo")])
def test_different_names_keep_different_keys(a: str, b: str) -> None:
    assert name_key(a) != name_key(b)


@given(st.text(max_size=40))
def test_any_text_is_either_refused_with_a_sentence_or_returned_unchanged(text: str) -> None:
    for check in (check_chat, check_name):
        try:
            out = check(text)
        except TextRefused as exc:
            message = str(exc)
            assert message and "\n" not in message
            assert message.isprintable()  # the refusal itself shows no hidden characters
        else:
            assert out == text
            assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in out)
    assert isinstance(name_key(text), str)  # the key is total: never raises


# ---------------------------------------------------------------- on the wire
@pytest.mark.parametrize(
    "msg",
    [
        {"t": "chat", "text": "pay me\u202egnp.exe"},
        {"t": "chat", "text": "one\u2028two"},
        {"t": "chat", "text": "\x85"},
        {"t": "profile", "name": "\u3164"},
        {"t": "profile", "name": "\u200b"},
        {"t": "hello", "v": PROTOCOL_VERSION, "room": "bar", "name": "host\u200b"},
    ],
)
def test_the_protocol_refuses_hidden_text_with_one_sentence(msg: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client(encode(msg))
    assert caught.value.code == ErrorCode.INVALID_FIELD
    message = caught.value.message
    assert message.startswith(f"{msg['t']}: ") and "\n" not in message and message.isprintable()


def test_the_protocol_passes_ordinary_chat_and_names() -> None:
    assert decode_client(encode({"t": "chat", "text": "Cheers 🍸 ¡salud!"}))["text"]
    assert decode_client(encode({"t": "profile", "name": "Zoë"}))["name"] == "Zoë"
