"""Session recordings and `neonbar replay`: a recorded session replays to what the live client drew.

The live client is the real app (offscreen, in this process) on a real server with real bots;
its frames and drawn positions are recorded as it runs. The replay feeds that recording through
the same protocol client by a virtual clock and must draw every avatar where the live client
did, frame for frame.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from netfixtures import ServerProcess

from client.recording import SessionWriter, read_session
from neonbar.cli import main

REPO = Path(__file__).resolve().parents[2]


def _positions(lines: list[dict]) -> dict[str, np.ndarray]:
    """{avatar id: (frames, 2)} for avatars drawn in every line."""
    ids = set(lines[0]["drawn"])
    for line in lines:
        ids &= set(line["drawn"])
    return {i: np.array([line["drawn"][i] for line in lines]) for i in sorted(ids)}


# ------------------------------------------------------------------------- the file format


def test_a_recording_cut_off_mid_record_reads_up_to_its_last_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "s.nbsession"
    with SessionWriter(path, {"room": "r", "name": "me"}) as writer:
        writer.frame(msgpack.packb({"t": "pong", "ct": 1.0, "st": 5.0}), 1.0)
        writer.local(1.0, 2.0, 0.0, 1.0)
        writer.local(3.0, 2.0, 0.5, 2.0)
        writer.frame(b"x" * 300, 2.5)
    data = path.read_bytes()
    path.write_bytes(data[:-100])  # the process died while writing the last frame

    rec = read_session(path)
    assert rec.truncated
    assert [t for t, _ in rec.frames] == [1.0]
    assert rec.local_at(1.5) == pytest.approx((2.0, 2.0, 0.25))
    assert rec.header["room"] == "r"

    path.write_bytes(data)
    whole = read_session(path)
    assert not whole.truncated and len(whole.frames) == 2


def test_replay_refuses_bad_input_with_one_sentence_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "s.nbsession"
    SessionWriter(good, {"room": "r"}).close()
    not_a_session = tmp_path / "x.nbsession"
    not_a_session.write_bytes(msgpack.packb({"hello": 1}))
    out = tmp_path / "out.mp4"
    cases = [
        ([str(tmp_path / "missing.nbsession"), "--out", str(out)], "does not exist"),
        ([str(not_a_session), "--out", str(out)], "is not a Neon Bar session recording"),
        ([str(good), "--out", str(tmp_path / "out.avi")], "needs an .mp4"),
        ([str(good), "--out", str(out), "--camera", "orbit"], "--camera must be"),
        ([str(good), "--out", str(out), "--size", "321x180"], "must be even"),
        ([str(good), "--out", str(out), "--fps", "0"], "--fps must be between"),
        ([str(good), "--out", str(out)], "holds no frames"),
        ([str(good), "--out", str(tmp_path / "nowhere" / "o.mp4")], "folder does not exist"),
    ]
    for argv, words in cases:
        assert main(["replay", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not out.exists()


# ------------------------------------------------------------------- live against replay


@pytest.mark.render
@pytest.mark.timeout(240)
def test_a_recorded_session_replays_to_the_positions_the_live_client_drew(tmp_path: Path) -> None:
    from client.app import NeonBarApp, make_showbase
    from client.net import NetSession
    from client.recording import AppRecorder
    from client.replay import DrawLog, read_draw_log, render

    server = ServerProcess(tmp_path)
    bots = subprocess.Popen(
        [sys.executable, "-m", "neonbar", "bots", "--server", server.url, "--room", "replay",
         "--count", "3", "--duration", "60", "--chatty", "20"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    session_path, live_log, replay_log = (tmp_path / n for n in ("s.nbsession", "live", "replay"))
    try:
        base = make_showbase(True, (320, 180))
        try:
            net = NetSession(server.url, "replay", "Live", color="#2de2ff")
            app = NeonBarApp(base, net, name="Live")
            recorder = AppRecorder(app, net, SessionWriter(session_path, {"name": "Live"}))
            with live_log.open("w") as f:
                drawn = DrawLog(app, f, clock=lambda: recorder.frame_t_s)
                net.start()
                deadline = time.monotonic() + 120  # a bound, not a measure: a busy box is slow
                # Walk our own avatar too (its recorded state must come back), while the bots
                # wander; stop after 60 frames with everyone in the room.
                full = 0
                while time.monotonic() < deadline and full < 60:
                    app.controls.keys["forward"] = True
                    app.controls.keys["turn_left"] = (full // 15) % 2 == 0
                    base.taskMgr.step()
                    full += len(app.crowd.slot_of) >= 4
                    assert net.state.name != "CLOSED", net.last_error
                    time.sleep(0.005)
                drawn.close()
            recorder.close()
            app.destroy()
        finally:
            base.destroy()
    finally:
        bots.terminate()
        bots.wait(10)
        server.stop()

    live = [line for line in read_draw_log(live_log) if len(line["drawn"]) >= 4]
    assert len(live) >= 50, "the live client did not draw the room with everyone in it"
    recording = read_session(session_path)
    assert not recording.truncated and recording.frames
    result = render(
        recording, tmp_path / "replay.mp4", size=(320, 180), fps=24,
        times_s=[line["t"] for line in live], draw_log=replay_log, progress=False,
    )  # fmt: skip
    assert result.frames == len(live)
    replayed = read_draw_log(replay_log)
    assert [line["t"] for line in replayed] == pytest.approx([line["t"] for line in live])

    a, b = _positions(live), _positions(replayed)
    assert a.keys() == b.keys() and len(a) >= 4
    moved = sum(float(np.hypot(*np.diff(p, axis=0).T).sum()) for p in a.values())
    assert moved > 3.0, "nobody moved: the comparison would prove nothing"
    worst = max(float(np.hypot(*(a[i] - b[i]).T).max()) for i in a)
    assert worst < 0.02, f"replay drew an avatar {worst * 100:.1f} cm from where the live one did"
    # The same comparison a few frames out of step fails: the check can tell.
    shifted = max(float(np.hypot(*(a[i][5:] - b[i][:-5]).T).max()) for i in a)
    assert shifted > 0.05


# ---------------------------------------------------------------------- tour and presenter


def test_the_tour_glides_without_a_jump_and_stays_inside_the_bar() -> None:
    from client.tour import Tour
    from neonbar.layout import load_layout

    layout = load_layout()
    fitted = Tour.for_layout(layout).fitted(16.0)
    for tour in (Tour.for_layout(layout), fitted, fitted.aligned_to_branch(40.0),
                 fitted.aligned_to_branch(95.0)):  # fmt: skip
        t = np.arange(0.0, tour.opening_s + 2 * tour.cycle_s, 1 / 24)
        pos = np.array([tour.at(x)[0] for x in t])
        look = np.array([tour.at(x)[1] for x in t])
        step = np.hypot(*np.diff(pos, axis=0).T[:2])
        assert step.max() < 6.0 / 24, "the camera moved faster than 6 m/s: a cut, not a glide"
        aim = look - pos
        aim /= np.linalg.norm(aim, axis=1)[:, None]
        turn = np.degrees(np.arccos(np.clip((aim[1:] * aim[:-1]).sum(axis=1), -1, 1)))
        assert turn.max() < 90.0 / 24, "the camera swung faster than 90 degrees a second"
        assert (np.abs(pos[:, 0]) < layout.half_x).all() and (
            np.abs(pos[:, 1]) < layout.half_y
        ).all()
        assert (pos[:, 2] > 0.5).all() and (pos[:, 2] < layout.wall_height_m).all()
        # Never through a pendant lamp over a table (shade at 2.65-2.95 m, rod above it).
        lamps = np.array([(c.cx, c.cy) for c in layout.circles if c.kind == "table"])
        flat = np.hypot(pos[:, None, 0] - lamps[None, :, 0], pos[:, None, 1] - lamps[None, :, 1])
        rise = np.maximum(0.0, 2.65 - pos[:, 2])[:, None]
        assert np.hypot(flat, rise).min() > 1.0, "the camera flew through a lamp"
        for box in layout.boxes:  # never inside a pillar, the back bar, a booth ...
            inside = (
                (np.abs(pos[:, 0] - box.cx) < box.hx + 0.3)
                & (np.abs(pos[:, 1] - box.cy) < box.hy + 0.3)
                & (pos[:, 2] < box.height_m + 0.2)
            )
            assert not inside.any(), box
    fitted = Tour.for_layout(layout).fitted(16.0)
    assert fitted.opening_s == pytest.approx(16.0)
    assert fitted.shot_at(0.0).name == "entrance" and fitted.shot_at(16.5).name == "the screen"
    assert Tour.for_layout(layout).fitted(1.5).shot_at(0.0).name == "the screen"
    # The branch shot is held across the moment the room turns to the chosen scene, the
    # screen shot still comes between, and the cycle goes on after.
    for turn_s in (30.0, 40.0, 95.0):
        aligned = fitted.aligned_to_branch(turn_s)
        _, k, local, glide = aligned.shot_index(turn_s - 2.4)
        assert aligned.opening[k].name == "the branch" and local >= glide, turn_s
        assert aligned.shot_at(turn_s + 5.9).name == "the branch"
        assert "the screen" in [s.name for s in aligned.opening[3:]]
        assert aligned.shot_at(aligned.opening_s + 3.0).name == "the screen"


def test_the_live_tour_gives_way_to_the_scene_without_a_jump() -> None:
    from types import SimpleNamespace

    from client.tour import Tour, TourCamera
    from neonbar.layout import load_layout

    class Camera:
        def __init__(self) -> None:
            self.pos = (0.0, 0.0, 0.0)

        def setPos(self, *xyz: float) -> None:  # Panda3D's NodePath spelling
            self.pos = xyz

        def lookAt(self, *xyz: float) -> None:
            pass

    now = [100.0]
    lens = SimpleNamespace(setFov=lambda fov: None)
    rig = SimpleNamespace(camera=Camera(), base=SimpleNamespace(camLens=lens))
    started = [False]
    tour = Tour.for_layout(load_layout())
    cam = TourCamera(rig, tour, clock=lambda: now[0], interruptible=False,
                     playing=lambda: started[0])  # fmt: skip
    path, names = [], []
    for k in range(24 * 20):
        now[0] = 100.0 + k / 24
        started[0] = k >= 24 * 7  # the host presses play 7 s in, in the middle of the opening
        cam.update(0.0, 0.0, 0.0, 1 / 24)
        path.append(cam.camera.pos)
        names.append(cam.shot.name)
    step = np.hypot(*np.diff(np.array(path), axis=0).T[:2])
    assert step.max() < 6.0 / 24, "the camera jumped when the scene started"
    assert names[24 * 6] in ("the bar", "entrance") and "the crowd" not in names[24 * 7 :]
    assert names[24 * 7 + 24 * 8] == "the screen"  # within a glide of the scene starting


def test_the_flying_camera_clears_what_would_fill_the_lens() -> None:
    from types import SimpleNamespace

    from client.tour import BODY_NEAR_M, TAG_NEAR_M, clear_view

    class Node:
        def __init__(self) -> None:
            self.hidden = False

        def hide(self) -> None:
            self.hidden = True

        def show(self) -> None:
            self.hidden = False

        def isHidden(self) -> bool:  # Panda3D's NodePath spelling
            return self.hidden

    where = {1: (0.5, 0.0), 2: (0.5 * (BODY_NEAR_M + TAG_NEAR_M), 0.0), 3: (9.0, 0.0)}
    figs = [SimpleNamespace(tag=Node(), bubble=Node(), root=Node()) for _ in where]
    crowd = SimpleNamespace(slot_of={a: a - 1 for a in where}, figures=figs,
                            position=lambda a: where.get(a))  # fmt: skip
    clear_view(crowd, (0.0, 0.0, 1.7))
    assert [(f.root.hidden, f.tag.hidden, f.bubble.hidden) for f in figs] == [
        (True, True, True), (False, True, True), (False, False, False)]  # fmt: skip
    clear_view(crowd, (0.0, 0.0, 1.7), bubbles=False)  # facing the film: no bubble on it
    assert figs[2].bubble.hidden and not figs[2].tag.hidden
    clear_view(crowd, (1e9, 1e9, 0.0))  # the tour is over: everyone shows again
    assert not any(n.hidden for f in figs for n in (f.tag, f.bubble, f.root))


def test_presenter_jumps_to_the_next_and_previous_strong_moment() -> None:
    from client.presenter import JUMP_LEAD_S, next_moment

    moments = [4.0, 11.0, 19.5]
    assert next_moment(moments, 0.0) == pytest.approx(4.0 - JUMP_LEAD_S)
    assert next_moment(moments, 4.0 - JUMP_LEAD_S) == pytest.approx(11.0 - JUMP_LEAD_S)
    assert next_moment(moments, 19.0) is None
    assert next_moment(moments, 12.0, forward=False) == pytest.approx(11.0 - JUMP_LEAD_S)
    assert next_moment(moments, 10.0, forward=False) == pytest.approx(4.0 - JUMP_LEAD_S)
    assert next_moment(moments, 2.0, forward=False) is None


@pytest.mark.render
@pytest.mark.timeout(180)
def test_the_client_records_its_session_with_the_tour_and_presenter_on(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    path, shot = tmp_path / "mine.nbsession", tmp_path / "shot.png"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "neonbar", "client", "--server", server.url, "--room", "r",
             "--name", "Mira", "--offscreen", "--size", "320x180", "--tour", "--presenter",
             "--save-session", str(path), "--screenshot", str(shot), "--after", "4"],
            cwd=REPO, capture_output=True, text=True, timeout=150, check=False,
        )  # fmt: skip
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    rec = read_session(path)
    assert not rec.truncated and rec.header["name"] == "Mira" and "token" not in rec.header
    assert rec.frames and len(rec.local_t_s) > 5
    assert rec.marks and rec.marks[-1][1] == "end"
    assert shot.is_file()


def test_a_starved_recorder_does_not_burst_the_inputs_it_missed() -> None:
    """After a stall the scripted client goes on from now: catching up would send every
    missed tick's input at once, which the server's rate limit refuses."""
    import asyncio

    from client import recording

    class StalledSession:
        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.lost_s = 0.0  # time the process did not run
            self.local_state = (0.0, 0.0, 0.0)
            self.sent: list[float] = []

        def clock(self) -> float:
            return time.monotonic() - self.t0 + self.lost_s

        def queue_message(self, msg: dict) -> None:
            pass

        async def send_input(self) -> None:
            self.sent.append(self.clock())
            if len(self.sent) == 5:
                self.lost_s = 2.0  # the CPU is taken away for 2 s after the fifth input

    class Writer:
        def local(self, *args: float) -> None:
            pass

    session = StalledSession()
    script = [recording.Step("wait", seconds=60.0)]
    asyncio.run(recording._follow_script(session, Writer(), script, end_s=3.2))  # type: ignore[arg-type]
    # 2 s without a tick, then one input per tick again: no second within the stall's end
    # carries more than the 20 a second (+1 for the edge) the client sends when it is well.
    after = [t for t in session.sent if t >= 2.0]
    assert after, "the recorder stopped after the stall"
    per_second = max(sum(1 for t in after if s <= t < s + 1.0) for s in after)
    assert per_second <= 21
