"""The scene generator: direction from the arc, determinism, neon on screen, the H.264 export."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from renderfixtures import saturated_bright, showbase

from client.film.shots import (
    MIN_SHOT_S,
    STREET_HALF_WIDTH_M,
    camera_pose,
    mood_at,
    plan_shots,
    shot_at,
)
from neonbar.arc import intended_arc
from neonbar.scenes import SHIPPED_DIR, load_scene, media_path, render_path
from neonbar.screenplay import load_screenplay
from neonbar.video import probe, read_frames

SHIPPED = ("dust_storm", "neon_alley", "rooftop_signal", "last_train")
__all__ = ["showbase"]  # the fixture, imported for pytest


def plan(name):
    spec = load_scene(name)
    play = load_screenplay(spec.screenplay, spec.duration_s)
    arc = intended_arc(spec)
    return spec, play, arc, plan_shots(spec, play, arc)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_film_cuts_at_every_scene_heading_and_covers_the_scene(name):
    spec, play, _arc, shots = plan(name)
    starts = [s.start_s for s in shots]
    for heading in play.scene_starts_s:
        assert any(abs(heading - t) < 1e-9 for t in starts), heading
    assert shots[0].start_s == 0.0 and shots[-1].end_s == pytest.approx(spec.duration_s)
    for a, b in itertools.pairwise(shots):
        assert b.start_s == pytest.approx(a.end_s)
        assert a.duration_s >= MIN_SHOT_S * 0.74
    assert len({s.move for s in shots}) >= 3  # a film, not one long take


def test_tension_cuts_faster_and_darkens_release_warms():
    spec, _play, arc, shots = plan("dust_storm")
    calm = [s.duration_s for s in shots if arc.at((s.start_s + s.end_s) / 2)[1] < 0.35]
    tense = [s.duration_s for s in shots if arc.at(s.start_s)[1] > 0.6]
    assert calm and tense and max(tense) < min(calm)
    peak_t = float(arc.times_s[np.argmax(arc.arousal)])
    storm, rest = mood_at(spec, arc, peak_t), mood_at(spec, arc, 21.5)
    assert storm.precipitation > rest.precipitation
    assert storm.exposure < rest.exposure
    assert storm.traffic_speed > rest.traffic_speed
    warm_t = float(arc.times_s[np.argmax(arc.valence)])
    assert mood_at(spec, arc, warm_t).warmth > 0.5 > storm.warmth


@pytest.mark.parametrize("name", SHIPPED)
def test_the_camera_stays_in_the_street(name):
    spec, _play, arc, shots = plan(name)
    for t in np.arange(0.0, spec.duration_s, 0.1):
        v, a = arc.at(t)
        pose = camera_pose(shot_at(shots, t), t, a, v)
        assert abs(pose.pos[0]) < STREET_HALF_WIDTH_M - 0.5, (t, pose)
        assert 0.5 < pose.pos[2] < 45.0, (t, pose)
        assert pose == camera_pose(shot_at(shots, t), t, a, v)  # a pure function of t


def tiny_spec(tmp_path: Path, name: str = "rooftop_signal", duration_s: float = 2.0) -> Path:
    source = SHIPPED_DIR / f"{name}.toml"
    text = source.read_text()
    text = text.replace('screenplay = "', f'screenplay = "{SHIPPED_DIR}/')
    text = re.sub(r"(?m)^size = \[[^\]]*\].*$", "size = [128, 72]", text)
    lines = [ln for ln in text.splitlines() if not ln.startswith(("duration_s", "fps"))]
    path = tmp_path / f"tiny_{name}.toml"
    path.write_text("\n".join([f"duration_s = {duration_s}", "fps = 6", *lines]) + "\n")
    return path


@pytest.mark.render
def test_rendering_twice_gives_the_same_frames_which_move_and_show_neon(tmp_path):
    from client.film.render import render_frames

    spec = load_scene("neon_alley")
    times = [0.4, 6.0, 12.5, 23.0]
    first = render_frames(spec, times, size=(160, 90))
    second = render_frames(spec, times, size=(160, 90))
    for a, b in zip(first, second, strict=True):
        assert a.shape == (90, 160, 3)
        assert np.array_equal(a, b)  # bit for bit: the film is a function of (spec, t)
    picture = [f[12:-12] for f in first]  # inside the letterbox
    for a, b in itertools.pairwise(picture):
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 3.0  # frames differ over time
    assert max(saturated_bright(f.astype(np.int16), sat=0.5, val=120) for f in first) > 40
    # Letterbox bars are black, the picture is not.
    assert first[2][:4].max() < 10 and picture[2].mean() > 10


@pytest.mark.render
def test_export_is_h264_with_the_expected_frames_and_is_cached(tmp_path, monkeypatch):
    from client.film.render import render_frames, render_scene

    monkeypatch.setenv("NEONBAR_CACHE", str(tmp_path / "cache"))
    spec = load_scene(tiny_spec(tmp_path))
    out = tmp_path / "tiny.mp4"
    stats = render_scene(spec, out)
    assert stats.frames == 12 and stats.render_s > 0 and stats.encode_s > 0
    info = probe(out)
    assert (info.frames, info.width, info.height) == (12, 128, 72)
    assert info.codec == "h264" and info.codec_tag == "avc1" and info.pix_fmt == "yuv420p"
    assert info.fps == pytest.approx(6.0)
    decoded = list(read_frames(out))
    assert len(decoded) == 12
    # The decoded video is the rendered film (H.264 at crf 18: small differences only).
    rendered = render_frames(spec, [(6 + 0.5) / 6], size=(128, 72))[0]
    assert np.abs(decoded[6].astype(int) - rendered.astype(int)).mean() < 6.0
    # The same spec gives the same file (at a width that is a multiple of 64: see
    # neonbar/video.py); media_path renders once into the cache.
    again = tmp_path / "again.mp4"
    render_scene(spec, again)
    assert out.read_bytes() == again.read_bytes()
    cached = media_path(spec)
    assert cached == render_path(spec) and cached.is_file()
    mtime = cached.stat().st_mtime_ns
    assert media_path(spec) == cached and cached.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".*.part.mp4"))


@pytest.mark.render
def test_scene_render_command_shows_progress_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    from neonbar.cli import main

    monkeypatch.setenv("NEONBAR_CACHE", str(tmp_path / "cache"))
    spec = tiny_spec(tmp_path, "dust_storm", duration_s=1.0)
    out = tmp_path / "dust.mp4"
    assert main(["scene", "render", str(spec), "--out", str(out), "--size", "64x36"]) == 0
    captured = capsys.readouterr()
    assert "6/6" in captured.err and "frames in" in captured.err  # tqdm's bar and the summary
    assert "H.264" in captured.out and probe(out).frames == 6
    assert main(["scene", "render", str(spec), "--out", str(tmp_path / "x.avi")]) == 2
    assert main(["scene", "render", str(spec), "--out", str(tmp_path / "no" / "x.mp4")]) == 2
    assert main(["scene", "render", str(spec), "--out", str(out), "--size", "65x36"]) == 2
    assert "must be even" in capsys.readouterr().err
    assert main(["scene", "render", "nope", "--out", str(out)]) == 2


@pytest.mark.render
def test_the_clients_record_writes_h264_too(showbase, tmp_path):
    from client.capture import Capture

    done: list[int] = []
    video = tmp_path / "rec.mp4"
    capture = Capture(showbase, lambda: done.append(1), record=str(video), duration_s=0.5)
    for k in range(60):
        showbase.taskMgr.step()
        capture.update(k * 0.05)  # 20 frames a second of session time
        if done:
            break
    assert done
    info = probe(video)
    assert info.codec == "h264" and info.codec_tag == "avc1" and info.pix_fmt == "yuv420p"
    assert info.frames == capture.frames_written >= 12
