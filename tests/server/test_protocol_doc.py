"""A client written from docs/protocol.md alone, against a default server (invites needed).

It uses only `websockets`, `msgpack` and the standard library: no code of this project runs in
the client (the server is a real `neonbar server` process; invites come from `neonbar
invite`, as the document says). Each check names the section that promises it. Section 11's
example is run as it is printed, with only the server's address changed to this test's port.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import websockets

sys.path.insert(0, str(Path(__file__).parents[1] / "client"))  # the server process
from netfixtures import REPO, ServerProcess

DOC = REPO / "docs" / "protocol.md"
Msg = dict[str, Any]


class DefaultServer:
    """`neonbar server` with no options but its port and data, and `neonbar invite` for it."""

    def __init__(self, data: Path) -> None:
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        self.process = ServerProcess(data, open_rooms=False)
        self.url = self.process.url

    def invite(self, room: str, role: str = "collaborator") -> str:
        out = subprocess.run(
            [sys.executable, "-m", "neonbar", "invite", "--room", room, "--role", role,
             "--data", str(self.data)],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return out.stdout.splitlines()[0].strip()


@pytest.fixture
def server(tmp_path: Path):
    started = DefaultServer(tmp_path / "data")
    yield started
    started.process.stop()


def bounded(coro: Any, timeout_s: float = 60.0) -> Any:
    async def run() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(run())


class DocClient:
    """Sections 2-7 as written: hello, the 20 Hz input loop acking snapshots, decoding views
    (per tick) and avatar states (per avatar), events in seq order, resume."""

    HISTORY = 32  # section 6: views of the last 32 ticks

    def __init__(self, url: str, room: str, name: str) -> None:
        self.url, self.room, self.name = url, room, name
        self.ws: Any = None
        self.welcome: Msg = {}
        self.inbox: list[Msg] = []  # everything but snapshots, in arrival order
        self.snaps: list[Msg] = []
        self.views: dict[int, dict[int, tuple[int, int, int]]] = {}
        self.states: dict[int, tuple[int, int, int, float]] = {}  # id -> x, y, yaw, st
        self.records: list[tuple[Msg, dict[int, tuple[int, int, int]], set[int]]] = []
        self.ack = -1
        self.seq = 0  # input seq: continues across a resume (section 7)
        self.claim: tuple[int, int] | None = None  # where this client wants to go
        self.walk: tuple[int, int] | None = None  # where it predicts itself, 5 cm per input
        self.dropped = 0  # snapshots whose base we did not hold (step 1)
        self.want_full = False  # send ack -1 once, in the next input
        self.delta_ids: set[int] = set()  # every id that came as a delta record
        self.highest_event = 0
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    # --------------------------------------------------------------------------- session

    async def hello(self, **fields: Any) -> Msg:
        """Connect and send hello; returns the first reply (welcome), or raises on a close."""
        self.ws = await websockets.connect(self.url, max_size=None)
        hello = {"t": "hello", "v": 2, "room": self.room, "name": self.name, **fields}
        await self.ws.send(msgpack.packb(hello))
        first = msgpack.unpackb(await asyncio.wait_for(self.ws.recv(), 10))
        assert first["t"] == "welcome", first
        self.welcome = first
        self.views.clear()  # a new connection: snapshots start again from full ones
        self.ack = -1
        self._reader = asyncio.create_task(self._read())
        return first

    @property
    def you(self) -> int:
        return int(self.welcome["you"])

    async def send(self, msg: Msg) -> None:
        await self.ws.send(msgpack.packb(msg))

    async def drop(self) -> None:
        """The connection breaks (no bye, no close handshake)."""
        self.ws.transport.abort()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def bye(self) -> None:
        await self.send({"t": "bye"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.wait_closed(), 5)
        if self._reader is not None:
            self._reader.cancel()

    async def wait_for(self, pred: Callable[[Msg], bool], after: int = 0, timeout_s=10.0) -> Msg:
        """The first message from index `after` of the inbox that matches."""
        deadline = time.monotonic() + timeout_s
        while True:
            for msg in self.inbox[after:]:
                if pred(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: nothing matched in {self.inbox[after:][-5:]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def standing(self, ticks: int = 10, timeout_s: float = 20.0) -> list[int]:
        """Wait until `you` stayed the same for `ticks` snapshots; returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            last = [s["you"][:2] for s in self.snaps[-ticks:]]
            if len(last) == ticks and all(p == last[0] for p in last):
                return list(self.snaps[-1]["you"])
            assert time.monotonic() < deadline, f"{self.name}: still moving"
            await asyncio.sleep(0.05)

    async def snaps_after(self, count: int, timeout_s: float = 10.0) -> list[Msg]:
        start = len(self.snaps)
        deadline = time.monotonic() + timeout_s
        while len(self.snaps) < start + count:
            assert time.monotonic() < deadline, f"{self.name}: snapshots stopped"
            await asyncio.sleep(0.02)
        return self.snaps[start:]

    # ------------------------------------------------------------------------- receiving

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                assert isinstance(frame, bytes), "section 1: every message is a binary frame"
                msg = msgpack.unpackb(frame)
                if msg["t"] == "snap":
                    await self._on_snap(msg)
                    continue
                if msg["t"] == "event":
                    # Section 4: in seq order, never dropped; a replay comes before newer ones.
                    assert msg["seq"] > self.highest_event, (msg["seq"], self.highest_event)
                    self.highest_event = msg["seq"]
                self.inbox.append(msg)
                self._arrived.set()
        self._arrived.set()

    async def _on_snap(self, snap: Msg) -> None:
        tick, base = snap["tick"], snap["base"]
        if base == -1:
            view: dict[int, tuple[int, int, int]] = {}
        elif base in self.views:
            view = dict(self.views[base])
        else:  # step 1: drop it and ask for a full one
            self.dropped += 1
            self.ack = -1
            await self._input()
            return
        recorded: set[int] = set()
        d, a = snap["d"], snap["a"]
        assert len(d) % 6 == 0 and len(a) % 8 == 0
        n = len(d) // 6
        ids = struct.unpack_from(f"<{n}H", d, 0)
        dxs = struct.unpack_from(f"<{n}b", d, 2 * n)
        dys = struct.unpack_from(f"<{n}b", d, 3 * n)
        dyaws = struct.unpack_from(f"<{n}h", d, 4 * n)
        for i, dx, dy, dyaw in zip(ids, dxs, dys, dyaws, strict=True):
            x, y, yaw = view[i]  # step 2: a delta only for an avatar the base view holds
            view[i] = (x + dx, y + dy, (yaw + dyaw) % 65536)
            recorded.add(i)
        self.delta_ids.update(ids)
        n = len(a) // 8
        ids = struct.unpack_from(f"<{n}H", a, 0)
        xs = struct.unpack_from(f"<{n}h", a, 2 * n)
        ys = struct.unpack_from(f"<{n}h", a, 4 * n)
        yaws = struct.unpack_from(f"<{n}H", a, 6 * n)
        for i, x, y, yaw in zip(ids, xs, ys, yaws, strict=True):
            view[i] = (x, y, yaw)  # step 3
            recorded.add(i)
        self.views[tick] = view  # step 5
        for old in [t for t in self.views if t <= tick - self.HISTORY]:
            del self.views[old]
        for i in recorded:  # avatar states: only ids that had a record
            self.states[i] = (*view[i], snap["st"])
        self.ack = tick
        self.snaps.append(snap)
        self.records.append((snap, view, recorded))
        await self._input()

    async def _input(self) -> None:
        """One input per snapshot (20 Hz): the claim, or where the server has us."""
        x, y, yaw = (self.snaps[-1]["you"][:3]) if self.snaps else self.welcome["pos"]
        if self.claim is not None:  # walk there at 1 m/s, as a player holding a key would
            wx, wy = self.walk or (x, y)
            cx, cy = self.claim
            wx += max(-5, min(5, cx - wx))
            wy += max(-5, min(5, cy - wy))
            x, y = self.walk = (wx, wy)
        self.seq += 1
        ack, self.want_full = (-1 if self.want_full else self.ack), False
        await self.send({"t": "input", "seq": self.seq, "ack": ack, "x": x, "y": y, "yaw": yaw})


async def refused(url: str, hello: Msg) -> int | None:
    """Send a hello that should be refused; the close code."""
    async with websockets.connect(url) as ws:
        await ws.send(msgpack.packb(hello))
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


def test_a_client_from_the_document_joins_moves_chats_and_resumes(server: DefaultServer):
    ann_token, bob_token = server.invite("bar"), server.invite("bar")

    async def scenario() -> None:
        # Section 5 / 7: an unknown resume token without an invite is refused with 4401; so
        # is a forged invite and no invite at all (a default server needs one, section 8).
        base = {"t": "hello", "v": 2, "room": "bar", "name": "x"}
        assert await refused(server.url, {**base, "resume": "AAAAunknown", "since": 3}) == 4401
        assert await refused(server.url, {**base, "token": ann_token[:-4] + "AAAA"}) == 4401
        assert await refused(server.url, base) == 4401
        assert await refused(server.url, {**base, "v": 1, "token": ann_token}) == 4400

        ann, bob = DocClient(server.url, "bar", "ann"), DocClient(server.url, "bar", "bob")
        welcome = await ann.hello(token=ann_token)
        assert welcome["resumed"] is False and welcome["role"] == "collaborator"
        assert set(welcome["limits"]) >= {"msgs_per_s", "speed_mps", "resume_window_s"}
        # Section 4: you see yourself arrive.
        await ann.wait_for(lambda m: m.get("kind") == "join" and m["avatar"] == ann.you)

        # Section 9: ct comes back as a float even when sent as an integer.
        await ann.send({"t": "ping", "ct": 12345})
        pong = await ann.wait_for(lambda m: m["t"] == "pong")
        assert pong["ct"] == 12345.0 and isinstance(pong["ct"], float)
        assert isinstance(pong["st"], float)

        # Section 6: walk north 80 cm at 1 m/s (alone in the room: nobody in the way), then
        # stand; the server moved her there.
        x0, y0, _ = welcome["pos"]
        ann.claim = (x0, y0 + 80)
        you = await ann.standing()
        assert you[:2] == [x0, y0 + 80] and 0 < you[3] <= ann.seq
        # Delta records are sent for your own id too; decode them, draw yourself from `you`.
        assert ann.you in ann.delta_ids
        for snap, view, recorded in ann.records[-30:]:
            if ann.you in recorded:
                assert list(view[ann.you][:2]) == snap["you"][:2]
        # Bob arrives; ann is in his roster, and he draws her from his avatar states: where
        # the server has her.
        await bob.hello(token=bob_token)
        assert ann.you in {e["id"] for e in bob.welcome["avatars"]}
        await bob.snaps_after(10)
        assert list(bob.states[ann.you][:2]) == you[:2]
        assert ann.dropped == 0 and bob.dropped == 0  # a 32-tick history always held the base

        # Section 5 / 4: errors keep the connection; `ref` is the message's t, nil when the
        # frame could not be read as a message.
        mark = len(ann.inbox)
        await ann.ws.send(b"\xc1")
        await ann.send({"t": "chat", "text": "x" * 501})
        await ann.send({"t": "chat", "text": "y" * 5000})
        errors = [await ann.wait_for(lambda m: m["t"] == "error", after=mark)]
        while len(errors) < 3:
            after = ann.inbox.index(errors[-1]) + 1
            errors.append(await ann.wait_for(lambda m: m["t"] == "error", after=after))
        assert [(e["code"], e["ref"]) for e in errors] == [(4000, None), (4002, "chat"),
                                                         (4003, None)]  # fmt: skip

        # Section 4: an event goes to everyone, the sender too, with one seq.
        await ann.send({"t": "chat", "text": "first round on me"})
        mine = await ann.wait_for(lambda m: m.get("kind") == "chat" and m["avatar"] == ann.you)
        theirs = await bob.wait_for(lambda m: m.get("kind") == "chat" and m["avatar"] == ann.you)
        assert mine["seq"] == theirs["seq"] and mine["text"] == "first round on me"

        # Section 7: ann's connection drops. Away shows nothing: no leave, she stays in bob's
        # snapshots where she stood, while bob chats on.
        since = ann.highest_event
        last_input = ann.snaps[-1]["you"][3]
        await ann.drop()
        mark = len(bob.inbox)
        for text in ("is she gone?", "she'll be back"):
            await bob.send({"t": "chat", "text": text})
            await bob.wait_for(lambda m, t=text: m.get("text") == t, after=mark)
        await bob.snaps_after(5)
        assert list(bob.states[ann.you][:2]) == you[:2]
        assert not [m for m in bob.inbox if m.get("kind") == "leave"]
        latest = bob.highest_event

        # Resume: same avatar, welcome.seq is the room's latest (not our since), then exactly
        # the missed events, in order, once.
        mark = len(ann.inbox)
        back = await ann.hello(token=ann_token, resume=welcome["resume"], since=since)
        assert back["resumed"] is True and back["you"] == welcome["you"]
        assert back["seq"] == latest and back["pos"][:2] == you[:2]
        missed = []
        while len(missed) < latest - since:
            after = mark if not missed else ann.inbox.index(missed[-1]) + 1
            missed.append(await ann.wait_for(lambda m: m["t"] == "event", after=after))
        assert [m["seq"] for m in missed] == list(range(since + 1, latest + 1))
        assert [m["text"] for m in missed if m["kind"] == "chat"] == [
            "is she gone?", "she'll be back"
        ]  # fmt: skip

        # Input seq continues across the resume: a count restarted at 1 is ignored (she stays
        # put although she claims a step), continuing the old count is applied again.
        applied = (await ann.snaps_after(1))[0]["you"][3]  # the last seq applied before the drop
        assert last_input <= applied <= ann.seq
        kept = ann.seq
        ann.seq = 0
        ann.claim = (you[0], you[1] + 40)
        stood = (await ann.snaps_after(15))[3:]  # (inputs sent before the reset may land first)
        frozen = stood[0]["you"][3]
        assert frozen <= kept
        assert all(s["you"][:2] == you[:2] and s["you"][3] == frozen for s in stood)
        ann.seq = max(kept, ann.seq)
        moved = await ann.snaps_after(30)
        assert moved[-1]["you"][3] > kept  # (where she gets depends on where bob stands)

        # ack -1 asks for a full snapshot; older bases may still come, so views are kept.
        ann.want_full = True
        later = [s["base"] for s in await ann.snaps_after(20)]
        assert -1 in later and ann.dropped == 0
        assert max(later[later.index(-1) :]) >= 0  # deltas again once the full one was acked

        await ann.bye()
        await bob.wait_for(lambda m: m.get("kind") == "leave" and m["avatar"] == ann.you)
        await bob.bye()

    bounded(scenario(), 90)


def section_11_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## 11. Example", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "section 11 holds one Python example"
    return blocks[0]


def test_the_example_of_section_11_runs_against_a_default_server(server: DefaultServer, tmp_path):
    """Run as printed (only the address is this test's port), with an invite minted as the
    section says; a client of our own watches it arrive, chat and walk."""
    code = section_11_example()
    address = "ws://127.0.0.1:8765/"
    assert code.count(address) == 1
    example = tmp_path / "example.py"
    example.write_text(code.replace(address, server.url + "/"), encoding="utf-8")
    token = server.invite("lobby")

    async def scenario() -> None:
        watcher = DocClient(server.url, "lobby", "watcher")
        welcome = await watcher.hello(token=server.invite("lobby"))
        # Out of the example's way: it walks east from the door, the watcher waits north.
        watcher.claim = (welcome["pos"][0], welcome["pos"][1] + 400)
        await watcher.standing()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(example), token, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert first.startswith("I am avatar "), first
            kay = int(first.split()[3])
            chat = await watcher.wait_for(lambda m: m.get("kind") == "chat", timeout_s=20)
            assert chat["avatar"] == kay and chat["text"] == "To the orange haze!"
            printed = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            assert printed.startswith(("join", "chat")), printed
            # It walks east 5 cm a snapshot: the watcher sees it move (unless the watcher
            # itself stands in its way).
            await watcher.snaps_after(5)
            start = watcher.states[kay][0]
            await watcher.snaps_after(20)
            kx, ky = watcher.states[kay][:2]
            wx, wy = watcher.snaps[-1]["you"][:2]
            assert kx > start or abs(kx - wx) + abs(ky - wy) < 90
            assert proc.returncode is None  # still running: nothing refused it
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await watcher.bye()

    bounded(scenario(), 90)


def test_the_documented_invite_command_prints_a_token_and_a_link(server: DefaultServer):
    """Section 8: the token on the first line, `ws://HOST:PORT/?room=R&token=T` on the second."""
    out = subprocess.run(
        [sys.executable, "-m", "neonbar", "invite", "--room", "bar", "--role", "viewer",
         "--data", str(server.data)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    token, link = out[0], out[1]
    assert link.startswith("ws://") and "room=bar" in link and f"token={token}" in link
