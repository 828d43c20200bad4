"""Action Unit intensities (0-5, FACS A-E) from landmark geometry against a neutral baseline.

This is the geometric AU estimator behind the default backend: each AU is a weighted change of the
measurements in :mod:`emoreason.face.geometry` from the person's own neutral face, mapped linearly
from a dead zone (landmark jitter, ~1% of face width) to a full-scale change read as intensity E.

The neutral baseline of a video is the median of its least expressive frames, trusted only within
``IDENTITY_TOLERANCE`` of the landmark model's mean shape. A clip is then calibrated per AU against the
person's own neutral frames (:func:`calibration`: their resting offset removed, the dead zone widened to
their resting jitter), so only the AUs that move beyond the person's rest are read, spread over A-E. A clip
with no resting stretch (an expression held throughout, or one expression turning into another) would lose its
expression that way: where the expression net reads the resting frames as an expression, the baseline moves
towards the population's shape and the offsets of that expression's AUs are kept (:func:`held_expression`). Measured on 15 real photographs held
still for 3 s (24 jittered H.264 frames each; nothing moves): 3.8 AUs per clip, 1.5 of them at E, before;
1.7 and 0.9 after (OFFSET_LIMIT 0.5: 2.2 and 1.1); what stays is mostly AU25, lips apart, a state measured
absolutely. A still image is measured against the mean shape alone.

Honest limits: landmarks see shape, not texture, so wrinkles and bulges (AU6 cheek raise, AU9's
wrinkling, AU14's dimple) are inferred from the shape changes that accompany them; AU6 and AU7 both
raise the lower lid and are told apart by whether the lip corners rise too. The weights were set by
hand from FACS descriptions and checked on the bundled photograph and synthetic expression morphs,
not fitted to an AU corpus: a trained checkpoint's AU head is the better estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emoreason.au import AU_CODES, PROTOTYPES
from emoreason.constants import AU_INTENSITY_MAX
from emoreason.face.expression import EXPRESSION_LABELS
from emoreason.face.geometry import FEATURES, measure_all
from emoreason.face.models import mean_shape

_F = {name: i for i, name in enumerate(FEATURES)}


@dataclass(frozen=True)
class AURule:
    code: str
    weights: dict[str, float]  # feature -> weight on its change from neutral
    dead: float  # change below this reads as absent (jitter)
    full: float  # change read as intensity 5 (E)
    absolute: bool = False  # measure the value itself, not its change (lips part is a state)


# Corrections inside the weights "explain away" mechanical side effects: a dropped jaw pulls the lip
# corners down; a broad smile lifts the upper lip and nostril wings (so they are not read as AU9/10).
AU_RULES: tuple[AURule, ...] = (
    AURule("AU1", {"inner_brow_height": 1.0}, 0.008, 0.06),
    AURule("AU2", {"outer_brow_height": 1.0}, 0.008, 0.06),
    AURule("AU4", {"inner_brow_height": -0.7, "brow_gap": -0.5}, 0.008, 0.05),
    AURule("AU5", {"upper_lid_height": 1.0}, 0.004, 0.025),
    AURule("AU6", {"lower_lid_height": -0.6, "corner_height": -0.12}, 0.004, 0.02),
    AURule("AU7", {"lower_lid_height": -1.0, "corner_height": 0.12}, 0.004, 0.02),
    AURule("AU9", {"nostril_height": -1.0, "corner_height": 0.2}, 0.004, 0.02),
    AURule("AU10", {"upper_lip_gap": -1.0, "corner_height": 0.3}, 0.006, 0.035),
    # AU12 and AU20 read the corners against the lips' own middle (corner_lift) as well as the nose: a dropped jaw
    # carries the corners down with the lower lip, which read against the nose alone hid a laugh's AU12 and showed
    # AU20 at E (issue 21's crying-then-laughing clip and AU morphs: scripts/bench_mouth_rules.py, BENCHMARKS.md)
    AURule("AU12", {"corner_lift": 0.7, "corner_height": -1.0, "jaw_opening": 0.4, "mouth_width": 0.15}, 0.01, 0.07),
    AURule("AU14", {"corner_asymmetry": 1.0}, 0.008, 0.035),
    AURule("AU15", {"corner_height": 1.0, "jaw_opening": -0.3}, 0.008, 0.04),
    AURule("AU17", {"lower_lip_height": -1.0}, 0.008, 0.03),
    AURule("AU20", {"mouth_width": 1.0, "corner_lift": -1.0}, 0.015, 0.06),
    AURule("AU23", {"lip_thickness": -1.0, "mouth_width": -0.5}, 0.008, 0.035),
    AURule("AU24", {"lip_thickness": -1.0, "lip_gap": -1.0}, 0.01, 0.04),
    AURule("AU25", {"lip_gap": 1.0}, 0.012, 0.08, absolute=True),
    AURule("AU26", {"jaw_opening": 1.0}, 0.02, 0.12),
    # AU43 (closed) and AU45 (blink) share the closure measure; events split them by duration.
    AURule("AU43", {"eye_opening": -1.0}, 0.012, 0.035),
    AURule("AU45", {"eye_opening": -1.0}, 0.012, 0.035),
)
if tuple(rule.code for rule in AU_RULES) != AU_CODES:
    raise ValueError("AU_RULES must cover AU_CODES in the same order")

_WEIGHTS = np.array([[rule.weights.get(name, 0.0) for name in FEATURES] for rule in AU_RULES])  # [A, F]
_DEAD = np.array([rule.dead for rule in AU_RULES])
_FULL = np.array([rule.full for rule in AU_RULES])
_ABSOLUTE = np.array([rule.absolute for rule in AU_RULES])

# How far (in units of each feature's largest full scale) a person's neutral may differ from the mean
# shape before we stop believing it is neutral.
IDENTITY_TOLERANCE = 0.4
_FEATURE_SCALE = np.array([max((r.full for r in AU_RULES if r.weights.get(name)), default=0.05) for name in FEATURES])
NEUTRAL_FRACTION = 0.25  # share of a clip's frames taken as its neutral reference
CALIBRATION_MIN_FRAMES = 8  # clips this long are calibrated against their own neutral frames
OFFSET_LIMIT = 1.0  # most of an AU's range (full - dead) a resting offset may remove
NOISE_Z = 3.0  # an AU must move this many of the person's resting spreads to count
# The share of "not neutral" the expression net (EXPRESSION_LABELS, the analysis' appearance columns) gives resting
# frames before they count as holding an expression (see held_expression).
# Measured with scripts/fit_held_expression.py (30 clips: 22 real faces held still, labels by eye, and 8 AU morphs
# of the two bundled photos; fitted on half, the rest held out): right 1/13 -> 5/13 on the fit half and 3/17 ->
# 4/17 held out with the gate on, no clip worse; every floor from 0.2 to 0.8 gives the same readings (the net's
# reading of resting frames is near 0 or near 1), so 0.5: an expression more likely than not. A floor >= 1: off.
HELD_FLOOR = 0.5
_NEUTRAL = EXPRESSION_LABELS.index("neutral")
# [L, A]: 1 where an AU belongs to an expression class's prototype (core or supporting); the neutral row is 0
_MEMBER = np.array([[label in PROTOTYPES and code in PROTOTYPES[label].core + PROTOTYPES[label].supporting
                     for code in AU_CODES] for label in EXPRESSION_LABELS], np.float64)  # fmt: skip


def reference_features() -> np.ndarray:
    """``[F]`` measurements of the landmark model's mean shape: the population neutral face."""
    return measure_all(mean_shape()[None])[0]


def _raw(features: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """``[T, A]`` weighted change of each AU's measurements from ``neutral`` (the value itself where absolute)."""
    change = np.where(_ABSOLUTE[None, :, None], features[:, None, :], (features - neutral)[:, None, :])  # [T, A, F]
    return (change * _WEIGHTS[None]).sum(-1)


def _scale(raw: np.ndarray, dead: np.ndarray = _DEAD, full: np.ndarray = _FULL) -> np.ndarray:
    return AU_INTENSITY_MAX * np.clip((raw - dead) / (full - dead), 0.0, 1.0)


def intensities(features: np.ndarray, neutral: np.ndarray, appearance: np.ndarray | None = None) -> np.ndarray:
    """``[T, F]`` measurements and a ``[F]`` neutral -> ``[T, A]`` AU intensities in 0..5.

    A clip of at least CALIBRATION_MIN_FRAMES frames is calibrated against the person's own neutral frames (see
    :func:`calibration`); a still image or a short clip uses the hand-set scales alone. ``appearance``: ``[T, 7]``
    expression-net probabilities (EXPRESSION_LABELS; NaN rows where there are none), which decide how much of a
    resting offset is an expression held through the clip rather than the person's face (:func:`held_expression`).
    """
    raw = _raw(features, neutral)
    if len(raw) < CALIBRATION_MIN_FRAMES:
        return _scale(raw)
    offset, dead, full = calibration(raw, appearance)
    return _scale(raw - offset, dead, full)


def held_expression(appearance: np.ndarray | None) -> tuple[float, np.ndarray]:
    """How far a clip's resting frames hold an expression, by the expression net's reading of them.

    ``appearance``: ``[K, 7]`` probabilities of the resting frames (EXPRESSION_LABELS; NaN rows are skipped).
    Returns ``(held, [A] per AU)``: ``held`` in 0..1 is the net's "not neutral" (their mean) above HELD_FLOOR,
    rescaled (0 where the net sees a resting face or there are no probabilities); per AU, ``held`` times the
    share of the expressive probability whose prototypes (:data:`emoreason.au.PROTOTYPES`, core and supporting)
    include the AU. So a smile held through a whole clip keeps AU6/AU12 (the net reads happiness in its "rest"),
    while a face the net reads as neutral has its offsets removed as its anatomy.
    """
    none = (0.0, np.zeros(len(AU_CODES)))
    if appearance is None or len(appearance) == 0 or HELD_FLOOR >= 1.0:  # a floor of 1 turns the gate off
        return none
    rows = np.asarray(appearance, np.float64)
    rows = rows[~np.isnan(rows).any(1)]
    if not len(rows) or rows.shape[1] != len(EXPRESSION_LABELS):
        return none
    mean = rows.mean(0) / max(rows.mean(0).sum(), 1e-9)
    expressive = 1.0 - mean[_NEUTRAL]
    held = float(np.clip((expressive - HELD_FLOOR) / (1.0 - HELD_FLOOR), 0.0, 1.0))
    share = mean @ _MEMBER / max(expressive, 1e-9)  # [A]
    return held, held * np.clip(share, 0.0, 1.0)


def calibration(raw: np.ndarray, appearance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-AU ``([A] offset, [A] dead zone, [A] full scale)`` from a clip's ``[T, A]`` raw changes.

    The clip's least expressive frames (NEUTRAL_FRACTION of them) are the person's neutral. Per AU, robustly:
    their median, where positive, is a resting offset (face shape the mean-shape tolerance left over), subtracted
    up to OFFSET_LIMIT of the AU's range (an expression held through the whole clip is then left to the appearance
    model, which reads it absolutely; a rest below zero is left alone, so calibration never adds an AU); their
    spread (1.4826 x MAD, the jitter of this person's landmarks in this clip) widens the dead zone to
    NOISE_Z spreads, moving the full scale by as much. So an AU reads as present only where it moves beyond the
    person's own resting variation, and AUs whose measurement is shaky in this clip stop reaching E on noise.
    With ``appearance`` (``[T, 7]``), the part of each offset that the expression net reads as an expression held
    in those frames is kept (:func:`held_expression`): a clip with no resting stretch keeps its expression.
    """
    expressiveness = _scale(raw).sum(1)  # [T]
    count = max(3, int(round(len(raw) * NEUTRAL_FRACTION)))
    chosen = np.argsort(expressiveness, kind="stable")[:count]
    rest = raw[chosen]  # [K, A]
    median = np.median(rest, axis=0)
    spread = 1.4826 * np.median(np.abs(rest - median), axis=0)
    width = _FULL - _DEAD
    _, held = held_expression(None if appearance is None else np.asarray(appearance)[chosen])
    offset = np.where(_ABSOLUTE, 0.0, (1.0 - held) * np.clip(median, 0.0, OFFSET_LIMIT * width))
    dead = np.maximum(_DEAD, NOISE_Z * spread)
    return offset, dead, dead + width


def neutral_baseline(features: np.ndarray, valid: np.ndarray | None = None,
                     appearance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The person's neutral measurements from their least expressive frames.

    Args:
        features: ``[T, F]`` measurements of one face track.
        valid: ``[T]`` bool, frames usable for the baseline (for example near-frontal ones).
        appearance: ``[T, 7]`` expression-net probabilities (EXPRESSION_LABELS, NaN rows where none): where the
            net reads the chosen frames as holding an expression (:func:`held_expression`), the baseline moves
            from them towards the population's shape (the mean shape) by as much.
    Returns:
        ``([F] neutral, [K] indices of the frames used)``; with under 3 usable frames, the mean shape.
    """
    reference = reference_features()
    usable = np.flatnonzero(valid if valid is not None else np.ones(len(features), bool))
    if len(usable) < 3:
        return reference, np.array([], dtype=int)
    expressiveness = _scale(_raw(features[usable], reference)).sum(1)  # [U]
    count = max(3, int(round(len(usable) * NEUTRAL_FRACTION)))
    chosen = usable[np.argsort(expressiveness, kind="stable")[:count]]
    personal = np.median(features[chosen], axis=0)
    limit = IDENTITY_TOLERANCE * _FEATURE_SCALE
    held, _ = held_expression(None if appearance is None else np.asarray(appearance)[chosen])
    return reference + (1.0 - held) * np.clip(personal - reference, -limit, limit), np.sort(chosen)
