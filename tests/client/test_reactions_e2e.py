"""The Empathy Engine end to end: a real server, reacting bots, a client sharing a face video.

A scene made from a clip carries a branch note; bots with --react watch it, a 3D client shares
reactions read from a face video; the felt arc fills (persisted beside the server's data), a
branch is taken and announced as a kept event, and the chosen scene is loaded next.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.reactions.synthetic import FaceAnimator, write_video
from neonbar import reaction as wire

pytestmark = pytest.mark.render

ROOT = Path(__file__).resolve().parents[2]
ROOM = "empathy"

TRIAL = """Title: Trial
Credit: a test

EXT. PLATFORM - NIGHT

Rain. A board flickers. Footsteps on the stairs! Someone runs!

[[branch: the_choice at 7s over 5s on tension
    below -> trial_hard "the harder cut"
    else -> trial_soft "as written"]]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _neonbar(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neonbar", *args], capture_output=True, text=True, env=env,
        cwd=ROOT, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "NEONBAR_SCENES": str(tmp / "scenes"), "NEONBAR_CACHE": str(tmp / "c"),
           "NEONBAR_DATA": str(tmp / "client")}  # fmt: skip
    animator = FaceAnimator()
    face = write_video(tmp / "face.mp4", duration_s=10.0, fps=15, animator=animator)
    short = write_video(tmp / "short.mp4", duration_s=2.0, fps=15, animator=animator)
    (tmp / "trial.fountain").write_text(TRIAL)
    for name, clip, play in (("trial_hard", short, None), ("trial_soft", short, None),
                             ("trial", face, tmp / "trial.fountain")):  # fmt: skip
        args = ["scene", "add", str(clip), "--title", name, "--name", name]
        if play is not None:
            args += ["--screenplay", str(play)]
        proc = _neonbar(*args, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
    return tmp, env, face


def test_bots_and_a_face_video_fill_the_felt_arc_and_take_a_branch(stage):
    tmp, env, face = stage
    data = tmp / "server"
    port = _free_port()
    log_path = tmp / "server.log"
    server_log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "neonbar", "server", "--port", str(port), "--data", str(data)],
        stdout=subprocess.PIPE, stderr=server_log, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert "listening on" in line, line
        url = f"ws://127.0.0.1:{port}"
        host = _neonbar("invite", "--room", ROOM, "--role", "host", "--data", str(data),
                        env=env, timeout=30).stdout.strip().splitlines()[0]  # fmt: skip
        viewer = _neonbar("invite", "--room", ROOM, "--role", "viewer", "--data", str(data),
                          env=env, timeout=30).stdout.strip().splitlines()[0]  # fmt: skip
        client_log = (tmp / "client.log").open("w")
        client = subprocess.Popen(
            [sys.executable, "-m", "neonbar", "client", "--server", url, "--room", ROOM,
             "--token", viewer, "--name", "ada", "--offscreen", "--duration", "60",
             "--size", "320x180", "--reaction-video", str(face), "--data", str(tmp / "client")],
            stdout=client_log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while "'ada'" not in log_path.read_text() and time.monotonic() < deadline:
            assert client.poll() is None, (tmp / "client.log").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2.0)  # its reactor is reading the video by now
        bots = _neonbar("bots", "--server", url, "--room", ROOM, "--token", host, "--count", "5",
                        "--duration", "11", "--play", "trial", "--react", "--beats", "--json",
                        "--chatty", "0", env=env, timeout=120)  # fmt: skip
        assert bots.returncode == 0, bots.stderr[-3000:]
        report = json.loads(bots.stdout)
        assert report["connected"] == 5 and report["reactions_sent"] > 100
        client.terminate()
        client.wait(60)
        client_log.close()
        client_out = (tmp / "client.log").read_text()
        assert "Traceback" not in client_out and "reactions off" not in client_out
    finally:
        server.terminate()
        server.communicate(timeout=30)
        server_log.close()
    out = log_path.read_text()
    felt = wire.load_felt(data, ROOM)
    assert "trial" in felt, out[-3000:]
    arc, _micro = felt["trial"]
    series = arc.series()
    covered = series["t_s"][series["n"] > 0]
    assert arc.count > 100 and covered.min() < 2.0 and covered.max() > 8.0
    from neonbar.reaction import FeltArcStore

    store = FeltArcStore(data)
    watchers = store.watchers(ROOM, "trial")
    store.close()
    assert "ada" in watchers and sum(w.startswith("bot") for w in watchers) == 5
    from server.storage import SqliteStorage

    storage = SqliteStorage(data / "neonbar.db")
    branches = storage.events(ROOM, kinds=["branch"])
    storage.close()
    assert len(branches) == 1, out[-3000:]
    (branch,) = branches
    assert branch["point"] == "the_choice" and branch["choice"] in ("trial_hard", "trial_soft")
    assert "watchers" in branch["reason"] or "nobody" in branch["reason"]
    assert f"-> {branch['choice']}" in out  # the server logged the decision
    report_dir = tmp / "report"
    proc = _neonbar("report", "--data", str(data), "--room", ROOM, "--out", str(report_dir),
                    env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (report_dir / "index.html").read_text()
    assert "Felt against intended" in page and "No felt arc" not in page
    assert (report_dir / "trial-arcs.png").is_file()
