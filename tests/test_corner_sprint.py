"""End to end: bots sprint into every corner of the bar through a real server.

The server is the authority, so the check reads the positions it sends back (`you` in each
snapshot): nobody may ever stand outside the bar or inside furniture, and nobody may be stuck —
after the corner rush everyone must be able to walk back out to the open floor.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "client"))
from netfixtures import running_server

import client.bots as bots_module
from client.bots import BotFleet
from neonbar.collision import CollisionWorld
from neonbar.layout import load_layout

SPRINT_MPS = 6.5  # under the server's 7 m/s cap
# Where everyone walks back to. Not on the line of any furniture face: the counter and the back
# bar both end at y = -6.0, and a bot heading for a point on that line from behind the counter
# settles where the counter's face meets its rounded corner (pressing straight at the target,
# it has nothing to slide along). Bots do not plan paths; people would step around.
BACK_TO = (0.0, -8.0)


def hard_spots(layout) -> np.ndarray:
    """Targets where avatars get wedged: room corners, furniture corners, gaps between stools."""
    hx, hy = layout.half_x, layout.half_y
    spots = [(sx * (hx - 0.05), sy * (hy - 0.05)) for sx in (-1, 1) for sy in (-1, 1)]
    for box in layout.boxes:
        for sx in (-1, 1):
            for sy in (-1, 1):
                # just past the corner, inside the box: the mover must slide and settle
                spots.append((box.cx + sx * (box.hx - 0.05), box.cy + sy * (box.hy - 0.05)))
    stools = sorted((c for c in layout.circles if c.kind == "stool"), key=lambda c: c.cy)
    for a, b in itertools.pairwise(stools):
        spots.append(((a.cx + b.cx) / 2, (a.cy + b.cy) / 2))  # the gap between two stools
    return np.array(spots, dtype=float)


class CornerRush(BotFleet):
    """Bots that sprint at assigned spots instead of wandering, with no social chatter."""

    def __init__(self, *args, targets: np.ndarray, **kwargs) -> None:
        super().__init__(*args, chatty=0.0, **kwargs)
        self.assigned = targets
        self.speed_mps[:] = SPRINT_MPS
        self.server_track: list[np.ndarray] = []
        self.track_s: list[float] = []

    def _random_targets(self, n: int) -> np.ndarray:
        # Called on (re)join, arrival and "no progress": keep pushing at the same spot.
        return self.assigned[:n] if n == len(self.assigned) else self.target_m[:n]

    def authoritative(self) -> np.ndarray:
        rows = []
        for session in self.sessions:
            corr = session.correction()
            rows.append((np.nan, np.nan) if corr is None else corr[:2])
        return np.array(rows, dtype=float)


async def rush(url: str, targets: np.ndarray, rush_s: float, back_s: float) -> CornerRush:
    fleet = CornerRush(url, "corners", len(targets), targets=targets, seed=7)
    task = asyncio.create_task(fleet.run(rush_s + back_s + 2.0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < rush_s + back_s:
        if loop.time() - start > 1.0:  # let everyone join and take their first targets
            fleet.target_m[:] = targets if loop.time() - start < rush_s else BACK_TO
            fleet.progress_s[:] = 0.0
        fleet.server_track.append(fleet.authoritative())
        fleet.track_s.append(loop.time() - start)
        await asyncio.sleep(0.05)
    fleet.stop()
    await task
    return fleet


@pytest.mark.timeout(120)
def test_bots_sprinting_into_every_corner_end_free_and_inside(tmp_path, monkeypatch):
    monkeypatch.setattr(bots_module, "ARRIVE_M", 0.0)  # never "arrive": keep pressing in
    layout = load_layout()
    world = CollisionWorld(layout, radius_m=0.3)
    targets = hard_spots(layout)
    with running_server(tmp_path) as server:
        fleet = asyncio.run(rush(server.url, targets, rush_s=6.0, back_s=6.0))

    track = np.array(fleet.server_track)  # (samples, bots, 2)
    seen = track[~np.isnan(track[..., 0])]
    assert len(seen) > len(targets) * 100, "the server's positions were not observed"
    # Never outside the bar, never inside furniture (1 cm of quantization slack).
    assert np.all(np.abs(seen[:, 0]) <= layout.half_x - 0.3 + 0.01)
    assert np.all(np.abs(seen[:, 1]) <= layout.half_y - 0.3 + 0.01)
    assert world.distance(seen).min() >= -0.015, "an avatar stood inside geometry"

    # During the rush they reached the walls and furniture they were aiming at ...
    at_rush_end = track[np.searchsorted(fleet.track_s, 6.0) - 1]
    pressed = world.distance(at_rush_end) < 0.15  # stool gaps are narrower than an avatar
    assert pressed.mean() > 0.8, f"only {pressed.mean():.0%} got to their corner"
    # ... and nobody is stuck: everyone walked back out toward the open floor.
    final = track[-1]
    back_to = np.array(BACK_TO)
    start_d = np.hypot(*(at_rush_end - back_to).T)
    end_d = np.hypot(*(final - back_to).T)
    ok = (end_d < 1.5) | (end_d < start_d - 3.0)
    assert ok.all(), np.column_stack([targets, at_rush_end, final])[~ok]
