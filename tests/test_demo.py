"""`neonbar demo` with no display: the evening recorded, replayed to a film, a screenshot, a report.

The scene is a short imported clip (rendering a generated scene would take minutes on a busy
CI box) whose picture flips between two bright colours twice a second, so the film can show
that the big screen plays it. Everything else is the real demo: server, invites, bots that
mark beats, the scripted Director who records the session, the replay and the report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from neonbar.cli import main

REPO = Path(__file__).resolve().parents[1]
FPS = 24
SCREENPLAY = """\
Title: Flicker

EXT. ROOFTOP - NIGHT

Rain. MIRA waits by the antenna, shaking.

MIRA
They found us. Run!

A searchlight tears across the roof! Sirens scream below!

MIRA
(laughing, relieved)
We made it. We actually made it.

They hold each other, warm and quiet, as the city glows.

[[branch: the_turn at 3.5s over 3s on tension
    below -> flicker_hard "the harder cut"
    else -> flicker_soft "as written"]]
"""
ENDING = """\
Title: Flicker, {label}

EXT. ROOFTOP - LATER

The city hums. MIRA smiles at last.
"""


def _clip(path: Path, seconds: float = 6.0, size: tuple[int, int] = (320, 180)) -> None:
    from neonbar.video import H264Writer

    w, h = size
    with H264Writer(path, size=size, fps=FPS) as video:
        for k in range(int(seconds * FPS)):
            bright = (k // (FPS // 2)) % 2 == 0
            img = np.empty((h, w, 3), np.uint8)
            img[:] = (250, 250, 250) if bright else (20, 40, 230)
            img[:, (k * 6) % w : (k * 6) % w + 12] = (255, 40, 200)  # a moving bar
            video.write(img)


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["NEONBAR_SCENES"] = str(tmp_path / "scenes")
    env["NEONBAR_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(REPO)
    # The scene and the two endings its branch point chooses between.
    for name, seconds, text in (
        ("flicker", 6.0, SCREENPLAY),
        ("flicker_soft", 3.0, ENDING.format(label="as written")),
        ("flicker_hard", 3.0, ENDING.format(label="the harder cut")),
    ):
        clip, play = tmp_path / f"{name}.mp4", tmp_path / f"{name}.fountain"
        _clip(clip, seconds)
        play.write_text(text)
        added = subprocess.run(
            [sys.executable, "-m", "neonbar", "scene", "add", str(clip), "--title",
             name.replace("_", " ").title(), "--screenplay", str(play), "--name", name],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    return env


@pytest.mark.render
@pytest.mark.timeout(420)
def test_headless_demo_writes_a_smooth_film_a_screenshot_and_a_report(
    tmp_path: Path, demo_env: dict[str, str]
) -> None:
    import av
    import cv2

    duration_s = 14.0  # the scene starts at 4.2 s, branches at 7.7 s, its ending is over by 13.2
    done = subprocess.run(
        [sys.executable, "-m", "neonbar", "demo", "--scene", "flicker", "--bots", "3",
         "--duration", str(duration_s), "--size", "320x180"],
        cwd=tmp_path, env=demo_env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    for name in ("demo.mp4", "demo.png", "report/index.html", "demo.nbsession"):
        assert str(Path("out") / name) in done.stdout, done.stdout
    # Clean output: numbered steps, then the paths; no warnings or tracebacks.
    assert done.stderr.strip() == "", done.stderr[-2000:]
    assert done.stdout.startswith("[1/4] ")

    with av.open(str(out / "demo.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.codec_tag == "avc1"
        assert stream.average_rate == FPS
        assert stream.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    # One rendered frame per video frame for the whole evening: none repeated.
    assert len(frames) >= int(duration_s * FPS) - 2
    diffs = [float(np.abs(a.astype(np.int16) - b).mean()) for a, b in pairwise(frames)]
    assert sum(d > 0.05 for d in diffs) >= 0.98 * len(diffs)

    # The scene plays on the big screen: with the tour on the screen, the middle of the frame
    # flips between the clip's white and blue halves of a second.
    h, w = frames[0].shape[:2]
    middle = np.array([f[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean(axis=(0, 1))
                       for f in frames])  # fmt: skip
    late = middle[len(frames) // 2 :]
    blue_minus_red = late[:, 2] - late[:, 0]
    assert blue_minus_red.max() - blue_minus_red.min() > 25, "the screen never changed colour"

    shot = cv2.imread(str(out / "demo.png"))
    assert shot is not None and shot.shape[:2] == (180, 320)
    hsv = cv2.cvtColor(shot, cv2.COLOR_BGR2HSV)
    assert ((hsv[..., 1] > 150) & (hsv[..., 2] > 150)).sum() > 200, "no neon in the screenshot"

    # The report: the scene's three arcs (intended, annotated from the beats the bots marked,
    # felt from their synthetic reactions) and the chain head.
    page = (out / "report" / "index.html").read_text()
    assert "Flicker" in page and "flicker-arcs.png" in page
    assert (out / "report" / "flicker-arcs.png").is_file()
    assert re.search(r"\d+ beats? by [1-9]\d* (people|person)", page), page[:2000]
    assert "Hash chain:</b> intact" in page
    assert "Felt against intended" in page, "no felt arc: the bots' reactions did not arrive"
    assert re.search(r"The branch:</b> at the_turn of flicker the story turned to", page)


def test_demo_refuses_bad_options_with_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [
        (["--bots", "-1"], "--bots must be between"),
        (["--duration", "0"], "--duration must be a positive"),
        (["--record", "film.avi"], "--record needs an .mp4"),
        (["--size", "321x180"], "must be even"),
        (["--scene", "no_such_scene"], "no_such_scene"),
    ]
    for argv, words in cases:
        assert main(["demo", "--offscreen", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
