"""An outbox that records what a room sends, for tests, the fuzz target and tools.

With it a real `Room` runs with no socket and no event loop: `RecordingHost` gives it a clock
you set, in-memory storage and fresh metrics; each `RecordedLink` keeps the frames written to
it (decoded with `messages()`) and the close asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neonbar.layout import Layout, load_layout
from neonbar.protocol import CloseCode, decode_server
from server.metrics import ServerMetrics
from server.room import Room, RoomConfig
from server.storage import SqliteStorage, Storage


@dataclass(eq=False)
class RecordedLink:
    peer: str = "recorded"
    closing: bool = False
    frames: list[bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None
    busy: bool = False  # pretend it holds bytes: it takes no snapshot batch

    def messages(self) -> list[dict[str, Any]]:
        """Every frame written to this link, decoded and validated as a client would."""
        return [decode_server(f) for f in self.frames]

    def take(self) -> list[dict[str, Any]]:
        """The messages written since the last take."""
        messages = self.messages()
        self.frames.clear()
        return messages


class RecordingOutbox:
    """The room's `Outbox`, keeping everything in lists."""

    def send(self, link: RecordedLink, frame: bytes) -> bool:
        if link.closing:
            return False
        link.frames.append(frame)
        return True

    def broadcast(self, links: Sequence[RecordedLink], frame: bytes) -> int:
        return sum(self.send(link, frame) for link in links)

    def replay(self, link: RecordedLink, frames: Iterator[bytes]) -> None:
        for frame in frames:
            self.send(link, frame)

    def close(self, link: RecordedLink, code: CloseCode, reason: str) -> None:
        if not link.closing:
            link.closing = True
            link.closed = (int(code), reason)

    def snapshot_states(self, links: Sequence[RecordedLink]) -> np.ndarray:
        return np.array([-1 if lk.closing else (1 if lk.busy else 0) for lk in links], np.int64)

    def write_snapshots(
        self,
        links: Sequence[RecordedLink],
        states: np.ndarray,
        prefixes: Sequence[bytes],
        client_group: np.ndarray,
        tails: np.ndarray,
    ) -> int:
        for link, group, tail in zip(links, client_group.tolist(), tails, strict=True):
            link.frames.append(prefixes[group] + tail.tobytes())
        return len(links)


class RecordingHost:
    """A room's host with a settable clock (`now`, seconds) and a recording outbox."""

    def __init__(
        self,
        config: RoomConfig | None = None,
        secret: bytes = b"recording-secret",
        storage: Storage | None = None,
        layout: Layout | None = None,
    ) -> None:
        self.layout = layout or load_layout()
        self.config = config or RoomConfig(open_rooms=True)
        self.secret = secret
        self.storage: Storage = storage or SqliteStorage(":memory:")
        self.metrics = ServerMetrics()
        self.out = RecordingOutbox()
        self.now = 0.0

    def now_s(self) -> float:
        return self.now

    def room(self, name: str = "bar") -> Room:
        room = Room(name, self)
        room.on_create()
        return room
