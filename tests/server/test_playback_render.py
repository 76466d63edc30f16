"""A generated scene reaches the room without a hand step; the next scene is announced ahead."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "client"))
sys.path.insert(0, str(Path(__file__).parents[1]))
from clipfixtures import write_numbered_clip
from serverfixtures import RawClient, run
from watchfixtures import write_generated_scene

import server.playback  # noqa: F401  (registers the feature)
from neonbar.playback import Timeline


@pytest.fixture
def folders(tmp_path, monkeypatch) -> dict[str, Path]:
    scenes, cache = tmp_path / "scenes", tmp_path / "cache"
    monkeypatch.setenv("NEONBAR_SCENES", str(scenes))
    monkeypatch.setenv("NEONBAR_CACHE", str(cache))
    scenes.mkdir()
    return {"scenes": scenes, "cache": cache, "tmp": tmp_path}


def add_clip(folders: dict[str, Path], name: str, frames: int) -> str:
    """Import a numbered clip as scene `name`; returns its sha256."""
    from neonbar.scenes import import_clip

    clip = write_numbered_clip(folders["tmp"] / f"{name}-src.mp4", frames, 24)
    spec = import_clip(clip, name.title(), name=name)
    assert spec.clip is not None
    return hashlib.sha256(spec.clip.read_bytes()).hexdigest()


async def timeline(client: RawClient, timeout_s: float = 10.0, **fields: Any) -> Timeline:
    return Timeline.from_wire(await client.event("timeline", timeout_s, **fields))


async def until(client: RawClient, predicate: Any, timeout_s: float = 10.0) -> Timeline:
    """The first timeline event that satisfies `predicate`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        seen = await timeline(client, max(0.1, end - loop.time()))
        if predicate(seen):
            return seen


async def until_acking(client: RawClient, predicate: Any, timeout_s: float) -> Timeline:
    """Like `until`, acknowledging snapshots meanwhile (a silent peer is dropped after 10 s)."""
    loop = asyncio.get_running_loop()
    end, seq = loop.time() + timeout_s, 0
    while True:
        msg = await client.recv(max(0.1, end - loop.time()))
        if msg["t"] == "snap":
            seq += 1
            x, y, yaw, _ = msg["you"]
            await client.send({"t": "input", "seq": seq, "ack": msg["tick"], "x": x, "y": y,
                               "yaw": yaw})  # fmt: skip
            client.snaps.clear()
        elif msg["t"] == "event" and msg["kind"] == "timeline":
            seen = Timeline.from_wire(msg)
            if predicate(seen):
                return seen


def _playback(server) -> Any:
    return server.server.rooms["bar"].features["playback"]


@pytest.mark.render
def test_a_chosen_generated_scene_is_rendered_by_the_server_and_then_played(make_server, folders):
    from neonbar.scenes import load_scene, media_hash, render_path

    write_generated_scene(folders["scenes"], "rainfall", duration_s=2.0, fps=24)
    spec = load_scene("rainfall")
    assert not render_path(spec).exists()
    server = make_server(render_scenes=True)

    async def scenario() -> Timeline:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": "rainfall"})
        await host.send({"t": "playback", "op": "play"})  # plays as soon as it is rendered
        note = await until(host, lambda t: t.status == "preparing" and bool(t.note))
        assert note.title == "Rainfall"  # the spec's title while it renders, not its file name
        assert note.note == "rendering on the server…"
        ready = await until_acking(host, lambda t: t.status != "preparing", 240.0)
        await host.close()
        return ready

    ready = run(scenario(), timeout_s=300.0)
    cached = render_path(spec)
    assert cached.is_file() and ready.media == media_hash(cached)
    assert (ready.frames, ready.fps, ready.title, ready.playing) == (48, 24.0, "Rainfall", True)
    assert server.call(lambda: _playback(server).library.rendering()) == []


def test_a_failed_render_makes_the_scene_missing_with_its_reason(make_server, folders,
                                                                monkeypatch):  # fmt: skip
    write_generated_scene(folders["scenes"], "rainfall")
    # A stand-in for the interpreter that fails the way `neonbar scene render` reports.
    fake = folders["tmp"] / "fake-python"
    fake.write_text("#!/bin/sh\necho 'rainfall:  10%|# | 5/48' >&2\n"
                    "echo 'neonbar: error: no OpenGL context' >&2\nexit 2\n")  # fmt: skip
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("server.media.sys.executable", str(fake))
    server = make_server(render_scenes=True)

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": "rainfall"})
        missing = await timeline(host, 30.0, status="missing")
        assert missing.note == ("scene 'rainfall' could not be rendered on the server: "
                                "neonbar: error: no OpenGL context")  # fmt: skip
        assert (await host.event("system"))["text"] == missing.note
        await host.close()

    run(scenario())


def test_a_server_that_does_not_render_says_what_to_run(make_server, folders):
    write_generated_scene(folders["scenes"], "rainfall")
    server = make_server()  # render_scenes off: the in-process test servers' default

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": "rainfall"})
        missing = await timeline(host, 30.0, status="missing")
        assert "neonbar scene render rainfall" in missing.note
        await host.close()

    run(scenario())
    assert not list(folders["cache"].glob("renders/*.mp4"))


def test_the_next_scene_and_its_media_are_announced_and_served_ahead(make_server, folders):
    first = add_clip(folders, "alpha", 24)
    second = add_clip(folders, "beta", 30)
    server = make_server(open_rooms=False)
    token = server.token(role="viewer")

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        viewer = await RawClient.join(server.url, name="Viewer", token=token)
        await host.send({"t": "playback", "op": "scene", "scene": "alpha"})
        ready = await timeline(viewer, status="ready")
        assert (ready.media, ready.next_scene) == (first, "beta")
        ahead = await until(viewer, lambda t: t.next_media is not None)
        assert (ahead.next_scene, ahead.next_media) == ("beta", second)
        assert ahead.motion == ready.motion  # announcing moved nothing
        # The room may fetch the next scene's media before it plays.
        status, body = await asyncio.to_thread(_get, server.url, second, token)
        assert status == 200 and hashlib.sha256(body).hexdigest() == second
        await host.send({"t": "playback", "op": "next"})
        assert (await timeline(viewer, status="ready")).media == second
        await host.close()
        await viewer.close()

    run(scenario())


def test_looking_ahead_never_renders(make_server, folders):
    add_clip(folders, "alpha", 24)
    write_generated_scene(folders["scenes"], "beta_generated")
    server = make_server(render_scenes=True)

    async def scenario() -> Timeline:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": "alpha"})
        ready = await timeline(host, status="ready")
        await asyncio.sleep(1.0)  # the look-ahead resolves on the worker meanwhile
        await host.close()
        return ready

    ready = run(scenario())
    assert ready.next_scene == "beta_generated"
    playback = server.call(lambda: _playback(server))
    assert server.call(lambda: playback.timeline.next_media) is None
    assert server.call(lambda: playback.library.rendering()) == []
    assert not list(folders["cache"].glob("renders/*.mp4"))


def test_a_branch_choice_is_announced_as_next_and_switched_to_through_the_public_method(
    make_server, folders
):
    add_clip(folders, "alpha", 24)
    add_clip(folders, "beta", 30)
    gamma = add_clip(folders, "gamma", 36)
    server = make_server()

    async def scenario() -> None:
        host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
        await host.send({"t": "playback", "op": "scene", "scene": "alpha"})
        await until(host, lambda t: t.next_media is not None)
        server.call(lambda: _playback(server).announce_next("gamma"))
        named = await until(host, lambda t: t.next_scene == "gamma")
        assert named.next_media is None  # named at once, its media once resolved
        assert (await until(host, lambda t: t.next_media is not None)).next_media == gamma
        playback = _playback(server)
        server.call(lambda: playback.switch_scene("gamma", playback.room.now_s(), autoplay=True))
        started = await timeline(host, status="ready")
        assert (started.scene, started.playing, started.by) == ("gamma", True, -1)
        await host.close()

    run(scenario())


def _renders_of(spec_path: Path) -> list[int]:
    """Pids of running `neonbar scene render` processes for this spec."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"render" in cmdline and str(spec_path).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def _get(url: str, sha256: str, token: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("ws://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", f"/media/{sha256}", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


assert os.sep == "/"  # the fake interpreter above is a POSIX shell script


def test_a_restarted_server_announces_the_next_scene_again(tmp_path, folders):
    import signal

    from netfixtures import ServerProcess

    from neonbar.tokens import load_secret, mint

    add_clip(folders, "alpha", 24)
    second_sha = add_clip(folders, "beta", 30)
    data = tmp_path / "server"
    data.mkdir()
    first = ServerProcess(data, open_rooms=False)
    token = mint(load_secret(data, create=False), "bar", "host")

    async def choose() -> None:
        host = await RawClient.join(first.url, name="Host", token=token)
        await host.send({"t": "playback", "op": "scene", "scene": "alpha"})
        await until(host, lambda t: t.next_media is not None)
        await asyncio.sleep(0.5)  # committed meanwhile
        await host.close()

    try:
        run(choose())
    finally:
        first.stop(signal.SIGKILL)
    second = ServerProcess(data, open_rooms=False)
    try:

        async def rejoin() -> tuple[Timeline, Timeline]:
            host = await RawClient.join(second.url, name="Host", token=token)
            welcome = Timeline.from_wire(host.welcome["timeline"])
            ahead = welcome
            if welcome.next_media is None:  # hashed after the welcome: announced in an event
                ahead = await until(host, lambda t: t.next_media is not None)
            await host.close()
            return welcome, ahead

        welcome, ahead = run(rejoin())
        assert (welcome.scene, welcome.next_scene) == ("alpha", "beta")
        assert (ahead.next_scene, ahead.next_media) == ("beta", second_sha)
    finally:
        second.stop()


def test_neonbar_server_renders_unless_told_not_to():
    from neonbar.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["server"]).no_render is False
    assert parser.parse_args(["server", "--no-render"]).no_render is True
    from server.room import RoomConfig

    assert RoomConfig().render_scenes is False  # in-process servers (tests, tools) never render


@pytest.mark.render
def test_a_server_stopped_while_rendering_renders_again_after_a_restart(tmp_path, folders):
    from netfixtures import ServerProcess

    from neonbar.scenes import load_scene, render_path
    from neonbar.tokens import load_secret, mint

    write_generated_scene(folders["scenes"], "rainfall", duration_s=2.0)
    data = tmp_path / "server"
    data.mkdir()
    first = ServerProcess(data, open_rooms=False)  # `neonbar server`: it renders
    token = mint(load_secret(data, create=False), "bar", "host")

    async def choose() -> None:
        host = await RawClient.join(first.url, name="Host", token=token)
        await host.send({"t": "playback", "op": "scene", "scene": "rainfall"})
        await host.send({"t": "playback", "op": "play"})
        await until(host, lambda t: t.note == "rendering on the server…", 30.0)
        await host.close()

    try:
        run(choose())
    finally:
        first.stop()  # SIGTERM: the render stops with it
    spec = load_scene("rainfall")
    assert not render_path(spec).exists()
    assert _renders_of(spec.path) == []  # no render outlives its server
    second = ServerProcess(data, open_rooms=False)
    try:

        async def rejoin() -> tuple[Timeline, Timeline]:
            host = await RawClient.join(second.url, name="Host", token=token)
            welcome = Timeline.from_wire(host.welcome["timeline"])
            ready = await until_acking(host, lambda t: t.status != "preparing", 240.0)
            await host.close()
            return welcome, ready

        welcome, ready = run(rejoin(), timeout_s=300.0)
        assert (welcome.scene, welcome.status) == ("rainfall", "preparing")
        assert (ready.status, ready.frames, ready.playing) == ("ready", 48, True)
    finally:
        second.stop()
