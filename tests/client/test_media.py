"""Media fetch against a real server: verified, cached, refused without an invite, resumed."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from clipfixtures import write_numbered_clip
from proxyfixtures import DelayProxy
from serverfixtures import RawClient, ServerThread

from client.media import MediaCache, MediaDownload, MediaError, fetch, media_url
from server.room import RoomConfig


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    # Long enough to need several ranged requests at a small chunk size.
    return write_numbered_clip(tmp_path_factory.mktemp("clip") / "numbered.mp4", 72, 24)


@pytest.fixture
def playing(tmp_path, monkeypatch, clip) -> Any:
    """A server (invites required) whose room 'bar' plays the clip; yields (server, sha, bytes)."""
    from neonbar.scenes import import_clip

    monkeypatch.setenv("NEONBAR_SCENES", str(tmp_path / "scenes"))
    monkeypatch.setenv("NEONBAR_CACHE", str(tmp_path / "cache"))
    spec = import_clip(clip, "Numbered", name="numbered")
    data = spec.clip.read_bytes()
    server = ServerThread(RoomConfig(open_rooms=False)).start()
    host = HostInRoom(server, "numbered")
    try:
        yield server, hashlib.sha256(data).hexdigest(), data
    finally:
        host.stop()
        server.stop()


class HostInRoom:
    """A host on its own loop and thread who picks a scene and stays (the room lives on)."""

    def __init__(self, server: ServerThread, scene: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(server, scene), daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "the scene did not get ready"

    def _main(self, server: ServerThread, scene: str) -> None:
        async def stay() -> None:
            host = await RawClient.join(server.url, name="Host", token=server.token(role="host"))
            await host.send({"t": "playback", "op": "scene", "scene": scene})
            await host.event("timeline", 10.0, status="ready")
            self.ready.set()
            self.done = asyncio.Event()
            await self.done.wait()
            await host.close()

        self.loop.run_until_complete(stay())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(10)


def test_media_url():
    assert media_url("ws://h:1/x", "a" * 64) == f"http://h:1/media/{'a' * 64}"
    assert media_url("wss://h", "a" * 64, room="r") == f"https://h/media/{'a' * 64}?room=r"


def test_fetch_verifies_caches_and_reports_progress(playing, tmp_path):
    server, sha, data = playing
    proxy = DelayProxy(int(server.url.rsplit(":", 1)[1]), delay_s=0.005).start()
    try:
        cache = MediaCache(tmp_path / "client")
        progress: list[tuple[int, int]] = []
        token = server.token(role="viewer")
        path = fetch(proxy.url, sha, cache, token, lambda got, total: progress.append((got, total)),
                     chunk_bytes=8192)  # fmt: skip
        assert path == tmp_path / "client" / "media" / f"{sha}.mp4"
        assert path.read_bytes() == data
        assert progress[-1] == (len(data), len(data))
        assert proxy.connections == -(-len(data) // 8192)  # one ranged GET per chunk
        assert not cache.part_path(sha).exists()
        again = fetch(proxy.url, sha, MediaCache(tmp_path / "client"), None)
        assert again == path and proxy.connections == -(-len(data) // 8192)  # from the cache
    finally:
        proxy.stop()


def test_a_cut_download_resumes_where_it_stopped(playing, tmp_path):
    server, sha, data = playing
    cut_at = len(data) // 3
    proxy = DelayProxy(int(server.url.rsplit(":", 1)[1]), cut_after_bytes=cut_at).start()
    try:
        cache = MediaCache(tmp_path / "client")
        got: list[int] = []
        path = fetch(proxy.url, sha, cache, server.token(role="viewer"),
                     lambda n, total: got.append(n))  # fmt: skip
        assert proxy.cuts == 1 and proxy.connections == 2
        assert path.read_bytes() == data
        # Across runs too: what a cut left in the .part file is kept and not fetched again.
        path.unlink()
        cache = MediaCache(tmp_path / "client")
        cache.part_path(sha).write_bytes(data[:cut_at])
        got.clear()
        fetch(server.url, sha, cache, server.token(role="viewer"), lambda n, total: got.append(n))
        assert got[0] > cut_at and path.read_bytes() == data
    finally:
        proxy.stop()


def test_a_corrupted_download_is_refused_and_deleted(playing, tmp_path):
    server, sha, _ = playing
    proxy = DelayProxy(int(server.url.rsplit(":", 1)[1]), corrupt_at=600).start()
    try:
        cache = MediaCache(tmp_path / "client")
        with pytest.raises(MediaError, match="corrupted") as err:
            fetch(proxy.url, sha, cache, server.token(role="viewer"))
        assert not err.value.retry
        assert not cache.path(sha).exists() and not cache.part_path(sha).exists()
    finally:
        proxy.stop()


def test_a_bad_hash_a_missing_invite_and_another_rooms_invite_are_refused(playing, tmp_path):
    server, sha, _ = playing
    cache = MediaCache(tmp_path / "client")
    with pytest.raises(MediaError, match="invite token is required"):
        fetch(server.url, sha, cache, None)
    with pytest.raises(MediaError, match="does not play"):
        fetch(server.url, sha, cache, server.token(room="elsewhere", role="host"))
    with pytest.raises(MediaError, match="not valid"):
        fetch(server.url, sha, cache, "forged.token")
    with pytest.raises(MediaError, match="does not play"):
        fetch(server.url, "0" * 64, cache, server.token(role="viewer"))
    with pytest.raises(MediaError, match="sha256"):
        fetch(server.url, "../../etc/passwd", cache, server.token(role="viewer"))
    assert not list(cache.dir.glob("*")) if cache.dir.exists() else True


def test_the_background_download_retries_a_cut_and_gives_up_on_a_refusal(playing, tmp_path):
    server, sha, data = playing
    proxy = DelayProxy(int(server.url.rsplit(":", 1)[1]), cut_after_bytes=500,
                       cut_downloads=2).start()  # fmt: skip
    try:
        ok = MediaDownload(proxy.url, sha, MediaCache(tmp_path / "a"), server.token(role="viewer"))
        refused = MediaDownload(server.url, sha, MediaCache(tmp_path / "b"), None)
        ok.join(20)
        refused.join(20)
        assert ok.path is not None and ok.path.read_bytes() == data and ok.fraction == 1.0
        assert refused.path is None and "invite" in (refused.error or "")
    finally:
        proxy.stop()
