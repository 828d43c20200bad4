"""Fit HELD_FLOOR: how sure the expression net must be that a clip's resting frames hold an expression before
calibration keeps it (emoreason.face.aus.held_expression), on real faces held still and on AU morphs.

    .venv/bin/python scripts/fit_held_expression.py [--face-api DIR] [--json OUT]

Clips, each read by `emoreason.explain` once per candidate floor (and once with the gate off, as before):
- real faces held still: every labelled face of scripts/eval_real_faces.py that is here (the bundled astronaut,
  camera and Grace Hopper photos; with ``--face-api DIR`` the npm ``@vladmandic/face-api`` demo photos, labels by
  eye: happiness or neutral), cropped square around the face (2.2 face widths, 256 px) and held for 3 s at 12 fps
  with pixel noise (sd 2) through H.264: no AU moves, so whatever the clip shows is held throughout;
- the AU morphs of scripts/bench_au_morphs.py (a laugh and a sadness from rest, held throughout, sadness into a
  laugh), 6 s at 25 fps, for both bundled photos.
Right: a held-still face concluded as its label (and, when happy, AU12 among its AUs); a morph as bench_au_morphs
scores it. The floor is fitted on one half (the astronaut's morphs, scikit-image's photos, face-api samples 1-3)
and scored on the other (Grace Hopper's morphs and photo, samples 4-6), so the held-out figure is not the fit's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_au_morphs import CASES  # noqa: E402
from eval_real_faces import LABELS, labelled_detection, load  # noqa: E402

FLOORS = (None, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # None: the gate off (the calibration before)
FIT = ("skimage:", "face-api:sample1", "face-api:sample2", "face-api:sample3", "astronaut")


def held_clips(folder: Path, face_api: Path | None, detector) -> list[dict]:
    from PIL import Image

    from emoreason.face.blazeface import as_rgb
    from emoreason.synthetic import write_video

    clips, rng = [], np.random.default_rng(0)
    for i, (photo, cx, cy, truth, clear) in enumerate(LABELS):
        image = load(photo, {"face-api": face_api, "face_recognition": None})
        if image is None:
            continue
        image = np.ascontiguousarray(as_rgb(image))
        faces = detector.detect(image)
        if not faces:
            continue
        pick = labelled_detection(faces, cx, cy)
        x0, y0, x1, y1 = faces[pick].box
        x, y = (x0 + x1) / 2, (y0 + y1) / 2
        half = 1.1 * (faces[pick].box[2] - faces[pick].box[0])
        box = [int(round(v)) for v in (x - half, y - half, x + half, y + half)]
        crop = Image.fromarray(image).crop(box).resize((256, 256), Image.BICUBIC)
        still = np.asarray(crop, np.float64)
        video = np.stack([np.clip(still + rng.normal(0, 2, still.shape), 0, 255) for _ in range(36)]).astype(np.uint8)
        path = write_video(folder / f"held{i}.mp4", video, 12.0)
        clips.append({"name": f"{photo}" + ("" if cx is None else f" @{cx},{cy}"), "kind": "held still",
                      "gold": truth, "clear": clear, "path": path, "applied": ["AU12"] if truth == "happiness" else []})  # fmt: skip
    return clips


def morph_clips(folder: Path, detector) -> list[dict]:
    from emoreason.synthetic import FaceMorpher, face_photos, scripted_frames, write_video

    clips = []
    for person, image in sorted(face_photos().items()):
        morpher = FaceMorpher(image, detector.detect(image)[0].landmarks)
        for i, (case, (script, gold)) in enumerate(CASES.items()):
            path = write_video(folder / f"{person}-{i}.mp4", scripted_frames(morpher, script), 25.0)
            applied = sorted(set().union(*(s[0] for s in script)))
            clips.append({"name": f"{person}: {case}", "kind": "morph", "gold": gold, "clear": True, "path": path,
                          "applied": applied})  # fmt: skip
    return clips


def read(clip: dict) -> dict:
    import emoreason

    report = emoreason.explain(clip["path"], use_audio=False, key_frames=False)
    aus = {a.code: a.level for a in report.aus}
    label = report.emotion.label if report.emotion else None
    right = label == clip["gold"] and ("AU12" in aus or "AU12" not in clip["applied"])
    return {"emotion": label, "aus": aus, "right": bool(right)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--face-api", type=Path, help="@vladmandic/face-api's demo folder (sample*.jpg)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import emoreason.face.aus as aus
    from emoreason.face.detect import BlazeFaceDetector

    detector = BlazeFaceDetector(landmarks="mesh")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = held_clips(Path(tmp), args.face_api, detector) + morph_clips(Path(tmp), detector)
        for clip in clips:
            clip["fit"] = any(part in clip["name"] for part in FIT)
        for floor in FLOORS:
            aus.HELD_FLOOR = 2.0 if floor is None else floor  # above 1: nothing is ever held
            results[str(floor)] = [read(clip) for clip in clips]
            got = results[str(floor)]
            for part, keep in (("fit", True), ("held out", False)):
                idx = [i for i, c in enumerate(clips) if c["fit"] == keep]
                by_kind = {k: f"{sum(got[i]['right'] for i in idx if clips[i]['kind'] == k)}/"
                              f"{sum(clips[i]['kind'] == k for i in idx)}" for k in ("held still", "morph")}  # fmt: skip
                print(f"floor {floor}: {part}: {sum(got[i]['right'] for i in idx)}/{len(idx)} right {by_kind}",
                      flush=True)  # fmt: skip
    fit_idx = [i for i, c in enumerate(clips) if c["fit"]]
    candidates = [f for f in FLOORS if f is not None]
    score = {f: sum(results[str(f)][i]["right"] for i in fit_idx) for f in candidates}
    tied = [f for f in candidates if score[f] == max(score.values())]
    best = tied[len(tied) // 2]  # among equally good floors, the middle one (farthest from both ends of the tie)
    summary = {}
    for floor in (None, best):
        got = results[str(floor)]
        summary[str(floor)] = {part: {"right": sum(got[i]["right"] for i, c in enumerate(clips) if c["fit"] == keep),
                                      "of": sum(c["fit"] == keep for c in clips)}
                               for part, keep in (("fit", True), ("held_out", False))}  # fmt: skip
    print(f"fitted HELD_FLOOR {best}: {summary[str(best)]}; gate off: {summary['None']}")
    for i, clip in enumerate(clips):
        before, after = results["None"][i], results[str(best)][i]
        print(
            f"{'fit ' if clip['fit'] else 'held'} {clip['name'][:44]:44} gold {clip['gold']:9} | off: "
            f"{before['emotion']} {sorted(before['aus'])} | {best}: {after['emotion']} {sorted(after['aus'])}"
        )
    if args.json:
        rows = [{k: v for k, v in c.items() if k != "path"} | {"by_floor": {f: results[f][i] for f in results}}
                for i, c in enumerate(clips)]  # fmt: skip
        args.json.write_text(json.dumps({"fitted": best, "summary": summary, "clips": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
