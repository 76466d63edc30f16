"""The desktop client against a real server: movement, chat, cheers and drinks cross; reconnect.

Client A is the full app (offscreen, in this process); client B is a second real NetSession
driven by the test, as a second person would be.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from netfixtures import ServerProcess, free_port, running_server
from renderfixtures import showbase

from client.app import NeonBarApp
from client.net import ConnectionState, NetSession
from neonbar.collision import CollisionWorld
from neonbar.layout import load_layout

__all__ = ["showbase"]

pytestmark = pytest.mark.render
REPO = Path(__file__).resolve().parents[2]


# Waits end when their condition holds; the bound only stops a broken run. It is generous
# because a loaded 2-core machine renders A's frames and runs B's thread many times slower.
WAIT_S = 90.0


def pump(app: NeonBarApp, until: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Run A's frame loop (and let B's thread work) until the condition holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.base.taskMgr.step()
        value = until()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def walk(app: NeonBarApp, b: NetSession, target: tuple[float, float], b_pos: list[float]) -> None:
    """Move B toward target at walking speed, as its own client would, pumping A meanwhile."""
    for _ in range(400):
        dx, dy = target[0] - b_pos[0], target[1] - b_pos[1]
        dist = math.hypot(dx, dy)
        if dist < 0.05:
            break
        step = min(dist, 2.0 / 30)
        b_pos[0] += dx / dist * step
        b_pos[1] += dy / dist * step
        b.set_local_state(b_pos[0], b_pos[1], 0.0)
        app.base.taskMgr.step()
        time.sleep(1 / 30)


def b_start(b: NetSession) -> list[float]:
    """B's spawn position (from its welcome)."""
    welcome = pump_session(b, lambda m: m.get("t") == "welcome")
    return [welcome["pos"][0] / 100, welcome["pos"][1] / 100]


def pump_session(s: NetSession, match: Callable[[dict], bool], timeout_s: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in s.poll():
            if match(msg):
                return msg
        time.sleep(0.02)
    raise AssertionError("message not received in time")


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def pair(showbase, server):
    a = NetSession(server.url, "itest", "Alice", color="#ff2d55")
    b = NetSession(server.url, "itest", "Bob", color="#2de2ff")
    app = NeonBarApp(showbase, a, name="Alice", post=False)
    a.start()
    b.start()
    try:
        b_pos = b_start(b)
        pump(app, lambda: app.you is not None and b.you is not None)
        yield app, b, b_pos
    finally:
        b.stop()
        app.destroy()


def away(frm: tuple[float, float], of: tuple[float, float], length_m: float = 1.6) -> np.ndarray:
    """A unit vector to walk along from `frm`: nothing in the way for `length_m` (spawn points
    are random and may be next to a wall or a table) and as far from `of` as possible."""
    world = CollisionWorld(load_layout())
    best, best_gap = None, -np.inf
    for angle in np.radians(np.arange(0, 360, 15)):
        d = np.array([np.cos(angle), np.sin(angle)])
        path = np.asarray(frm) + np.linspace(0.0, length_m, 17)[:, None] * d
        if world.distance(path).min() < 0.05:
            continue  # a wall or furniture on the way
        gap = float(np.hypot(*(path - np.asarray(of)).T).min())
        if gap > best_gap:
            best, best_gap = d, gap
    assert best is not None, f"no open direction from {frm}"
    return best


def test_two_clients_see_each_other_move(pair) -> None:
    app, b, b_pos = pair
    pump(app, lambda: app.crowd.position(b.you) is not None)
    # B walks 1.5 m straight away from A (the server keeps avatars apart: no bumping).
    b_start = tuple(b_pos)
    a_pos = app.motion.shown()[:2]
    target = np.add(b_start, away(b_start, a_pos) * 1.5)
    walk(app, b, tuple(target), b_pos)

    def a_sees_b_where_the_server_put_it() -> bool:
        corr, seen = b.correction(), app.crowd.position(b.you)
        if corr is None or seen is None:
            return False
        moved = np.hypot(*np.subtract(corr[:2], b_start)) > 1.0
        return bool(moved and np.hypot(*np.subtract(seen, corr[:2])) < 0.1)

    pump(app, a_sees_b_where_the_server_put_it)
    fig = app.crowd.figure(b.you)
    assert fig is not None and fig.tag.node().getText() == "Bob"
    # A turns away from B and walks with the W key; B sees A where the server has it.
    start = app.motion.shown()
    dx, dy = away(start[:2], app.crowd.position(b.you))
    app.motion.yaw_rad = float(np.arctan2(-dx, dy))
    app.controls.keys["forward"] = True
    pump(app, lambda: np.hypot(app.motion.x_m - start[0], app.motion.y_m - start[1]) > 1.0)
    app.controls.keys["forward"] = False

    def b_sees_a_where_the_server_put_it() -> bool:
        corr = app.session.correction()
        ids, pos, _ = b.remote_avatars()
        rows = np.flatnonzero(ids == app.you)
        if corr is None or len(rows) != 1:
            return False
        moved = np.hypot(corr[0] - start[0], corr[1] - start[1]) > 0.9
        return bool(moved and np.hypot(*(pos[rows[0]] - corr[:2])) < 0.1)

    pump(app, b_sees_a_where_the_server_put_it)
    # Our prediction and the server agree, with nothing left to blend.
    pump(app, lambda: app.motion.correction_m < 0.05)
    x, y, _ = app.motion.shown()
    corr = app.session.correction()
    assert corr is not None and np.hypot(x - corr[0], y - corr[1]) < 0.1


def test_chat_cheers_and_drinks_cross(pair) -> None:
    app, b, b_pos = pair
    # Chat: A types in the chat box, B receives it; B answers, A shows a bubble.
    app.hud.open_chat()
    app.hud._submit("first round is on me")
    msg = pump_session(b, lambda m: m.get("kind") == "chat")
    assert msg["avatar"] == app.you and msg["text"] == "first round is on me"
    b.send({"t": "chat", "text": "to the Empathy Engine"})
    pump(app, lambda: (f := app.crowd.figure(b.you)) is not None and f.bubble is not None)
    assert "Bob: to the Empathy Engine" in app.hud.chat_text.text
    # Drinks: B orders the neural martini; A sees the glass in B's hand.
    b.send({"t": "drink", "drink": "Neural Martini", "color": "#39ff88", "glow": 0.9,
            "garnish": "neural_olive"})  # fmt: skip
    pump(app, lambda: app.crowd.figure(b.you).glass is not None)
    assert app.crowd.figure(b.you).glass.find("**/neural-olive")
    # Cheers: B walks up to A, both raise their glasses, the glasses clink.
    ax, ay, _ = app.motion.shown()
    walk(app, b, (ax + 0.9, ay), b_pos)
    # Close enough to clink (the server may keep the two bodies a little further apart).
    pump(app, lambda: np.hypot(*np.subtract(app.crowd.position(b.you), (ax, ay))) < 1.6)
    app.controls._fire("cheers", "c")
    b.send({"t": "emote", "emote": "cheers"})
    pump(app, lambda: len(app.crowd.clinks) > 0)
    assert "clink" in app.hud.toast.text
    pump_session(b, lambda m: m.get("kind") == "emote" and m.get("avatar") == app.you)


def test_the_client_reconnects_after_the_server_restarts(showbase, tmp_path) -> None:
    port = free_port()
    srv = ServerProcess(tmp_path, port)
    session = NetSession(srv.url, "restart", "Alice")
    app = NeonBarApp(showbase, session, name="Alice", post=False)
    session.start()
    try:
        pump(app, lambda: app.you is not None)
        srv.stop()
        pump(app, lambda: session.state != ConnectionState.CONNECTED)
        pump(
            app,
            lambda: "reconnecting" in app.hud.status.text or "connecting" in app.hud.status.text,
        )
        srv = ServerProcess(tmp_path, port)
        pump(app, lambda: session.state == ConnectionState.CONNECTED)
        pump(
            app,
            lambda: "connected" in app.hud.status.text and "reconnect" not in app.hud.status.text,
        )
        assert app.you is not None and app.crowd.figure(app.you) is not None
    finally:
        app.destroy()
        srv.stop()


def test_neonbar_client_offscreen_screenshot(server, tmp_path) -> None:
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [sys.executable, "-m", "neonbar", "client", "--server", server.url, "--room", "cli",
         "--name", "Cli", "--offscreen", "--screenshot", str(shot), "--after", "1.5",
         "--size", "320x180", "--quality", "low"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape == (180, 320, 3)
    assert img.mean() > 8


def test_malformed_server_frames_are_survived_end_to_end(showbase, caplog) -> None:
    """A server that sends garbage between valid messages: logged, and the bar carries on."""
    import asyncio
    import threading

    from websockets.asyncio.server import serve

    from neonbar import protocol

    def event(seq: int, kind: str, **fields: Any) -> bytes:
        return protocol.encode({"t": "event", "seq": seq, "st": 1.0, "kind": kind, **fields})

    frames = [
        protocol.encode({
            "t": "welcome", "v": protocol.PROTOCOL_VERSION, "you": 1, "room": "bad",
            "role": "host", "name": "me", "resume": "r", "resumed": False, "st": 1.0,
            "tick": 0, "seq": 0, "pos": [0, -900, 0], "look": "neutral", "layout": "x",
            "avatars": [{"id": 1, "name": "me", "color": "#2de2ff", "role": "host",
                         "muted": False, "drink": None, "tipsy": 0.0}],
            "limits": {},
        }),
        b"\xc1\xff not msgpack",
        protocol.encode({"t": "event", "seq": 1, "kind": "chat"}),  # no st, no avatar
        protocol.encode({"t": "snap", "tick": 1, "base": -1, "st": 1.0, "you": [0, 0, 0, 0],
                         "d": b"\x01", "a": b"\x02\x03"}),  # partial records
        event(1, "join", avatar=9, name="Mei", color="#ff2d55", role="collaborator"),
        event(2, "chat", avatar=9, text="still standing"),
    ]  # fmt: skip
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def handler(ws: Any) -> None:
        await ws.recv()  # hello
        for frame in frames:
            await ws.send(frame)
        async for _ in ws:  # keep the connection open; inputs and pings are ignored
            pass

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as srv:
            state["url"] = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
            state["stop"] = asyncio.get_running_loop().create_future()
            ready.set()
            await state["stop"]

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(WAIT_S)
    session = NetSession(state["url"], "bad", "me")
    app = NeonBarApp(showbase, session, name="me", post=False)
    session.start()
    try:
        pump(app, lambda: "Mei: still standing" in app.hud.chat_text.text)
        assert app.you == 1 and session.state == ConnectionState.CONNECTED
        assert session.stats.malformed >= 2
    finally:
        app.destroy()
        loop.call_soon_threadsafe(state["stop"].set_result, None)
        thread.join(5)
