"""`neonbar server` as a subprocess: startup line, storage, graceful SIGTERM (clients get 1001)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from serverfixtures import RawClient, run

from neonbar.protocol import CloseCode

REPO = Path(__file__).resolve().parents[2]


def start_server(data: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NEONBAR_SECRET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "neonbar", "server", "--port", "0", "--data", str(data), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            return proc, line.split()[-1]
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")


def gc_metrics(url: str) -> dict[str, float]:
    """The server process runs its garbage collector between ticks (server/collector.py)."""
    http_url = url.replace("ws://", "http://")
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()

    def value(name: str) -> float:
        return next((float(x.split()[-1]) for x in lines if x.startswith(name + " ")), 0.0)

    seen = {
        "full": value('neonbar_gc_seconds_count{kind="full"}'),
        "late": value("neonbar_tick_late_seconds_count"),
    }
    return seen


def test_sigterm_closes_clients_with_1001_and_flushes_storage(tmp_path: Path):
    proc, url = start_server(tmp_path, "--open")
    assert url.startswith("ws://127.0.0.1:") and not url.endswith(":0")
    key = tmp_path / "secret.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    metrics_seen: dict[str, float] = {}
    try:

        async def scenario() -> int | None:
            ann = await RawClient.join(url, room="lounge")
            await ann.send({"t": "chat", "text": "last orders"})
            await ann.event("chat", text="last orders")
            await ann.snap()  # at least one tick has run
            metrics_seen.update(gc_metrics(url))
            proc.send_signal(signal.SIGTERM)
            code = await ann.closed(timeout_s=10)
            assert ann.events[-1]["kind"] == "system"
            return code

        assert run(scenario()) == CloseCode.GOING_AWAY
        assert metrics_seen["full"] >= 1 and metrics_seen["late"] >= 1
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(tmp_path / "neonbar.db") as db:
        rows = db.execute("SELECT kind, body FROM events WHERE room = 'lounge'").fetchall()
        last_seq = db.execute("SELECT last_seq FROM rooms WHERE name = 'lounge'").fetchone()[0]
    assert ("chat", '{"avatar":1,"text":"last orders"}') in rows
    assert last_seq >= 2


def test_invite_cli_prints_token_then_link_and_the_server_accepts_it(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "neonbar", "invite", "--room", "vip", "--role", "host",
         "--name", "Director", "--data", str(tmp_path), "--server", "ws://127.0.0.1:1"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k != "NEONBAR_SECRET"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    token, link = out.stdout.splitlines()
    assert link.startswith("ws://127.0.0.1:1/?room=vip&token=")
    proc, url = start_server(tmp_path)
    try:

        async def scenario() -> dict:
            director = await RawClient.join(url, room="vip", token=token)
            await director.close()
            return director.welcome

        welcome = run(scenario())
        assert welcome["role"] == "host" and welcome["name"] == "Director"
    finally:
        proc.terminate()
        proc.wait(10)
