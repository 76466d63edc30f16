"""The features every room is built from, in the order their hooks run.

A feature module declares its message schemas and event kinds (neonbar.protocol's
`client_message` / `event_kind`) and registers a `Feature` class with `register_feature`
(server/room.py). Adding a feature to the server is adding its module here (docs/room.md).
"""

from __future__ import annotations

import importlib

from neonbar.protocol import load_schemas

FEATURE_MODULES: tuple[str, ...] = (
    "server.durability",  # avatars back after a restart, old events pruned (first)
    "server.social",  # chat, emotes and clinks, drinks and the tipsy level, profile
    "server.hosting",  # what hosts do: kick, mute, the room's look
    "server.playback",  # the room's timeline: play, pause, seek, rate, scenes (watch together)
    "server.reactions",  # webcam reactions: faces, the felt arc, branch points (after playback)
    "server.beats",  # emotional beats: the room's hash chain, the pointer on the screen
)


def load_features() -> None:
    """Import every feature module (each registers itself once; importing again is free)."""
    load_schemas()
    for name in FEATURE_MODULES:
        importlib.import_module(name)
