"""Finding fonts on this machine for neon signs, name tags and the HUD.

Nothing is downloaded: fontconfig (`fc-list`) is asked for a bold Latin face and for one that
covers Chinese, and the result is cached. Missing CJK coverage is a logged warning, and the caller
decides how to degrade.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

_LATIN_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
)


def _fc_list(pattern: str) -> list[str]:
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(
            ["fc-list", pattern, "file"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split(":")[0].strip() for line in out.splitlines() if line.strip()})


@functools.cache
def latin_font_path() -> str | None:
    """A bold sans face for signs and tags, or None (Panda3D's built-in font is used)."""
    for path in _LATIN_CANDIDATES:
        if Path(path).exists():
            return path
    bold = [p for p in _fc_list(":style=Bold") if p.endswith((".ttf", ".otf"))]
    return bold[0] if bold else None


@functools.cache
def mono_font_path() -> str | None:
    """A monospaced face for the tables in the HUD (keys help, people), or None."""
    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    ):
        if Path(path).exists():
            return path
    mono = [p for p in _fc_list(":spacing=mono") if p.endswith((".ttf", ".otf"))]
    return mono[0] if mono else None


@functools.cache
def cjk_font_path() -> str | None:
    """A face with Chinese glyphs, or None after one warning."""
    found = _fc_list(":lang=zh")
    # Prefer sans faces: neon tubes are bent in even strokes, not brush strokes.
    found.sort(key=lambda p: (("hei" not in p.lower()) and ("sans" not in p.lower()), p))
    if not found:
        log.warning(
            "no font with Chinese glyphs found (fc-list :lang=zh); CJK signs are drawn with "
            "their English title instead (install fonts-wqy-microhei to show them)"
        )
        return None
    return found[0]


def needs_cjk(text: str) -> bool:
    """True when text has characters outside Latin/Greek/Cyrillic (DejaVu's coverage)."""
    return any(ord(ch) > 0x2FFF for ch in text)


_loaded: dict[str, object] = {}


def load_font(loader: object, path: str | None) -> object | None:
    """Load a font once per process with a sharp glyph resolution (None: Panda3D's default).

    The resolution can only be set before the first glyph is rendered, so every user of a face
    goes through this cache instead of calling loader.loadFont directly.
    """
    if path is None:
        return None
    if path not in _loaded:
        font = loader.loadFont(path)  # type: ignore[attr-defined]
        if font is None or not font.isValid():
            log.warning("cannot load font %s; using the built-in one", path)
            _loaded[path] = None
        else:
            if font.getNumPages() == 0:
                font.setPixelsPerUnit(64)
            _loaded[path] = font
    return _loaded[path]
