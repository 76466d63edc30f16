"""The tipsy model: how drinks raise an avatar's tipsy level and how it wears off.

One home for the rule (docs/protocol.md, "Drinks"): the server applies it when a drink is
ordered and sends the resulting level in the `drink` event and the roster; clients use
`tipsy_level` only to let that level decay between events, so every peer shows the same sway.
"""

from __future__ import annotations

TIPSY_PER_DRINK = 0.25  # each drink adds this to the decayed level...
TIPSY_MAX = 1.0  # ...capped here
TIPSY_DECAY_PER_S = 0.1 / 60.0  # 0.1 per minute


def tipsy_level(level: float, level_st: float, now_st: float) -> float:
    """The level at server time `now_st` (s), from `level` set at server time `level_st` (s)."""
    return max(0.0, level - TIPSY_DECAY_PER_S * max(0.0, now_st - level_st))


def tipsy_after_drink(level: float, level_st: float, drink_st: float) -> float:
    """The level right after a drink ordered at `drink_st`, from `level` set at `level_st`."""
    return min(TIPSY_MAX, tipsy_level(level, level_st, drink_st) + TIPSY_PER_DRINK)
