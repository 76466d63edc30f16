"""Fuzzing: frames through decode -> validate -> dispatch into a real, sans-I/O room.

    .venv/bin/python bench/fuzz.py --frames 1000000 [--seed 1]      structure-aware, seeded
    .venv/bin/python bench/fuzz.py --atheris [-- -runs=200000]     coverage-guided (atheris 3.0)

One input is a short program: frames from three sessions (a host, a collaborator, a viewer),
ticks, time jumps, disconnects, resumes and fresh joins, all fed to `server.room.Room` with
in-memory storage and an outbox that records (no sockets, no event loop). Most frames are
MessagePack maps built from the registered schemas (`neonbar.protocol.CLIENT_MESSAGES`: known
keys, values at and past each bound, wrong types, missing and extra keys), so they get past
decoding and deep into the handlers; the rest are byte-level mutations and garbage.

What counts as a failure (every one is a bug):
- `Room.receive` raising, or a handler's exception caught and counted by the room
  (`neonbar_exceptions_total`, logged with its traceback);
- a frame the room sends that the protocol's own decoder refuses (`decode_server`);
- a session receiving an event seq twice or out of order.

The CI run is tests/server/test_fuzz.py (a few thousand seeded programs).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np


class FuzzFailure(AssertionError):
    pass


class Data:
    """Decisions drawn from the fuzzer's bytes (zeros once they run out)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        if n <= 256:
            return self.byte() % n
        return (self.byte() << 8 | self.byte()) % n

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.below(len(items))]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


# Values that sit at, just past, or far from the edges the schemas and handlers care about.
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2, 7, 255, 256, 65535, 65536, -32769, 2**31, 2**32, 2**53,
    2**63 - 1, -(2**63), 2**64 - 1, 0.0, -0.0, 0.5, 1.5, -1e-300, 1e308, float("inf"),
    float("-inf"), float("nan"), "", " ", "\t", "x" * 33, "x" * 501, "cheers", "#ff00aa",
    "#FF00AA0", "host", "viewer", "..", "../../etc/passwd", "\u202e", "\u200b", "\u3164",
    "\x7f", "\x85", "\ud7ff", "née", "😀" * 40, b"", b"\x00\x01", b"\xff" * 40, [], [1, 2],
    [0] * 70, [[1]], {}, {"a": 1}, {"t": "chat"}, {1: 2},
]  # fmt: skip


def valid_value(d: Data, spec: Any) -> Any:
    """A value the field's schema accepts, often at one of its bounds."""
    kind = spec.kind
    if spec.choices and d.below(4):
        return d.pick(spec.choices)
    if kind == "int":
        lo = int(spec.lo) if spec.lo is not None else -(2**31)
        hi = int(spec.hi) if spec.hi is not None else 2**31
        roll = d.below(5)
        if roll == 0:
            return lo
        if roll == 1:
            return hi
        return lo + d.below(min(hi - lo + 1, 65536))
    if kind == "float":
        lo = spec.lo if spec.lo is not None else -1e6
        hi = spec.hi if spec.hi is not None else 1e6
        return d.pick([lo, hi, lo + (hi - lo) * d.byte() / 255.0, 0.0])
    if kind == "str":
        if spec.pattern is not None:
            return "abc_" + str(d.byte())
        n = 1 + d.below(spec.max_len or 40)
        return d.pick(["a", "Z", "é", " ", "9", "-"]) * n if n > 1 else "x"
    if kind == "bool":
        return bool(d.byte() & 1)
    if kind == "color":
        return f"#{d.byte():02x}{d.byte():02x}{d.byte():02x}"
    if kind == "bytes":
        return d.take(d.below((spec.max_len or 64) + 1))
    if kind == "ints":
        return [d.below(65536) - 1000 for _ in range(d.below((spec.max_len or 4) + 2))]
    return d.pick(ODD_VALUES)


def structured_frame(d: Data, schemas: dict[str, dict[str, Any]]) -> bytes | str:
    """A MessagePack map with a known type and mostly valid fields, or a mutation of one."""
    names = sorted(schemas)
    roll = d.below(20)
    if roll == 0:
        return d.take(d.below(80))  # garbage bytes
    if roll == 1:
        return "text frame"  # refused as a text frame
    msg_type = d.pick(names) if d.below(16) else d.pick(["nope", "", "event", "welcome"])
    msg: dict[Any, Any] = {"t": msg_type}
    for name, spec in schemas.get(msg_type, {}).items():
        choice = d.below(12)
        if choice == 0:
            continue  # missing (fine when optional)
        msg[name] = d.pick(ODD_VALUES) if choice == 1 else valid_value(d, spec)
    if d.below(8) == 0:
        msg[d.pick(["zzz", "t", "avatar", 7, "seq"])] = d.pick(ODD_VALUES)
    try:
        frame = msgpack.packb(msg, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        frame = msgpack.packb({"t": msg_type}, use_bin_type=True)
    if roll == 2 and frame:  # flip a byte
        i = d.below(len(frame))
        frame = frame[:i] + bytes([frame[i] ^ (1 + d.byte() % 255)]) + frame[i + 1 :]
    elif roll == 3:  # cut short
        frame = frame[: d.below(len(frame) + 1)]
    elif roll == 4:  # oversized
        frame = frame + b"\x00" * (4096 + d.below(5000))
    return frame


# ------------------------------------------------------------------------------------- the room


@dataclass(eq=False)
class FuzzLink:
    name: str
    closing: bool = False
    events: list[int] = field(default_factory=list)

    @property
    def peer(self) -> str:
        return self.name


class RecordingOutbox:
    """The room's outbox with no sockets: every frame is checked against the protocol."""

    def __init__(self, decode: Callable[[bytes], dict[str, Any]]) -> None:
        self.decode = decode
        self.frames = 0
        self.closed: list[tuple[FuzzLink, int]] = []

    def _take(self, link: FuzzLink, frame: bytes) -> None:
        if link.closing:
            return
        self.frames += 1
        try:
            msg = self.decode(frame)
        except Exception as exc:
            raise FuzzFailure(f"the room sent a frame its own protocol refuses: {exc}") from exc
        if msg["t"] == "event":
            if link.events and msg["seq"] <= link.events[-1]:
                raise FuzzFailure(f"event seq {msg['seq']} after {link.events[-1]}")
            link.events.append(msg["seq"])

    def send(self, link: FuzzLink, frame: bytes) -> bool:
        self._take(link, frame)
        return not link.closing

    def broadcast(self, links: Sequence[FuzzLink], frame: bytes) -> int:
        for link in links:
            self._take(link, frame)
        return len(links)

    def replay(self, link: FuzzLink, frames: Iterator[bytes]) -> None:
        for frame in frames:
            self._take(link, frame)

    def close(self, link: FuzzLink, code: int, reason: str) -> None:
        if not link.closing:
            link.closing = True
            self.closed.append((link, int(code)))

    def snapshot_states(self, links: Sequence[FuzzLink]) -> np.ndarray:
        return np.array([-1 if link.closing else 0 for link in links], dtype=np.int64)

    def write_snapshots(
        self,
        links: Sequence[FuzzLink],
        states: np.ndarray,
        prefixes: Sequence[bytes],
        client_group: np.ndarray,
        tails: np.ndarray,
    ) -> int:
        for i, link in enumerate(links):
            self._take(link, prefixes[int(client_group[i])] + tails[i].tobytes())
        return len(links)


class ExceptionLog(logging.Handler):
    """Keeps every server-side log record with an exception (a handler bug the room caught)
    logged by this thread: other threads of the process (a test suite's) are not the room."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if (
            record.exc_info
            and record.thread == self.thread
            and record.name.startswith(("neonbar.server", "neonbar.storage"))
        ):
            self.records.append(record)


class RoomTarget:
    """One real room and its three seats; `run(data)` plays one fuzz program into it."""

    ROLES = ("host", "collaborator", "viewer")

    def __init__(self) -> None:
        from neonbar.layout import load_layout
        from neonbar.protocol import CLIENT_MESSAGES, PROTOCOL_VERSION, decode_server
        from neonbar.tokens import mint
        from server.metrics import ServerMetrics
        from server.room import JoinRefused, Room, RoomConfig, check_invite
        from server.storage import SqliteStorage

        self.Room, self.JoinRefused, self.check_invite = Room, JoinRefused, check_invite
        self.version = PROTOCOL_VERSION
        self.mint = mint
        self.schemas = CLIENT_MESSAGES
        self.secret = b"fuzz-secret-0123456789abcdef"
        self.layout = load_layout()
        self.config = RoomConfig(open_rooms=True, resume_window_s=30.0)
        self.decode = decode_server
        self.errors = ExceptionLog()
        # Every record with a traceback reaches this handler, whatever the root logger shows.
        neonbar_log = logging.getLogger("neonbar")
        neonbar_log.addHandler(self.errors)
        if neonbar_log.getEffectiveLevel() > logging.ERROR:
            neonbar_log.setLevel(logging.ERROR)
        self.storage_cls = SqliteStorage
        self.metrics_cls = ServerMetrics
        self.frames = 0
        self.programs = 0
        self._fresh()

    # The room's host interface (server.room.RoomHost).
    def now_s(self) -> float:
        return self.clock_s

    def _fresh(self) -> None:
        self.clock_s = 1000.0
        self.storage = self.storage_cls(":memory:")
        self.metrics = self.metrics_cls()
        self.out = RecordingOutbox(self.decode)
        self.room = self.Room("fuzz", self)
        self.room.on_create()
        self.seats: list[Any] = [None, None, None]
        self.tokens: list[str | None] = [None, None, None]
        self.seen_seq: list[int] = [0, 0, 0]
        self.links = 0

    def _join(self, seat: int, resume: bool, since: int | None) -> None:
        hello: dict[str, Any] = {"t": "hello", "v": self.version, "room": "fuzz",
                                 "name": f"seat{seat}"}  # fmt: skip
        if resume and self.tokens[seat]:
            hello["resume"] = self.tokens[seat]
            if since is not None:
                hello["since"] = since
        else:
            hello["token"] = self.mint(self.secret, "fuzz", self.ROLES[seat])
        self.links += 1
        link = FuzzLink(f"seat{seat}#{self.links}")
        try:
            grant = self.room.on_auth(hello)
            session = self.room.on_join(link, hello, grant, self.clock_s)
        except self.JoinRefused:
            return
        old = self.seats[seat]
        if old is not None and old is not session:
            self.room.on_disconnect(old)
        self.seats[seat] = session
        self.tokens[seat] = session.avatar.resume_token

    def _settle(self) -> None:
        """What the delivery layer does when a connection it closed has gone."""
        for link, _ in self.out.closed:
            for seat, session in enumerate(self.seats):
                if session is not None and session.link is link:
                    self.room.on_disconnect(session)
                    self.seats[seat] = None
        self.out.closed.clear()

    def _check(self) -> None:
        if self.errors.records:
            record = self.errors.records[0]
            self.errors.records.clear()
            text = logging.Formatter().format(record)
            raise FuzzFailure(f"the room caught an exception:\n{text}")
        if self.metrics.exceptions._value.get():
            raise FuzzFailure("neonbar_exceptions_total went up")

    def run(self, data: bytes) -> int:
        """Play one program; returns the frames fed. Raises FuzzFailure (or the bug itself)."""
        if self.programs % 200 == 0 or self.room.disposed:
            self._fresh()  # a long-lived room, renewed now and then (ids, storage)
        self.programs += 1
        d = Data(data)
        fed = 0
        for seat in range(3):
            if self.seats[seat] is None:
                self._join(seat, resume=True, since=None)
        while d.left() > 0:
            op = d.below(64)
            seat = d.below(3)
            session = self.seats[seat]
            if op < 54:
                if session is None:
                    continue
                raw = structured_frame(d, self.schemas)
                self.clock_s += d.byte() / 2000.0
                self.room.receive(session, raw, self.clock_s)
                fed += 1
            elif op < 58:
                self.clock_s += 0.05
                self.room.step(self.clock_s)
            elif op == 58:
                if session is not None:
                    self.room.on_disconnect(session)
                    self.seats[seat] = None
            elif op == 59:
                since = d.below(4096) if d.below(2) else None
                self._join(seat, resume=True, since=since)
            elif op == 60:
                self._join(seat, resume=False, since=None)
            elif op == 61:
                self.clock_s += d.pick([1.0, 10.0, 31.0, 3600.0])
                self.room.step(self.clock_s)
            else:
                control = getattr(self.room, "receive_control", None)
                if session is not None and control is not None:
                    control(session, self.clock_s)
            self._settle()
            self._check()
        self.frames += fed
        return fed


def program(rng: random.Random) -> bytes:
    """A random program for the seeded run (atheris mutates its own)."""
    n = rng.choice([16, 64, 256, 1024])
    return rng.randbytes(n)


def run_seeded(frames: int, seed: int, report_every_s: float = 10.0) -> tuple[int, int, float]:
    """Feed `frames` frames from seeded programs. Returns (frames, programs, seconds)."""
    target = RoomTarget()
    rng = random.Random(seed)
    started = last = time.perf_counter()
    while target.frames < frames:
        target.run(program(rng))
        now = time.perf_counter()
        if report_every_s and now - last > report_every_s:
            last = now
            rate = target.frames / (now - started)
            print(f"  {target.frames:,} frames, {target.programs:,} programs, {rate:,.0f}/s",
                  file=sys.stderr)  # fmt: skip
    return target.frames, target.programs, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames to feed")
    parser.add_argument("--seed", type=int, default=1, help="seed of the structure-aware run")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided with atheris")
    args, rest = parser.parse_known_args()
    logging.getLogger("neonbar").propagate = False  # failures are reported, not logged
    if args.atheris:
        import atheris

        with atheris.instrument_imports(include=["neonbar", "server"]):
            target = RoomTarget()

        def one_input(data: bytes) -> None:
            target.run(data)

        atheris.Setup([sys.argv[0], *[a for a in rest if a != "--"]], one_input)
        atheris.Fuzz()
        return
    frames, programs, elapsed_s = run_seeded(args.frames, args.seed)
    print(f"{frames:,} frames in {programs:,} programs, seed {args.seed}: 0 failures, "
          f"{elapsed_s:.0f} s ({frames / elapsed_s:,.0f} frames/s)")  # fmt: skip


if __name__ == "__main__":
    main()
