"""The expression model: features -> seven action intensities -> valence and arousal.

Two small torch layers (12 -> 7 -> 2, 107 weights). The initial weights are the FACS prior in
assets/reactions/facs_prior.json (how it is derived: that folder's make_prior.py and
docs/reactions.md). Calibration (client/reactions/calibration.py) fine-tunes a copy per user.

Features enter as z = (f - baseline) / scale: a change from the user's own neutral face in units
of one full action. The baseline is the calibrated neutral face, or until there is one the median
of the first frames, then a slow running median (`Baseline`).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from client.reactions.features import FEATURES, N_FEATURES
from neonbar.reaction import INTENSITIES, N_INTENSITIES

PRIOR_PATH = Path(__file__).resolve().parents[2] / "assets" / "reactions" / "facs_prior.json"


class ExpressionNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.actions = torch.nn.Linear(N_FEATURES, N_INTENSITIES)
        self.affect = torch.nn.Linear(N_INTENSITIES, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: (n, 12) -> intensities (n, 7) in 0..1, affect (n, 2): valence -1..1, arousal 0..1."""
        intensity = torch.sigmoid(self.actions(z))
        raw = self.affect(intensity)
        affect = torch.stack([torch.tanh(raw[:, 0]), torch.sigmoid(raw[:, 1])], dim=1)
        return intensity, affect


@dataclass
class ExpressionModel:
    """The net, its feature scale and the user's neutral baseline (None: not yet known)."""

    net: ExpressionNet
    scale: NDArray[np.float64]
    baseline: NDArray[np.float64] | None = None
    calibrated: bool = False

    @classmethod
    def load(cls, path: str | Path = PRIOR_PATH) -> ExpressionModel:
        """The FACS prior, or a calibration file written by `save` (same format + baseline)."""
        data = json.loads(Path(path).read_text())
        if data.get("features") != list(FEATURES) or data.get("intensities") != list(INTENSITIES):
            raise ValueError(f"{path} was written for other features or intensities")
        net = ExpressionNet()
        with torch.no_grad():
            net.actions.weight.copy_(torch.tensor(data["w1"], dtype=torch.float32))
            net.actions.bias.copy_(torch.tensor(data["b1"], dtype=torch.float32))
            net.affect.weight.copy_(torch.tensor(data["w2"], dtype=torch.float32))
            net.affect.bias.copy_(torch.tensor(data["b2"], dtype=torch.float32))
        net.eval()
        baseline = data.get("baseline")
        return cls(
            net,
            np.asarray(data["scale"], np.float64),
            None if baseline is None else np.asarray(baseline, np.float64),
            bool(data.get("calibrated", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "features": list(FEATURES),
            "intensities": list(INTENSITIES),
            "scale": self.scale.tolist(),
            "w1": self.net.actions.weight.tolist(),
            "b1": self.net.actions.bias.tolist(),
            "w2": self.net.affect.weight.tolist(),
            "b2": self.net.affect.bias.tolist(),
            "baseline": None if self.baseline is None else self.baseline.tolist(),
            "calibrated": self.calibrated,
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()) + "\n")
        tmp.replace(path)

    def z(self, feats: NDArray[np.float64], baseline: NDArray[np.float64]) -> NDArray[np.float64]:
        return (feats - baseline) / self.scale

    def predict(self, z: NDArray[np.float64]) -> tuple[NDArray[np.float64], float, float]:
        """One frame's z -> (intensities, valence, arousal)."""
        with torch.no_grad():
            intensity, affect = self.net(torch.from_numpy(z.astype(np.float32)).reshape(1, -1))
        return (
            intensity[0].numpy().astype(np.float64),
            float(affect[0, 0]),
            float(affect[0, 1]),
        )


class Baseline:
    """The user's neutral face: fixed by calibration, else learned from the stream.

    Uncalibrated, it is the median of the first `warmup` frames, then the median of a window of
    samples taken every `every_s` seconds over the last `window_s` (3 minutes): slow enough that
    a laugh or a held frown does not become "neutral", quick enough to follow a change of light
    or posture.
    """

    def __init__(
        self,
        fixed: NDArray[np.float64] | None = None,
        warmup: int = 15,
        window_s: float = 180.0,
        every_s: float = 2.0,
    ) -> None:
        self.fixed = fixed
        self.warmup = warmup
        self.every_s = every_s
        self._first: list[NDArray[np.float64]] = []
        self._samples: deque[NDArray[np.float64]] = deque(maxlen=max(1, int(window_s / every_s)))
        self._last_sample_s = -1e18
        self.value: NDArray[np.float64] | None = fixed

    def update(self, t_s: float, feats: NDArray[np.float64]) -> NDArray[np.float64] | None:
        """Feed one frame's features; the baseline to use for it (None during warm-up)."""
        if self.fixed is not None:
            return self.fixed
        if len(self._first) < self.warmup:
            self._first.append(feats)
            if len(self._first) == self.warmup:
                self.value = np.median(np.stack(self._first), axis=0)
                self._samples.extend(self._first)
                self._last_sample_s = t_s
            return self.value
        if t_s - self._last_sample_s >= self.every_s:
            self._samples.append(feats)
            self._last_sample_s = t_s
            self.value = np.median(np.stack(self._samples), axis=0)
        return self.value
