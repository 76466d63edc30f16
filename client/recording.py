"""Session recordings (`.nbsession`): what a client received, written as it happens.

Like a game's demo file, a recording keeps the raw server frames (welcome, snap, event, pong,
error …) with the local clock reading at which each arrived, plus the local avatar's state and
the messages the client sent. Replaying those frames through the same protocol client by a
virtual clock (client/replay.py) rebuilds exactly what the live client knew at every instant,
so a session can be re-rendered later at any frame rate and from any camera.

The file is a MessagePack stream (docs/replay.md): one header map, then one small array per
record. Each record is written to the kernel as soon as it exists (an unbuffered file), so a
client killed mid-session leaves a readable prefix: the reader stops at a cut-off last record.

No Panda3D and no sockets here: the headless recorder, the desktop client and tests share it.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np
import numpy.typing as npt

from neonbar.errors import UserError

FORMAT = "nbsession"
VERSION = 1
SUFFIX = ".nbsession"

# Record kinds: the first element of every record array.
RX = "rx"  # [RX, t_s, frame]          a frame from the server (bytes, or str for a text frame)
ME = "me"  # [ME, t_s, x_m, y_m, yaw]  the local avatar as the client drew it
TX = "tx"  # [TX, t_s, message]        a message the client sent (chat, emote, drink, beat …)
MARK = "mark"  # [MARK, t_s, text]     a label (the recorder's own notes: "end", a tour cue)

MAX_RECORD_BYTES = 4 << 20  # far above any server frame (neonbar.protocol bounds them)


class SessionWriter:
    """Appends records to a `.nbsession` file; safe to call from several threads.

    Args:
        path: the file to create (its folder must exist).
        header: what the recording is of (server, room, name …); `format`, `version` and
            `created_unix` are added.
        clock: the local clock the times are read from (the protocol client's clock, so the
            replay's clock sync sees the same numbers).
    """

    def __init__(
        self,
        path: str | Path,
        header: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        if not self.path.resolve().parent.is_dir():
            raise UserError(f"cannot write {self.path}: its folder does not exist")
        self.clock = clock
        self.records = 0
        self._lock = threading.Lock()
        self._packer = msgpack.Packer(use_bin_type=True)
        # Unbuffered: every record is one write(2), so a kill -9 loses at most the record
        # being written (about 60 records a second: a few hundred microseconds of syscalls).
        self._file: BinaryIO | None = self.path.open("wb", buffering=0)
        self._write(
            {
                "format": FORMAT,
                "version": VERSION,
                "created_unix": time.time(),
                "clock_s": clock(),
                **(header or {}),
            }
        )

    def _write(self, obj: Any) -> None:
        data = self._packer.pack(obj)
        with self._lock:
            if self._file is None:
                return
            self._file.write(data)
            self.records += 1

    def frame(self, data: bytes | str, t_s: float | None = None) -> None:
        """A frame exactly as it came off the socket."""
        self._write([RX, self.clock() if t_s is None else t_s, data])

    def local(self, x_m: float, y_m: float, yaw_rad: float, t_s: float | None = None) -> None:
        """Where the local avatar was drawn."""
        self._write([ME, self.clock() if t_s is None else t_s, x_m, y_m, yaw_rad])

    def sent(self, msg: dict[str, Any], t_s: float | None = None) -> None:
        self._write([TX, self.clock() if t_s is None else t_s, msg])

    def mark(self, text: str, t_s: float | None = None) -> None:
        self._write([MARK, self.clock() if t_s is None else t_s, text])

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(session: Any, writer: SessionWriter) -> None:
    """Record everything an `client.net.AsyncSession` receives and sends from now on.

    The session's frame handler and outgoing message queue are wrapped on this one instance,
    so the recording holds the frames the real protocol client handled, stamped with the
    session's own clock.
    """
    on_frame = session._on_frame
    queue_message = session.queue_message
    writer.clock = session.clock

    def recorded_frame(frame: bytes | str) -> None:
        writer.frame(frame, session.clock())
        on_frame(frame)

    def recorded_message(msg: dict[str, Any]) -> None:
        writer.sent(dict(msg), session.clock())
        queue_message(msg)

    session._on_frame = recorded_frame
    session.queue_message = recorded_message


class AppRecorder:
    """Records a desktop client's session: its frames (via `attach`) and, every frame, where
    it drew its own avatar.

    The frame's time is the instant the app sampled the network for the remote avatars (the
    session's `remote_avatars` is wrapped to read the clock), so a replay at that time draws
    everyone where this frame did; a task before the app's frame task (sort 10) reads it too,
    for frames that do not sample. After the frame task the local avatar's drawn state is
    written with that time. Duck-typed on the app: no Panda3D import here.

    Args:
        app: the `client.app.NeonBarApp`.
        net_session: its `client.net.NetSession` (the thread-hosted session).
        writer: where the records go.
    """

    BEFORE_SORT = 9
    AFTER_SORT = 11

    def __init__(self, app: Any, net_session: Any, writer: SessionWriter) -> None:
        self.app = app
        self.writer = writer
        inner = net_session.session
        self.clock = inner.clock
        self.frame_t_s = self.clock()
        attach(inner, writer)
        sample = net_session.remote_avatars

        def sampled(delay_s: float = 0.1) -> Any:
            self.frame_t_s = self.clock()
            return sample(delay_s)

        net_session.remote_avatars = sampled
        tasks = app.base.taskMgr
        tasks.add(self._before, "neonbar-record-clock", sort=self.BEFORE_SORT)
        tasks.add(self._after, "neonbar-record-local", sort=self.AFTER_SORT)

    def _before(self, task: Any) -> int:
        self.frame_t_s = self.clock()
        return int(task.cont)

    def _after(self, task: Any) -> int:
        if self.app.you is not None:
            x, y, yaw = self.app.motion.shown()
            self.writer.local(x, y, yaw, self.frame_t_s)
        return int(task.cont)

    def close(self) -> None:
        tasks = self.app.base.taskMgr
        tasks.remove("neonbar-record-clock")
        tasks.remove("neonbar-record-local")
        self.writer.mark("end", self.clock())
        self.writer.close()


# ------------------------------------------------------------------------------- reading


@dataclass
class Recording:
    """A session recording, read back.

    Times are the recorder's local clock in seconds; `start_s`/`end_s` bound the records.
    """

    path: Path
    header: dict[str, Any]
    frames: list[tuple[float, bytes | str]] = field(default_factory=list)
    local_t_s: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    local_state: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))
    sent: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    truncated: bool = False

    @property
    def start_s(self) -> float:
        times = [t for t, _ in self.frames[:1]] + self.local_t_s[:1].tolist()
        return min(times) if times else float(self.header.get("clock_s", 0.0))

    @property
    def end_s(self) -> float:
        times = [t for t, _ in self.frames[-1:]] + self.local_t_s[-1:].tolist()
        return max(times) if times else self.start_s

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def local_at(self, t_s: float) -> tuple[float, float, float] | None:
        """The local avatar at t_s: linear between records (yaw the short way round)."""
        ts, st = self.local_t_s, self.local_state
        if len(ts) == 0:
            return None
        k = int(np.searchsorted(ts, t_s, side="right"))
        if k == 0:
            return float(st[0, 0]), float(st[0, 1]), float(st[0, 2])
        if k >= len(ts):
            return float(st[-1, 0]), float(st[-1, 1]), float(st[-1, 2])
        t0, t1 = float(ts[k - 1]), float(ts[k])
        a = 0.0 if t1 <= t0 else (t_s - t0) / (t1 - t0)
        (x0, y0, h0), (x1, y1, h1) = st[k - 1], st[k]
        dh = (h1 - h0 + math.pi) % (2 * math.pi) - math.pi
        return float(x0 + (x1 - x0) * a), float(y0 + (y1 - y0) * a), float(h0 + dh * a)


def iter_records(path: str | Path) -> Iterator[Any]:
    """Every complete object in the file, in order; a cut-off last record is left out."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_RECORD_BYTES * 2)
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 16):
            unpacker.feed(chunk)
            yield from unpacker


def read_session(path: str | Path) -> Recording:
    """Load a recording; UserError with one sentence if it is not one.

    A recording cut short (a crash mid-write) loads up to its last complete record and has
    `truncated` set.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        header = next(unpacker, None)
    except (msgpack.UnpackException, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UserError(f"{path} is not a Neon Bar session recording (.nbsession)")
    if header.get("version") != VERSION:
        raise UserError(
            f"{path} is a version {header.get('version')} recording; "
            f"this neonbar reads version {VERSION}"
        )
    rec = Recording(path=path, header=header)
    times: list[float] = []
    states: list[tuple[float, float, float]] = []
    complete = unpacker.tell()  # bytes up to the end of the last whole record
    try:
        for item in unpacker:
            complete = unpacker.tell()
            if not isinstance(item, list) or len(item) < 3 or not _is_time(item[1]):
                continue  # a record kind from a newer writer, or damage: skip it
            kind, t_s = item[0], float(item[1])
            if kind == RX and isinstance(item[2], (bytes, str)):
                rec.frames.append((t_s, item[2]))
            elif kind == ME and len(item) >= 5 and all(_is_time(v) for v in item[2:5]):
                times.append(t_s)
                states.append((float(item[2]), float(item[3]), float(item[4])))
            elif kind == TX and isinstance(item[2], dict):
                rec.sent.append((t_s, item[2]))
            elif kind == MARK and isinstance(item[2], str):
                rec.marks.append((t_s, item[2]))
    except (msgpack.UnpackException, ValueError):
        pass  # garbage after a good prefix: keep the prefix
    rec.truncated = complete < len(data)
    # Frames are recorded in arrival order; a stable sort keeps that order for equal times.
    rec.frames.sort(key=lambda item: item[0])
    order = np.argsort(np.asarray(times, float), kind="stable")
    rec.local_t_s = np.asarray(times, float)[order]
    rec.local_state = np.asarray(states, float).reshape(-1, 3)[order]
    return rec


def _is_time(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


# ------------------------------------------------------------------------ headless recorder

TICK_S = 0.05  # inputs, local-state records and script steps at 20 Hz, like the desktop client
WALK_MPS = 1.6


@dataclass
class Step:
    """One line of a patron's script: walk somewhere, say/do something, or wait.

    kind "walk": `to` is the floor point (m); "send": `msg` is a client message (chat, emote,
    drink, playback …); "wait": stand for `seconds`; "until": stand until `seconds` after the
    script started; "face": turn to `yaw_rad`. A "send" with `at_s` is not in the sequence: it
    goes out `at_s` seconds after the start, whatever the patron is doing then.
    """

    kind: str
    to: tuple[float, float] | None = None
    msg: dict[str, Any] | None = None
    seconds: float = 0.0
    yaw_rad: float = 0.0
    at_s: float | None = None


async def record_patron(
    server_url: str,
    room: str,
    name: str,
    out: str | Path,
    duration_s: float,
    script: list[Step],
    token: str | None = None,
    color: str | None = None,
    on_welcome: Callable[[dict[str, Any]], None] | None = None,
) -> Recording:
    """Join a room as one patron who follows `script`, recording the session to `out`.

    This is the demo's recorder: a real protocol client (client/net.py) that walks through
    the shared collision solver as the desktop client would, with every frame it receives
    written to the recording as it arrives. Returns the recording read back.
    """
    import asyncio

    from client.net import AsyncSession, ConnectError

    session = AsyncSession(server_url, room, name, token, color, retry_first_connect=False)
    writer = SessionWriter(
        out, {"server": server_url, "room": room, "name": name, "recorder": "patron"}
    )
    attach(session, writer)
    runner = asyncio.ensure_future(session.run())
    try:
        waiter = asyncio.ensure_future(session.wait_welcome())
        await asyncio.wait({runner, waiter}, timeout=15.0, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # raises ConnectError with the reason
        if not waiter.done():
            waiter.cancel()
            raise UserError(f"the server at {server_url} did not welcome the recorder")
        if on_welcome is not None and session.welcome is not None:
            on_welcome(session.welcome)
        await _follow_script(session, writer, script, session.clock() + duration_s)
    except ConnectError as exc:
        raise UserError(str(exc)) from None
    finally:
        writer.mark("end")
        await session.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 5.0)
        writer.close()
    return read_session(out)


async def _follow_script(
    session: Any, writer: SessionWriter, script: list[Step], end_s: float
) -> None:
    import asyncio

    from neonbar.collision import CollisionWorld
    from neonbar.layout import load_layout

    world = CollisionWorld(load_layout())
    state = session.local_state or (0.0, 0.0, 0.0)
    x, y, yaw = state
    timed = sorted((s for s in script if s.at_s is not None), key=lambda s: s.at_s or 0.0)
    steps = [s for s in script if s.at_s is None]
    step: Step | None = None
    waited = 0.0
    next_s = t0_s = session.clock()
    while session.clock() < end_s:
        while timed and session.clock() - t0_s >= (timed[0].at_s or 0.0):
            if timed[0].msg is not None:
                session.queue_message(dict(timed[0].msg))
            timed.pop(0)
        if step is None and steps:
            step, waited = steps.pop(0), 0.0
            if step.kind == "send" and step.msg is not None:
                session.queue_message(dict(step.msg))
                step = None
            elif step.kind == "face":
                yaw, step = step.yaw_rad, None
        if step is not None and step.kind == "walk" and step.to is not None:
            dx, dy = step.to[0] - x, step.to[1] - y
            dist = math.hypot(dx, dy)
            if dist < 0.05 or waited > 30.0:
                step = None
            else:
                move = min(dist, WALK_MPS * TICK_S)
                after = world.solve_moves(
                    np.array([[x, y]]), np.array([[dx / dist * move, dy / dist * move]])
                )
                x, y = float(after[0, 0]), float(after[0, 1])
                yaw = math.atan2(-dx, dy) % (2 * math.pi)  # 0 faces +y, counter-clockwise
        elif step is not None and _stood_enough(step, waited, session.clock() - t0_s):
            step = None
        waited += TICK_S
        session.local_state = (x, y, yaw)
        writer.local(x, y, yaw, session.clock())
        await session.send_input()
        next_s += TICK_S
        delay_s = next_s - session.clock()
        if delay_s < -TICK_S:
            # Fell behind (a starved CPU): go on from now. Catching up would send every missed
            # tick's input at once, a burst the server's rate limit refuses (inputs are
            # absolute claims: only the newest matters).
            next_s, delay_s = session.clock(), 0.0
        await asyncio.sleep(max(0.0, delay_s))


def _stood_enough(step: Step, waited_s: float, since_start_s: float) -> bool:
    if step.kind == "wait":
        return waited_s >= step.seconds
    return step.kind == "until" and since_start_s >= step.seconds


STEP_KINDS = ("walk", "send", "wait", "until", "face")


def script_from_json(data: Any) -> list[Step]:
    """A patron's script from JSON: a list of {"kind": …, "to": [x, y], "msg": {…}, …}."""
    if not isinstance(data, list):
        raise UserError("a patron script is a JSON list of steps")
    steps = []
    for k, item in enumerate(data):
        if not isinstance(item, dict) or item.get("kind") not in (
            "walk",
            "send",
            "wait",
            "until",
            "face",
        ):
            raise UserError(f"step {k + 1} of the patron script has no known kind")
        to = item.get("to")
        steps.append(
            Step(
                kind=item["kind"],
                to=(float(to[0]), float(to[1])) if to is not None else None,
                msg=item.get("msg"),
                seconds=float(item.get("seconds", 0.0)),
                yaw_rad=float(item.get("yaw_rad", 0.0)),
                at_s=float(item["at_s"]) if item.get("at_s") is not None else None,
            )
        )
    return steps


def main(argv: list[str] | None = None) -> int:
    """`python -m client.recording`: the headless recorder (one scripted patron).

    Used by `neonbar demo`; anyone can record a room this way without a window.
    """
    import argparse
    import asyncio
    import json
    import logging
    import sys

    parser = argparse.ArgumentParser(prog="python -m client.recording", description=main.__doc__)
    parser.add_argument("--server", required=True, help="ws://H:P")
    parser.add_argument("--room", required=True, help="room to join")
    parser.add_argument("--name", default="Recorder", help="the patron's name")
    parser.add_argument("--token", default=None, help="invite token")
    parser.add_argument("--color", default="#ff8a1f", help="the patron's colour")
    parser.add_argument("--out", required=True, help="the .nbsession file to write")
    parser.add_argument("--duration", type=float, required=True, help="seconds to record")
    parser.add_argument("--script", default=None, help="JSON file: the patron's steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        script = script_from_json(json.loads(Path(args.script).read_text())) if args.script else []
        rec = asyncio.run(
            record_patron(
                args.server, args.room, args.name, args.out, args.duration, script,
                token=args.token, color=args.color,
            )
        )  # fmt: skip
    except (UserError, OSError, ValueError) as exc:
        print(f"recorder: {exc}", file=sys.stderr)
        return 2
    print(f"recorded {len(rec.frames)} frames over {rec.duration_s:.1f} s to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
