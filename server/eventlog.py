"""A room's reliable events: sequence numbers, group commit, delivery after commit, replay.

The contract (docs/server.md, "Durable event log"):

- `append()` gives an event the room's next seq and queues its write; nobody sees it yet.
- `commit()` hands every write queued since the last commit to storage as ONE group (the room
  calls it once per message handled and once per tick). When storage says the group is on
  disk, `deliver` is called with the group's frames, in seq order. Groups are committed and
  delivered in the order they were submitted, so what clients see is a prefix of what is
  stored, and `delivered_seq` only grows.
- After a crash the room starts from the highest seq committed. A seq given out but never
  committed was never seen by anyone, so giving it out again breaks no promise; a seq that
  anyone saw is never given out again, and no stored event is overwritten.
- `frames_after()` serves replays (resume) from a ring of recent frames, or from storage for
  older ones, never above `delivered_seq`: a replay never runs ahead of live delivery.

Sans-I/O: no sockets, no event loop; storage decides when its callbacks run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from neonbar.protocol import ErrorCode, ProtocolError, encode, error_message
from server.storage import PrunePolicy, RoomRecord, Storage, Write, event_write

Frames = list[tuple[int, bytes]]
REPLAY_READ_FRAMES = 256  # a replay reads the ring or the database this many frames at a time


@dataclass
class Replay:
    """Where one connection's replay stands: the last seq written to it."""

    after_seq: int
    frames: int = 0  # replayed so far


class RoomEventLog:
    """Sequence numbers and the commit-then-deliver pipeline of one room.

    Args:
        room: the room's name.
        storage: where groups are committed.
        record: the room's record as loaded (its highest committed seq, what was pruned).
        deliver: called with each committed group's (seq, frame) list, in order.
        ring: how many recent frames stay in memory for replays.
    """

    def __init__(
        self,
        room: str,
        storage: Storage,
        record: RoomRecord,
        deliver: Callable[[Frames], None],
        ring: int = 10_000,
    ) -> None:
        self.room = room
        self.storage = storage
        self.deliver = deliver
        self.seq = record.last_seq  # the last seq given out
        self.delivered_seq = record.last_seq  # the last seq committed and delivered
        self.pruned_through = record.pruned_through
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=ring)
        self._writes: list[Write] = []
        self._frames: Frames = []
        self.inflight = 0  # groups submitted, not yet committed
        self.groups = 0  # groups committed

    # ---------------------------------------------------------------------------- writing

    def append(self, kind: str, body: dict[str, Any], st: float) -> tuple[int, bytes]:
        """Sequence one event (its fields already checked); returns (seq, frame)."""
        self.seq += 1
        seq = self.seq
        frame = encode({"t": "event", "seq": seq, "st": st, "kind": kind, **body})
        self._writes.append(event_write(self.room, seq, st, kind, body, frame))
        self._frames.append((seq, frame))
        return seq, frame

    def write(self, write: Write) -> None:
        """Queue another write (an avatar's row, feature state) for the next group."""
        self._writes.append(write)

    @property
    def pending_writes(self) -> int:
        """Writes queued for the next group (events included)."""
        return len(self._writes)

    @property
    def pending(self) -> int:
        """Events appended and not yet handed to storage."""
        return len(self._frames)

    def commit(self) -> None:
        """Hand everything queued to storage as one group; deliver its events once stored."""
        if not self._writes:
            return
        writes, frames = self._writes, self._frames
        self._writes, self._frames = [], []
        self.inflight += 1
        self.storage.submit(writes, lambda: self._committed(frames))

    def _committed(self, frames: Frames) -> None:
        self.inflight -= 1
        self.groups += 1
        if not frames:
            return
        self._ring.extend(frames)
        self.delivered_seq = frames[-1][0]
        self.deliver(frames)

    # ---------------------------------------------------------------------------- replays

    def frames_after(
        self, after_seq: int, max_frames: int, max_bytes: int, upto_seq: int | None = None
    ) -> Frames:
        """Committed frames above `after_seq` (and at most `upto_seq`), oldest first, at most
        `max_frames` of them and about `max_bytes` (at least one frame when there is one)."""
        top = self.delivered_seq if upto_seq is None else min(upto_seq, self.delivered_seq)
        after_seq = max(after_seq, self.pruned_through)
        if after_seq >= top or max_frames <= 0:
            return []
        ring = self._ring
        if ring and ring[0][0] <= after_seq + 1:
            start = after_seq + 1 - ring[0][0]
            picked: Frames = []
            size = 0
            for i in range(start, min(len(ring), start + max_frames)):
                seq, frame = ring[i]
                if seq > top or (picked and size + len(frame) > max_bytes):
                    break
                picked.append((seq, frame))
                size += len(frame)
            return picked
        rows = self.storage.event_frames(self.room, after_seq, max_frames)
        picked = []
        size = 0
        for seq, frame in rows:
            if seq > top or (picked and size + len(frame) > max_bytes):
                break
            picked.append((seq, frame))
            size += len(frame)
        return picked

    def replay_start(self, since: int | None) -> tuple[Replay | None, bool]:
        """Where a resume with `since` starts: (the replay or None, whether events it asked
        for were pruned). Without `since` nothing is replayed; a `since` above the room's seq
        (a client from before the data was lost) replays nothing either."""
        if since is None:
            return None, False
        gone = since < self.pruned_through
        start = max(since, self.pruned_through)
        if start >= self.delivered_seq:
            return None, gone
        return Replay(start), gone

    def since(self, seq: int) -> Iterator[bytes]:
        """Frames a resume with `since: seq` is owed, read lazily a chunk at a time.

        Everything up to the last delivered seq as of now: events delivered later reach the
        connection live, behind this replay (the outbox keeps them in order), so nothing comes
        twice. A `seq` below what was pruned first gets an `error` (HISTORY_PRUNED) naming
        where the replay starts; a `seq` at or above the room's gets nothing.
        """
        replay, gone = self.replay_start(seq)
        upto = self.delivered_seq

        def frames() -> Iterator[bytes]:
            if gone:
                yield encode(error_message(ProtocolError(
                    ErrorCode.HISTORY_PRUNED,
                    f"events up to seq {self.pruned_through} are no longer kept; "
                    f"replaying from {self.pruned_through + 1}",
                    "hello",
                )))  # fmt: skip
            if replay is None:
                return
            after = replay.after_seq
            while after < upto:
                chunk = self.frames_after(after, REPLAY_READ_FRAMES, 1 << 20, upto)
                if not chunk:
                    return
                for _, frame in chunk:
                    yield frame
                after = chunk[-1][0]

        return frames()

    # ---------------------------------------------------------------------------- pruning

    def prune(self, policy: PrunePolicy, point: int) -> None:
        """Queue the pruning of replayable events up to seq `point` (storage.prune_point)."""
        point = min(point, self.delivered_seq)
        if point <= self.pruned_through:
            return
        self.pruned_through = point
        self._writes.append(("prune", self.room, point, policy.kept_kinds))
