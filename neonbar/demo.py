"""`neonbar demo`: the investor demo in one command.

Starts a local server, mints a host invite, lets a few bots wander, cheer and order drinks, and
opens the desktop client. With no display (or --offscreen) the client renders through EGL and
writes a video and a screenshot instead of opening a window. Every piece is the real program
(`neonbar server`, `neonbar bots`, `neonbar client`) run as a child process, so the demo
exercises exactly what a second person on another machine would run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from neonbar.errors import UserError

ROOM = "orange-haze"
LISTENING = re.compile(r"listening on (ws://\S+)")


def _neonbar(*args: str) -> list[str]:
    return [sys.executable, "-m", "neonbar", *args]


def start_server(
    data_dir: Path, port: int, timeout_s: float = 30.0
) -> tuple[subprocess.Popen, str]:
    """Start `neonbar server` and wait for its `listening on ws://H:P` line.

    Its output goes to a log file in the data directory, not a pipe: nobody reads a pipe
    after start-up, and a full pipe would stall the server.
    """
    log_path = data_dir / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            _neonbar("server", "--host", "127.0.0.1", "--port", str(port), "--data", str(data_dir)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        match = LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return proc, match.group(1)
        time.sleep(0.05)
    proc.kill()
    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
    raise UserError("the server did not start: " + (" / ".join(tail) or "no output"))


def mint_invite(data_dir: Path, server_url: str, role: str, name: str | None = None) -> str:
    """A token from `neonbar invite` (its first output line)."""
    args = ["invite", "--room", ROOM, "--role", role, "--data", str(data_dir), "--ttl", "2h"]
    args += ["--server", server_url] + (["--name", name] if name else [])
    out = subprocess.run(_neonbar(*args), capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise UserError(f"could not mint an invite: {out.stderr.strip() or 'no output'}")
    return out.stdout.splitlines()[0].strip()


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    offscreen = args.offscreen or not has_display()
    duration_s = args.duration if args.duration is not None else (20.0 if offscreen else 600.0)
    out_dir = Path("out")
    record = Path(args.record) if args.record else (out_dir / "demo.mp4" if offscreen else None)
    screenshot = out_dir / "demo.png" if offscreen else None
    for path in (record, screenshot):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    data_dir = Path(tempfile.mkdtemp(prefix="neonbar-demo-"))
    children: list[subprocess.Popen] = []
    try:
        server, url = start_server(data_dir, args.port)
        children.append(server)
        print(f"Neon Bar demo: server {url}, room '{ROOM}'", flush=True)
        host_token = mint_invite(data_dir, url, "host", name="Director")
        if args.bots > 0:
            bot_token = mint_invite(data_dir, url, "collaborator")
            bots_log = (data_dir / "bots.log").open("w")  # closed with the process at exit
            bots = subprocess.Popen(
                _neonbar(
                    "bots", "--server", url, "--room", ROOM, "--count", str(args.bots),
                    "--duration", str(duration_s + 30), "--token", bot_token,
                ),
                stdout=subprocess.DEVNULL,
                stderr=bots_log,
            )  # fmt: skip
            children.append(bots)
            print(f"  {args.bots} guests are wandering the bar, cheering and ordering drinks.")
        print(
            "  A second person joins from another machine with:\n"
            f"    neonbar invite --room {ROOM} --role collaborator --data {data_dir}\n"
            "    neonbar client --server '<the link it prints>' --name YOU\n"
            "  (start the server with --host 0.0.0.0 so other machines can reach it)",
            flush=True,
        )
        client_args = ["client", "--server", url, "--room", ROOM, "--name", "Director"]
        client_args += ["--token", host_token]
        if offscreen:
            after = min(6.0, max(1.0, duration_s - 2.0))
            client_args += ["--offscreen", "--duration", str(duration_s)]
            client_args += ["--screenshot", str(screenshot), "--after", str(after)]
            client_args += ["--record", str(record)]
            print(f"  No display: rendering offscreen for {duration_s:.0f} s ...", flush=True)
        status = subprocess.run(_neonbar(*client_args), check=False).returncode
        if status != 0:
            raise UserError(f"the client exited with status {status}")
        if offscreen:
            print(f"Wrote the video {record} and the screenshot {screenshot}.")
        return 0
    finally:
        # Guests leave before the server closes, so nobody is told "the server is restarting".
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
