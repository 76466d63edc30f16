"""Scene specs, the user scene folder, clip import and its refusals, `neonbar scene` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neonbar.cli import main
from neonbar.errors import UserError
from neonbar.scenes import (
    DEMO_SCENE,
    SHIPPED_DIR,
    import_clip,
    list_scenes,
    load_scene,
    media_hash,
    media_path,
    render_path,
    spec_hash,
)
from neonbar.video import H264Writer, probe, read_frames

SCREENPLAY = "INT. BAR - NIGHT\n\nMIRA raises a glass.\n\nMIRA\nTo the dust!\n"


@pytest.fixture(autouse=True)
def user_scenes(tmp_path, monkeypatch):
    """Every test gets its own user scene folder and render cache (never the repo's scenes/)."""
    folder = tmp_path / "user-scenes"
    monkeypatch.setenv("NEONBAR_SCENES", str(folder))
    monkeypatch.setenv("NEONBAR_CACHE", str(tmp_path / "cache"))
    return folder


def numbered_clip(path: Path, frames: int = 36, fps: int = 12, size=(96, 64)) -> Path:
    """A clip with its frame number drawn into each frame (as digits and as a bar length)."""
    import cv2

    with H264Writer(path, size=size, fps=fps) as video:
        for k in range(frames):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            img[-6:, : 2 * k + 2] = (255, 176, 0)
            cv2.putText(img, str(k), (4, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (45, 226, 255), 2)
            video.write(img)
    return path


def repo_scene_files() -> set[str]:
    return {p.name for p in SHIPPED_DIR.iterdir()}


def test_shipped_scenes_load_and_the_demo_scene_is_one_of_them():
    names = [s.name for s in list_scenes()]
    assert {"dust_storm", "neon_alley", "rooftop_signal"} <= set(names)
    assert "bar" not in names  # the layout is not a scene
    assert DEMO_SCENE in names
    dust = load_scene("dust_storm")
    assert dust.title == "Orange Dust" and dust.look == "orange_haze"
    assert dust.style.weather == "dust" and dust.source == "generated"
    assert dust.screenplay == SHIPPED_DIR / "dust_storm.fountain"
    assert 20 <= dust.duration_s <= 40 and dust.fps == 24
    alley = load_scene(SHIPPED_DIR / "neon_alley.toml")  # a path works too
    assert alley.look == "mood_for_love" and alley.style.weather == "rain"
    assert alley.shipped


def test_unknown_scene_and_bad_specs(tmp_path):
    with pytest.raises(UserError, match="no scene named 'nope'"):
        load_scene("nope")
    with pytest.raises(UserError, match="bar's layout"):
        load_scene(SHIPPED_DIR / "bar.toml")
    play = tmp_path / "p.fountain"
    play.write_text(SCREENPLAY)
    base = 'title = "T"\nscreenplay = "p.fountain"\nduration_s = 10\n'
    cases = {
        "look = 'sepia'": "unknown look 'sepia'",
        "fps = 0": "fps must be",
        "[style]\nweather = 'snow'": "weather must be one of",
        "[style]\npalette = ['red']": "palette must be",
        "[style]\nhaze_density_per_m = 2.0": "haze_density_per_m must be",
        "[style]\nwobble = 1": "unknown style setting 'wobble'",
        "size = [1281, 720]": "size must be",
    }
    for extra, sentence in cases.items():
        spec = tmp_path / "s.toml"
        spec.write_text(base + extra + "\n")
        with pytest.raises(UserError, match=sentence):
            load_scene(spec)
    spec.write_text('title = "T"\nduration_s = 10\n')
    with pytest.raises(UserError, match="needs a screenplay"):
        load_scene(spec)
    spec.write_text(base.replace("duration_s = 10", "duration_s = -1"))
    with pytest.raises(UserError, match="duration_s must be"):
        load_scene(spec)
    spec.write_text("title = [")
    with pytest.raises(UserError, match="not valid TOML"):
        load_scene(spec)


def test_render_cache_name_follows_spec_and_generator(tmp_path):
    spec = load_scene("dust_storm")
    a = render_path(spec)
    assert a == render_path(load_scene("dust_storm"))
    assert render_path(spec, (320, 180)) != a
    assert spec_hash(spec, fps=12) != spec_hash(spec)
    assert a.parent == tmp_path / "cache" / "renders"
    with pytest.raises(UserError, match="not rendered yet"):
        media_path(spec, render=False)


def test_a_numbered_clip_imports_with_the_right_duration(tmp_path, user_scenes):
    clip = numbered_clip(tmp_path / "gen.mp4", frames=36, fps=12)
    play = tmp_path / "toast.fountain"
    play.write_text(SCREENPLAY)
    before = repo_scene_files()
    spec = import_clip(clip, "AI Toast", screenplay=play)
    assert spec.name == "ai_toast" and spec.source == "clip"
    assert spec.duration_s == pytest.approx(3.0) and spec.fps == 12
    assert spec.path.parent == user_scenes.resolve()
    assert media_path(spec) == spec.clip and media_hash(spec.clip) == media_hash(clip)
    # The copied clip still holds frames 0..35 in order.
    frames = list(read_frames(spec.clip))
    assert len(frames) == 36
    bar = [int((f[-3, :, 0] > 128).sum()) for f in frames]
    assert bar == sorted(bar) and bar[0] < bar[-1]
    assert (user_scenes / "ai_toast.arc.json").is_file()
    assert "ai_toast" in [s.name for s in list_scenes()]
    assert load_scene("ai_toast").screenplay == (user_scenes / "ai_toast.fountain").resolve()
    assert repo_scene_files() == before


def folder_state(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_bad_import_is_refused_with_its_sentence_and_writes_nothing(tmp_path, user_scenes):
    good = numbered_clip(tmp_path / "good.mp4", frames=6)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_frames = tmp_path / "silence.wav"
    _write_audio_only(no_frames)
    play_empty = tmp_path / "empty.fountain"
    play_empty.write_text("")
    play_binary = tmp_path / "binary.fountain"
    play_binary.write_bytes(b"\xff\xfe\x00\x81")
    import_clip(good, "Taken")
    before = folder_state(user_scenes)
    cases = [
        (dict(clip=not_video, title="A"), "not a video"),
        (dict(clip=empty, title="A"), "is empty"),
        (dict(clip=tmp_path / "missing.mp4", title="A"), "does not exist"),
        (dict(clip=no_frames, title="A"), "no video stream"),
        (dict(clip=good, title="A", screenplay=play_empty), "is empty"),
        (dict(clip=good, title="A", screenplay=play_binary), "not UTF-8"),
        (dict(clip=good, title="A", screenplay=tmp_path / "no.fountain"), "does not exist"),
        (dict(clip=good, title="Taken"), "already exists"),
        (dict(clip=good, title="Dust Storm"), "already exists"),
        (dict(clip=good, title="   "), "needs a title"),
        (dict(clip=good, title="B", name="Bad Name"), "must be lower-case"),
        (dict(clip=good, title="B", look="sepia"), "unknown look 'sepia'"),
    ]
    for kwargs, sentence in cases:
        with pytest.raises(UserError, match=sentence):
            import_clip(**kwargs)
        assert folder_state(user_scenes) == before, kwargs


def _write_audio_only(path: Path) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)


def test_probe_says_what_an_export_holds(tmp_path):
    info = probe(numbered_clip(tmp_path / "n.mp4", frames=10, fps=10, size=(64, 48)))
    assert (info.frames, info.width, info.height) == (10, 64, 48)
    assert info.codec == "h264" and info.codec_tag == "avc1" and info.pix_fmt == "yuv420p"
    with pytest.raises(UserError, match="must be even"):
        H264Writer(tmp_path / "odd.mp4", size=(65, 48))


def test_cli_list_arc_and_add(tmp_path, capsys, user_scenes):
    assert main(["scene", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["scenes"]}
    assert rows["neon_alley"]["arc"] is True and rows["neon_alley"]["source"] == "generated"
    png = tmp_path / "arc.png"
    assert main(["scene", "arc", "dust_storm", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "strong moments:" in out and "SMASH CUT TO:" in out
    assert png.stat().st_size > 10_000
    assert main(["scene", "arc", "neon_alley", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["times_s"]) == len(data["arousal"]) and data["strong_moments"]
    clip = numbered_clip(tmp_path / "c.mp4", frames=24, fps=12)
    assert main(["scene", "add", str(clip), "--title", "Night Bus"]) == 0
    assert "added scene 'night_bus'" in capsys.readouterr().out
    assert main(["scene", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("night_bus"))
    assert "2.0 s" in line and "clip" in line and line.rstrip().endswith("no")
    assert load_scene("night_bus").look == "neutral"
    args = ["scene", "add", str(clip), "--title", "Night Bus 2", "--look", "mood_for_love"]
    assert main(args) == 0 and load_scene("night_bus_2").look == "mood_for_love"
    capsys.readouterr()
    assert main(["scene", "add", str(tmp_path / "arc.png"), "--title", "X"]) == 2
    assert "not a video" in capsys.readouterr().err
    assert main(["scene", "arc", "night_bus"]) == 2
    assert "no screenplay" in capsys.readouterr().err
    assert main(["scene", "arc", "dust_storm", "--png", str(tmp_path / "x" / "a.png")]) == 2
    assert main(["scene", "render", "night_bus", "--out", str(tmp_path / "o.mp4")]) == 2
    assert "imported clip" in capsys.readouterr().err
