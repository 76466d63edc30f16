"""Presenter mode (`neonbar client --presenter`) and the look of a rendered film.

In front of investors the HUD's working clutter — connection state, ping, key hints — is noise.
`presenter_mode(app)` hides it and gives the host keys to jump through the scene's strong
moments; `film_mode(app)` is the same clean frame for a replay rendered to video, where
nobody presses keys. The chat feed and the toasts stay: they are the bar talking.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("neonbar.presenter")


def hide_clutter(app: Any) -> None:
    """Hide the status line and the key hint for good (the app keeps setting their text)."""
    hud = app.hud
    for name in ("status", "hint"):
        item = getattr(hud, name, None)
        if item is not None:
            item.hide()


def film_mode(app: Any) -> None:
    """A clean frame for a rendered film."""
    hide_clutter(app)
