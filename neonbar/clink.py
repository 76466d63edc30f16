"""The clink rule: whose glasses touch when someone cheers.

Decided once, by the server, from its own positions, and sent as a `clink` event, so every
client shows the same clinks (a client deciding from its interpolated view would disagree with
its neighbours about who was near whom).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CLINK_RADIUS_M = 2.2  # two glasses raised within this distance (m) touch
CLINK_WINDOW_S = 1.5  # ...when both cheered within this many seconds of each other
MAX_CLINK_PARTNERS = 8  # the nearest ones, at most


def clink_partners(
    who: int,
    ids: npt.NDArray[np.int64],
    pos_m: npt.NDArray[np.float64],
    cheered_s: npt.NDArray[np.float64],
    now_s: float,
) -> list[int]:
    """The avatars whose glasses touch `who`'s, nearest first.

    Args:
        who: the avatar cheering now (one of `ids`).
        ids: avatar ids present (int, n).
        pos_m: their positions (float, n x 2), metres.
        cheered_s: when each last cheered (server seconds; -inf for never).
        now_s: server time of this cheer.
    """
    ids = np.asarray(ids)
    me = np.flatnonzero(ids == who)
    if len(me) == 0:
        return []
    d_m = np.hypot(*(pos_m - pos_m[me[0]]).T)
    near = (np.abs(cheered_s - now_s) <= CLINK_WINDOW_S) & (d_m <= CLINK_RADIUS_M) & (ids != who)
    order = np.flatnonzero(near)[np.argsort(d_m[near], kind="stable")]
    return [int(i) for i in ids[order[:MAX_CLINK_PARTNERS]]]
