"""Does test-time augmentation help the expression CNN on real faces? The net alone, on every labelled face of
scripts/eval_real_faces.py that is here (labels by eye: happiness or neutral), plain against the mean of a crop and
its mirror image, and against that plus crops from boxes 5% smaller and larger (and their mirrors).

    .venv/bin/python scripts/bench_expression_tta.py [--face-api DIR] [--json OUT]

Prints accuracy (all faces, the clear ones) and the mean negative log-probability of the label.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_real_faces import LABELS, labelled_detection, load, scored_reads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--face-api", type=Path, help="@vladmandic/face-api's demo folder (sample*.jpg)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from emoreason.face.blazeface import as_rgb
    from emoreason.face.detect import BlazeFaceDetector
    from emoreason.face.expression import EXPRESSION_LABELS, ExpressionModel, expression_crop

    detector, net, faces = BlazeFaceDetector(landmarks="mesh"), ExpressionModel(), []
    for photo, cx, cy, truth, clear in LABELS:
        image = load(photo, {"face-api": args.face_api, "face_recognition": None})
        found = [] if image is None else detector.detect(image := np.ascontiguousarray(as_rgb(image)))
        if not found:
            continue
        face = found[labelled_detection(found, cx, cy)]
        crop = expression_crop(image, face.box, face.landmarks)
        x0, y0, x1, y1 = face.box
        w, h = x1 - x0, y1 - y0
        scaled = [expression_crop(image, (x0 - s * w, y0 - s * h, x1 + s * w, y1 + s * h), face.landmarks)
                  for s in (-0.05, 0.05)]  # fmt: skip
        variants = {"plain": [crop], "mirror": [crop, crop[:, ::-1]],
                    "mirror + scale": [crop, crop[:, ::-1], *scaled, *(c[:, ::-1] for c in scaled)]}  # fmt: skip
        probs = {k: net.predict(np.ascontiguousarray(np.stack(v))).mean(0) for k, v in variants.items()}
        faces.append({"photo": photo, "centre": [cx, cy], "truth": truth, "clear": clear,
                      "read": {k: EXPRESSION_LABELS[int(np.argmax(p))] for k, p in probs.items()},
                      "p_truth": {k: float(p[EXPRESSION_LABELS.index(truth)]) for k, p in probs.items()}})  # fmt: skip
    summary = scored_reads(faces)
    for k in summary:
        summary[k]["accuracy_clear"] = float(np.mean([f["read"][k] == f["truth"] for f in faces if f["clear"]]))
        print(f"{k:15} {len(faces)} faces: accuracy {summary[k]['accuracy']:.3f} (clear "
              f"{summary[k]['accuracy_clear']:.3f}), label nll {summary[k]['nll']:.3f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "faces": faces}, indent=2) + "\n")


if __name__ == "__main__":
    main()
