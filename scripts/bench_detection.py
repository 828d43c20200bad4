"""Which face pipeline FaceAnalyzer should use: recall on real photos, landmark jitter, the demo clip's AU events.

Both pipelines run in the same process: ``dlib`` (HOG + dlib's 68 points, the previous default) and
``blazeface`` (BlazeFace + the 468-point mesh as 68 points, the default). Photos are the real ones installed
packages ship (scikit-image's astronaut and cameraman, matplotlib's Grace Hopper) and issue 13's failure classes
built from them: a small face in a large image, greyscale, RGBA, a hand over the mouth, several people. A face
counts as found when a detection's centre lies in its known region (at most one detection per face).

    python scripts/bench_detection.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from emoreason.face.analyzer import FaceAnalyzer
from emoreason.io.video import Frame

PIPELINES = ("dlib", "blazeface")
# face regions (x0, y0, x1, y1) in the original photos
ASTRONAUT_FACE, HOPPER_FACE, CAMERA_FACE = (160, 40, 300, 200), (180, 60, 380, 330), (180, 110, 290, 220)


def photos() -> dict[str, tuple[np.ndarray, list[tuple]]]:
    """name -> (image, face regions)."""
    import matplotlib.cbook
    from skimage import data

    astronaut, camera = data.astronaut(), data.camera()
    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    out = {"astronaut": (astronaut, [ASTRONAUT_FACE]), "cameraman (grey, half hidden)": (camera, [CAMERA_FACE]),
           "grace hopper": (hopper, [HOPPER_FACE])}  # fmt: skip
    for name, image, face in (("astronaut", astronaut, ASTRONAUT_FACE), ("hopper", hopper, HOPPER_FACE)):
        out[f"{name} greyscale"] = (np.asarray(Image.fromarray(image).convert("L")), [face])
        out[f"{name} RGBA"] = (np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]), [face])
        out[f"{name} hand over the mouth"] = (hand_over_mouth(image, face), [face])
        for side in (60, 40):
            out[f"{name} {side} px face in 2400x1600"] = small_in_large(image, face, side)
    out["5 people"] = group([(astronaut, ASTRONAUT_FACE)] * 5, 70)
    out["6 people, two faces"] = group([(astronaut, ASTRONAUT_FACE), (hopper, HOPPER_FACE)] * 3, 90)
    return out


def hand_over_mouth(image: np.ndarray, face: tuple) -> np.ndarray:
    picture = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(picture)
    x0, y0, x1, y1 = face
    w, h = x1 - x0, y1 - y0
    skin = (224, 172, 140)
    draw.ellipse((x0 + 0.15 * w, y0 + 0.62 * h, x0 + 0.85 * w, y1 + 0.2 * h), fill=skin)  # palm
    for i in range(4):  # fingers up the cheek
        fx = x0 + (0.2 + 0.14 * i) * w
        draw.rounded_rectangle((fx, y0 + 0.52 * h, fx + 0.11 * w, y0 + 0.8 * h), radius=int(0.05 * w), fill=skin)
    return np.asarray(picture)


def _patch(image: np.ndarray, face: tuple, side: int) -> tuple[np.ndarray, tuple]:
    """The head with some background, scaled so the face region is ``side`` px; and the face's region in it."""
    x0, y0, x1, y1 = face
    w, h = x1 - x0, y1 - y0
    left, top = max(0, int(x0 - 0.5 * w)), max(0, int(y0 - 0.5 * h))
    crop = image[top : int(y1 + 0.5 * h), left : int(x1 + 0.5 * w)]
    scale = side / np.sqrt(w * h)
    resized = np.asarray(Image.fromarray(crop).resize((round(crop.shape[1] * scale), round(crop.shape[0] * scale))))
    return resized, ((x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale)


def small_in_large(image: np.ndarray, face: tuple, side: int) -> tuple[np.ndarray, list[tuple]]:
    canvas = np.full((1600, 2400, 3), 128, np.uint8)
    patch, (a, b, c, d) = _patch(image, face, side)
    canvas[1000 : 1000 + patch.shape[0], 700 : 700 + patch.shape[1]] = patch
    return canvas, [(700 + a, 1000 + b, 700 + c, 1000 + d)]


def group(people: list[tuple[np.ndarray, tuple]], side: int) -> tuple[np.ndarray, list[tuple]]:
    canvas, regions = np.full((600, 300 * len(people), 3), 90, np.uint8), []
    for i, (image, face) in enumerate(people):
        patch, (a, b, c, d) = _patch(image, face, side)
        x, y = 40 + 300 * i, 100 + 60 * (i % 2)
        canvas[y : y + patch.shape[0], x : x + patch.shape[1]] = patch[: 600 - y]
        regions.append((x + a, y + b, x + c, y + d))
    return canvas, regions


def found(table, regions: list[tuple]) -> tuple[int, int]:
    """(faces found, detections matching no face)."""
    rows = table[table["track_id"] >= 0]
    centres = list(zip((rows["face_x0"] + rows["face_x1"]) / 2, (rows["face_y0"] + rows["face_y1"]) / 2))
    hits = {i for cx, cy in centres for i, (x0, y0, x1, y1) in enumerate(regions) if x0 < cx < x1 and y0 < cy < y1}
    return len(hits), len(centres) - len(hits)


def recall(analyzers: dict[str, FaceAnalyzer]) -> None:
    print("| photo | size | faces | " + " | ".join(PIPELINES) + " |\n|---|---|---|" + "---|" * len(PIPELINES))
    totals = dict.fromkeys(PIPELINES, 0)
    count = 0
    for name, (image, regions) in photos().items():
        cells = []
        for label, analyzer in analyzers.items():
            start = time.perf_counter()
            table = analyzer.analyze_frames([Frame(0, 0.0, image)], name, "image", 0.0, 1).table
            hits, extra = found(table, regions)
            totals[label] += hits
            cells.append(f"{hits}{f' +{extra}' if extra else ''} ({(time.perf_counter() - start) * 1000:.0f} ms)")
        count += len(regions)
        size = "x".join(map(str, image.shape[1::-1])) + (" grey" if image.ndim == 2 else f"x{image.shape[2]}")
        print(f"| {name} | {size} | {len(regions)} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nfound of {count} faces: " + ", ".join(f"{k} {v}" for k, v in totals.items()))


def mapping_error() -> None:
    """The mesh's 68 points (IBUG68_FROM_MESH) against dlib's own on the same faces, in % of the face box."""
    import matplotlib.cbook
    from skimage import data

    from emoreason.face.detect import BlazeFaceDetector, FaceDetector, landmarks_in_box
    from emoreason.synthetic import astronaut_face

    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    detector, errors = BlazeFaceDetector(landmarks="mesh"), []
    for image in (data.astronaut(), astronaut_face(320), hopper):
        face = detector.detect(image)[0]
        dlib_points = landmarks_in_box(image, face.box)  # dlib's model in the same box
        errors.append(np.linalg.norm(face.landmarks - dlib_points, axis=1) / FaceDetector().detect(image)[0].size)
    error = np.mean(errors, axis=0) * 100
    parts = {"jaw": (0, 17), "brows": (17, 27), "nose": (27, 36), "eyes": (36, 48), "lips": (48, 68)}
    print(
        f"mesh -> 68 points against dlib's (3 faces): mean {error.mean():.1f}% of the face box; "
        + ", ".join(f"{name} {error[a:b].mean():.1f}%" for name, (a, b) in parts.items())
    )


def jitter_and_events(analyzers: dict[str, FaceAnalyzer]) -> None:
    from emoreason.synthetic import astronaut_face, expression_clip, write_video

    rng = np.random.default_rng(0)
    still = astronaut_face(320).astype(np.float32)
    noisy = np.stack([np.clip(still + rng.normal(0, 2.0, still.shape), 0, 255).astype(np.uint8) for _ in range(36)])
    smile, _ = expression_clip(size=320, fps=12.0, duration_s=3.0)
    with tempfile.TemporaryDirectory() as tmp:
        still_path = write_video(Path(tmp) / "still.mp4", noisy, 12.0)
        smile_path = write_video(Path(tmp) / "smile.mp4", smile, 12.0)
        for label, analyzer in analyzers.items():
            main = analyzer.analyze(still_path).main_face()
            points = main[[c for c in main.columns if c[:2] in ("x_", "y_")]].to_numpy(float).reshape(len(main), 68, 2)
            motion = np.linalg.norm(np.diff(points, axis=0), axis=2).mean()
            aus = main[["AU12", "AU25"]].std().round(3).to_dict()
            print(f"{label}: still face (noise sd 2): mean frame-to-frame landmark motion {motion:.3f} px; "
                  f"AU sd {aus}")  # fmt: skip
            analysis = analyzer.analyze(smile_path)
            events = ", ".join(
                f"{e.code} {e.onset_s:.2f}-{e.offset_s:.2f} s ({e.intensity:.1f})" for e in analysis.events
            )
            happy = analysis.main_face()["happiness"].mean()
            print(f"{label}: demo clip (smile 0.8-2.5 s, apex 1.3-2.0 s) events: {events}; mean happiness {happy:.2f}")


def main() -> None:
    analyzers = {label: FaceAnalyzer(detector=label) for label in PIPELINES}
    recall(analyzers)
    print()
    mapping_error()
    jitter_and_events(analyzers)


if __name__ == "__main__":
    main()
