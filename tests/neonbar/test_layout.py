"""The bar layout loads, and broken layouts fail with a sentence naming the entry."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from neonbar.layout import DEFAULT_LAYOUT, LayoutError, load_layout, parse_layout


def base_data() -> dict:
    return tomllib.loads(DEFAULT_LAYOUT.read_text(encoding="utf-8"))


def test_the_bar_loads_with_its_furniture_and_neon() -> None:
    layout = load_layout()
    kinds = {b.kind for b in layout.boxes} | {c.kind for c in layout.circles}
    assert {"counter", "stool", "table", "booth", "back_bar"} <= kinds
    assert len([c for c in layout.circles if c.kind == "stool"]) == 11  # the repeat expands
    assert layout.signs and layout.tubes
    assert layout.inside(*layout.spawn, margin_m=0.5)
    # Every piece of furniture stands on the floor.
    for box in layout.boxes:
        assert layout.inside(box.cx, box.cy), box
    for circle in layout.circles:
        assert layout.inside(circle.cx, circle.cy), circle


def test_walls_enclose_the_floor() -> None:
    layout = load_layout()
    walls = layout.walls()
    assert len(walls) == 4
    xs = [w.x0 for w in walls] + [w.x1 for w in walls]
    assert max(xs) > layout.half_x and min(xs) < -layout.half_x


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["room"].pop("width_m"), "missing width_m"),
        (lambda d: d["room"].update(width_m="wide"), "width_m must be a number"),
        (lambda d: d["room"].update(spawn=[99.0, 0.0]), "spawn"),
        (lambda d: d["furniture"][0].update(shape="blob"), "furniture #1: shape must be one of"),
        (lambda d: d["furniture"][2].update(center=[1]), "furniture #3: center must be [x, y]"),
        (lambda d: d["sign"][0].update(color="orange"), "sign #1: color"),
        (lambda d: d["sign"][1].update(wall="ceiling"), "sign #2: wall must be one of"),
        (lambda d: d["tube"][0].update(points=[[0, 0]]), "tube #1: points"),
        (lambda d: d.pop("screen"), "[screen] must be a table"),
    ],
)
def test_broken_layout_names_the_problem(mutate, message: str) -> None:
    data = base_data()
    mutate(data)
    with pytest.raises(LayoutError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_layout(data, source="bar.toml")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="does not exist"):
        load_layout(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[room\nname = ")
    with pytest.raises(LayoutError, match="not valid TOML"):
        load_layout(bad)
