"""`neonbar demo` with a display: the guided tour runs in a real window and yields to the keyboard.

The test starts its own X server (Xvfb, on a display number it picks itself) and runs the real
demo in a window on it (OpenGL through Mesa's GLX, llvmpipe on a machine without a GPU). It
watches the session recording the Director's client writes as it happens (client/recording.py:
an unbuffered file whose marks name the tour's shots and the moment it yields), types into the
window with xdotool like a person would, and checks the story: the tour flies shot after shot
with the Director standing still, one key stops it and says so without doing what that key
does (C, which would raise a glass), holding W then walks the Director forward, and C cheers.
Every wait is bounded and counts records, not frames per second: on a loaded two-core box the
window may draw only a few frames a second.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.presenter import YIELD_LINE, YIELD_MARK
from client.recording import Recording, read_session

REPO = Path(__file__).resolve().parents[1]
SCREEN = "640x400x24"
WINDOW = "480x270"


@pytest.fixture
def x_display() -> Iterator[str]:
    """A private X display (`:N`); skipped only when Xvfb cannot start here."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed, so no display can be started (make system-deps)")
    read_fd, write_fd = os.pipe()
    # -displayfd: Xvfb picks a free display number itself and writes it once it is listening,
    # so parallel runs never race for one.
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", SCREEN, "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write_fd)
    try:
        number = _read_line(read_fd, timeout_s=30.0)
        if not number.strip().isdigit():
            xvfb.kill()
            why = (xvfb.communicate(timeout=10)[1] or b"").decode(errors="replace").strip()
            pytest.skip(f"Xvfb could not start a display: {why.splitlines()[-1:] or 'no output'}")
        yield f":{number.strip()}"
    finally:
        os.close(read_fd)
        if xvfb.poll() is None:
            xvfb.terminate()
            try:
                xvfb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                xvfb.kill()
                xvfb.wait()


def _read_line(fd: int, timeout_s: float) -> str:
    import select

    out = b""
    deadline = time.monotonic() + timeout_s
    while not out.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


def _clip(path: Path, seconds: float = 4.0, size: tuple[int, int] = (160, 90)) -> None:
    from neonbar.video import H264Writer

    w, h = size
    with H264Writer(path, size=size, fps=24) as video:
        for k in range(int(seconds * 24)):
            img = np.zeros((h, w, 3), np.uint8)
            img[:] = (40, 200, 255) if (k // 12) % 2 else (255, 60, 180)
            video.write(img)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _xdotool(display: str, *args: str) -> str:
    done = subprocess.run(
        ["xdotool", *args], env={**os.environ, "DISPLAY": display},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"xdotool {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


def _wait_for(
    what: str, check: Callable[[], Any], demo: subprocess.Popen[bytes], timeout_s: float
) -> Any:
    """Poll `check` (twice a second) until it returns something true; fail with `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        assert demo.poll() is None, f"the demo ended (status {demo.returncode}) before {what}"
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout_s:.0f} s")


def _recording(path: Path) -> Recording | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        return read_session(path)  # a live file: the complete records so far
    except Exception:
        return None


def _tour_shots(rec: Recording | None) -> list[str]:
    marks = rec.marks if rec is not None else []
    return [text for _, text in marks if text.startswith("tour: ") and text != YIELD_MARK]


def _cheers(rec: Recording | None) -> list[float]:
    """When the Director's client sent a cheer."""
    sent = rec.sent if rec is not None else []
    return [t for t, msg in sent if msg.get("t") == "emote" and msg.get("emote") == "cheers"]


def _yield_time(rec: Recording | None) -> float | None:
    return next((t for t, text in (rec.marks if rec else []) if text == YIELD_MARK), None)


@pytest.mark.render
@pytest.mark.timeout(420)
def test_the_demo_window_tours_until_a_key_then_the_director_walks(
    tmp_path: Path, x_display: str
) -> None:
    assert shutil.which("xdotool"), "xdotool is needed to type into the window (make system-deps)"
    env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
    env.update(DISPLAY=x_display, PYTHONPATH=str(REPO), NEONBAR_SCENES=str(tmp_path / "scenes"),
               NEONBAR_CACHE=str(tmp_path / "cache"))  # fmt: skip
    clip = tmp_path / "glow.mp4"
    _clip(clip)
    added = subprocess.run(
        [sys.executable, "-m", "neonbar", "scene", "add", str(clip), "--title", "Glow",
         "--name", "glow"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    session = tmp_path / "out" / "demo.nbsession"
    stdout, stderr = tmp_path / "demo.out", tmp_path / "demo.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "neonbar", "demo", "--scene", "glow", "--bots", "0",
             "--size", WINDOW, "--duration", "360", "--out", str(tmp_path / "out")],
            cwd=tmp_path, env=env, stdout=out, stderr=err,
        )  # fmt: skip
    kids: list[int] = []
    try:
        # The tour is running: the window draws (the Director's state is recorded every
        # frame) and it has moved on from its first shot, while the Director stands still.
        rec = _wait_for(
            "second shot of the tour",
            lambda: (r := _recording(session)) and len(set(_tour_shots(r))) >= 2 and r,
            demo, timeout_s=180,
        )  # fmt: skip
        assert _yield_time(rec) is None, "the tour yielded before any key was pressed"
        assert len(rec.local_t_s) >= 2
        assert np.ptp(rec.local_state[:, :2], axis=0).max() < 0.01, "the Director moved on tour"
        assert "press any key to take the controls" in stdout.read_text()
        kids = _children(demo.pid)

        window = _xdotool(x_display, "search", "--sync", "--name", "Neon Bar").split()[0]
        _xdotool(x_display, "windowfocus", "--sync", window)
        _xdotool(x_display, "key", "c")  # C cheers: the key that stops the tour does only that
        rec = _wait_for(
            "yield to the keyboard", lambda: (r := _recording(session)) and _yield_time(r) and r,
            demo, timeout_s=90,
        )  # fmt: skip
        t_yield = _yield_time(rec)
        assert t_yield is not None
        start = rec.local_at(t_yield)
        assert start is not None
        _wait_for("yield line", lambda: YIELD_LINE in stdout.read_text(), demo, timeout_s=30)
        assert not _cheers(rec), "the key that stopped the tour also raised a glass"

        _xdotool(x_display, "keydown", "w")
        try:

            def walked() -> Recording | None:
                r = _recording(session)
                if r is None or not len(r.local_t_s):
                    return None
                x, y = r.local_state[-1, :2]
                return r if math.hypot(x - start[0], y - start[1]) > 0.6 else None

            rec = _wait_for("walk of 0.6 m with W held", walked, demo, timeout_s=120)
        finally:
            _xdotool(x_display, "keyup", "w")
        # Forward, the way the Director faced: W walks, not a correction or a drift.
        dx, dy = rec.local_state[-1, 0] - start[0], rec.local_state[-1, 1] - start[1]
        facing = (-math.sin(start[2]), math.cos(start[2]))
        assert (dx * facing[0] + dy * facing[1]) > 0.8 * math.hypot(dx, dy), (dx, dy, start)

        # Now the keys are the Director's: C raises a glass.
        _xdotool(x_display, "key", "c")
        _wait_for("cheer after the tour", lambda: _cheers(_recording(session)), demo, 60)

        # A SIGTERM ends the evening like closing the window: the recording is finished and
        # the server, the projectionist and the client are gone with the demo.
        kids = sorted(set(kids) | set(_children(demo.pid)))
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=90) == 0, stderr.read_text()[-2000:]
        assert "Recorded the session to" in stdout.read_text()
        final = read_session(session)
        assert not final.truncated and final.marks[-1][1] == "end"
        assert [p for p in kids if _alive(p)] == [], "children outlived the demo"
        assert stderr.read_text().strip() == "", stderr.read_text()[-2000:]
    finally:
        if demo.poll() is None:  # a failure above: let the demo stop its children first
            kids = sorted(set(kids) | set(_children(demo.pid)))
            demo.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                demo.wait(timeout=60)
        for pid in [demo.pid, *kids]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        demo.wait(timeout=30)
