"""Who is behind a connection, beyond the connection: limits that a reconnect does not reset.

An identity is an invite: the nonce of the invite token a hello carried. A room keeps, per
identity, what must outlive any one connection (docs/protocol.md, section 10):

- how many avatars it holds in the room (present or away): what the invite says
  (`neonbar invite --avatars N`, for a bot crowd), else `avatars_per_invite` (16); an invite
  that names its holder ("--name") is one person and holds one avatar, so a second hello with
  it takes that avatar over (the older connection is closed with 4409);
- how fast it may join (`joins_per_min`, burst `join_burst`, both scaled up for an allowance
  above the burst): join-and-drop loops are refused with 4429 instead of minting avatars;
- a message budget shared by all its connections: its allowance times one connection's;
- whether a host kicked it (it may not come back: 4403) or muted it (its avatars stay muted,
  new ones included). Both are stored with the room (server/hosting.py), so they outlive a
  restart, `kill -9` included.

Open rooms (`--open`, for local tests and load runs) have no invites: per-connection limits
only, and kicks last as long as the avatar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neonbar.ratelimit import TokenBucket


@dataclass(eq=False)
class Identity:
    key: str
    allowance: int  # avatars it may hold in the room at once
    throttle: TokenBucket
    joins: TokenBucket
    avatars: set[int] = field(default_factory=set)
    kicked: bool = False
    muted: bool = False
    # False for an identity brought back from storage before any hello showed its invite
    # (a restart): the first hello with the invite sets its allowance.
    sized: bool = True

    def standing(self) -> dict[str, bool]:
        """What a host decided about this invite, as it is stored (JSON)."""
        return {"kicked": self.kicked, "muted": self.muted}


def identity_key(invite: Any) -> str:
    """The key of an invite (its nonce; a nonce-less legacy token by its fields)."""
    nonce = getattr(invite, "nonce", "")
    if nonce:
        return f"invite:{nonce}"
    return f"invite:{invite.room}/{invite.role}/{invite.name}/{invite.expires_s}"


class Identities:
    """The identities seen in one room."""

    def __init__(
        self,
        msgs_per_s: float,
        burst: float,
        avatars_per_invite: int,
        joins_per_min: float,
        join_burst: int,
    ) -> None:
        self.msgs_per_s = msgs_per_s
        self.burst = burst
        self.avatars_per_invite = avatars_per_invite
        self.joins_per_min = joins_per_min
        self.join_burst = join_burst
        self._by_key: dict[str, Identity] = {}

    def get(self, key: str, now_s: float, allowance: int | None = None) -> Identity:
        """The identity of `key`, made on first sight with `allowance` avatars (None: the
        room's default); its budgets scale with the allowance, so a declared crowd can join
        at once and send what that many people would."""
        found = self._by_key.get(key)
        if found is None:
            share = allowance or self.avatars_per_invite
            found = Identity(key, share, *self._buckets(allowance, now_s))
            self._by_key[key] = found
        elif not found.sized and allowance is not None:
            # Restored without its invite (server/durability.py, server/hosting.py): the
            # invite's own allowance replaces the default it was made with.
            found.allowance = allowance
            found.throttle, found.joins = self._buckets(allowance, now_s)
            found.sized = True
        return found

    def restore(self, key: str, now_s: float, kicked: bool, muted: bool) -> Identity:
        """An identity as storage kept it (a room being created; then `unsized()`)."""
        found = self.get(key, now_s)
        found.kicked, found.muted = kicked, muted
        return found

    def _buckets(self, allowance: int | None, now_s: float) -> tuple[TokenBucket, TokenBucket]:
        """The message budget and the join bucket for an invite of `allowance` avatars."""
        share = allowance or self.avatars_per_invite
        # A declared crowd (allowance above the join burst) may all join at once.
        crowd = max(1.0, (allowance or 0) / self.join_burst)
        return (
            TokenBucket(self.msgs_per_s * share, self.burst * share, now_s),
            TokenBucket(self.joins_per_min / 60.0 * crowd, self.join_burst * crowd, now_s),
        )

    def unsized(self) -> None:
        """Every identity known now came from storage, not from a hello (a room being
        created): each takes its allowance from the next hello with its invite."""
        for identity in self._by_key.values():
            identity.sized = False

    def find(self, key: str | None) -> Identity | None:
        return None if key is None else self._by_key.get(key)
