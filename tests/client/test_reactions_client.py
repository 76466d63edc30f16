"""Reactions in the 3D client: faces on avatars, sharing from a video, pause, no camera."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from renderfixtures import FakeSession, project, render, run_for, showbase

from client.app import NeonBarApp
from client.reactions.face import face_pose
from client.reactions.synthetic import write_video
from neonbar import reaction as wire

__all__ = ["showbase"]

pytestmark = pytest.mark.render

SMILE = wire.Reaction(0, 0.8, 0.6, (1.0, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0))
FROWN = wire.Reaction(0, -0.6, 0.5, (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0))
NEUTRAL = wire.Reaction(0, 0.0, 0.3)


def _faces(*pairs):
    ids = [a for a, _ in pairs]
    return {"t": "faces", "d": wire.pack_faces(ids, [wire.pack(r) for _, r in pairs])}


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("face") / "face.mp4", duration_s=4.0)


def _app(showbase, **kw):
    session = FakeSession(you=1)
    session.welcome((0, -900, 0))
    session.add_remote(7, "Mei", "#ff2d55", 0.0, -7.5)
    app = NeonBarApp(showbase, session, name="me", post=False, **kw)
    render(showbase, 2)
    return app


def test_face_pose_moves_each_part_the_right_way():
    rest = face_pose(np.zeros(7))
    smile = face_pose(np.array([1.0, 0, 0, 0, 0, 0, 0]))
    open_ = face_pose(np.array([0, 0, 0, 1.0, 0, 0, 0]))
    frown = face_pose(np.array([0, 0, 1.0, 0, 0, 0, 0]))
    raise_ = face_pose(np.array([0, 1.0, 0, 0, 0, 0, 0]))
    closed = face_pose(np.array([0, 0, 0, 0, 0, 1.0, 0]))
    assert rest == {
        "eyes": (1, 1, 1), "mouth": (1, 1, 1), "mouth_z": (0,), "brows": (0, 0), "corners": (0,)
    }  # fmt: skip
    assert smile["mouth"][0] > 1.5 and smile["mouth_z"][0] > 0
    assert open_["mouth"][2] > 4
    assert frown["brows"][0] < 0 and frown["brows"][1] > 15
    assert raise_["brows"][0] > 0 and raise_["eyes"][2] > 1
    assert closed["eyes"][2] < 0.2


def test_someone_elses_face_shows_on_their_avatar_smoothly(showbase):
    app = _app(showbase)
    fig = app.crowd.figure(7)
    app.session.inbox.append(_faces((7, SMILE)))
    render(showbase, 1)
    first = fig.mouth.getScale()[0]
    run_for(showbase, 0.6)
    settled = fig.mouth.getScale()[0]
    assert 1.0 <= first < settled  # eased in, not snapped
    assert settled == pytest.approx(1.76, abs=0.03)  # 1 + 0.7 smile + 0.1 mouth open
    rig = app.crowd._faces[7]
    assert len(rig.brows) == 2
    app.session.inbox.append(_faces((7, FROWN)))
    run_for(showbase, 0.6)
    assert fig.mouth.getScale()[0] == pytest.approx(1.0, abs=0.05)
    assert rig.brows[0][1].getZ() < 0.058 - 0.01
    assert abs(rig.brows[0][1].getR()) > 15
    app.session.inbox.append(_faces((7, NEUTRAL), (99, SMILE)))  # 99 is nobody we know
    run_for(showbase, 0.6)
    assert fig.eyes.getScale()[2] == pytest.approx(1.0, abs=0.03)
    assert 99 not in app.crowd._faces
    app.destroy()


def test_a_face_up_close(showbase, tmp_path):
    """A picture to look at: Mei smiling, seen from the front."""
    app = _app(showbase)
    broad = wire.Reaction(0, 0.8, 0.5, (1.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0))
    app.session.inbox.append(_faces((7, broad)))
    run_for(showbase, 0.5)
    base = showbase
    app.camera.update = lambda *a, **k: None  # hold the camera where the test puts it
    base.camera.setPos(0.0, -6.6, 1.62)
    base.camera.lookAt(0.0, -7.5, 1.6)
    img = render(base, 3)
    px = project(base, (0.0, -7.5 + 0.14, 1.62 - 0.07))
    assert px is not None
    import cv2

    cv2.imwrite(str(tmp_path / "smile.png"), img[:, :, ::-1].astype(np.uint8))
    app.session.inbox.append(_faces((7, FROWN)))
    run_for(showbase, 0.5)
    cv2.imwrite(str(tmp_path / "frown.png"), render(base, 3)[:, :, ::-1].astype(np.uint8))
    app.destroy()


def test_sharing_from_a_video_sends_reactions_and_pauses_on_r(showbase, face_video):
    app = _app(showbase, reaction_source=(None, str(face_video)))
    share = app.share
    assert share.reactor is not None
    deadline = time.monotonic() + 60
    while share.sent < 8 and time.monotonic() < deadline:
        run_for(showbase, 0.1)
    assert "REACTIONS ON" in share.indicator.text
    sent = [m for m in app.session.sent if m["t"] == "react"]
    assert sent and all(len(m["r"]) % wire.REACTION_BYTES == 0 for m in sent)
    assert all(1 <= len(m["r"]) // wire.REACTION_BYTES <= 4 for m in sent)
    assert 1 in app.crowd._faces  # our own face is on our avatar
    showbase.messenger.send("r")
    render(showbase, 1)
    assert share.reactor.paused and "paused" in share.indicator.text
    before = len(app.session.sent)
    run_for(showbase, 0.5)
    # at most what was already in flight when the key was pressed
    assert len([m for m in app.session.sent[before:] if m["t"] == "react"]) <= 1
    showbase.messenger.send("r")
    render(showbase, 1)
    assert not share.reactor.paused
    app.destroy()
    assert not share.reactor.is_alive()


def test_without_a_webcam_the_client_says_so_and_carries_on(showbase):
    app = _app(showbase, reaction_source=(57, None))
    assert app.share.reactor is None and "no camera" in app.share.indicator.text
    assert "webcam 57" in app.hud.toast.text
    app.session.inbox.append(_faces((7, SMILE)))
    run_for(showbase, 0.3)
    assert 7 in app.crowd._faces  # others' faces still show
    app.destroy()


def test_reactions_are_off_unless_asked_for(showbase):
    app = _app(showbase)
    assert app.share.reactor is None and app.share.indicator.text == ""
    run_for(showbase, 0.2)
    assert not [m for m in app.session.sent if m["t"] in ("react", "micro")]
    app.destroy()


def test_a_branch_event_tells_everyone_what_plays_next_and_why(showbase):
    app = _app(showbase)
    app.session.inbox.append({
        "t": "event", "seq": 5, "st": 0.0, "kind": "branch", "scene": "last_train",
        "point": "the_envelope", "choice": "last_train_hard", "label": "the harder cut",
        "reason": "felt tension 0.30 below intended 0.51",
    })  # fmt: skip
    render(showbase, 2)
    assert "the harder cut" in app.hud.toast.text
    assert "below intended" in app.hud.chat_text.text
    app.destroy()


def test_a_late_joiner_sees_faces_and_the_branch_already_taken(showbase):
    app = _app(showbase)
    app.session.welcome((0, -900, 0))  # a resume after the room went on without us
    app.session.inbox[-1]["reactions"] = {
        "hz": 10, "faces_hz": 5, "faces": wire.pack_faces([7], [wire.pack(SMILE)]),
        "branches": [{"scene": "last_train", "point": "the_envelope",
                      "choice": "last_train_soft", "reason": "the host chose 'as written'"}],
    }  # fmt: skip
    run_for(showbase, 0.4)
    assert 7 in app.crowd._faces
    assert "last_train_soft" in app.hud.chat_text.text
    app.destroy()
