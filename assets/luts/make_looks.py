"""Build the looks that ship in assets/luts/ (run: .venv/bin/python assets/luts/make_looks.py).

Each look is a function on display-referred RGB (sRGB-encoded, 0..1) sampled on a 33³ lattice.
They are written by hand rather than fitted so they stay deterministic and explainable:

- orange_haze: Blade Runner 2049's Las Vegas dust. Everything drifts toward amber, blues are
  pulled into the orange family, blacks are lifted into a brown haze and highlights roll off soft.
- teal_neon: the night-street split tone. Shadows go teal, skin and mids stay warm, saturated
  magentas and cyans are pushed further so the signs sing.
- mood_for_love: In the Mood for Love's Hong Kong, 1962. Deep crimson reds, jade and olive
  greens, warm tungsten highlights, a little desaturation and a velvet black.
- neutral: identity, for A/B and for turning grading off without changing the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from neonbar.lut import Lut3D, identity_table, write_cube

HERE = Path(__file__).resolve().parent
SIZE = 33
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ LUMA)[..., None]


def saturate(rgb: np.ndarray, amount: np.ndarray | float) -> np.ndarray:
    y = luma(rgb)
    return y + (rgb - y) * amount


def smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def soft_contrast(rgb: np.ndarray, pivot: float, amount: float) -> np.ndarray:
    """An S-curve around pivot that keeps 0 and 1 in place."""
    x = np.clip(rgb, 0.0, 1.0)
    lifted = x + amount * x * (1 - x) * (x - pivot) * 4
    return lifted


def hue_weight(rgb: np.ndarray, target: tuple[float, float, float], width: float) -> np.ndarray:
    """How close each colour's chroma direction is to target's (0..1), scaled by saturation."""
    chroma = rgb - luma(rgb)
    t = np.asarray(target, np.float32)
    t = t - t @ LUMA
    norm = np.linalg.norm(chroma, axis=-1, keepdims=True)
    cos = (chroma @ t)[..., None] / (norm * np.linalg.norm(t) + 1e-6)
    return smoothstep(1 - width, 1.0, cos) * smoothstep(0.02, 0.25, norm)


def orange_haze(rgb: np.ndarray) -> np.ndarray:
    y = luma(rgb)
    amber = np.array([1.0, 0.55, 0.18], np.float32)
    # Blues and cyans fall into the dust: rotate them toward amber at reduced saturation.
    cool = hue_weight(rgb, (0.2, 0.5, 1.0), 0.9)
    rgb = rgb * (1 - 0.55 * cool) + y * amber * 0.9 * (0.55 * cool)
    rgb = saturate(rgb, 0.85)
    # Split tone: mids and highlights toward amber.
    rgb = rgb * (1 - 0.35 * y) + (y * amber * 1.15) * (0.35 * y)
    rgb = rgb * np.array([1.06, 0.98, 0.80], np.float32)
    rgb = soft_contrast(rgb, 0.45, 0.25)
    # Lifted blacks: the air itself has a colour.
    floor = np.array([0.075, 0.040, 0.018], np.float32)
    rgb = floor + rgb * (1 - floor)
    # Soft highlight roll-off.
    return 1 - (1 - np.clip(rgb, 0, 1)) ** 1.08


def teal_neon(rgb: np.ndarray) -> np.ndarray:
    y = luma(rgb)
    teal = np.array([0.0, 0.55, 0.6], np.float32)
    shadow = 1 - smoothstep(0.0, 0.55, y)
    rgb = rgb + (teal - 0.3) * 0.3 * shadow
    # Warm browns in the dark drift to teal too: the orange of the room stays in the lights.
    warm_dark = hue_weight(rgb, (1.0, 0.5, 0.2), 0.7) * shadow
    rgb = rgb * (1 - 0.5 * warm_dark) + luma(rgb) * np.array([0.5, 1.1, 1.2], np.float32) * (
        0.5 * warm_dark
    )
    high = smoothstep(0.35, 1.0, y)
    rgb = rgb + np.array([0.06, 0.0, 0.05], np.float32) * high
    # Neon hues (magenta, cyan, hot pink) get extra saturation; the rest slightly less.
    neon = np.maximum(hue_weight(rgb, (1.0, 0.1, 0.8), 0.6), hue_weight(rgb, (0.1, 0.9, 1.0), 0.5))
    rgb = saturate(rgb, 0.9 + 0.5 * neon)
    rgb = soft_contrast(rgb, 0.4, 0.35)
    floor = np.array([0.0, 0.025, 0.035], np.float32)
    rgb = floor + rgb * (1 - floor)
    return np.clip(rgb, 0, 1)


def mood_for_love(rgb: np.ndarray) -> np.ndarray:
    y = luma(rgb)
    # Only true reds turn crimson; oranges go golden, so a warm room does not drown in red.
    red = hue_weight(rgb, (1.0, 0.05, 0.12), 0.35)
    orange = hue_weight(rgb, (1.0, 0.45, 0.1), 0.5)
    green = hue_weight(rgb, (0.2, 1.0, 0.45), 0.8)
    crimson = np.array([0.80, 0.05, 0.10], np.float32) * (0.55 + 0.9 * y)
    rgb = rgb * (1 - 0.45 * red) + crimson * (0.45 * red)
    golden = np.array([1.0, 0.72, 0.32], np.float32) * y * 1.25
    rgb = rgb * (1 - 0.4 * orange) + golden * (0.4 * orange)
    jade = np.array([0.20, 0.55, 0.40], np.float32) * (0.5 + y)
    rgb = rgb * (1 - 0.45 * green) + jade * (0.45 * green)
    rgb = saturate(rgb, 0.92 + 0.35 * red)
    # Emerald shadows against warm tungsten highlights: the film's two-colour split.
    low = 1 - smoothstep(0.0, 0.4, y)
    rgb = rgb + np.array([-0.02, 0.035, 0.015], np.float32) * low
    high = smoothstep(0.45, 1.0, y)
    rgb = rgb + np.array([0.06, 0.04, -0.04], np.float32) * high
    rgb = soft_contrast(rgb, 0.42, 0.35)
    floor = np.array([0.012, 0.022, 0.018], np.float32)
    rgb = floor + rgb * (1 - floor)
    return np.clip(rgb, 0, 1)


def neutral(rgb: np.ndarray) -> np.ndarray:
    return rgb


LOOKS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "orange_haze": (orange_haze, "Blade Runner 2049 dust: amber drift, lifted brown blacks"),
    "teal_neon": (teal_neon, "teal shadows, magenta and cyan neon highlights"),
    "mood_for_love": (
        mood_for_love,
        "1960s Hong Kong: crimson reds, golden tungsten, emerald shadows",
    ),
    "neutral": (neutral, "identity: no grade"),
}


def main() -> None:
    base = identity_table(SIZE)
    for name, (look, about) in LOOKS.items():
        table = np.clip(look(base.copy()), 0.0, 1.0).astype(np.float32)
        lut = Lut3D(table, title=name)
        write_cube(
            lut,
            HERE / f"{name}.cube",
            comments=(f"Neon Bar look: {about}.", "Made by assets/luts/make_looks.py."),
        )
        print(f"wrote {name}.cube")


if __name__ == "__main__":
    main()
