"""Fuzzing: random traffic never raises inside the server nor disturbs another client.

Two levels: random frames over real websockets against a real server, and the fuzz target of
bench/fuzz.py (decode -> validate -> dispatch into a real sans-I/O room) in bounded, seeded
runs: its own structure-aware generator, hypothesis, and a short atheris run.
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


# ------------------------------------------------------------- the sans-I/O target (bench/fuzz.py)

REPO = Path(__file__).resolve().parents[2]


def load_fuzz() -> Any:
    spec = importlib.util.spec_from_file_location("neonbar_fuzz", REPO / "bench" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["neonbar_fuzz"] = module
    spec.loader.exec_module(module)
    return module


fuzz = load_fuzz()


def test_seeded_programs_through_a_real_room_raise_nothing():
    """Decode -> validate -> dispatch into a real Room, structure-aware, seeded (bounded run)."""
    target = fuzz.RoomTarget()
    rng = random.Random(2024)
    while target.frames < 2500:
        target.run(fuzz.program(rng))
    # It got past validation: events were sequenced and delivered, sessions were closed.
    assert target.out.frames > target.frames / 2


@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(st.binary(min_size=1, max_size=600))
def test_hypothesis_programs_raise_nothing(data: bytes):
    HYPOTHESIS_TARGET.run(data)


HYPOTHESIS_TARGET = fuzz.RoomTarget()


def test_the_target_reports_a_bug_the_room_swallows(monkeypatch):
    """The oracle works: a handler that raises (the room logs and counts it) fails the run."""
    target = fuzz.RoomTarget()
    social = target.room.features["social"]
    handler = target.room.handlers["chat"]
    assert handler.__self__ is social

    def broken(session, msg, now_s):
        raise KeyError("a bug")

    monkeypatch.setitem(target.room.handlers, "chat", broken)
    target._join(0, resume=False, since=None)
    seat = target.seats[0]
    with pytest.raises(fuzz.FuzzFailure, match="KeyError"):
        target.room.receive(seat, msgpack.packb({"t": "chat", "text": "hi"}), target.clock_s)
        target._check()


def test_the_target_reports_a_frame_the_protocol_refuses():
    target = fuzz.RoomTarget()
    link = fuzz.FuzzLink("x")
    with pytest.raises(fuzz.FuzzFailure, match="refuses"):
        target.out.send(link, msgpack.packb({"t": "event", "seq": 0}))
    target.out.send(link, msgpack.packb({"t": "pong", "ct": 1.0, "st": 2.0}))


def test_atheris_runs_the_same_target(tmp_path: Path):
    """A short coverage-guided run (atheris 3.0, instrumented imports) ends clean."""
    out = subprocess.run(
        # -rss_limit_mb=0: Linux carries a process's peak RSS across exec, so a child of a
        # pytest process that grew to 3 GB over the suite would look out of memory at once.
        [sys.executable, str(REPO / "bench" / "fuzz.py"), "--atheris", "--", "-runs=300",
         "-seed=7", "-rss_limit_mb=0", f"-artifact_prefix={tmp_path}/"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Done 300 runs" in out.stderr
    assert not list(tmp_path.iterdir())  # no crash artifact
