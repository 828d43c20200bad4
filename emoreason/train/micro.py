"""A learned micro-expression head: onset-to-apex flow features -> the corpus's emotion classes, leave-one-subject-out.

    emoreason train micro --data casme2.jsonl --out runs/micro [--label-space casme2]

Each labelled event (CASME II's coding sheet through ``emoreason data build --dataset casme2``: a frame folder and
its onset/apex frame numbers; or a video with ``onset_s``/``apex_s``) is read by
:func:`emoreason.face.micro.read_onset_apex`: STSTNet's three channels (horizontal and vertical flow, optical
strain) pooled in the eight AU regions, 24 numbers. A logistic regression (balanced class weights, standardised
features) is scored leave-one-subject-out as MEGC reports it: UAR (mean recall per class) and UF1 (mean F1 per
class) over the pooled predictions of every fold; the FACS-prototype reading of the same events (no training) is
scored beside it. The head fitted on every event is written to ``OUT/micro_head.json`` (plain numbers: no pickle),
the scores to ``OUT/results.json``. Needs scikit-learn (installed with librosa).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from emoreason.au import LABEL_SPACES
from emoreason.data import DataError

logger = logging.getLogger(__name__)


def event_rows(data: Path) -> tuple[list, list[str]]:
    """(samples with an onset and a label, reasons the others were skipped)."""
    from emoreason.data.jsonl import read_samples

    kept, skipped = [], []
    for sample in read_samples(data):
        frames = (sample.provenance or {}).get("frames") or {}
        if not sample.labels:
            skipped.append(f"{sample.id}: no label")
        elif sample.media_type == "frames" and frames.get("onset") is None:
            skipped.append(f"{sample.id}: no onset frame")
        elif sample.media_type != "frames" and sample.onset_s is None:
            skipped.append(f"{sample.id}: no onset_s")
        else:
            kept.append(sample)
    return kept, skipped


def features_of(samples: list) -> tuple[np.ndarray, list, list[str]]:
    """``[N, F]`` features of the samples that could be read, those samples, and why the others could not."""
    from emoreason.face.micro import event_frames, event_points, read_onset_apex
    from emoreason.io.errors import MediaError

    rows, kept, failed = [], [], []
    for sample in samples:
        try:
            onset, apex = event_points(sample)
            reading = read_onset_apex(*event_frames(sample.media, onset, apex, sample.media_type))
        except MediaError as exc:
            failed.append(f"{sample.id}: {exc}")
            continue
        if reading is None:
            failed.append(f"{sample.id}: no face in the onset frame")
            continue
        rows.append(reading.features)
        kept.append((sample, reading))
    return (np.stack(rows) if rows else np.zeros((0, 0))), kept, failed


def loso(x: np.ndarray, y: list[str], groups: list[str], labels: list[str], c: float = 1.0) -> list[str]:
    """Leave-one-subject-out predictions of a balanced logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predictions: list[str | None] = [None] * len(y)
    y_arr, g_arr = np.array(y), np.array(groups)
    for subject in sorted(set(groups)):
        test = g_arr == subject
        train_labels = set(y_arr[~test])
        if len(train_labels) < 2:  # one class left to learn from: predict it
            for i in np.flatnonzero(test):
                predictions[i] = next(iter(train_labels), None)
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
        model.fit(x[~test], y_arr[~test])
        for i, label in zip(np.flatnonzero(test), model.predict(x[test])):
            predictions[i] = str(label)
    return predictions


def run_micro(argv: list[str]) -> Path:
    parser = argparse.ArgumentParser(prog="emoreason train micro", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="labelled events (.jsonl, e.g. CASME II's)")
    parser.add_argument("--out", type=Path, required=True, help="folder for micro_head.json and results.json")
    parser.add_argument("--label-space", default=None, help="default: the rows' own")
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise DataError(f"--data: {args.data} is not a file")
    samples, skipped = event_rows(args.data)
    spaces = {s.label_space for s in samples}
    name = args.label_space or (spaces.pop() if len(spaces) == 1 else None)
    if name not in LABEL_SPACES:
        raise DataError(f"--label-space: give one of {sorted(LABEL_SPACES)} (the rows have {sorted(spaces)})")
    space = LABEL_SPACES[name]
    x, kept, failed = features_of(samples)
    subjects = sorted({s.subject or "unknown" for s, _ in kept})
    if len(kept) < 4 or len(subjects) < 2:
        raise DataError(f"{args.data}: {len(kept)} readable events of {len(subjects)} subjects; leave-one-subject-out "
                        f"needs at least 4 events of 2 subjects (skipped: {(skipped + failed)[:3]})")  # fmt: skip
    from emoreason.metrics import emotion_metrics

    y = [s.labels[0] for s, _ in kept]
    groups = [s.subject or "unknown" for s, _ in kept]
    from emoreason.face.micro import prototype_label

    learned = loso(x, y, groups, list(space.labels), args.c)
    facs = [prototype_label(reading.emotion, space) for _, reading in kept]
    labels = list(space.labels)

    def scores(pred):
        m = emotion_metrics(y, pred, labels)
        return {"uar": round(m["uar"], 4), "uf1": round(m["macro_f1"], 4), "accuracy": round(m["accuracy"], 4),
                "confusion": m["confusion"], "confusion_columns": m["confusion_columns"]}  # fmt: skip

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    head = LogisticRegression(C=args.c, class_weight="balanced", max_iter=2000).fit(scaler.transform(x), y)
    from emoreason.face.micro import FEATURE_NAMES

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "micro_head.json").write_text(json.dumps({
        "features": list(FEATURE_NAMES), "label_space": name, "classes": [str(c) for c in head.classes_],
        "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "coef": head.coef_.tolist(),
        "intercept": head.intercept_.tolist(),
    }, indent=1))  # fmt: skip
    results = {"data": str(args.data), "label_space": name, "events": len(kept), "subjects": len(subjects),
               "skipped": skipped + failed, "protocol": "leave-one-subject-out, predictions pooled (MEGC UAR/UF1)",
               "learned_head": scores(learned), "facs_prototypes": scores(facs)}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"{len(kept)} events, {len(subjects)} subjects (LOSO): learned head UAR {results['learned_head']['uar']:.3f} "
          f"UF1 {results['learned_head']['uf1']:.3f}; FACS prototypes UAR {results['facs_prototypes']['uar']:.3f} "
          f"UF1 {results['facs_prototypes']['uf1']:.3f}")  # fmt: skip
    return args.out / "micro_head.json"
