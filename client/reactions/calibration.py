"""Per-user calibration: 20 seconds of prompts, then a few hundred torch steps.

The prompts are neutral (7 s), smile (6 s), surprise (7 s); the first second of each is skipped
while the face changes. The neutral frames become the user's baseline; then the FACS prior is
fine-tuned so that this user's smile reads as a smile and their surprise as surprise, with an L2
pull toward the prior so the few seconds of data cannot make it forget what it knew. The result
is numbers only (weights and a baseline feature vector), written to the client's data directory
(`calibration_path`); no frame is kept.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from client.reactions.model import ExpressionModel
from neonbar.reaction import INTENSITIES

REST = 1.0 / (1.0 + np.exp(3.0))  # the prior's resting intensity (sigmoid of its bias)


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    seconds: float
    intensities: dict[str, float]  # targets; the rest stay at rest
    valence: float
    arousal: float


PROMPTS = (
    Prompt("neutral", "Relax and look at the screen", 7.0, {}, 0.0, 0.3),
    Prompt("smile", "Smile, a real one", 6.0, {"smile": 0.9}, 0.75, 0.55),
    Prompt(
        "surprise",
        "Look surprised: brows up, eyes wide, mouth open",
        7.0,
        {"brow_raise": 0.9, "eye_widen": 0.8, "mouth_open": 0.6},
        0.1,
        0.85,
    ),
)
SETTLE_S = 1.0
TOTAL_S = sum(p.seconds for p in PROMPTS)


def prompt_at(t_s: float) -> tuple[Prompt, bool] | None:
    """The prompt showing at t_s since calibration began and whether its frames count."""
    start = 0.0
    for prompt in PROMPTS:
        if t_s < start + prompt.seconds:
            return prompt, t_s >= start + SETTLE_S
        start += prompt.seconds
    return None


def data_dir(explicit: str | Path | None = None) -> Path:
    """The client's local data directory: --data, $NEONBAR_DATA, or ~/.local/share/neonbar."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("NEONBAR_DATA")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "neonbar"


def calibration_path(explicit: str | Path | None = None) -> Path:
    return data_dir(explicit) / "reactions" / "calibration.json"


def load_model(explicit_data: str | Path | None = None) -> ExpressionModel:
    """The user's calibrated model if one is stored, else the FACS prior."""
    path = calibration_path(explicit_data)
    if path.is_file():
        try:
            return ExpressionModel.load(path)
        except (ValueError, KeyError, OSError):
            pass  # an old or damaged calibration: the prior still works
    return ExpressionModel.load()


def fit(
    prior: ExpressionModel,
    samples: dict[str, list[NDArray[np.float64]]],
    steps: int = 300,
    l2: float = 0.05,
    seed: int = 0,
) -> ExpressionModel:
    """Fine-tune a copy of `prior` on features gathered per prompt name.

    Raises ValueError when a prompt has fewer than 5 frames with a face.
    """
    for prompt in PROMPTS:
        if len(samples.get(prompt.name, [])) < 5:
            raise ValueError(f"too few frames with a face during '{prompt.text}'")
    torch.manual_seed(seed)
    baseline = np.median(np.stack(samples["neutral"]), axis=0)
    model = copy.deepcopy(prior)
    model.baseline = baseline
    xs, ti, ta = [], [], []
    for prompt in PROMPTS:
        for f in samples[prompt.name]:
            xs.append(model.z(f, baseline))
            ti.append([prompt.intensities.get(name, REST) for name in INTENSITIES])
            ta.append([prompt.valence, prompt.arousal])
    x = torch.tensor(np.stack(xs), dtype=torch.float32)
    target_i = torch.tensor(ti, dtype=torch.float32)
    target_a = torch.tensor(ta, dtype=torch.float32)
    # every prompt weighs the same however many frames it had
    weights = torch.tensor(
        [1.0 / len(samples[p.name]) for p in PROMPTS for _ in samples[p.name]]
    ).reshape(-1, 1)
    net = model.net
    net.train()
    params = list(net.parameters())
    start = [p.detach().clone() for p in params]
    # Adam (lr 0.02, betas 0.9 / 0.999) written out: torch.optim imports torch._dynamo on first
    # use, which costs more than the whole fit on a small machine
    lr, beta1, beta2, eps = 0.02, 0.9, 0.999, 1e-8
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    for step in range(1, steps + 1):
        for p in params:
            p.grad = None
        intensity, affect = net(x)
        loss = (weights * (intensity - target_i) ** 2).sum() + (
            weights * (affect - target_a) ** 2
        ).sum()
        loss = loss + l2 * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start, strict=True))
        loss.backward()
        with torch.no_grad():
            for p, a, b in zip(params, m1, m2, strict=True):
                assert p.grad is not None
                a.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                b.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (b / (1 - beta2**step)).sqrt_().add_(eps)
                p.addcdiv_(a, denom, value=-lr / (1 - beta1**step))
    net.eval()
    model.calibrated = True
    return model
