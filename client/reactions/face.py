"""An avatar's face following a reaction: eyes, brows and mouth, eased so it never snaps.

Faces arrive at 5 Hz (others, `faces` messages) or 10 Hz (our own); each figure's face eases
toward the newest one with a 120 ms time constant, so a smile grows over a few frames at 60 fps
instead of jumping. The brows are two small dark bars made once per figure the first time it
has a face: figures of people who do not share reactions cost nothing.

Mapping (intensities 0..1, neonbar/reaction.py): the eyes open with eye_widen and close with
eye_close; the brows rise with brow_raise, drop and tilt inward with brow_lower; the mouth
widens and lifts with smile, opens with mouth_open and thins with lip_press.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neonbar.reaction import INTENSITIES, Reaction

EASE_S = 0.12
_I = {name: i for i, name in enumerate(INTENSITIES)}


def face_pose(levels: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Scales and offsets for the face parts from the seven intensities (pure: tested)."""
    g = {name: float(levels[i]) for name, i in _I.items()}
    eye_h = max(0.12, 1.0 + 0.7 * g["eye_widen"] + 0.3 * g["brow_raise"] - 0.88 * g["eye_close"]
                - 0.35 * g["smile"])  # fmt: skip
    mouth_w = 1.0 + 0.7 * g["smile"] + 0.1 * g["mouth_open"] - 0.25 * g["lip_press"]
    mouth_h = max(0.35, 1.0 + 4.0 * g["mouth_open"] - 0.2 * g["smile"] - 0.6 * g["lip_press"])
    brow_z = 0.03 * g["brow_raise"] - 0.018 * g["brow_lower"]
    brow_tilt = 22.0 * g["brow_lower"] - 8.0 * g["brow_raise"]  # degrees, inner ends down
    mouth_z = 0.008 * g["smile"] - 0.01 * g["mouth_open"]
    return {
        "eyes": (1.0 + 0.1 * g["eye_widen"], 1.0, eye_h),
        "mouth": (mouth_w, 1.0, mouth_h),
        "mouth_z": (mouth_z,),
        "brows": (brow_z, brow_tilt),
        "corners": (g["smile"],),
    }


class FaceRig:
    """The face of one AvatarFigure (it needs the figure's `head`, `eyes` and `mouth` nodes)."""

    def __init__(self, figure: Any) -> None:
        from client.shapes import MeshBuilder

        self.figure = figure
        self.current = np.zeros(len(INTENSITIES))
        self.target = np.zeros(len(INTENSITIES))
        self._mouth_z = float(figure.mouth.getZ())
        mb = MeshBuilder()
        mb.box((0, 0, 0), (0.034, 0.006, 0.009), (0.05, 0.04, 0.05))
        self.brows = []
        for side in (-1, 1):
            brow = figure.head.attachNewNode(mb.node(f"brow{side}"))
            brow.setPos(0.055 * side, 0.135, 0.058)
            self.brows.append((side, brow))
        # the corners of a smile: short strokes at the mouth's ends that turn up with it
        corner = MeshBuilder()
        corner.box((0, 0, 0), (0.016, 0.006, 0.007), (0.25, 0.05, 0.07))
        self.corners = []
        for side in (-1, 1):
            node = figure.head.attachNewNode(corner.node(f"smile{side}"))
            node.hide()
            self.corners.append((side, node))

    def set(self, reaction: Reaction) -> None:
        self.target = np.asarray(reaction.intensities, np.float64)

    def update(self, dt_s: float) -> None:
        a = 1.0 - math.exp(-max(dt_s, 0.0) / EASE_S)
        self.current += (self.target - self.current) * a
        pose = face_pose(self.current)
        fig = self.figure
        fig.eyes.setScale(*pose["eyes"])
        fig.mouth.setScale(*pose["mouth"])
        fig.mouth.setZ(self._mouth_z + pose["mouth_z"][0])
        dz, tilt = pose["brows"]
        for side, brow in self.brows:
            brow.setZ(0.058 + dz)
            brow.setR(-side * tilt)
        lift = pose["corners"][0]
        mouth_z = self._mouth_z + pose["mouth_z"][0]
        half_w = 0.04 * pose["mouth"][0]
        for side, node in self.corners:
            if lift < 0.05:
                node.hide()
                continue
            node.show()
            node.setPos(side * (half_w + 0.008), 0.14, mouth_z + 0.01 * lift)
            node.setR(side * -40.0 * lift)

    def remove(self) -> None:
        for _, node in (*self.brows, *self.corners):
            node.removeNode()
