"""Fit the mouth AUs' geometry on AU-controlled morphs of one photo; score it on the other (held out).

    .venv/bin/python scripts/fit_au_geometry.py --json benchmarks/au_geometry_fit.json [--frames 240]

For each bundled photo (`emoreason.synthetic.face_photos`: the astronaut is the fit person, Grace Hopper held
out), ``--frames`` random mouth expressions are rendered with :class:`~emoreason.synthetic.FaceMorpher` (each of
AU6, AU10, AU12, AU15, AU17, AU20, AU25, AU26 present with probability 0.35 at intensity 1-5; the head moved by up
to 4 px and 4 degrees, the light by +-15%), the landmarks found by the default path (BlazeFace + the mesh's 68
points, normalised as the analyzer does) and measured (`emoreason.face.geometry`) against the unmoved photo. Per
AU in FITTED, a ridge regression from the mouth measurements' changes to the applied intensity / 5 is fitted on the
fit person's frames. Reported per AU and person: F1 of presence (intensity >= 1, i.e. A or more) and the mean
absolute intensity error, recall, and the rate of false presence where the AU was not applied (also among
frames with a dropped jaw), for the hand-set rules (`emoreason.face.aus.AU_RULES`) and the fitted ones, on the same
frames. The fitted weights are printed in AU_RULES's units (weights on the changes, with the rule's dead zone and
full scale) for `emoreason/face/aus.py`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MOUTH_AUS = ("AU6", "AU10", "AU12", "AU15", "AU17", "AU20", "AU25", "AU26")
FITTED = ("AU12", "AU15", "AU20")  # the lip-corner AUs a dropped jaw confounds
MOUTH_FEATURES = ("corner_height", "mouth_width", "lip_thickness", "lip_gap", "jaw_opening", "lower_lip_height",
                  "upper_lip_gap", "corner_lift")  # fmt: skip


def frames_of(person: str, image: np.ndarray, count: int, seed: int, detector) -> tuple[np.ndarray, np.ndarray]:
    """``([N, F] feature changes from rest, [N, len(MOUTH_AUS)] applied intensities)`` of ``count`` renders."""
    from emoreason.face.align import normalize_landmarks
    from emoreason.face.geometry import measure_all
    from emoreason.synthetic import FaceMorpher

    rng = np.random.default_rng(seed)
    rest = detector.detect(image)[0].landmarks
    morpher = FaceMorpher(image, rest)
    base = measure_all(normalize_landmarks(rest)[None])[0]
    changes, labels = [], []
    while len(changes) < count:
        levels = np.where(rng.random(len(MOUTH_AUS)) < 0.35, rng.uniform(1.0, 5.0, len(MOUTH_AUS)), 0.0)
        aus = {code: float(v) for code, v in zip(MOUTH_AUS, levels) if v > 0}
        head = (rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-4, 4))
        frame = morpher(aus, head=head, gain=float(rng.uniform(0.85, 1.15)))
        faces = detector.detect(frame)
        if not faces:
            continue
        changes.append(measure_all(normalize_landmarks(faces[0].landmarks)[None])[0] - base)
        labels.append(levels)
    print(f"{person}: {count} frames", flush=True)
    return np.array(changes), np.array(labels)


def presence_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(truth & predicted))
    return 2 * tp / max(1.0, float(np.sum(truth) + np.sum(predicted)))


def hand_rules(changes: np.ndarray) -> np.ndarray:
    """``[N, A]`` intensities of the hand-set rules on feature changes (no clip calibration: still-image path)."""
    from emoreason.face.aus import _raw, _scale

    return _scale(_raw(changes, np.zeros(changes.shape[1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--alpha", type=float, default=1e-3, help="ridge penalty")
    parser.add_argument(
        "--features",
        nargs="+",
        choices=MOUTH_FEATURES,
        default=list(MOUTH_FEATURES),
        help="the measurements the regression may use (default: every mouth measurement)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from emoreason.au import AU_CODES
    from emoreason.face.aus import AU_RULES
    from emoreason.face.detect import BlazeFaceDetector
    from emoreason.face.geometry import FEATURES
    from emoreason.synthetic import face_photos

    detector = BlazeFaceDetector(landmarks="mesh")
    photos = face_photos()
    data = {p: frames_of(p, photos[p], args.frames, seed, detector) for seed, p in enumerate(("astronaut", "hopper"))}
    used = tuple(args.features)
    columns = [FEATURES.index(f) for f in used]
    fit_x, fit_y = data["astronaut"]
    out: dict = {"frames": args.frames, "fit": "astronaut", "held_out": "hopper", "features": used,
                 "aus": {}}  # fmt: skip
    for code in FITTED:
        label = MOUTH_AUS.index(code)
        x = fit_x[:, columns]
        y = fit_y[:, label] / 5.0
        weights = np.linalg.solve(x.T @ x + args.alpha * np.eye(len(columns)), x.T @ y)
        rule = AU_RULES[AU_CODES.index(code)]
        entry: dict = {"weights_per_intensity_fifth": dict(zip(used, np.round(weights, 3).tolist())),
                       "rule_weights": dict(zip(used, np.round(weights * (rule.full - rule.dead), 3)
                                                .tolist())), "hand_weights": rule.weights}  # fmt: skip
        for person, (changes, labels) in data.items():
            truth = labels[:, label] >= 1.0
            hand = hand_rules(changes)[:, AU_CODES.index(code)]
            fitted = np.clip(5.0 * (changes[:, columns] @ weights) - 5.0 * rule.dead / (rule.full - rule.dead), 0, 5)
            jaw_only = ~truth & (labels[:, MOUTH_AUS.index("AU26")] >= 2.0)  # a dropped jaw, this AU not applied
            entry[person] = {
                "hand_f1": round(presence_f1(truth, hand >= 1.0), 3), "fitted_f1": round(presence_f1(truth, fitted >= 1.0), 3),
                "hand_mae": round(float(np.abs(hand - labels[:, label]).mean()), 3),
                "fitted_mae": round(float(np.abs(fitted - labels[:, label]).mean()), 3),
                "hand_recall": round(float((hand[truth] >= 1.0).mean()), 3),
                "fitted_recall": round(float((fitted[truth] >= 1.0).mean()), 3),
                "hand_false_rate": round(float((hand[~truth] >= 1.0).mean()), 3),
                "fitted_false_rate": round(float((fitted[~truth] >= 1.0).mean()), 3),
                "fitted_false_rate_jaw_dropped": round(float((fitted[jaw_only] >= 1.0).mean()), 3),
                "present": int(truth.sum()), "jaw_dropped_absent": int(jaw_only.sum()),
            }  # fmt: skip
        out["aus"][code] = entry
        print(code, {p: entry[p] for p in data}, "\n   rule weights:", entry["rule_weights"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
