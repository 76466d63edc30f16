"""A watch-together rig: a real server, a delaying proxy, real offscreen clients, a host.

The server runs as `neonbar server` (invites required) with a user scene folder holding a clip
that has its frame number drawn into every frame; clients run as `neonbar client --offscreen`
processes with their own --data dirs, connected through the proxy, fetching the media
themselves and writing --playback-log. The host is a protocol client on its own thread that
drives the timeline and keeps every version it saw, so each logged frame can be checked against
the frame that was due (neonbar.playback.frame_errors). bench/sync.py uses the same rig.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "client"))
sys.path.insert(0, str(ROOT / "tests" / "server"))
from clipfixtures import write_numbered_clip  # noqa: E402
from netfixtures import ServerProcess  # noqa: E402
from proxyfixtures import DelayProxy  # noqa: E402
from serverfixtures import RawClient  # noqa: E402

from neonbar.playback import Timeline, TimelineHistory  # noqa: E402
from neonbar.tokens import load_secret, mint  # noqa: E402

ROOM = "bar"

SHORT_SCREENPLAY = """Title: Rainfall

EXT. NEON STREET - NIGHT

Rain runs down the signs. A courier sprints under the train line.

COURIER
Not tonight!

She stops, laughs, and breathes slowly.
"""


def write_generated_scene(folder: Path, name: str = "rainfall", *, duration_s: float = 5.0,
                          fps: int = 24, size: tuple[int, int] = (192, 108),
                          seed: int = 3) -> Path:  # fmt: skip
    """A short, small generated scene (spec + screenplay, the shipped format) in `folder`:
    rendered by client/film in seconds, not minutes (about 4 frames a second on a busy box)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.fountain").write_text(SHORT_SCREENPLAY, encoding="utf-8")
    spec = folder / f"{name}.toml"
    spec.write_text(
        f'title = "Rainfall"\nscreenplay = "{name}.fountain"\nduration_s = {duration_s}\n'
        f'fps = {fps}\nlook = "teal_neon"\nsize = [{size[0]}, {size[1]}]\n\n'
        f'[style]\nweather = "rain"\ntraffic = 2\nseed = {seed}\n',
        encoding="utf-8",
    )
    return spec


class Host:
    """The host: on its own loop and thread, sends playback ops and records the timeline."""

    def __init__(self, url: str, token: str) -> None:
        self.history = TimelineHistory()
        self.timeline = Timeline()
        self.server_offset_s = 0.0  # server time - local monotonic time
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(url, token), daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the host could not join")

    def _main(self, url: str, token: str) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._join(url, token))
        self._loop.run_forever()

    async def _join(self, url: str, token: str) -> None:
        self.client = await RawClient.join(url, ROOM, "Host", token=token)
        self._note(self.client.welcome["timeline"])
        best = None
        for _ in range(20):  # the loopback round trip bounds the offset's error (~0.1 ms)
            t0 = time.monotonic()
            await self.client.send({"t": "ping", "ct": t0})
            pong = await self.client.recv_until(lambda m, t0=t0: m["t"] == "pong" and m["ct"] == t0)
            t1 = time.monotonic()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, pong["st"] - (t0 + t1) / 2)
        assert best is not None
        self.server_offset_s = best[1]
        self._reader = asyncio.ensure_future(self._read())
        self._ready.set()

    async def _read(self) -> None:
        seq = 0
        while True:
            msg = await self.client.recv(3600)
            if msg["t"] == "event" and msg["kind"] == "timeline":
                self._note(msg)
            elif msg["t"] == "snap":  # acknowledge snapshots, or the server drops a silent peer
                seq += 1
                x, y, yaw, _ = msg["you"]
                await self.client.send(
                    {"t": "input", "seq": seq, "ack": msg["tick"], "x": x, "y": y, "yaw": yaw}
                )
            self.client.snaps.clear()
            self.client.events.clear()
            self.client.others.clear()

    def _note(self, wire: dict[str, Any]) -> None:
        timeline = Timeline.from_wire(wire)
        self.history.add(timeline)
        self.timeline = timeline

    def do(self, op: str, timeout_s: float = 20.0, **fields: Any) -> Timeline:
        """Send one playback op and wait for the timeline version it makes."""
        before = self.timeline.version
        asyncio.run_coroutine_threadsafe(
            self.client.send({"t": "playback", "op": op, **fields}), self._loop
        ).result(5)
        end = time.monotonic() + timeout_s
        while self.timeline.version == before:
            if time.monotonic() > end:
                raise TimeoutError(f"no timeline after {op}")
            time.sleep(0.005)
        return self.timeline

    def wait(self, predicate: Any, timeout_s: float = 30.0) -> Timeline:
        end = time.monotonic() + timeout_s
        while not predicate(self.timeline):
            if time.monotonic() > end:
                raise TimeoutError(f"timeline never got there: {self.timeline}")
            time.sleep(0.01)
        return self.timeline

    def stop(self) -> None:
        async def bye() -> None:
            self._reader.cancel()
            await self.client.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(bye(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class WatchRig:
    """Server + proxy + host; `client(name)` starts an offscreen client through the proxy."""

    def __init__(self, workdir: Path, *, frames: int = 720, fps: int = 24,
                 delay_s: float = 0.03, jitter_s: float = 0.0, size: tuple[int, int] = (320, 180),
                 seed: int = 0, max_fps: int | None = 30) -> None:  # fmt: skip
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        scenes = workdir / "scenes"
        self.env = {**os.environ, "NEONBAR_SCENES": str(scenes),
                    "NEONBAR_CACHE": str(workdir / "render-cache")}  # fmt: skip
        if max_fps:
            # Offscreen there is no vsync: without a cap every client spins as fast as it can
            # and five of them starve each other (and the server) on a 2-core box.
            prc = workdir / "prc"
            prc.mkdir(exist_ok=True)
            (prc / "limit.prc").write_text(f"clock-mode limited\nclock-frame-rate {max_fps}\n")
            self.client_env = {**self.env, "PANDA_PRC_PATH": str(prc)}
        else:
            self.client_env = dict(self.env)
        self.scenes = scenes
        self.add_clip("numbered", frames, fps, size)
        data = workdir / "server"
        data.mkdir(exist_ok=True)
        self.server = _server(data, self.env)
        self.secret = load_secret(data, create=False)
        port = int(self.server.url.rsplit(":", 1)[1])
        self.proxy = DelayProxy(port, delay_s=delay_s, jitter_s=jitter_s, seed=seed).start()
        self.host = Host(self.server.url, self.token("host"))
        self.clients: dict[str, subprocess.Popen[str]] = {}
        self.started_s: dict[str, float] = {}

    def add_clip(self, name: str, frames: int, fps: int = 24,
                 size: tuple[int, int] = (320, 180)) -> Path:  # fmt: skip
        """A numbered clip imported as scene `name` into the server's user scene folder."""
        from neonbar.scenes import import_clip

        clip = write_numbered_clip(self.workdir / f"{name}.mp4", frames, fps, size)
        saved = os.environ.get("NEONBAR_SCENES")
        os.environ["NEONBAR_SCENES"] = str(self.scenes)
        try:
            return import_clip(clip, name.title(), name=name).clip or clip
        finally:
            if saved is None:
                os.environ.pop("NEONBAR_SCENES", None)
            else:
                os.environ["NEONBAR_SCENES"] = saved

    def token(self, role: str) -> str:
        return mint(self.secret, ROOM, role)

    def choose(self, scene: str = "numbered", timeout_s: float = 30.0) -> Timeline:
        self.host.do("scene", scene=scene)
        return self.host.wait(lambda t: t.scene == scene and t.status != "preparing", timeout_s)

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.jsonl"

    def client(self, name: str, role: str = "viewer", duration_s: float = 120.0,
               size: str = "320x180") -> subprocess.Popen[str]:  # fmt: skip
        cmd = [sys.executable, "-m", "neonbar", "client", "--server", self.proxy.url,
               "--room", ROOM, "--name", name, "--token", self.token(role), "--offscreen",
               "--duration", str(duration_s), "--size", size, "--quality", "low",
               "--data", str(self.workdir / f"data-{name}"),
               "--playback-log", str(self.log_path(name))]  # fmt: skip
        out = (self.workdir / f"{name}.out").open("w")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
                                env=self.client_env)  # fmt: skip
        self.clients[name] = proc
        self.started_s[name] = time.monotonic()
        return proc

    def records(self, name: str) -> list[dict[str, Any]]:
        path = self.log_path(name)
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # the last line may be half written
        return out

    def wait_showing(self, names: list[str], timeout_s: float = 60.0) -> None:
        """Until every client has put a frame of the current media on its screen."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(any(r.get("frame") is not None for r in self.records(n)[-30:]) for n in names):
                return
            for n in names:
                if self.clients[n].poll() is not None:
                    raise RuntimeError(f"client {n} exited: {self.output(n)}")
            time.sleep(0.2)
        raise TimeoutError(f"clients never showed a frame: {[self.output(n) for n in names]}")

    def output(self, name: str) -> str:
        return (self.workdir / f"{name}.out").read_text()[-3000:]

    def stop_clients(self) -> None:
        for proc in self.clients.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the log is closed on the way out
        for proc in self.clients.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        self.stop_clients()
        self.host.stop()
        self.proxy.stop()
        self.server.stop()


def _server(data: Path, env: dict[str, str]) -> ServerProcess:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return ServerProcess(data, open_rooms=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
