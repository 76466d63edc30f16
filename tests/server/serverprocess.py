"""A real `neonbar server` in a subprocess on 127.0.0.1 (port 0) with its own --data dir.

For what only a whole process shows: `kill -9` and a restart on the same data, and a default
(invite-only) server as a stranger's client meets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    """`neonbar server` (with `--open` unless `open_rooms=False`), printing where it listens."""

    def __init__(self, data: Path, open_rooms: bool = True) -> None:
        self.data = data
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NEONBAR_SECRET", None)
        args = [sys.executable, "-m", "neonbar", "server", "--host", "127.0.0.1", "--port", "0",
                "--data", str(data)] + (["--open"] if open_rooms else [])  # fmt: skip
        self.proc = subprocess.Popen(
            args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                self.url = line.split()[-1]
                return
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        pytest.fail("the server did not start")

    def invite(self, room: str = "bar", role: str = "collaborator", *extra: str) -> str:
        """`neonbar invite` on this server's data directory: the token (its first line)."""
        out = subprocess.run(
            [sys.executable, "-m", "neonbar", "invite", "--room", room, "--role", role,
             "--data", str(self.data), *extra],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return out.stdout.splitlines()[0].strip()

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL: no shutdown, no flush
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
