"""Local prediction and reconciliation (no Panda3D)."""

from __future__ import annotations

import math

import numpy as np

from client.prediction import WALK_MPS, LocalMotion, MoveInput, make_collision
from neonbar.layout import load_layout

LAYOUT = load_layout()


def motion(x: float = 0.0, y: float = -9.0, collide: bool = True) -> LocalMotion:
    return LocalMotion(LAYOUT, x, y, 0.0, collision=make_collision(LAYOUT) if collide else None)


def test_forward_walks_north_at_walking_speed() -> None:
    m = motion()
    for _ in range(30):
        m.step(MoveInput(forward=1), 1 / 30)
    assert m.x_m == 0.0 or abs(m.x_m) < 1e-9
    assert math.isclose(m.y_m, -9.0 + WALK_MPS, rel_tol=1e-6)


def test_turn_left_is_counter_clockwise_and_strafe_right_is_east() -> None:
    m = motion()
    m.step(MoveInput(turn=1), 0.1)
    assert m.yaw_rad > 0
    m = motion()
    m.step(MoveInput(strafe=1), 0.1)
    assert m.x_m > 0 and abs(m.y_m + 9.0) < 1e-9


def test_walls_stop_the_prediction_with_and_without_the_solver() -> None:
    for collide in (True, False):
        m = motion(0.0, 10.0, collide)
        for _ in range(100):
            m.step(MoveInput(forward=1, sprint=True), 1 / 20)
        assert m.y_m <= LAYOUT.half_y - 0.29


def test_a_long_hitch_is_not_a_teleport() -> None:
    m = motion()
    m.step(MoveInput(forward=1), 5.0)
    assert m.y_m - (-9.0) <= WALK_MPS * 0.1 + 1e-9


def test_accepted_positions_do_not_move_us() -> None:
    m = motion()
    sent = m.step(MoveInput(forward=1), 0.05)
    m.step(MoveInput(forward=1), 0.05)
    before = m.shown()
    assert not m.reconcile(sent[0], sent[1], last_seq=1, sent=(sent[0], sent[1]))
    assert m.shown() == before


def test_a_correction_is_blended_out_without_a_snap() -> None:
    m = motion()
    m.step(MoveInput(), 1 / 60)
    # The server says we are 0.5 m east of where we thought.
    assert m.reconcile(0.5, -9.0, last_seq=1, sent=(0.0, -9.0))
    assert math.isclose(m.x_m, 0.5, abs_tol=1e-6)
    shown = [m.shown()[0]]
    for _ in range(30):  # half a second at 60 fps
        m.step(MoveInput(), 1 / 60)
        shown.append(m.shown()[0])
    steps = np.diff(shown)
    assert shown[0] < 0.01  # the frame of the correction still shows the old place
    assert steps.max() < 0.15  # no single-frame jump
    assert abs(shown[-1] - 0.5) < 0.01  # gone after ~150-500 ms
    assert m.correction_m < 0.01


def test_replay_keeps_the_moves_made_since_the_corrected_input() -> None:
    m = motion()
    sent = m.step(MoveInput(forward=1), 0.05)
    for _ in range(3):
        m.step(MoveInput(forward=1), 0.05)
    moved_since = m.y_m - sent[1]
    m.reconcile(sent[0] + 0.3, sent[1], last_seq=5, sent=(sent[0], sent[1]))
    assert math.isclose(m.x_m, sent[0] + 0.3, abs_tol=1e-6)
    assert math.isclose(m.y_m, sent[1] + moved_since, abs_tol=1e-6)


def test_a_huge_correction_is_a_teleport() -> None:
    m = motion()
    assert m.reconcile(10.0, 5.0, last_seq=1, sent=(0.0, -9.0))
    assert m.shown()[:2] == (10.0, 5.0)


def test_the_same_correction_is_applied_once() -> None:
    m = motion()
    assert m.reconcile(0.5, -9.0, last_seq=3, sent=(0.0, -9.0))
    x = m.x_m
    assert not m.reconcile(0.5, -9.0, last_seq=3, sent=(0.0, -9.0))
    assert m.x_m == x


def test_without_sent_states_recent_predictions_stand_in() -> None:
    m = motion()
    path = [m.step(MoveInput(forward=1), 0.05) for _ in range(5)]
    # The server echoes one of our own recent positions: accepted, nothing changes.
    assert not m.reconcile(path[1][0], path[1][1], last_seq=2)


def test_a_correction_is_applied_once_with_inputs_in_flight() -> None:
    """Three inputs left before the correction arrived; the server's answers to all of them
    show the same error. It must move us once, not three times."""
    m = motion()
    sent = [m.step(MoveInput(), 0.05)[:2] for _ in range(3)]  # standing: all the same spot
    # The crowd pushed us 10 cm east; each answer says so.
    server = (sent[0][0] + 0.10, sent[0][1])
    assert m.reconcile(*server, last_seq=1, sent=sent[0])
    for seq, carried in enumerate(sent[1:], start=2):
        assert not m.reconcile(*server, last_seq=seq, sent=carried)
    assert math.isclose(m.x_m, server[0], abs_tol=1e-9)
    # Inputs sent after the correction carry it and are answered the same way: no change.
    after = m.step(MoveInput(), 0.05)[:2]
    assert not m.reconcile(*server, last_seq=4, sent=after)
    assert math.isclose(m.x_m, server[0], abs_tol=1e-9)


def test_a_second_push_during_the_first_correction_is_applied_in_full() -> None:
    m = motion()
    a = m.step(MoveInput(), 0.05)[:2]
    b = m.step(MoveInput(), 0.05)[:2]
    assert m.reconcile(a[0] + 0.10, a[1], last_seq=1, sent=a)
    # Input 2 left before that correction; meanwhile the server pushed us 10 cm further.
    assert m.reconcile(a[0] + 0.20, a[1], last_seq=2, sent=b)
    assert math.isclose(m.x_m, a[0] + 0.20, abs_tol=1e-9)
