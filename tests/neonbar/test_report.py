"""The room report: arcs PNG, thumbnails from the scene's mp4, agreement, the HTML page."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from matplotlib.image import imread

from neonbar import beats as B
from neonbar import report as R


def _clip(path: Path, seconds: float = 4.0, fps: int = 10, step: int = 6) -> Path:
    """Frame k is a flat grey of level step*k (so the decoded frame tells its own index)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(int(seconds * fps)):
            img = np.full((48, 64, 3), step * k, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _records() -> list[B.Beat]:
    chain = B.BeatChain("studio")
    plan = [
        (2.0, "joy", "ana", (0.25, 0.5), "<b>bold</b> & sure"),
        (2.2, "joy", "ben", None, ""),
        (8.6, "fear", "ana", (0.8, 0.2), ""),
        (8.7, "fear", "ben", (0.5, 0.5), "the lip twitch, there"),
    ]
    for t, emo, who, point, note in plan:
        f = B.validate_fields(scene="test_clip", t_in_s=t, emotion_name=emo, point=point, note=note)
        chain.add(f, author=who, role="viewer", server_ms=0)
    return chain.records


def test_frame_at_picks_the_frame_on_screen(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "c.mp4")
    for t, k in ((0.0, 0), (0.55, 5), (1.0, 10), (2.34, 23), (3.95, 39)):
        level = float(R.frame_at(clip, t).mean())
        assert level == pytest.approx(6 * k, abs=2.5), t


def test_scene_report_draws_arcs_and_thumbnails(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "c.mp4", seconds=12.0, step=2)
    recs = _records()

    class Intended:
        times_s = np.linspace(0, 12, 121)
        valence = np.sin(times_s)
        arousal = np.linspace(0, 1, 121)

    felt = R.FeltSeries(Intended.times_s, -Intended.valence, Intended.arousal * 0.5,
                        np.ones(121), ((5.0, "micro: surprise"),))  # fmt: skip
    rep = R.scene_report(
        tmp_path, "test_clip", recs, title="Test clip", duration_s=12.0, intended=Intended(),
        media=clip, felt=felt, moments=2,
    )  # fmt: skip
    assert rep.moments_s == pytest.approx([2.1, 8.65], abs=0.3)
    arcs = imread(tmp_path / rep.arcs_png)
    assert arcs.shape[0] > 500 and arcs.shape[1] > 1000
    # the intended arc's pink is drawn (as is the annotated arc's cyan)
    rgb = (arcs[..., :3] * 255).astype(int)
    assert (np.abs(rgb - (255, 45, 149)).sum(axis=2) < 40).sum() > 200
    assert (np.abs(rgb - (45, 226, 255)).sum(axis=2) < 40).sum() > 200
    thumbs = [name for _, name in rep.thumbnails]
    assert len(thumbs) == 2 and all(thumbs)
    second = imread(tmp_path / thumbs[1])
    h, w = second.shape[:2]
    # the fear ring pinned at (0.8, 0.2) is drawn in fear's colour around that spot
    fear = np.array(B.EMOTION_BY_NAME["fear"].rgb)
    y0, x0 = int(0.2 * h), int(0.8 * w)
    patch = second[max(0, y0 - 20) : y0 + 20, x0 - 20 : x0 + 20, :3]
    assert (np.abs(patch - fear).sum(axis=2) < 0.25).any()


def test_write_report_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = _clip(tmp_path / "c.mp4", seconds=12.0, step=2)

    def meta(name: str, beats):
        return "Test <clip>", 12.0, None, clip, "scene has no screenplay", ""

    monkeypatch.setattr(R, "_scene_meta", meta)
    page = R.write_report(tmp_path / "out", _records())
    text = page.read_text()
    assert "Test &lt;clip&gt;" in text and "&lt;b&gt;bold&lt;/b&gt; &amp; sure" in text
    assert "<b>bold</b>" not in text
    assert "Krippendorff" in text and "the lip twitch, there" in text
    assert "No intended arc: scene has no screenplay" in text
    assert "http" not in text  # nothing from the network
    for ref in ("test_clip-arcs.png", "test_clip-moment-1.png"):
        assert f"src='{ref}'" in text and (tmp_path / "out" / ref).is_file()


def test_report_refuses_nothing_to_report(tmp_path: Path) -> None:
    with pytest.raises(R.UserError, match="no beats"):
        R.write_report(tmp_path, [])
    assert not any(tmp_path.iterdir())


def test_a_moment_inside_a_range_lists_that_range() -> None:
    chain = B.BeatChain("r")
    f = B.validate_fields(scene="s", t_in_s=5.5, t_out_s=9.0, emotion_name="fear")
    rng = chain.add(f, author="ben", role="viewer", server_ms=0)
    f = B.validate_fields(scene="s", t_in_s=2.0, emotion_name="joy")
    point = chain.add(f, author="ana", role="viewer", server_ms=0)
    assert R.beats_near([rng, point], 7.2) == [rng]
    assert R.beats_near([rng, point], 3.2) == [point]
    assert R.beats_near([rng, point], 10.6) == []
