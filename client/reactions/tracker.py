"""Face landmarks from frames: mediapipe 0.10.21's legacy face mesh, offline, CPU.

`solutions.face_mesh.FaceMesh(refine_landmarks=True)` gives 478 landmarks (468 + the irises)
from its bundled TFLite models; no network, no model files of ours. In video mode it tracks the
face from the previous frame's landmarks and only re-runs the face detector when tracking is
lost, which is what makes it cheap (about 2–3 ms a frame at 640×480 here while tracking).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

# mediapipe's C++ side logs through absl at start-up; keep the terminal for our own lines.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class FaceTracker:
    """One face's 478 landmarks per RGB frame, in pixels (x right, y down, z scaled like x).

    Args:
        video: True for a stream (tracks between frames), False for unrelated stills.
        min_confidence: detection and tracking confidence, 0..1.
    """

    def __init__(self, video: bool = True, min_confidence: float = 0.5) -> None:
        import mediapipe as mp  # heavy (pulls jax): imported only when a tracker is made

        self._mesh: Any = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=not video,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )

    def landmarks(self, rgb: NDArray[np.uint8]) -> NDArray[np.float64] | None:
        """(478, 3) landmarks of the most prominent face, or None when there is none."""
        h, w = rgb.shape[:2]
        result = self._mesh.process(rgb)
        faces = result.multi_face_landmarks
        if not faces:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in faces[0].landmark], np.float64)
        pts *= np.array([w, h, w], np.float64)
        return pts

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
