"""Two (then three) real offscreen clients behind a delaying proxy watch the same frames.

Each client fetches the scene's media through the proxy into its own --data dir and logs every
drawn frame (--playback-log); the host's timeline history says which frame was due at each
moment, and the server clock is known to ~0.1 ms (loopback pings), so each logged frame is
checked against the frame due, and the clients against each other, after play, pause, seek and
rate changes; a late joiner must be in sync within a second. The same holds for a generated
scene the server renders when it is chosen, and for the next scene, fetched ahead.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from watchfixtures import WatchRig, write_generated_scene

from neonbar.playback import frame_errors

pytestmark = pytest.mark.render


def errors_of(rig: WatchRig, name: str, settle_s: float = 0.6,
              scene: str | None = None) -> np.ndarray:  # fmt: skip
    """Errors of the frames drawn with the frame due in hand (of one scene, if named). Frames
    drawn while the decoder had not reached it ("wait": the last one stays up) are decoding
    starvation on a busy machine, not sync; they are counted apart (`waits_of`)."""
    records = [r for r in rig.records(name) if r.get("act") != "wait"
               and (scene is None or r.get("scene") == scene)]  # fmt: skip
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


def test_a_generated_scene_and_the_next_scene_fetched_ahead(tmp_path):
    """The server renders the generated scene when the host chooses it (nobody ran `scene
    render`); two clients fetch it through the proxy and show the same frame; the imported clip
    after it is in both caches before the host switches, and is shown with no fetch at all."""
    rig = WatchRig(tmp_path, frames=48, delay_s=0.03, jitter_s=0.02)
    write_generated_scene(rig.scenes, "rainfall", duration_s=5.0)  # 120 frames, 192x108
    rig.add_clip("reveal", 24 * 20)  # after rainfall in `scene list` order
    try:
        host = rig.host
        host.do("scene", scene="rainfall")
        ready = host.wait(lambda t: t.scene == "rainfall" and t.status != "preparing", 300)
        assert (ready.status, ready.frames, ready.fps) == ("ready", 120, 24.0), ready.note
        notes = [t.note for t in host.history.versions if t.status == "preparing"]
        assert "rendering on the server…" in notes, notes
        ahead = host.wait(lambda t: t.next_media is not None)
        assert ahead.next_scene == "reveal"
        rig.client("alice")
        rig.client("bob", role="collaborator")
        rig.wait_showing(["alice", "bob"], timeout_s=120)
        for op, fields, hold_s in (
            ("play", {}, 2.5),
            ("seek", {"pos": 1.0}, 2.0),
            ("pause", {}, 1.0),
        ):
            host.do(op, **fields)
            time.sleep(hold_s)
        # Both clients fetched the next scene's media while this one played, and verified it.
        cached = {n: tmp_path / f"data-{n}" / "media" / f"{ahead.next_media}.mp4"
                  for n in ("alice", "bob")}  # fmt: skip
        end = time.monotonic() + 60
        while not all(p.is_file() for p in cached.values()) and time.monotonic() < end:
            time.sleep(0.2)
        for path in cached.values():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == ahead.next_media
        connections = rig.proxy.connections  # the websockets and every ranged GET so far
        host.do("next")
        switched = host.wait(lambda t: t.scene == "reveal" and t.status != "preparing")
        assert switched.media == ahead.next_media
        host.do("play")
        time.sleep(4.0)
        rig.stop_clients()
        assert rig.proxy.connections == connections  # the switch fetched nothing

        for scene, least in (("rainfall", 50), ("reveal", 40)):
            errors = {n: errors_of(rig, n, scene=scene) for n in ("alice", "bob")}
            for name, err in errors.items():
                within = np.mean(np.abs(err[:, 1]) <= 1) if len(err) else 0.0
                assert len(err) > least and within >= 0.95, (scene, name, len(err), within)
            drift = pairwise(errors["alice"], errors["bob"])
            assert len(drift) > least // 2 and np.mean(np.abs(drift) <= 1) >= 0.95, (scene, drift)
        for name in ("alice", "bob"):
            assert waits_of(rig, name) <= 0.2, (name, waits_of(rig, name))
            rows = rig.records(name)
            # The generated scene's frames are not numbered: the indices uploaded are compared.
            shown = {r["frame"] for r in rows if r.get("scene") == "rainfall" and r["frame"]}
            assert len(shown) > 48, (name, len(shown))
            assert any(r.get("scene") == "reveal" and r["frame"] is not None for r in rows)
            media = tmp_path / f"data-{name}" / "media" / f"{ready.media}.mp4"
            assert hashlib.sha256(media.read_bytes()).hexdigest() == ready.media
    finally:
        rig.close()
