"""The shipped looks: colour grades a room may be set to, by name (assets/luts/NAME.cube).

A look on the wire is always one of these names, never a path: the server refuses anything
else and clients resolve a name only inside assets/luts.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

LUT_DIR = Path(__file__).resolve().parent.parent / "assets" / "luts"
DEFAULT_LOOK = "orange_haze"


@cache
def shipped_looks() -> tuple[str, ...]:
    """Names of the looks that ship with the code, sorted (the default always among them)."""
    names = {p.stem for p in LUT_DIR.glob("*.cube")}
    return tuple(sorted(names | {DEFAULT_LOOK}))


def look_path(name: str) -> Path:
    """The .cube file of a shipped look; ValueError for any other name."""
    if name not in shipped_looks():
        raise ValueError(f"unknown look {name!r}; looks are {', '.join(shipped_looks())}")
    return LUT_DIR / f"{name}.cube"
