"""The bar's layout, read from a TOML file (format: docs/layout.md).

Both sides read the same file: the server for the bounds and collision shapes it enforces, the
client for everything it draws. Loading validates every field and names the offending entry, so
a typo in scenes/bar.toml is a one-line error, not a crash at first collision.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neonbar.errors import UserError

DEFAULT_LAYOUT = Path(__file__).resolve().parent.parent / "scenes" / "bar.toml"
WALLS = ("north", "south", "east", "west")


class LayoutError(UserError):
    """The layout file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box on the floor plane (metres)."""

    kind: str
    cx: float
    cy: float
    hx: float  # half extent along x
    hy: float  # half extent along y
    height_m: float


@dataclass(frozen=True)
class Circle:
    """A round obstacle on the floor plane (metres)."""

    kind: str
    cx: float
    cy: float
    radius_m: float
    height_m: float


@dataclass(frozen=True)
class Segment:
    """A wall centre line from (x0, y0) to (x1, y1) with a thickness (metres)."""

    x0: float
    y0: float
    x1: float
    y1: float
    thickness_m: float


@dataclass(frozen=True)
class Sign:
    text: str
    wall: str
    along_m: float
    z_m: float
    height_m: float
    color: tuple[float, float, float]
    flicker: float
    buzz_hz: float


@dataclass(frozen=True)
class Tube:
    points: tuple[tuple[float, float, float], ...]
    color: tuple[float, float, float]
    radius_m: float
    flicker: float


@dataclass(frozen=True)
class WallFeature:
    """Something set into a wall: the door or the big screen."""

    wall: str
    center_m: float
    width_m: float
    height_m: float
    bottom_m: float = 0.0


@dataclass(frozen=True)
class Layout:
    name: str
    width_m: float
    depth_m: float
    wall_height_m: float
    wall_thickness_m: float
    spawn: tuple[float, float]
    spawn_radius_m: float
    spawn_yaw_deg: float
    door: WallFeature
    screen: WallFeature
    boxes: tuple[Box, ...] = ()
    circles: tuple[Circle, ...] = ()
    signs: tuple[Sign, ...] = ()
    tubes: tuple[Tube, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def half_x(self) -> float:
        return self.width_m / 2

    @property
    def half_y(self) -> float:
        return self.depth_m / 2

    def walls(self) -> tuple[Segment, ...]:
        """The four outer walls as centre-line segments, inner faces at ±half extents."""
        hx, hy, t = self.half_x, self.half_y, self.wall_thickness_m
        ox, oy = hx + t / 2, hy + t / 2
        return (
            Segment(-ox, oy, ox, oy, t),  # north
            Segment(-ox, -oy, ox, -oy, t),  # south
            Segment(ox, -oy, ox, oy, t),  # east
            Segment(-ox, -oy, -ox, oy, t),  # west
        )

    def inside(self, x: float, y: float, margin_m: float = 0.0) -> bool:
        """True when (x, y) is on the floor, at least margin_m from every outer wall."""
        return abs(x) <= self.half_x - margin_m and abs(y) <= self.half_y - margin_m

    def wall_point(self, wall: str, along_m: float, inset_m: float = 0.0) -> tuple[float, float]:
        """The floor point on a wall's inner face at along_m, moved inset_m into the room."""
        if wall == "north":
            return along_m, self.half_y - inset_m
        if wall == "south":
            return along_m, -self.half_y + inset_m
        if wall == "east":
            return self.half_x - inset_m, along_m
        return -self.half_x + inset_m, along_m

    @staticmethod
    def wall_facing_deg(wall: str) -> float:
        """Heading (degrees, 0 = +y, counter-clockwise) of a wall's face looking into the room."""
        return {"north": 180.0, "south": 0.0, "east": 90.0, "west": -90.0}[wall]


def parse_color(value: Any, where: str) -> tuple[float, float, float]:
    """'#rrggbb' or [r, g, b] in 0..1 -> linear-ish floats in 0..1."""
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return tuple(int(value[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    if isinstance(value, list) and len(value) == 3 and all(_is_num(v) for v in value):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise LayoutError(f"{where}: color must be '#rrggbb' or [r, g, b], not {value!r}")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Reader:
    """Typed access to one TOML table, with errors that name the entry."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, dict):
            raise LayoutError(f"{where} must be a table")
        self.table, self.where = table, where

    def num(
        self, key: str, default: float | None = None, lo: float = -1e4, hi: float = 1e4
    ) -> float:
        value = self.table.get(key, default)
        if value is None:
            raise LayoutError(f"{self.where}: missing {key}")
        if not _is_num(value) or not lo <= value <= hi:
            shown = f"[{lo:g}, {hi:g}]"
            raise LayoutError(f"{self.where}: {key} must be a number in {shown}, not {value!r}")
        return float(value)

    def pair(self, key: str) -> tuple[float, float]:
        value = self.table.get(key)
        if not (isinstance(value, list) and len(value) == 2 and all(_is_num(v) for v in value)):
            raise LayoutError(f"{self.where}: {key} must be [x, y], not {value!r}")
        return float(value[0]), float(value[1])

    def text(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            raise LayoutError(f"{self.where}: {key} must be a non-empty string")
        if choices and value not in choices:
            raise LayoutError(f"{self.where}: {key} must be one of {', '.join(choices)}")
        return value


def _furniture(entry: Any, where: str) -> list[Box | Circle]:
    r = _Reader(entry, where)
    kind = r.text("kind")
    shape = r.text("shape", choices=("box", "circle"))
    cx, cy = r.pair("center")
    height = r.num("height_m", lo=0.01, hi=50)
    repeat = _Reader(entry.get("repeat", {"count": 1, "step": [0.0, 0.0]}), f"{where}.repeat")
    count = int(repeat.num("count", lo=1, hi=200))
    dx, dy = repeat.pair("step")
    out: list[Box | Circle] = []
    for i in range(count):
        x, y = cx + i * dx, cy + i * dy
        if shape == "box":
            sx, sy = r.pair("size")
            if sx <= 0 or sy <= 0:
                raise LayoutError(f"{where}: size must be positive")
            out.append(Box(kind, x, y, sx / 2, sy / 2, height))
        else:
            out.append(Circle(kind, x, y, r.num("radius_m", lo=0.01, hi=20), height))
    return out


def _feature(entry: Any, where: str, default_bottom: float = 0.0) -> WallFeature:
    r = _Reader(entry, where)
    return WallFeature(
        wall=r.text("wall", choices=WALLS),
        center_m=r.num("center_m"),
        width_m=r.num("width_m", lo=0.1, hi=1e3),
        height_m=r.num("height_m", lo=0.1, hi=1e3),
        bottom_m=r.num("bottom_m", default_bottom, lo=0, hi=1e3),
    )


def parse_layout(data: dict[str, Any], source: str = "<layout>") -> Layout:
    """Build a validated Layout from already-parsed TOML data."""
    room = _Reader(data.get("room"), f"{source}: [room]")
    layout_fields: dict[str, Any] = {
        "name": room.text("name"),
        "width_m": room.num("width_m", lo=2, hi=600),
        "depth_m": room.num("depth_m", lo=2, hi=600),
        "wall_height_m": room.num("wall_height_m", lo=1, hi=100),
        "wall_thickness_m": room.num("wall_thickness_m", 0.3, lo=0.05, hi=5),
        "spawn": room.pair("spawn"),
        "spawn_radius_m": room.num("spawn_radius_m", 2.0, lo=0, hi=100),
        "spawn_yaw_deg": room.num("spawn_yaw_deg", 0.0, lo=-360, hi=360),
        "door": _feature(data.get("door"), f"{source}: [door]"),
        "screen": _feature(data.get("screen"), f"{source}: [screen]"),
    }
    solids: list[Box | Circle] = []
    for i, entry in enumerate(data.get("furniture", [])):
        solids.extend(_furniture(entry, f"{source}: furniture #{i + 1}"))
    signs = []
    for i, entry in enumerate(data.get("sign", [])):
        r = _Reader(entry, f"{source}: sign #{i + 1}")
        signs.append(
            Sign(
                text=r.text("text"),
                wall=r.text("wall", choices=WALLS),
                along_m=r.num("along_m"),
                z_m=r.num("z_m", lo=0, hi=100),
                height_m=r.num("height_m", lo=0.05, hi=20),
                color=parse_color(entry.get("color"), r.where),
                flicker=r.num("flicker", 0.0, lo=0, hi=1),
                buzz_hz=r.num("buzz_hz", 50.0, lo=0, hi=1000),
            )
        )
    tubes = []
    for i, entry in enumerate(data.get("tube", [])):
        where = f"{source}: tube #{i + 1}"
        r = _Reader(entry, where)
        pts = entry.get("points")
        ok = isinstance(pts, list) and len(pts) >= 2
        ok = ok and all(isinstance(p, list) and len(p) == 3 and all(map(_is_num, p)) for p in pts)
        if not ok:
            raise LayoutError(f"{where}: points must be a list of at least two [x, y, z]")
        tubes.append(
            Tube(
                points=tuple((float(a), float(b), float(c)) for a, b, c in pts),
                color=parse_color(entry.get("color"), where),
                radius_m=r.num("radius_m", 0.03, lo=0.005, hi=1),
                flicker=r.num("flicker", 0.0, lo=0, hi=1),
            )
        )
    layout = Layout(
        **layout_fields,
        boxes=tuple(s for s in solids if isinstance(s, Box)),
        circles=tuple(s for s in solids if isinstance(s, Circle)),
        signs=tuple(signs),
        tubes=tuple(tubes),
        source=source,
    )
    sx, sy = layout.spawn
    if not layout.inside(sx, sy, margin_m=0.5):
        raise LayoutError(f"{source}: spawn {layout.spawn} is not inside the room")
    return layout


def load_layout(path: str | Path | None = None) -> Layout:
    """Read and validate a layout file (default: scenes/bar.toml)."""
    path = Path(path) if path else DEFAULT_LAYOUT
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayoutError(f"layout file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(f"{path} is not valid TOML: {exc}") from None
    return parse_layout(data, source=str(path))
