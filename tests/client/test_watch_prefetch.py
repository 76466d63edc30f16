"""The client fetches the next scene's media while the current one plays, and the switch uses it."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from clipfixtures import write_numbered_clip
from proxyfixtures import DelayProxy
from renderfixtures import showbase
from serverfixtures import RawClient, ServerThread

from client.watch import Watch, WatchOptions
from neonbar.playback import Timeline
from server.room import RoomConfig

__all__ = ["showbase"]
pytestmark = pytest.mark.render


@pytest.fixture
def room(tmp_path, monkeypatch) -> Any:
    """A server whose room plays 'alpha' and announces 'beta' next, with its media."""
    from neonbar.scenes import import_clip

    monkeypatch.setenv("NEONBAR_SCENES", str(tmp_path / "scenes"))
    monkeypatch.setenv("NEONBAR_CACHE", str(tmp_path / "cache"))
    shas = {}
    for name, frames in (("alpha", 24), ("beta", 48)):
        clip = write_numbered_clip(tmp_path / f"{name}-src.mp4", frames, 24)
        spec = import_clip(clip, name.title(), name=name)
        shas[name] = hashlib.sha256(spec.clip.read_bytes()).hexdigest()
    server = ServerThread(RoomConfig(open_rooms=False)).start()
    stay = threading.Event()
    ready = threading.Event()

    def host() -> None:
        async def main() -> None:
            client = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
            await client.send({"t": "playback", "op": "scene", "scene": "alpha"})
            while True:
                msg = await client.event("timeline", 10.0)
                if msg.get("next_media"):
                    break
            ready.set()
            while not stay.is_set():  # the room lives while its host is in it
                await asyncio.sleep(0.05)
            await client.close()

        asyncio.run(main())

    thread = threading.Thread(target=host, daemon=True)
    thread.start()
    assert ready.wait(30), "the room never announced its next scene"
    try:
        yield SimpleNamespace(server=server, shas=shas, timeline=lambda: _timeline(server))
    finally:
        stay.set()
        thread.join(10)
        server.stop()


def _timeline(server: ServerThread) -> Timeline:
    return server.call(lambda: server.server.rooms["bar"].features["playback"].timeline)


def make_watch(base: Any, url: str, token: str, data: Path) -> Watch:
    screen = base.render.attachNewNode("screen")
    world = SimpleNamespace(screen=screen, screen_idle=None)
    layout = SimpleNamespace(screen=SimpleNamespace(width_m=8.0, height_m=4.5))
    options = WatchOptions(server_url=url, room="bar", token=token, data_dir=data)
    return Watch(base, world, layout, send=lambda msg: None, server_time=time.monotonic,
                 clock=time.monotonic, role=lambda: "viewer", toast=lambda text: None,
                 options=options)  # fmt: skip


def switch_to_beta(now: Timeline, sha256: str) -> Timeline:
    """What `playback next` makes of the room's timeline once beta's media is found."""
    return now.load(time.monotonic(), scene="beta", title="Beta", media=sha256, fps=24.0,
                    frames=48, status="ready")  # fmt: skip


def step_until(watch: Watch, predicate: Any, timeout_s: float = 30.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        watch.update()
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_next_media_is_fetched_after_the_current_one_and_the_switch_fetches_nothing(
    showbase, room, tmp_path
):
    proxy = DelayProxy(int(room.server.url.rsplit(":", 1)[1])).start()
    watch = make_watch(showbase, proxy.url, room.server.token(role="viewer"), tmp_path / "data")
    try:
        now = room.timeline()
        assert now.next_media == room.shas["beta"]
        watch.on_event({"t": "event", "kind": "timeline", **now.to_wire()})
        assert watch.download is not None and watch.prefetch is None  # the current one first
        assert step_until(watch, lambda: watch.screen.shown_frame is not None)
        assert step_until(watch, lambda: watch.prefetch is None and watch._next_tried)
        beta = watch.cache.path(room.shas["beta"])
        assert beta.is_file() and hashlib.sha256(beta.read_bytes()).hexdigest() == beta.stem
        fetched = proxy.connections
        switched = switch_to_beta(now, room.shas["beta"])
        watch.on_event({"t": "event", "kind": "timeline", **switched.to_wire()})
        assert watch.download is None and watch.screen.source is not None
        assert watch.screen.source.path == beta
        assert step_until(watch, lambda: watch.screen.shown_frame is not None)
        assert proxy.connections == fetched  # nothing fetched for the switch
    finally:
        watch.destroy()
        proxy.stop()


def test_a_switch_while_the_next_media_is_arriving_takes_over_that_download(
    showbase, room, tmp_path
):
    # Slow enough that the look-ahead is still on its way when the host presses N.
    proxy = DelayProxy(int(room.server.url.rsplit(":", 1)[1]), delay_s=0.4).start()
    data = tmp_path / "data"
    (data / "media").mkdir(parents=True)
    now = room.timeline()
    alpha = room.server.call(
        lambda: room.server.server.rooms["bar"].features["playback"].library.by_hash(now.media)
    )
    (data / "media" / f"{now.media}.mp4").write_bytes(alpha.path.read_bytes())  # had it already
    watch = make_watch(showbase, proxy.url, room.server.token(role="viewer"), data)
    try:
        watch.on_event({"t": "event", "kind": "timeline", **now.to_wire()})
        assert watch.download is None  # from the cache
        watch.update()
        ahead = watch.prefetch
        assert ahead is not None and ahead.sha256 == room.shas["beta"] and not ahead.done
        switched = switch_to_beta(now, room.shas["beta"])
        watch.on_event({"t": "event", "kind": "timeline", **switched.to_wire()})
        assert watch.download is ahead and watch.prefetch is None  # one download, not two
        assert step_until(watch, lambda: watch.screen.shown_frame is not None)
        assert proxy.connections == 1
    finally:
        watch.destroy()
        proxy.stop()
