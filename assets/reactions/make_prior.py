"""Write facs_prior.json: the expression model's initial weights, from FACS, not from data.

    .venv/bin/python assets/reactions/make_prior.py

The model (client/reactions/model.py) has two layers. The first turns face features — each
measured as a change from the user's neutral face, divided by SCALE, so 1.0 is about a full
action — into seven action intensities; the second turns intensities into valence and arousal.
Each weight below encodes a documented relationship (docs/reactions.md gives the sources):

- FACS (Ekman, Friesen & Hager 2002): AU12 lifts and widens the lip corners, AU6 raises the
  cheeks and narrows the eye; AU1+2 raise the brows; AU4 lowers and draws them together; AU5
  widens the eye; AU43/45 close it; AU23/24 tighten and press the lips (thinner red lip);
  AU25-27 part the lips and drop the jaw.
- EMFACS prototypes: joy 6+12; surprise 1+2+5+26; anger 4+5+7+23; fear 1+2+4+5+20+26;
  sadness 1+4+15.
- Russell's circumplex (1980) and its facial studies: joy is positive and mildly aroused,
  surprise highly aroused and near-neutral in valence, anger negative and aroused, a pressed
  mouth and lowered brows negative; closed eyes lower arousal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FEATURES = (
    "eye_open", "brow_raise", "brow_inner", "brow_gap", "mouth_open", "mouth_wide",
    "smile", "smile_asym", "lip_press", "pitch", "yaw", "roll",
)  # fmt: skip
INTENSITIES = (
    "smile", "brow_raise", "brow_lower", "mouth_open", "eye_widen", "eye_close", "lip_press",
)  # fmt: skip

# Change from neutral that counts as one full action, in inter-ocular distances (radians for
# pose). Measured on our own faces and the Grace Hopper still: neutral eye aspect ratio ~0.30,
# a wide-eyed stare ~0.40; a full brow raise lifts the mid-brow ~0.06 IOD; a broad smile lifts
# the corners ~0.05 IOD and widens the mouth ~0.08; pressing the lips halves their red height.
SCALE = {
    "eye_open": 0.10, "brow_raise": 0.06, "brow_inner": 0.04, "brow_gap": 0.04,
    "mouth_open": 0.25, "mouth_wide": 0.08, "smile": 0.05, "smile_asym": 0.04,
    "lip_press": 0.10, "pitch": 0.35, "yaw": 0.35, "roll": 0.35,
}  # fmt: skip

# Layer 1: intensity = sigmoid(sum(w * z) + BIAS). BIAS -3 keeps a neutral face at ~0.05; a
# main weight of 5.5 puts one full action at ~0.92.
BIAS = -3.0
ACTIONS = {
    "smile": {"smile": 5.5, "mouth_wide": 2.0, "eye_open": -1.0},  # AU12 (+AU6 narrows eyes)
    "brow_raise": {"brow_raise": 5.5, "brow_inner": 2.0},  # AU1+2 lift mid and inner brow
    "brow_lower": {"brow_inner": -4.0, "brow_gap": -3.0, "brow_raise": -1.0},  # AU4
    "mouth_open": {"mouth_open": 6.0},  # AU25-27
    "eye_widen": {"eye_open": 5.5, "brow_raise": 0.5},  # AU5 (often with AU1+2)
    "eye_close": {"eye_open": -2.4},  # AU43/45: a closed eye is ~2.5 scales below neutral
    "lip_press": {"lip_press": -5.0, "mouth_open": -1.0},  # AU23/24 thin the red lip
}
# Layer 2: valence = tanh(v . i + bv), arousal = sigmoid(a . i + ba); biases put a neutral face
# (every intensity at sigmoid(BIAS)) at valence 0 and arousal 0.3.
VALENCE = {"smile": 2.2, "brow_lower": -1.4, "lip_press": -1.0, "eye_close": -0.2,
           "brow_raise": 0.1}  # fmt: skip
AROUSAL = {"brow_raise": 1.6, "eye_widen": 1.6, "mouth_open": 1.2, "smile": 0.7,
           "brow_lower": 0.8, "lip_press": 0.6, "eye_close": -1.5}  # fmt: skip
NEUTRAL_AROUSAL = 0.3


def build() -> dict[str, object]:
    rest = 1.0 / (1.0 + math.exp(-BIAS))
    w1 = [[ACTIONS[a].get(f, 0.0) for f in FEATURES] for a in INTENSITIES]
    v = [VALENCE.get(a, 0.0) for a in INTENSITIES]
    ar = [AROUSAL.get(a, 0.0) for a in INTENSITIES]
    logit = math.log(NEUTRAL_AROUSAL / (1 - NEUTRAL_AROUSAL))
    return {
        "version": 1,
        "features": list(FEATURES),
        "intensities": list(INTENSITIES),
        "scale": [SCALE[f] for f in FEATURES],
        "w1": w1,
        "b1": [BIAS] * len(INTENSITIES),
        "w2": [v, ar],
        "b2": [-sum(v) * rest, logit - sum(ar) * rest],
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("facs_prior.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
