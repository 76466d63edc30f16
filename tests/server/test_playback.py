"""The room's timeline: who may change it, every change an event, media served only to the room."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "client"))  # the clip, the server process
from clipfixtures import write_numbered_clip
from serverfixtures import RawClient, run

import server.playback  # noqa: F401  (registers the feature)
from neonbar.playback import Timeline
from neonbar.protocol import ErrorCode

FRAMES = 48


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_numbered_clip(tmp_path_factory.mktemp("clip") / "numbered.mp4", FRAMES, 24)


@pytest.fixture
def scenes(tmp_path, monkeypatch, clip) -> dict[str, Any]:
    """A user scene folder with the numbered clip imported as scene 'numbered'."""
    from neonbar.scenes import import_clip

    monkeypatch.setenv("NEONBAR_SCENES", str(tmp_path / "scenes"))
    monkeypatch.setenv("NEONBAR_CACHE", str(tmp_path / "cache"))  # nothing rendered here
    spec = import_clip(clip, "Numbered", name="numbered")
    data = spec.clip.read_bytes()
    return {"name": spec.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": data}


async def timeline(client: RawClient, timeout_s: float = 10.0, **fields: Any) -> Timeline:
    msg = await client.event("timeline", timeout_s, **fields)
    return Timeline.from_wire(msg)


async def host_and_viewer(server) -> tuple[RawClient, RawClient, RawClient]:
    host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
    collab = await RawClient.join(server.url, name="Collab")
    viewer = await RawClient.join(server.url, name="Viewer", token=server.token(role="viewer"))
    return host, collab, viewer


def test_the_host_drives_the_timeline_and_everyone_sees_each_change(server, scenes):
    async def scenario() -> None:
        host, collab, viewer = await host_and_viewer(server)
        assert Timeline.from_wire(host.welcome["timeline"]).status == "idle"
        await host.send({"t": "playback", "op": "scene", "scene": scenes["name"]})
        preparing = await timeline(viewer, status="preparing")
        assert preparing.scene == "numbered"
        ready = await timeline(viewer, status="ready")
        assert (ready.media, ready.frames, ready.fps) == (scenes["sha256"], FRAMES, 24.0)
        assert ready.title == "Numbered" and not ready.playing
        await host.send({"t": "playback", "op": "play"})
        playing = await timeline(viewer, playing=True)
        assert playing.by == host.avatar and playing.version > ready.version
        await host.send({"t": "playback", "op": "rate", "rate": 0.5})
        slow = await timeline(viewer, rate=0.5)
        await host.send({"t": "playback", "op": "seek", "pos": 1.0})
        sought = await timeline(viewer, pos=1.0)
        assert sought.rate == 0.5 and sought.playing and sought.version == slow.version + 1
        await host.send({"t": "playback", "op": "pause"})
        paused = await timeline(viewer, playing=False)
        assert paused.pos_s >= 1.0
        assert await timeline(collab, ver=paused.version) == paused  # everyone saw it
        # A late joiner gets the timeline in its welcome.
        late = await RawClient.join(server.url, name="Late")
        assert Timeline.from_wire(late.welcome["timeline"]) == paused
        for c in (host, collab, viewer, late):
            await c.close()

    run(scenario())


def test_viewers_never_control_collaborators_only_when_the_host_allows(server, scenes):
    async def scenario() -> None:
        host, collab, viewer = await host_and_viewer(server)
        await host.send({"t": "playback", "op": "scene", "scene": scenes["name"]})
        await timeline(collab, status="ready")
        for who in (viewer, collab):
            await who.send({"t": "playback", "op": "play"})
            err = await who.error()
            assert err["code"] == ErrorCode.NOT_ALLOWED and "only the host" in err["message"]
        await collab.send({"t": "playback", "op": "collab", "allow": True})
        assert (await collab.error())["code"] == ErrorCode.NOT_ALLOWED
        await host.send({"t": "playback", "op": "collab", "allow": True})
        await timeline(collab, collab=True)
        await collab.send({"t": "playback", "op": "play"})
        assert (await timeline(host, playing=True)).by == collab.avatar
        await viewer.send({"t": "playback", "op": "pause"})
        assert "host and collaborators" in (await viewer.error())["message"]
        # Nothing the refused messages asked for happened.
        assert server.call(lambda: _room(server).features["playback"].timeline.playing)
        for c in (host, collab, viewer):
            await c.close()

    run(scenario())


def test_bad_playback_messages_are_refused_and_change_nothing(server, scenes):
    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "play"})
        assert "no scene" in (await host.error())["message"]
        for bad in (
            {"op": "fly"},
            {"op": "rate", "rate": 100.0},
            {"op": "scene", "scene": "../../etc/passwd"},
            {"op": "seek", "pos": -3.0},
        ):
            await host.send({"t": "playback", **bad})
            assert (await host.error())["code"] == ErrorCode.INVALID_FIELD, bad
        await host.send({"t": "playback", "op": "scene", "scene": scenes["name"]})
        await timeline(host, status="ready")
        await host.send({"t": "playback", "op": "seek"})
        assert "needs pos" in (await host.error())["message"]
        before = server.call(lambda: _room(server).features["playback"].timeline)
        assert before.status == "ready" and not before.playing and before.pos_s == 0.0
        await host.close()

    run(scenario())


def test_a_scene_without_media_on_the_server_is_a_clear_message(server, scenes):
    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": "dust_storm"})
        missing = await timeline(host, status="missing")
        assert "dust_storm" in missing.note and "neonbar scene render" in missing.note
        system = await host.event("system")
        assert system["text"] == missing.note
        await host.send({"t": "playback", "op": "play"})
        assert "not rendered" in (await host.error())["message"]
        await host.send({"t": "playback", "op": "scene", "scene": "no_such_scene"})
        assert "no_such_scene" in (await timeline(host, status="missing")).note
        await host.close()

    run(scenario())


def test_play_while_preparing_starts_when_ready_and_the_end_pauses(server, scenes):
    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": scenes["name"]})
        await host.send({"t": "playback", "op": "play"})
        ready = await timeline(host, status="ready")
        assert ready.playing and ready.pos_s == 0.0
        await host.send({"t": "playback", "op": "rate", "rate": 4.0})
        ended = await timeline(host, playing=False, timeout_s=10.0)
        assert ended.pos_s == pytest.approx(ended.duration_s)
        assert ended.by == -1  # the server paused it at the end
        await host.close()

    run(scenario())


def test_next_walks_the_scenes_in_order(server, scenes):
    async def scenario() -> None:
        from neonbar.scenes import list_scenes

        names = [s.name for s in list_scenes()]
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        seen = []
        for _ in range(len(names) + 1):
            await host.send({"t": "playback", "op": "next"})
            seen.append((await timeline(host, status="preparing")).scene)
        assert seen == [*names, names[0]]
        await host.close()

    run(scenario())


# ---------------------------------------------------------------------------------- media


def get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    host, port = url.removeprefix("ws://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_media_only_for_an_invite_of_a_room_that_plays_it(make_server, scenes):
    server = make_server(open_rooms=False)
    sha = scenes["sha256"]

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": scenes["name"]})
        await timeline(host, status="ready")
        await host.close()

    run(scenario())
    path = f"/media/{sha}"
    viewer = {"Authorization": f"Bearer {server.token(role='viewer')}"}
    status, headers, body = get(server.url, path, viewer)
    assert status == 200 and body == scenes["bytes"] and headers["accept-ranges"] == "bytes"
    assert get(server.url, f"{path}?token={server.token(role='viewer')}")[0] == 200
    status, _, body = get(server.url, path)
    assert status == 401 and b"invite token is required" in body
    other_room = {"Authorization": f"Bearer {server.token(room='elsewhere', role='host')}"}
    status, _, body = get(server.url, path, other_room)
    assert status == 403 and b"does not play" in body
    forged = {"Authorization": f"Bearer {server.token(role='host')[:-4]}AAAA"}
    assert get(server.url, path, forged)[0] == 403
    assert get(server.url, "/media/" + "0" * 64, viewer)[0] == 403  # not this room's media
    assert get(server.url, "/media/../../etc/passwd", viewer)[0] == 404
    # Byte ranges: a part, an open end, a suffix, and one past the end.
    status, headers, body = get(server.url, path, {**viewer, "Range": "bytes=100-199"})
    size = len(scenes["bytes"])
    assert (status, body) == (206, scenes["bytes"][100:200])
    assert headers["content-range"] == f"bytes 100-199/{size}"
    assert get(server.url, path, {**viewer, "Range": "bytes=1000-"})[2] == scenes["bytes"][1000:]
    assert get(server.url, path, {**viewer, "Range": "bytes=-10"})[2] == scenes["bytes"][-10:]
    assert get(server.url, path, {**viewer, "Range": f"bytes={size}-"})[0] == 416
    assert get(server.url, path, {**viewer, "Range": "bytes=0-1,5-6"})[0] == 416


def _room(server) -> Any:
    return server.server.rooms["bar"]


def test_the_timeline_survives_a_server_restart(tmp_path, scenes):
    """kill -9 while a scene plays: after the restart it plays on from where the room would be."""
    import signal
    import time

    from netfixtures import ServerProcess

    from neonbar.tokens import load_secret, mint

    data = tmp_path / "server"
    data.mkdir()
    first = ServerProcess(data, open_rooms=False)
    token = mint(load_secret(data, create=False), "bar", "host")

    async def start() -> Timeline:
        host = await RawClient.join(first.url, name="Host", token=token)
        await host.send({"t": "playback", "op": "scene", "scene": scenes["name"]})
        await timeline(host, status="ready")
        await host.send({"t": "playback", "op": "rate", "rate": 0.25})  # 48 frames last 8 s
        await timeline(host, rate=0.25)
        await host.send({"t": "playback", "op": "play"})
        playing = await timeline(host, playing=True)
        await asyncio.sleep(1.0)  # committed in the meantime (group commits are ~ms apart)
        return playing

    try:
        playing = run(start())
        killed_at = time.monotonic()
        first.stop(signal.SIGKILL)
        second = ServerProcess(data, open_rooms=False)
    except BaseException:
        first.stop(signal.SIGKILL)
        raise
    try:

        async def rejoin() -> tuple[Timeline, float]:
            host = await RawClient.join(second.url, name="Host", token=token)
            restored = Timeline.from_wire(host.welcome["timeline"])
            await host.close()
            return restored, time.monotonic()

        restored, joined_at = run(rejoin())
        assert (restored.scene, restored.media, restored.rate) == (
            "numbered",
            scenes["sha256"],
            0.25,
        )
        assert restored.playing and restored.status == "ready"
        assert restored.version > playing.version
        # Where the room is now: the position when killed plus the time since, at 0.25x.
        low = 1.0 * 0.25
        high = (joined_at - killed_at + 1.5) * 0.25
        assert low <= restored.pos_s <= high, (restored.pos_s, low, high)
        # And its media is served again by the new process.
        viewer = {
            "Authorization": f"Bearer {mint(load_secret(data, create=False), 'bar', 'viewer')}"
        }

        async def watch_and_fetch() -> int:
            host = await RawClient.join(second.url, name="Host", token=token)  # keeps the room
            status = await asyncio.to_thread(
                lambda: get(second.url, f"/media/{scenes['sha256']}", viewer)[0]
            )
            await host.close()
            return status

        assert run(watch_and_fetch()) == 200
    finally:
        second.stop()


def test_a_render_at_another_size_is_played_and_a_stale_one_is_not(tmp_path, scenes, clip):
    import shutil

    from neonbar.scenes import load_scene, render_path
    from server.media import MediaLibrary, MediaMissing

    spec = load_scene("rooftop_signal")
    small = render_path(spec, (320, 180))
    small.parent.mkdir(parents=True, exist_ok=True)
    stale = small.with_name(f"{spec.name}-640x360-0123456789abcdef.mp4")  # an older spec's
    shutil.copy(clip, stale)
    library = MediaLibrary()
    try:
        with pytest.raises(MediaMissing, match="not rendered"):
            library.resolve(spec.name).result(30)
        shutil.copy(clip, small)
        media = library.resolve(spec.name).result(30)
        assert media.path == small and media.frames == FRAMES
    finally:
        library.close()
