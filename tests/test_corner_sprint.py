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
        """(bots, 3): the server's x_m, y_m and last applied input seq per bot (NaN: none yet)."""
        rows = []
        for session in self.sessions:
            corr = session.correction()
            rows.append((np.nan, np.nan, np.nan) if corr is None else (*corr[:2], corr[3]))
        return np.array(rows, dtype=float)


# Phases end when everyone is done, not after a fixed time: bots on a loaded machine move fewer
# steps per second (CI's 2-core box ran the old 6-second phases with 22 % still on their way).
# "Done" is counted in the bots' own inputs, never in seconds; the deadlines only bound a broken
# run.
PHASE_DEADLINE_S = 90.0
REACHED_M = 0.6  # a bot pressing at a spot inside geometry stops ~0.35-0.45 m from it
SETTLED_INPUTS = 20  # a bot whose last 20 inputs moved it less than SETTLED_M is pressed in
SETTLED_M = 0.02
# The spots are rushed by a third of the bots at a time: one process drives the bots, and 74 of
# them at once need more CPU than a loaded 2-core machine gives it (the server then drops them
# for not acknowledging snapshots).
WAVES = 3


async def rush(
    url: str, room: str, targets: np.ndarray
) -> tuple[CornerRush, int, np.ndarray, np.ndarray]:
    """Sprint at the spots until every bot got there or is pressed in, then back out.

    Returns the fleet (with every server position it saw), the sample index where the rush
    ended, and per bot whether it reached its spot and whether it walked back out.
    """
    n = len(targets)
    fleet = CornerRush(url, room, n, targets=targets, seed=7)
    task = asyncio.create_task(fleet.run(3 * PHASE_DEADLINE_S))
    loop = asyncio.get_running_loop()
    reached = np.zeros(n, dtype=bool)
    out = np.zeros(n, dtype=bool)
    back_to = np.array(BACK_TO)

    async def sample(goal: np.ndarray | None = None) -> np.ndarray:
        if goal is not None:  # keep pressing at it (bots retarget when they stop making progress)
            fleet.target_m[:] = goal
            fleet.progress_s[:] = 0.0
        await asyncio.sleep(0.05)
        now = fleet.authoritative()
        fleet.server_track.append(now[:, :2])
        fleet.track_s.append(loop.time())
        return now

    # Everyone joined and heard from the server once.
    begin = loop.time()
    while np.isnan(fleet.authoritative()[:, 0]).any() and loop.time() - begin < PHASE_DEADLINE_S:
        await sample()
    now = fleet.authoritative()
    anchor = now.copy()  # where each bot last moved more than SETTLED_M, and at which input
    begin = loop.time()
    while loop.time() - begin < PHASE_DEADLINE_S:
        now = await sample(targets)
        reached |= np.hypot(*(now[:, :2] - targets).T) < REACHED_M
        moved = np.hypot(*(now[:, :2] - anchor[:, :2]).T) > SETTLED_M
        anchor[moved] = now[moved]
        settled = now[:, 2] - anchor[:, 2] >= SETTLED_INPUTS
        if (reached | settled).all():
            break
    rush_end = len(fleet.server_track) - 1
    start_d = np.hypot(*(fleet.server_track[rush_end] - back_to).T)
    begin = loop.time()
    while not out.all() and loop.time() - begin < PHASE_DEADLINE_S:
        now = await sample(np.broadcast_to(back_to, targets.shape))
        end_d = np.hypot(*(now[:, :2] - back_to).T)
        out |= (end_d < 1.5) | (end_d < start_d - 3.0)
    fleet.stop()
    await task
    return fleet, rush_end, reached, out


@pytest.mark.timeout(WAVES * 4 * PHASE_DEADLINE_S)
def test_bots_sprinting_into_every_corner_end_free_and_inside(tmp_path, monkeypatch):
    monkeypatch.setattr(bots_module, "ARRIVE_M", 0.0)  # never "arrive": keep pressing in
    layout = load_layout()
    world = CollisionWorld(layout)
    r = world.radius_m
    spots = hard_spots(layout)
    with running_server(tmp_path) as server:
        for wave in range(WAVES):
            targets = spots[wave::WAVES]
            fleet, rush_end, reached, out = asyncio.run(rush(server.url, f"corners{wave}", targets))

            track = np.array(fleet.server_track)  # (samples, bots, 2)
            seen = track[~np.isnan(track[..., 0])]
            # Never outside the bar, never inside furniture (1 cm of quantization slack), in
            # every position the server sent that we saw (however many a loaded machine let
            # us see).
            assert np.all(np.abs(seen[:, 0]) <= layout.half_x - r + 0.01)
            assert np.all(np.abs(seen[:, 1]) <= layout.half_y - r + 0.01)
            assert world.distance(seen).min() >= -0.015, "an avatar stood inside geometry"

            # Everyone reached the corner or gap it was aiming at, or is pressed into a wall, a
            # piece of furniture or another avatar on the way (bots press straight; they do not
            # plan paths) ...
            at_end = track[rush_end]
            gaps = np.hypot(*(at_end[:, None, :] - at_end[None, :, :]).transpose(2, 0, 1))
            np.fill_diagonal(gaps, np.inf)
            against_someone = gaps.min(axis=1) < 2 * r + 0.05
            pressed = reached | (world.distance(at_end) < 0.15) | against_someone
            # Not all: on a loaded machine the server may drop a bot that stopped acknowledging
            # snapshots (4408), and it comes back from its resume point, not from its corner.
            assert pressed.mean() > 0.8, np.column_stack([targets, at_end])[~pressed]
            # ... and nobody is stuck: everyone walked back out toward the open floor. One bot
            # may be late: with a CPU hog beside the suite, one in 74 was once still on its way
            # out when the phase ended (not inside anything: checked above). Being stuck for
            # good is the collision soak's to catch (10^6 moves, 0 stuck; bench/collision.py).
            assert (~out).sum() <= 1, np.column_stack([targets, at_end, track[-1]])[~out]
