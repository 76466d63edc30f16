"""Face features from mediapipe's 478 face-mesh landmarks, normalised by head size and pose.

Landmarks come in as an (478, 3) array in pixel units (x right, y down, z away from the camera,
z scaled like x, as mediapipe gives it). We build a head frame from the landmarks themselves —
x along the line between the outer eye corners, y from chin to forehead made orthogonal to it,
z their cross product — rotate every point into it, and divide by the distance between the
outer eye corners (the inter-ocular distance, ~9 cm on an adult). What remains is independent
of where the face is in the frame, how big it is, and (to first order) how the head is turned;
the rotation itself gives pitch, yaw and roll.

Indices are mediapipe's canonical face-mesh topology; "a" is the person's right side (image
left), "b" their left. Everything here is numpy: no camera, no model.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

N_LANDMARKS = 478

EYE_OUTER = (33, 263)
EYE_INNER = (133, 362)
EYE_TOP = (159, 386)
EYE_BOTTOM = (145, 374)
BROW_MID = (105, 334)
BROW_INNER = (107, 336)
LIP_CORNER = (61, 291)
LIP_TOP_INNER, LIP_BOTTOM_INNER = 13, 14
LIP_TOP_OUTER, LIP_BOTTOM_OUTER = 0, 17
CHIN, FOREHEAD, NOSE_TIP = 152, 10, 1

FEATURES = (
    "eye_open",  # eyelid gap over eye width (eye aspect ratio), mean of both eyes
    "brow_raise",  # mid-brow height above the eye corners, per inter-ocular distance (IOD)
    "brow_inner",  # inner-brow height above the inner eye corner, per IOD (AU4 lowers it)
    "brow_gap",  # distance between the inner brows, per IOD (AU4 draws them together)
    "mouth_open",  # inner-lip gap, per IOD
    "mouth_wide",  # lip-corner distance, per IOD
    "smile",  # how far the lip corners sit above the lip centre, per IOD (AU12 lifts them)
    "smile_asym",  # |left corner lift - right corner lift|, per IOD (unilateral AU12/AU14)
    "lip_press",  # red-lip height (upper + lower), per IOD (AU23/24 thin the lips)
    "pitch",  # radians, nose down positive
    "yaw",  # radians, turned to the person's left positive
    "roll",  # radians, head tilted toward the person's right shoulder positive
)
N_FEATURES = len(FEATURES)
POSE = slice(9, 12)


def head_frame(points: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """Rotation (rows: head x, y, z axes in camera space, y up) and the inter-ocular distance."""
    p = points * np.array([1.0, -1.0, -1.0])  # y up, z toward the camera: right-handed
    x = p[EYE_OUTER[1]] - p[EYE_OUTER[0]]
    iod = float(np.linalg.norm(x))
    x = x / max(iod, 1e-9)
    up = p[FOREHEAD] - p[CHIN]
    y = up - x * float(up @ x)
    y = y / max(float(np.linalg.norm(y)), 1e-9)
    z = np.cross(x, y)
    return np.stack([x, y, z]), iod


def features(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """The FEATURES vector of one face (478 x 3 landmarks in pixels)."""
    if points.shape[0] < N_LANDMARKS - 10 or points.shape[1] != 3:
        raise ValueError("features need mediapipe's 468 or 478 face-mesh landmarks")
    rot, iod = head_frame(points)
    p = points * np.array([1.0, -1.0, -1.0])
    centre = (p[EYE_OUTER[0]] + p[EYE_OUTER[1]]) / 2.0
    h = (p - centre) @ rot.T / max(iod, 1e-9)  # head coordinates, IOD units, y up
    out = np.empty(N_FEATURES)

    eye_open = [
        np.linalg.norm(h[t] - h[b]) / max(np.linalg.norm(h[o] - h[i]), 1e-9)
        for t, b, o, i in zip(EYE_TOP, EYE_BOTTOM, EYE_OUTER, EYE_INNER, strict=True)
    ]
    out[0] = float(np.mean(eye_open))
    # against the eye corners, which a brow raise does not move (the upper lid does move)
    corners_y = [(h[o, 1] + h[i, 1]) / 2.0 for o, i in zip(EYE_OUTER, EYE_INNER, strict=True)]
    out[1] = float(np.mean([h[m, 1] - c for m, c in zip(BROW_MID, corners_y, strict=True)]))
    out[2] = float(np.mean([h[b, 1] - h[i, 1] for b, i in zip(BROW_INNER, EYE_INNER, strict=True)]))
    out[3] = float(np.linalg.norm(h[BROW_INNER[0], :2] - h[BROW_INNER[1], :2]))
    out[4] = float(np.linalg.norm(h[LIP_TOP_INNER] - h[LIP_BOTTOM_INNER]))
    out[5] = float(np.linalg.norm(h[LIP_CORNER[0]] - h[LIP_CORNER[1]]))
    lip_centre_y = (h[LIP_TOP_INNER, 1] + h[LIP_BOTTOM_INNER, 1]) / 2.0
    lift = [h[c, 1] - lip_centre_y for c in LIP_CORNER]
    out[6] = float(np.mean(lift))
    out[7] = float(abs(lift[0] - lift[1]))
    out[8] = float(
        np.linalg.norm(h[LIP_TOP_OUTER] - h[LIP_TOP_INNER])
        + np.linalg.norm(h[LIP_BOTTOM_INNER] - h[LIP_BOTTOM_OUTER])
    )
    out[9:12] = pose_angles(rot)
    return out


def pose_angles(rot: NDArray[np.float64]) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in radians from a head rotation (rows = head axes in camera space).

    A face looking straight at the camera has the identity rotation. Yaw turns about the
    camera's up axis, pitch about the head's x axis, roll about the viewing axis.
    """
    x, _, z = rot
    yaw = math.atan2(z[0], z[2])
    pitch = math.atan2(-z[1], math.hypot(z[0], z[2]))
    roll = math.atan2(x[1], x[0])
    return pitch, yaw, roll


def rotation(pitch: float, yaw: float, roll: float) -> NDArray[np.float64]:
    """A camera-space rotation for a head turned by these angles (for tests and the bench)."""
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    cr, sr = math.cos(roll), math.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz
