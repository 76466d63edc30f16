"""Random traffic from one client never raises inside the server nor disturbs another client."""

from __future__ import annotations

import random

import msgpack
from serverfixtures import RawClient, ServerThread, run

from neonbar.protocol import CLIENT_MESSAGES

VALUES = [None, True, 0, -1, 1, 7, 2**31, -(2**40), 1.5, float("inf"), "", " ", "x" * 40, "cheers",
          "#ff00aa", "host", b"\x00\x01", [], [1, 2], {"a": 1}, 65535, 65536, -32769]  # fmt: skip


def random_frame(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
    kind = rng.choice([*CLIENT_MESSAGES, "nope"])
    fields = {name: rng.choice(VALUES) for name in CLIENT_MESSAGES.get(kind, {})}
    if rng.random() < 0.3:
        fields[rng.choice(["zzz", "t", "avatar"])] = rng.choice(VALUES)
    return msgpack.packb({"t": kind, **fields}, use_bin_type=True)


def test_random_traffic_is_contained(server: ServerThread):
    async def scenario() -> None:
        calm = await RawClient.join(server.url, name="calm")
        rng = random.Random(1234)
        for round_no in range(4):
            fuzzer = await RawClient.join(server.url, name=f"fuzz{round_no}")
            try:
                for _ in range(150):
                    await fuzzer.send_raw(random_frame(rng))
            except Exception:
                pass  # closed for abuse (1008) part-way: fine
            await calm.send({"t": "chat", "text": f"round {round_no}"})
            await calm.event("chat", text=f"round {round_no}")
            await fuzzer.ws.close()
        assert await calm.ping_rtt_s() < 1.0
        await calm.close()

    run(scenario(), timeout_s=60)
    exceptions = server.call(lambda: server.server.metrics.exceptions._value.get())
    assert exceptions == 0
