"""Two (then three) real offscreen clients behind a delaying proxy watch the same frames.

Each client fetches the scene's media through the proxy into its own --data dir and logs every
drawn frame (--playback-log); the host's timeline history says which frame was due at each
moment, and the server clock is known to ~0.1 ms (loopback pings), so each logged frame is
checked against the frame due, and the clients against each other, after play, pause, seek and
rate changes; a late joiner must be in sync within a second.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from watchfixtures import WatchRig

from neonbar.playback import frame_errors

pytestmark = pytest.mark.render


def errors_of(rig: WatchRig, name: str, settle_s: float = 0.6) -> np.ndarray:
    """Errors of the frames drawn with the frame due in hand. Frames drawn while the decoder had
    not reached it ("wait": the last one stays up) are decoding starvation on a busy machine, not
    sync; they are counted apart (`waits_of`)."""
    records = [r for r in rig.records(name) if r.get("act") != "wait"]
    pairs = frame_errors(records, rig.host.history, rig.host.server_offset_s, settle_s)
    return np.array(pairs, dtype=float).reshape(-1, 2)


def waits_of(rig: WatchRig, name: str) -> float:
    shown = [r for r in rig.records(name) if r.get("frame") is not None]
    return sum(r.get("act") == "wait" for r in shown) / max(1, len(shown))


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Error of A minus error of B at B's nearest logged frame (within 50 ms)."""
    if not len(a) or not len(b):
        return np.zeros(0)
    idx = np.clip(np.searchsorted(b[:, 0], a[:, 0]), 1, len(b) - 1)
    left, right = b[idx - 1], b[idx]
    nearest = np.where((a[:, 0] - left[:, 0] < right[:, 0] - a[:, 0])[:, None], left, right)
    close = np.abs(nearest[:, 0] - a[:, 0]) < 0.05
    return (a[close, 1] - nearest[close, 1]).astype(int)


def test_clients_behind_a_delaying_proxy_show_the_same_frame(tmp_path):
    rig = WatchRig(tmp_path, frames=1440, delay_s=0.03, jitter_s=0.02)  # one minute
    try:
        ready = rig.choose()
        assert ready.status == "ready" and ready.frames == 1440
        rig.client("alice")
        rig.client("bob", role="collaborator")
        rig.wait_showing(["alice", "bob"])
        host = rig.host
        phases = []
        for op, fields, hold_s in (
            ("play", {}, 3.0),
            ("pause", {}, 1.5),
            ("seek", {"pos": 12.0}, 1.5),
            ("play", {}, 2.5),
            ("rate", {"rate": 2.0}, 2.5),
        ):
            phases.append(host.do(op, **fields))
            time.sleep(hold_s)
        rig.client("late")  # joins while the scene plays at double speed
        rig.wait_showing(["late"], timeout_s=120)
        time.sleep(2.0)
        host.do("rate", rate=1.0)
        time.sleep(2.0)
        rig.stop_clients()
        errors = {name: errors_of(rig, name) for name in ("alice", "bob", "late")}
        for name in ("alice", "bob"):
            err = errors[name][:, 1]
            assert len(err) > 100, (name, rig.output(name))
            within = np.mean(np.abs(err) <= 1)
            assert within >= 0.95, (name, within, np.percentile(np.abs(err), [50, 95, 100]))
            assert waits_of(rig, name) <= 0.2, (name, waits_of(rig, name))
        drift = pairwise(errors["alice"], errors["bob"])
        assert len(drift) > 50
        assert np.mean(np.abs(drift) <= 1) >= 0.95, np.percentile(np.abs(drift), [50, 95, 100])
        # While paused the frame is exact: frame 3 s into the scene... at the pause.
        paused = phases[1]
        pause_rows = [r for r in rig.records("alice") if r.get("ver") == paused.version]
        assert pause_rows and {r["frame"] for r in pause_rows[-10:]} == {paused.frame_at(0)}
        # The late joiner: from its welcome to in sync (and staying there) within a second.
        late = errors["late"]
        first_t = next(r["t"] for r in rig.records("late") if r.get("ver"))
        bad = late[np.abs(late[:, 1]) > 1]
        synced_t = (bad[-1, 0] if len(bad) else first_t) - first_t
        assert len(late) > 30 and synced_t <= 1.0, (synced_t, late[:20])
        # Everyone fetched the media themselves, through the proxy, and verified it.
        digest = ready.media
        for name in ("alice", "bob", "late"):
            cached = tmp_path / f"data-{name}" / "media" / f"{digest}.mp4"
            assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    finally:
        rig.close()


def test_bots_with_play_start_the_scene_and_gather_at_the_screen(tmp_path, monkeypatch):
    import asyncio

    sys.path.insert(0, str(Path(__file__).parent / "server"))
    from clipfixtures import write_numbered_clip
    from serverfixtures import ServerThread

    from client.bots import BotFleet
    from neonbar.layout import load_layout
    from neonbar.scenes import import_clip
    from server.room import RoomConfig

    monkeypatch.setenv("NEONBAR_SCENES", str(tmp_path / "scenes"))
    monkeypatch.setenv("NEONBAR_CACHE", str(tmp_path / "cache"))
    import_clip(write_numbered_clip(tmp_path / "clip.mp4", 24 * 40, 24), "Numbered",
                name="numbered")  # fmt: skip
    server = ServerThread(RoomConfig(open_rooms=False)).start()
    try:
        fleet = BotFleet(server.url, "bar", count=3, token=server.token(role="host"), chatty=0,
                         seed=4, play="numbered")  # fmt: skip
        start_y = []

        async def run() -> dict:
            async def note_start() -> None:
                while not all(s.local_state for s in fleet.sessions):
                    await asyncio.sleep(0.05)
                start_y.extend(s.local_state[1] for s in fleet.sessions)

            watcher = asyncio.ensure_future(note_start())
            report = await fleet.run(14.0)
            watcher.cancel()
            return report

        report = asyncio.run(run())
        assert report["connected"] == 3
        timeline = server.call(lambda: server.server.rooms["bar"].features["playback"].timeline)
        assert (timeline.scene, timeline.status, timeline.playing) == ("numbered", "ready", True)
        assert fleet.watching
        screen = load_layout().screen
        assert screen.wall == "north"
        north = load_layout().half_y
        # Every bot's target is a spot in front of the screen, and they walked toward it.
        assert np.all((fleet.target_m[:, 1] >= north - 8.0) & (fleet.target_m[:, 1] <= north - 2.5))
        assert np.all(np.abs(fleet.target_m[:, 0] - screen.center_m) <= screen.width_m / 2)
        assert np.all(fleet.pos_m[:, 1] - np.array(start_y) > 6.0), (start_y, fleet.pos_m)
    finally:
        server.stop()
