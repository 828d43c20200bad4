"""Fit the video fusion of appearance and AU-prototype readings on labelled morph clips of one photo; score it on
the other (held out).

    .venv/bin/python scripts/fit_fusion.py --json benchmarks/fusion_fit.json

Data: for each bundled photo (`emoreason.synthetic.face_photos`; the astronaut is the fit person, Grace Hopper
held out), clips of 4 s at 25 fps made with :class:`~emoreason.synthetic.FaceMorpher` from the six basic
emotions' FACS prototypes (PROTOTYPES, intensity 2.5-4.5 of 5): each emotion from rest (0.8 s ramp, held, back at
the end), held throughout (no resting stretch), and turning into the next emotion with no neutral between; small
head movements and light changes. Each clip goes through the default face analysis (`collect`, 8 fps); a frame's
truth is the emotion whose prototype is applied at at least half its strength at that time (frames below that
are not scored: the astronaut's photo smiles at rest, so "neutral" has no honest label there).

Compared, per person (frame accuracy over the scored frames):
- the shipped rule (`emoreason.reasoning.fusion`: appearance weight 0.4 for a moving face, 0.9 when no AU moves);
- one weight for every frame, picked on the fit person (the best accuracy, then the smallest weight);
- a per-frame logistic fusion (scikit-learn, multinomial): the log AU-prototype scores, the log appearance
  probabilities, the face quality and whether the lips are apart, fitted on the fit person's frames.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

PROTOTYPES = {
    "happiness": {"AU6": 1.0, "AU12": 1.0, "AU25": 0.6},
    "sadness": {"AU1": 1.0, "AU4": 1.0, "AU15": 1.0},
    "surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU25": 0.8, "AU26": 1.0},
    "fear": {"AU1": 1.0, "AU2": 1.0, "AU4": 1.0, "AU5": 1.0, "AU20": 1.0, "AU25": 0.8},
    "anger": {"AU4": 1.0, "AU5": 1.0, "AU7": 1.0, "AU17": 0.6},
    "disgust": {"AU9": 1.0, "AU10": 1.0, "AU15": 0.6, "AU17": 0.5},
}
FPS, SECONDS = 25.0, 4.0


def scripts(rng: np.random.Generator) -> list[list[tuple[str, float, tuple[float, float, float, float]]]]:
    """Clip scripts: ``[(emotion, strength, (onset, apex, release, offset) s)]``."""
    names, out = list(PROTOTYPES), []
    for name in names:
        out.append([(name, rng.uniform(2.5, 4.5), (0.8, 1.4, 3.2, 3.8))])  # from rest
        out.append([(name, rng.uniform(2.5, 4.5), (-1.0, -0.5, 9.0, 10.0))])  # throughout
    for a, b in zip(names, names[1:] + names[:1]):  # one into the next, no neutral between
        out.append([(a, rng.uniform(2.5, 4.5), (-1.0, -0.5, 1.6, 2.2)), (b, rng.uniform(2.5, 4.5), (1.8, 2.4, 9, 10))])
    return out


def render(morpher, script, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``([T, H, W, 3] frames, [T, 6] applied level of each emotion)``."""
    from emoreason.synthetic import _ramp

    frames, levels = [], []
    drift = rng.uniform(-3, 3, 3)
    for t in np.arange(int(FPS * SECONDS)) / FPS:
        aus: dict[str, float] = {}
        level = np.zeros(len(PROTOTYPES))
        for name, strength, (onset, apex, release, offset) in script:
            value = _ramp(np.array([t]), onset, apex, release, offset)[0]
            level[list(PROTOTYPES).index(name)] = max(level[list(PROTOTYPES).index(name)], value)
            for code, weight in PROTOTYPES[name].items():
                aus[code] = max(aus.get(code, 0.0), value * weight * strength)
        head = tuple(drift * np.sin(2 * np.pi * t / SECONDS))
        frames.append(morpher(aus, head=head, gain=1.0 + 0.08 * np.sin(t)))
        levels.append(level)
    return np.stack(frames), np.stack(levels)


def person_frames(person: str, image, rng, detector, folder: Path) -> dict:
    """Per analysed frame: AU scores [E], appearance [E], quality, lips apart, truth (index in EMOTIONS or -1),
    the clip's id, and the shipped rule's weight for its clip."""
    from emoreason.au import EMOTIONS
    from emoreason.face.evidence import Sampling, collect
    from emoreason.reasoning.fusion import appearance_weight, frame_evidence
    from emoreason.synthetic import FaceMorpher, write_video

    morpher = FaceMorpher(image, detector.detect(image)[0].landmarks)
    rows: dict[str, list] = {k: [] for k in ("au", "app", "quality", "open", "truth", "clip", "shipped")}
    for clip, script in enumerate(scripts(rng)):
        frames, levels = render(morpher, script, rng)
        path = write_video(folder / f"{person}-{clip}.mp4", frames, FPS)
        table = collect(path, sampling=Sampling(audio=False)).analysis.table
        table = table[table["is_main"]] if "is_main" in table else table
        if table.empty:
            continue
        readings = frame_evidence(table)
        index = np.clip(np.round(table["time_s"].to_numpy() * FPS).astype(int), 0, len(levels) - 1)
        level = levels[index]
        truth = np.where(level.max(1) >= 0.5, [EMOTIONS.index(list(PROTOTYPES)[i]) for i in level.argmax(1)], -1)
        rows["au"].append(readings["au"])
        rows["app"].append(readings["appearance"])
        rows["quality"].append(readings["quality"])
        rows["open"].append((table["AU25"].to_numpy() >= 1.0).astype(float))
        rows["truth"].append(truth)
        rows["clip"].append(np.full(len(table), clip))
        rows["shipped"].append(np.full(len(table), appearance_weight("video", table)))
    print(f"{person}: {sum(len(t) for t in rows['truth'])} frames analysed", flush=True)
    return {k: np.concatenate(v) for k, v in rows.items()}


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    scored = truth >= 0
    return round(float(np.mean(predicted[scored] == truth[scored])), 3)


def with_weight(data: dict, weights: np.ndarray) -> np.ndarray:
    from emoreason.reasoning.fusion import fuse

    return np.array([np.argmax(fuse(a, p, float(w))) for a, p, w in zip(data["au"], data["app"], weights)])


def features(data: dict) -> np.ndarray:
    app = np.nan_to_num(data["app"], nan=1.0 / data["app"].shape[1])
    return np.hstack([np.log(np.maximum(data["au"], 0.02)), np.log(np.maximum(app, 0.02)),
                      data["quality"][:, None], data["open"][:, None]])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    from emoreason.face.detect import BlazeFaceDetector
    from emoreason.synthetic import face_photos

    detector, rng, photos = BlazeFaceDetector(landmarks="mesh"), np.random.default_rng(args.seed), face_photos()
    with tempfile.TemporaryDirectory() as tmp:
        data = {p: person_frames(p, photos[p], rng, detector, Path(tmp)) for p in ("astronaut", "hopper")}
    fit = data["astronaut"]
    grid = np.round(np.linspace(0, 1, 11), 2)
    by_weight = {float(w): accuracy(with_weight(fit, np.full(len(fit["au"]), w)), fit["truth"]) for w in grid}
    best = max(by_weight.values())
    chosen = min(w for w, a in by_weight.items() if a == best)
    scored = fit["truth"] >= 0
    model = LogisticRegression(max_iter=2000, C=1.0).fit(features(fit)[scored], fit["truth"][scored])
    out = {"fit": "astronaut", "held_out": "hopper", "scored_frames": {p: int((d["truth"] >= 0).sum())
                                                                      for p, d in data.items()},
           "weight_grid_fit_accuracy": by_weight, "chosen_weight": chosen}  # fmt: skip
    for name, d in data.items():
        out[name] = {
            "shipped_rule": accuracy(with_weight(d, d["shipped"]), d["truth"]),
            "au_alone": accuracy(with_weight(d, np.zeros(len(d["au"]))), d["truth"]),
            "appearance_alone": accuracy(with_weight(d, np.ones(len(d["au"]))), d["truth"]),
            f"one_weight_{chosen}": accuracy(with_weight(d, np.full(len(d["au"]), chosen)), d["truth"]),
            "logistic": accuracy(model.predict(features(d)), d["truth"]),
        }  # fmt: skip
        print(name, out[name], flush=True)
    print("fit accuracy by weight:", by_weight, "chosen", chosen)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
