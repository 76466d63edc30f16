"""`neonbar demo`: the investor demo in one command.

A local server, a room of patrons (`neonbar bots`: they walk in, wander, order drinks, cheer,
drift to the big screen when the scene plays, mark beats at its strong moments and send
synthetic reactions), the Director who hosts the evening, the demo scene on the big screen and
the guided camera tour. Every piece is the real program run as a child process, so the demo
exercises exactly what a second person on another machine would run.

With a display the Director is you: the window opens on the tour, and any key hands you the
controls. Without one (or with --offscreen) the Director is a scripted patron whose client
records the session as it happens (client/recording.py); once the evening is over the recording
is replayed offline through the real client at a fixed time step (`neonbar replay`), which
writes a smooth H.264 film however slowly the CPU renders, plus a screenshot, and `neonbar
report` writes the report (arcs, top moments, who marked what, the branch, the chain head).

Engine-independent: no Panda3D and no sockets in this process (docs/demo.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from neonbar.errors import UserError

ROOM = "orange-haze"
DIRECTOR = "Director"
PATRONS = ("Mira", "Chow", "Li-zhen", "Kenji", "Ada", "Rook", "Nova", "Iris", "Tomas", "Yuki",
           "Dex", "Lena")  # fmt: skip
LISTENING = re.compile(r"listening on (ws://\S+)")
PREFERRED_SCENES = ("last_train", "neon_alley")  # a scene with a branch first
PLAY_AT_S = 16.0  # the Director starts the scene once the tour has shown the bar
TAIL_S = 3.0  # the film ends a moment after the last scene does
WINDOW_STAY_S = 900.0  # patrons stay this long when the demo has a window
INTERMISSION_S = 10.0  # with a window: the pause before the scene plays again
PROJECTIONIST_STAY_S = 8.0  # long enough to join and start the scene, then gone
DEFAULT_FPS = 24  # the scenes' own rate: every film frame shows a new scene frame


def _neonbar(*args: str) -> list[str]:
    return [sys.executable, "-m", "neonbar", *args]


class Steps:
    """The numbered progress lines a newcomer sees."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.k = 0
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        self.k += 1
        print(f"[{self.k}/{self.total}] {text}", flush=True)


# ------------------------------------------------------------------------------ the scene


@dataclass(frozen=True)
class DemoScene:
    """The scene on the big screen and what follows it."""

    name: str
    title: str
    duration_s: float
    follow_ons: tuple[str, ...]  # branch scenes (one of them plays after it)
    follow_on_s: float  # the longest of them


def pick_scene(name: str | None) -> DemoScene:
    """The named scene, or the first shipped one of PREFERRED_SCENES (UserError if none)."""
    from neonbar.scenes import list_scenes, load_scene

    if name is None:
        known = {spec.name for spec in list_scenes()}
        name = next((n for n in PREFERRED_SCENES if n in known), None)
        if name is None:
            raise UserError("no demo scene is installed; add one with `neonbar scene add`")
    spec = load_scene(name)
    follow_ons = _branch_scenes(spec)
    lengths = [load_scene(n).duration_s for n in follow_ons]
    return DemoScene(spec.name, spec.title, spec.duration_s, follow_ons, max(lengths, default=0.0))


def _branch_scenes(spec: Any) -> tuple[str, ...]:
    """Scenes a branch point of `spec` can lead to (the spec's and its screenplay's)."""
    names = [b.scene for b in getattr(spec, "branches", ())]
    try:
        from neonbar.branching import read_branches

        if spec.screenplay is not None:
            for point in read_branches(spec.screenplay):
                names += list(_choice_scenes(point))
    except (ImportError, UserError, ValueError, OSError):
        pass
    seen: dict[str, None] = {}
    for n in names:
        seen.setdefault(n, None)
    return tuple(seen)


def _choice_scenes(point: Any) -> list[str]:
    """The scene names a branch point offers, whatever shape its choices have."""
    out: list[str] = []
    for attr in ("choices", "options", "scenes"):
        value = getattr(point, attr, None)
        if isinstance(value, dict):
            value = list(value.values())
        for item in value or ():
            scene = item if isinstance(item, str) else getattr(item, "scene", None)
            if isinstance(scene, str):
                out.append(scene)
    return out


def ensure_rendered(names: Sequence[str], steps: Steps) -> None:
    """Render (once; cached) every generated scene the demo may play: the server only plays
    media that exist."""
    from neonbar.scenes import load_scene, render_path

    missing = []
    for name in names:
        spec = load_scene(name)
        if spec.clip is None and not render_path(spec).is_file():
            missing.append(spec)
    if not missing:
        steps.say("scenes: " + ", ".join(names) + " (rendered before)")
        return
    steps.say(
        "scenes: rendering " + ", ".join(s.name for s in missing) + " (first run only; cached)"
    )
    for spec in missing:
        out = render_path(spec)
        out.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            _neonbar("scene", "render", spec.name, "--out", str(out)),
            stdout=subprocess.DEVNULL,
            stderr=None if sys.stderr.isatty() else subprocess.PIPE,  # the progress bar
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"could not render scene {spec.name}: {tail[0]}")


# ------------------------------------------------------------------------- the evening


def start_server(
    data_dir: Path, port: int, timeout_s: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
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


def mint_invite(
    data_dir: Path, server_url: str, role: str, name: str | None = None, avatars: int = 0
) -> str:
    """A token from `neonbar invite` (its first output line); `avatars`: for a bot crowd."""
    args = ["invite", "--room", ROOM, "--role", role, "--data", str(data_dir), "--ttl", "2h"]
    args += ["--server", server_url] + (["--name", name] if name else [])
    args += ["--avatars", str(avatars)] if avatars else []
    out = subprocess.run(_neonbar(*args), capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise UserError(f"could not mint an invite: {out.stderr.strip() or 'no output'}")
    return out.stdout.splitlines()[0].strip()


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def director_script(scene: str, play_at_s: float) -> list[dict[str, Any]]:
    """The Director's evening: in at the door, a drink at the bar, a toast, then to the screen,
    where they start the scene. Points come from the bar's layout (neonbar/layout.py)."""
    from neonbar.layout import load_layout

    layout = load_layout()
    counter = next((b for b in layout.boxes if b.kind == "counter"), None)
    if counter is not None:
        side = 1.0 if counter.cx < 0 else -1.0
        bar = (counter.cx + side * (counter.hx + 1.6), counter.cy - counter.hy * 0.35)
    else:
        bar = (0.0, 0.0)
    sx, sy = layout.wall_point(layout.screen.wall, layout.screen.center_m, inset_m=7.0)
    to_screen = math.atan2(-(layout.screen.center_m - sx), (layout.half_y - sy))
    return [
        # Choosing the scene early lets the server find its media while we walk.
        {"kind": "send", "msg": {"t": "playback", "op": "scene", "scene": scene}},
        {"kind": "walk", "to": list(bar)},
        {"kind": "send", "msg": {"t": "drink", "drink": "Orange Haze", "color": "#ff8a1f",
                                 "glow": 0.6, "garnish": "orange_peel"}},
        {"kind": "wait", "seconds": 1.0},
        {"kind": "send", "msg": {"t": "emote", "emote": "cheers"}},
        {"kind": "send", "msg": {"t": "chat", "text": "Thank you all for coming. To the film!"}},
        {"kind": "wait", "seconds": 1.0},
        {"kind": "walk", "to": [sx + 1.2, sy]},
        {"kind": "face", "yaw_rad": to_screen},
        # On the hour, wherever the Director is by then.
        {"kind": "send", "at_s": play_at_s, "msg": {"t": "playback", "op": "play"}},
    ]  # fmt: skip


class Evening:
    """The server and the patrons; stops them all (guests first) on exit."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.children: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[str]] = []
        self.url = ""

    def __enter__(self) -> Evening:
        server, self.url = start_server(self.data_dir, self.port)
        self.children.append(server)
        return self

    def spawn(self, name: str, args: list[str], stdout: Any = subprocess.DEVNULL) -> None:
        log = (self.data_dir / f"{name}.log").open("w")
        self._logs.append(log)
        self.children.append(subprocess.Popen(args, stdout=stdout, stderr=log))

    def log_tail(self, name: str, lines: int = 3) -> str:
        path = self.data_dir / f"{name}.log"
        text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return " / ".join(text[-lines:]) or "no output"

    def stop(self) -> None:
        # Guests leave before the server closes, so nobody is told "the server is restarting".
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bots_args(url: str, token: str, count: int, duration_s: float) -> list[str]:
    return _neonbar(
        "bots", "--server", url, "--room", ROOM, "--count", str(count),
        "--duration", str(duration_s), "--token", token, "--chatty", "3", "--beats", "--react",
        "--names", ",".join(PATRONS),
    )  # fmt: skip


# ------------------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> int:
    offscreen = bool(args.offscreen) or not has_display()
    if args.bots < 0 or args.bots > 200:
        raise UserError(f"--bots must be between 0 and 200, not {args.bots}")
    if args.duration is not None and not args.duration > 0:
        raise UserError("--duration must be a positive number of seconds")
    out_dir = Path(getattr(args, "out", "out"))
    record = Path(args.record) if args.record else out_dir / "demo.mp4"
    if record.suffix.lower() != ".mp4":
        raise UserError(f"--record needs an .mp4 file name, not {record}")
    size = tuple(getattr(args, "size", (1280, 720)))
    if size[0] % 2 or size[1] % 2:
        raise UserError(f"--size {size[0]}x{size[1]} must be even in both directions")
    scene = pick_scene(args.scene)
    if args.duration is not None:
        duration_s = float(args.duration)
        play_at_s = min(PLAY_AT_S, 0.3 * duration_s)
    else:
        play_at_s = PLAY_AT_S
        duration_s = play_at_s + scene.duration_s + scene.follow_on_s + TAIL_S
    out_dir.mkdir(parents=True, exist_ok=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    # A SIGTERM unwinds like Ctrl-C: the server and the patrons are stopped, not orphaned.
    previous = signal.signal(signal.SIGTERM, _closing)
    try:
        if offscreen:
            return _run_offscreen(args, scene, duration_s, play_at_s, out_dir, record, size)
        return _run_window(args, scene, duration_s, out_dir, size)
    except _Closing:
        print("the demo was stopped before the end of the evening", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_offscreen(
    args: argparse.Namespace,
    scene: DemoScene,
    duration_s: float,
    play_at_s: float,
    out_dir: Path,
    record: Path,
    size: tuple[int, ...],
) -> int:
    steps = Steps(4)
    ensure_rendered([scene.name, *scene.follow_ons], steps)
    session_path = out_dir / "demo.nbsession"
    screenshot = out_dir / "demo.png"
    report_dir = out_dir / "report"
    data_dir = Path(tempfile.mkdtemp(prefix="neonbar-demo-"))
    try:
        with Evening(data_dir, args.port) as evening:
            host = mint_invite(data_dir, evening.url, "host", name=DIRECTOR)
            guests = f"{args.bots} patrons, " if args.bots else ""
            steps.say(
                f"the evening: {guests}the Director and '{scene.title}' on the big screen "
                f"({duration_s:.0f} s, recorded to {session_path})"
            )
            if args.bots > 0:
                patron = mint_invite(
                    data_dir, evening.url, "collaborator", avatars=max(1, args.bots)
                )
                evening.spawn("bots", bots_args(evening.url, patron, args.bots, duration_s + 15))
            script = data_dir / "director.json"
            script.write_text(json.dumps(director_script(scene.name, play_at_s)))
            recorder = subprocess.run(
                [sys.executable, "-m", "client.recording", "--server", evening.url,
                 "--room", ROOM, "--name", DIRECTOR, "--token", host, "--out", str(session_path),
                 "--duration", f"{duration_s:.2f}", "--script", str(script)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if recorder.returncode != 0:
                why = recorder.stderr.strip().splitlines()[-1:] or ["no output"]
                raise UserError(f"the Director's client failed: {why[0]}")
        steps.say(f"the film: replaying the session offline at {DEFAULT_FPS} fps")
        film = subprocess.run(
            _neonbar("replay", str(session_path), "--out", str(record), "--camera", "tour",
                     "--size", f"{size[0]}x{size[1]}", "--fps", str(DEFAULT_FPS),
                     "--screenshot", str(screenshot)),
            stdout=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        if film.returncode != 0:
            raise UserError(f"the replay failed (status {film.returncode}); see above")
        if args.bots > 0:
            steps.say("the report: arcs, top moments, who marked what, the branch, the chain head")
            report = subprocess.run(
                _neonbar("report", "--data", str(data_dir), "--room", ROOM,
                         "--out", str(report_dir)),
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if report.returncode != 0:
                why = report.stderr.strip().splitlines()[-1:] or ["no output"]
                raise UserError(f"the report failed: {why[0]}")
            page = next(iter(report.stdout.split()[1:2]), str(report_dir))
        else:
            steps.say("the report: none (no patrons, so nobody marked a beat)")
            page = "none"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(
        "Wrote:\n"
        f"  video       {record}\n"
        f"  screenshot  {screenshot}\n"
        f"  report      {page}\n"
        f"  session     {session_path}  (neonbar replay {session_path} --out F.mp4 "
        "--camera follow NAME)",
        flush=True,
    )
    return 0


class Projection:
    """Calls `start` at `first_s` seconds from now, then every `every_s`, until stopped."""

    def __init__(self, start: Callable[[], None], first_s: float, every_s: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(start, first_s, every_s), name="projection", daemon=True
        )
        self._thread.start()

    def _run(self, start: Callable[[], None], first_s: float, every_s: float) -> None:
        t0, at = time.monotonic(), first_s
        while not self._stop.wait(max(0.0, t0 + at - time.monotonic())):
            start()
            at += max(1.0, every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Closing(Exception):
    """SIGTERM to the demo: end the evening as if the window had been closed."""


def _closing(signum: int, frame: Any) -> None:
    raise _Closing


def run_window_client(
    command: list[str], log_path: Path, close_after_s: float | None = None
) -> int:
    """Run the windowed client until its window closes, `close_after_s` passes, or the demo is
    told to stop (Ctrl-C, SIGTERM); returns its exit status.

    The client's diagnostics (Panda3D's and the OpenGL driver's chatter, its log lines) go to
    `log_path`, not the terminal. To end it early it is sent SIGTERM, which it handles like a
    closed window, so the session recording is finished and the server sees the Director leave.
    """
    with log_path.open("w") as log:
        child = subprocess.Popen(command, stderr=log)
        try:
            child.wait(timeout=close_after_s)
        except (subprocess.TimeoutExpired, KeyboardInterrupt, _Closing):
            # Ctrl-C reached the client too (one process group) and it is closing already.
            previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # we are ending anyway
            try:
                child.terminate()
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            finally:
                signal.signal(signal.SIGTERM, previous)
            return 0 if child.returncode in (0, -signal.SIGTERM) else child.returncode
    return child.returncode


def _run_window(
    args: argparse.Namespace,
    scene: DemoScene,
    duration_s: float,
    out_dir: Path,
    size: tuple[int, ...],
) -> int:
    steps = Steps(4 if args.record else 3)
    ensure_rendered([scene.name, *scene.follow_ons], steps)
    session_path = out_dir / "demo.nbsession"
    data_dir = Path(tempfile.mkdtemp(prefix="neonbar-demo-"))
    try:
        with Evening(data_dir, args.port) as evening:
            host = mint_invite(data_dir, evening.url, "host", name=DIRECTOR)
            steps.say(f"the bar is open at {evening.url}, room '{ROOM}'")
            stay_s = max(WINDOW_STAY_S, duration_s + 60)  # the window may stay open a while
            if args.bots > 0:
                patron = mint_invite(
                    data_dir, evening.url, "collaborator", avatars=max(1, args.bots)
                )
                evening.spawn("bots", bots_args(evening.url, patron, args.bots, stay_s))
            # A projectionist (a host bot, no chatter; its own invite, because the Director's
            # fixes the name "Director") starts the scene once the tour has shown the room,
            # and again after each showing, so a window left open never shows a dark screen.
            projectionist = mint_invite(data_dir, evening.url, "host")
            showing_s = scene.duration_s + scene.follow_on_s + INTERMISSION_S
            cue = Projection(
                lambda: evening.spawn("projectionist", _neonbar(
                    "bots", "--server", evening.url, "--room", ROOM, "--count", "1",
                    "--duration", str(PROJECTIONIST_STAY_S), "--token", projectionist,
                    "--chatty", "0", "--play", scene.name, "--names", "Projectionist",
                )),
                first_s=PLAY_AT_S, every_s=showing_s,
            )  # fmt: skip
            print(
                "  Someone else on this machine joins while the window is open with:\n"
                f"    neonbar invite --room {ROOM} --role collaborator --data {data_dir} "
                f"--server {evening.url}\n"
                "    neonbar client --server '<the link it prints second>' --name YOU",
                flush=True,
            )
            until = (
                f"for {args.duration:g} s" if args.duration is not None else "until you close it"
            )
            steps.say(
                f"the window ({until}): the guided tour plays; press any key to take the controls"
            )
            client = _neonbar(
                "client", "--server", evening.url, "--room", ROOM, "--name", DIRECTOR,
                "--token", host, "--size", f"{size[0]}x{size[1]}", "--presenter",
                "--save-session", str(session_path), "--tour", "--quality", "auto",
            )  # fmt: skip
            try:
                status = run_window_client(
                    client, data_dir / "client.log", close_after_s=args.duration
                )
            finally:
                cue.stop()
            if status != 0:
                raise UserError(
                    f"the client exited with status {status}: {evening.log_tail('client')}"
                )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.record:
        steps.say(f"the film: replaying your session to {args.record}")
        film = subprocess.run(
            _neonbar("replay", str(session_path), "--out", str(args.record), "--camera",
                     "follow", DIRECTOR, "--size", f"{size[0]}x{size[1]}",
                     "--fps", str(DEFAULT_FPS)),
            stdout=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        if film.returncode != 0:
            raise UserError(f"the replay failed (status {film.returncode}); see above")
        print(f"Wrote the film {args.record} and the session {session_path}.")
        return 0
    print(f"Recorded the session to {session_path} (neonbar replay it to a film).")
    return 0
