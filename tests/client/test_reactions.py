"""The reaction pipeline: landmarks from a real photo, features, model, micro-expressions,
calibration, and a synthetic face video through `neonbar react --video`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from client.reactions.calibration import PROMPTS, fit
from client.reactions.features import (
    BROW_INNER,
    BROW_MID,
    EYE_OUTER,
    FEATURES,
    LIP_CORNER,
    features,
    rotation,
)
from client.reactions.micro import MicroDetector
from client.reactions.model import ExpressionModel
from client.reactions.pipeline import OneEuro, ReactionEngine, Reactor
from client.reactions.sources import VideoFileSource
from client.reactions.synthetic import FaceAnimator, sample_photo, write_video
from client.reactions.tracker import FaceTracker
from neonbar import reaction as wire

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photo_landmarks() -> np.ndarray:
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(sample_photo())), cv2.COLOR_BGR2RGB)
    with FaceTracker(video=False) as tracker:
        points = tracker.landmarks(rgb)
    assert points is not None
    return points


@pytest.fixture(scope="module")
def animator() -> FaceAnimator:
    return FaceAnimator()  # finds the photo's landmarks once for every video made here


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, animator) -> Path:
    return write_video(tmp_path_factory.mktemp("face") / "face.mp4", animator=animator)


def test_the_photo_gives_one_face_of_478_landmarks(photo_landmarks):
    assert photo_landmarks.shape == (478, 3)
    iod = np.linalg.norm(photo_landmarks[EYE_OUTER[1]] - photo_landmarks[EYE_OUTER[0]])
    assert 60 < iod < 200  # a face, not a speck: the photo is 512 px wide
    f = features(photo_landmarks)
    assert 0.15 < f[FEATURES.index("eye_open")] < 0.5  # her eyes are open
    assert f[FEATURES.index("mouth_open")] < 0.05  # her mouth is closed


def _move(points: np.ndarray, pitch=0.0, yaw=0.0, roll=0.0, scale=1.0, shift=(0, 0)):
    c = points.mean(axis=0)
    q = (points - c) * [1, -1, -1]
    q = q @ rotation(pitch, yaw, roll).T
    return q * [1, -1, -1] * scale + c + [shift[0], shift[1], 0]


def test_features_do_not_depend_on_head_size_place_or_pose_and_pose_is_measured(
    photo_landmarks,
):
    f0 = features(photo_landmarks)
    expr = slice(0, 9)
    for pitch, yaw, roll in [(0.25, 0, 0), (0, 0.35, 0), (0, 0, 0.3), (0.1, -0.2, 0.15)]:
        f = features(_move(photo_landmarks, pitch, yaw, roll, scale=1.8, shift=(120, -40)))
        assert np.abs(f[expr] - f0[expr]).max() < 0.01
        assert abs(f[FEATURES.index("yaw")] - f0[FEATURES.index("yaw")] - yaw) < 0.05
        assert abs(f[FEATURES.index("roll")] - f0[FEATURES.index("roll")] - roll) < 0.05
    f = features(_move(photo_landmarks, pitch=0.25))
    assert abs(f[FEATURES.index("pitch")] - f0[FEATURES.index("pitch")] - 0.25) < 0.03


def _expression(points: np.ndarray, smile=0.0, brow=0.0, frown=0.0) -> np.ndarray:
    """Landmarks with lip corners / brows moved by these amounts (inter-ocular distances)."""
    p = points.copy()
    iod = np.linalg.norm(p[EYE_OUTER[1], :2] - p[EYE_OUTER[0], :2])
    for i, side in zip(LIP_CORNER, (-1, 1), strict=True):
        p[i, 0] += side * 0.5 * smile * iod
        p[i, 1] -= smile * iod
    for i in (*BROW_MID, *BROW_INNER):
        p[i, 1] -= brow * iod
    for i in BROW_INNER:
        p[i, 1] += frown * iod
    return p


def _sequence(points, script, fps=30, seconds=6.0, seed=0):
    """(t, landmarks) with landmark noise and a slowly moving head."""
    rng = np.random.default_rng(seed)
    for i in range(round(seconds * fps)):
        t = i / fps
        kw = {k: 0.0 for k in ("smile", "brow", "frown")}
        for kind, start, end, amount in script:
            if start <= t < end:
                kw[kind] = amount
        p = _expression(points, **kw)
        p = _move(p, yaw=0.15 * math.sin(t), roll=0.05 * math.sin(1.7 * t), shift=(20 * t, 0))
        yield t, p + rng.normal(0, 0.25, p.shape)


def test_a_smile_in_the_landmarks_reads_as_a_smile_with_positive_valence(photo_landmarks):
    engine = ReactionEngine()
    readings = [
        engine.process_landmarks(t, p)
        for t, p in _sequence(photo_landmarks, [("smile", 2.0, 4.0, 0.06)])
    ]
    smiling = [r for r in readings if 2.6 <= r.t_s < 4.0]
    neutral = [r for r in readings if 1.0 <= r.t_s < 2.0 or r.t_s >= 4.8]
    smile = wire.INTENSITIES.index("smile")
    assert min(r.intensities[smile] for r in smiling) > 0.5
    assert min(r.valence for r in smiling) > 0.4
    assert max(r.intensities[smile] for r in neutral) < 0.15
    assert max(abs(r.valence) for r in neutral) < 0.15


def test_a_frown_reads_negative(photo_landmarks):
    engine = ReactionEngine()
    readings = [
        engine.process_landmarks(t, p)
        for t, p in _sequence(photo_landmarks, [("frown", 2.0, 4.0, 0.05)])
    ]
    frowning = [r for r in readings if 2.6 <= r.t_s < 4.0]
    lower = wire.INTENSITIES.index("brow_lower")
    assert min(r.intensities[lower] for r in frowning) > 0.5
    assert max(r.valence for r in frowning) < -0.2


def test_micro_expressions_are_short_events_and_long_ones_are_not(photo_landmarks):
    engine = ReactionEngine()
    script = [
        ("brow", 2.0, 2.2, 0.08),  # 200 ms brow flash: micro
        ("smile", 3.0, 3.3, 0.06),  # 300 ms smile twitch: micro
        ("brow", 4.0, 5.2, 0.08),  # 1.2 s: an ordinary expression
    ]
    events = []
    for t, p in _sequence(photo_landmarks, script, seconds=6.0):
        events += engine.process_landmarks(t, p).micro
    assert [e.kind for e in events] == ["surprise", "smile"]
    flash, twitch = events
    assert 2.0 <= flash.apex_s < 2.2 and flash.dur_ms <= 500 and flash.strength > 0.5
    assert 3.0 <= twitch.apex_s < 3.3 and twitch.dur_ms <= 500


def test_a_single_frame_glitch_is_not_a_micro_expression():
    det = MicroDetector()
    z = np.zeros(len(FEATURES))
    spike = z.copy()
    spike[FEATURES.index("smile")] = 1.0
    events = []
    for i in range(60):
        events += det.update(i / 30, spike if i == 30 else z)
    assert events == []


def test_one_euro_holds_still_values_and_follows_steps():
    f = OneEuro()
    rng = np.random.default_rng(1)
    out = [f(i / 30, np.array([0.5 + rng.normal(0, 0.02)])) for i in range(60)]
    assert np.std(out[30:]) < 0.012  # jitter reduced
    step = [f(2 + i / 30, np.array([1.0]))[0] for i in range(10)]
    assert step[4] > 0.85  # within ~150 ms of a step


def _features_of(points, n, rng, **kw):
    return [
        features(_expression(points, **kw) + rng.normal(0, 0.25, points.shape)) for _ in range(n)
    ]


def test_calibration_learns_a_subtle_smile_and_keeps_neutral_neutral(photo_landmarks, tmp_path):
    rng = np.random.default_rng(3)
    samples = {
        "neutral": _features_of(photo_landmarks, 40, rng),
        "smile": _features_of(photo_landmarks, 40, rng, smile=0.02),  # a third of a broad smile
        "surprise": _features_of(photo_landmarks, 40, rng, brow=0.05),
    }
    prior = ExpressionModel.load()
    model = fit(prior, samples)
    assert model.calibrated and model.baseline is not None
    smile = wire.INTENSITIES.index("smile")
    subtle = np.median(np.stack(samples["smile"]), axis=0)
    neutral = np.median(np.stack(samples["neutral"]), axis=0)
    before = prior.predict(prior.z(subtle, model.baseline))
    after = model.predict(model.z(subtle, model.baseline))
    assert after[0][smile] > before[0][smile] + 0.2 and after[1] > before[1]
    assert model.predict(model.z(neutral, model.baseline))[0][smile] < 0.2
    path = tmp_path / "reactions" / "calibration.json"
    model.save(path)
    again = ExpressionModel.load(path)
    assert again.calibrated and np.allclose(again.baseline, model.baseline)
    assert np.allclose(again.predict(again.z(subtle, again.baseline))[0], after[0], atol=1e-5)
    with pytest.raises(ValueError, match="too few"):
        fit(prior, {**samples, "surprise": samples["surprise"][:2]})
    assert [p.name for p in PROMPTS] == ["neutral", "smile", "surprise"]
    assert sum(p.seconds for p in PROMPTS) == 20


def _react(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "neonbar", "react", *args],
        capture_output=True, text=True, cwd=cwd or ROOT, timeout=240,
    )  # fmt: skip


def test_a_face_video_runs_through_neonbar_react(face_video, tmp_path):
    proc = _react("--video", str(face_video), "--json", "--data", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["frames"] == 240 and out["faces"] == 240
    assert out["reaction_bytes"] == wire.REACTION_BYTES <= 16
    assert out["calibrated"] is False and out["calibration"] is None
    rs = out["reactions"]
    assert 70 <= len(rs) <= 90  # 10 a second over 8 s
    for r in rs:
        assert len(bytes.fromhex(r["bytes"])) == wire.REACTION_BYTES
    smiling = [r for r in rs if 2.4 <= r["t"] <= 3.8]
    calm = [r for r in rs if 0.8 <= r["t"] <= 1.9 or 4.3 <= r["t"] <= 5.4]
    assert min(r["valence"] for r in smiling) > 0.4
    assert min(r["intensities"]["smile"] for r in smiling) > 0.3
    assert max(abs(r["valence"]) for r in calm) < 0.2
    kinds = {(m["kind"], round(m["at"])) for m in out["micro"]}
    assert ("surprise", 6) in kinds or ("surprise", 5) in kinds
    assert any(m["kind"] == "smile" and 6.6 <= m["at"] <= 6.95 for m in out["micro"])
    assert all(m["dur_ms"] <= 500 for m in out["micro"])
    assert not list(tmp_path.iterdir())  # no calibration asked: nothing written


def test_no_frame_is_written_anywhere(face_video, tmp_path):
    proc = _react("--video", str(face_video), "--duration", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "valence" in proc.stdout and "fps" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_missing_webcam_is_one_sentence_and_exit_2():
    proc = _react("--webcam", "57")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("neonbar react:")]
    assert lines == [
        "neonbar react: webcam 57 cannot be opened (no camera, in use, or no permission)"
    ]
    assert "Traceback" not in proc.stderr


def test_a_missing_video_is_one_sentence(tmp_path):
    proc = _react("--video", str(tmp_path / "nope.mp4"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    proc = _react("--video", str(bad))
    assert proc.returncode == 2 and "not a video" in proc.stderr and "Traceback" not in proc.stderr


def test_the_reactor_thread_fills_its_outbox_pauses_and_stops(face_video):
    reactor = Reactor(VideoFileSource(face_video, realtime=True), scene_time=lambda: 42.0)
    reactor.start()
    deadline = time.monotonic() + 60
    while reactor.stats.reactions < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    reactor.pause()
    time.sleep(0.3)
    frames = reactor.stats.frames
    time.sleep(0.5)
    assert reactor.paused and reactor.stats.frames <= frames + 1
    reactor.pause(False)
    while reactor.stats.frames < frames + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    reactor.stop()
    reactor.join(10)
    assert not reactor.is_alive() and reactor.error is None
    kinds = set()
    while not reactor.outbox.empty():
        kind, item = reactor.outbox.get()
        kinds.add(kind)
        if kind == "reaction":
            assert item.t_s == 42.0  # stamped with the scene clock, not the camera's
    assert "reaction" in kinds and reactor.stats.frames >= frames + 5


def test_the_animator_moves_the_face(tmp_path):
    animator = FaceAnimator(head_motion=1.0)
    a, b = animator.frame(0.0), animator.frame(1.2)
    assert a.shape == (480, 640, 3) and np.abs(a.astype(int) - b).mean() > 2


def test_calibration_from_a_scripted_video_is_stored_and_used(tmp_path, animator):
    from client.reactions.synthetic import Expression

    script = (
        Expression("smile", 7.5, 12.8, 0.03),  # this person's smile is a subtle one
        Expression("brow_raise", 13.5, 19.8, 0.08),
    )
    # 5 frames a second still gives every prompt 25+ counted frames; after calibrating, both
    # runs stop once the smile is over (13 s) instead of reading the whole 21 s again
    video = write_video(tmp_path / "calib.mp4", duration_s=21.0, fps=5, script=script,
                        animator=animator)  # fmt: skip
    data = tmp_path / "me"
    proc = _react(
        "--video", str(video), "--calibrate", "--json", "--data", str(data), "--duration", "13"
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    path = data / "reactions" / "calibration.json"
    assert out["calibrated"] is True and out["calibration"] == str(path)
    stored = json.loads(path.read_text())
    assert stored["calibrated"] and len(stored["baseline"]) == len(FEATURES)
    assert "calibration: Smile" in proc.stderr or "Smile" in proc.stderr
    # the calibrated model reads this person's subtle smile as more of a smile than the prior
    # (the prior read here, through the same engine `neonbar react` uses without a calibration)
    prior = ExpressionModel.load()
    assert not prior.calibrated
    reactor = Reactor(VideoFileSource(video), engine=ReactionEngine(model=prior))
    for t_s, rgb in reactor.source.frames():
        if t_s > 13:
            break
        reactor.step(t_s, rgb)
    prior_smiles = []
    while not reactor.outbox.empty():
        kind, item = reactor.outbox.get()
        if kind == "reaction" and 8.5 <= item.t_s <= 12.5:
            prior_smiles.append(item.intensities[wire.INTENSITIES.index("smile")])
    calibrated = np.median([r["intensities"]["smile"] for r in out["reactions"]
                            if 8.5 <= r["t"] <= 12.5])  # fmt: skip
    assert len(prior_smiles) >= 15  # 5 frames a second over 4 s
    assert calibrated > np.median(prior_smiles) + 0.15, (calibrated, np.median(prior_smiles))
    assert all(bytes.fromhex(r["bytes"])[-1] & wire.FLAG_CALIBRATED for r in out["reactions"])
