"""Snapshots against a real server: deltas decode to the server's exact state, whatever the acks.

An observer acknowledges irregularly (on time, late, not at all, an older tick, or -1 to ask
for a full snapshot) and rebuilds the room with the client's own decoder (neonbar.worldview).
Every avatar's decoded position at every tick must equal what the server told that avatar's own
client about itself at the same tick.
"""

from __future__ import annotations

import asyncio
import random

from serverfixtures import RawClient, run

from neonbar.worldview import WorldView


def test_deltas_match_the_server_state_under_irregular_acks(make_server) -> None:
    server = make_server()
    assert server.server is not None
    rng = random.Random(11)
    truth: dict[int, dict[int, tuple[int, int, int]]] = {}  # avatar -> tick -> (x, y, yaw)

    async def walk(client: RawClient, step_cm: int, stop: asyncio.Event) -> None:
        seq = 0
        mine = truth.setdefault(client.avatar, {})
        while not stop.is_set():
            msg = await client.snap()
            x, y, yaw, _ = msg["you"]
            mine[msg["tick"]] = (x, y, yaw)
            seq += 1
            await client.send(
                {"t": "input", "seq": seq, "ack": msg["tick"], "x": x + step_cm,
                 "y": y + step_cm // 2, "yaw": (yaw + 900) % 65536}
            )  # fmt: skip

    async def scenario() -> tuple[int, int, int, int]:
        walkers = [await RawClient.join(server.url, room="bases", name=f"w{i}") for i in range(6)]
        observer = await RawClient.join(server.url, room="bases", name="observer")
        stop = asyncio.Event()
        tasks = [asyncio.create_task(walk(w, 3 + 2 * i, stop)) for i, w in enumerate(walkers)]
        view = WorldView(history_ticks=32, interpolate=False)
        decoded: dict[int, dict[int, tuple[int, int, int]]] = {}
        deltas = fulls = seq = 0
        held: list[int] = []
        for _ in range(80):
            snap = await observer.snap()
            result = view.apply(snap)
            assert result.applied, "the server sent a delta against a base we never held"
            deltas += snap["base"] >= 0
            fulls += snap["base"] < 0
            state = view.current()
            for aid, x, y, yaw in zip(
                state.ids.tolist(), state.x_cm.tolist(), state.y_cm.tolist(),
                state.yaw_units.tolist(), strict=True,
            ):  # fmt: skip
                decoded.setdefault(aid, {})[snap["tick"]] = (x, y, yaw)
            held.append(snap["tick"])
            roll = rng.random()
            if roll < 0.55:
                ack = snap["tick"]
            elif roll < 0.75:
                continue  # no input this tick: the ack stays where it was
            elif roll < 0.9:
                ack = rng.choice(held[-8:])  # an older tick we hold
            else:
                ack = -1  # lost our bases: a full snapshot next
            seq += 1
            await observer.send({"t": "input", "seq": seq, "ack": ack, "x": 0, "y": 0, "yaw": 0})
        stop.set()
        await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        compared = 0
        for walker in walkers:
            for tick, seen in decoded.get(walker.avatar, {}).items():
                if tick in truth[walker.avatar]:
                    assert seen == truth[walker.avatar][tick], (walker.avatar, tick)
                    compared += 1
        for c in (*walkers, observer):
            await c.close()
        return deltas, fulls, compared, view.missing_bases

    deltas, fulls, compared, missing = run(scenario(), timeout_s=60)
    assert missing == 0
    assert deltas >= 30 and fulls >= 3  # both kinds really happened
    assert compared >= 6 * 60  # nearly every walker at nearly every observed tick
