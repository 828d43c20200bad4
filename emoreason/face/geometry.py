"""Geometric facial measurements from 68 normalised landmarks.

Each measurement is a distance in the mean shape's frame (face width ~1, y grows downward), after
:func:`emoreason.face.align.normalize_landmarks` has removed position, size and head pose. The AU
estimator compares them with the same person's neutral values. Left and right are averaged; the
asymmetry of the lip corners is kept separately (a one-sided smile is the contempt signal).
"""

from __future__ import annotations

import numpy as np

# iBUG 300-W indices, named by the subject's side ("r" = the subject's right = image left).
BROW_R_OUTER, BROW_R_INNER, BROW_L_INNER, BROW_L_OUTER = (17, 18), (20, 21), (22, 23), (25, 26)
EYE_R = {"outer": 36, "inner": 39, "upper": (37, 38), "lower": (41, 40)}
EYE_L = {"outer": 45, "inner": 42, "upper": (43, 44), "lower": (47, 46)}
NOSE_BRIDGE_TOP, NOSE_TIP, NOSE_BASE, NOSTRILS = 27, 30, 33, (31, 35)
MOUTH_R, MOUTH_L = 48, 54
UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 51, 62, 66, 57
CHIN = 8

FEATURES = (
    "inner_brow_height",  # eye line to inner brow ends        (AU1 up, AU4 down)
    "outer_brow_height",  # eye line to outer brow ends        (AU2 up)
    "brow_gap",  # distance between the inner brow ends        (AU4 draws them together)
    "upper_lid_height",  # eye line to upper lid               (AU5 up, AU43/45 down)
    "lower_lid_height",  # lower lid below the eye line        (AU6/AU7 raise the lower lid)
    "eye_opening",  # upper to lower lid                       (AU5 up; AU6/7/43/45 down)
    "nostril_height",  # nostril wings below the nose tip      (AU9 lifts them)
    "upper_lip_gap",  # nose base to upper lip                 (AU9/AU10 shorten it)
    "corner_height",  # lip corners below the nose base        (AU12 up, AU15 down)
    "corner_asymmetry",  # right minus left corner height, abs (unilateral AU12/AU14)
    "mouth_width",  # corner to corner                         (AU12/AU20 widen, AU23 narrows)
    "lip_thickness",  # visible red of both lips               (AU23/AU24 thin it)
    "lip_gap",  # inner lips apart                             (AU25)
    "jaw_opening",  # nose base to chin                        (AU26)
    "lower_lip_height",  # lower lip below the nose base       (AU17 pushes it up)
    "corner_lift",  # lip corners above the middle of the lips (AU12 raises it, AU20 does not; a dropped jaw: neither)
)


def measure(points: np.ndarray) -> dict[str, float]:
    """Measurements of one face; ``points`` are ``[68, 2]`` normalised landmarks."""
    p = points
    y = p[:, 1]
    eye_line = (y[[EYE_R["outer"], EYE_R["inner"], EYE_L["outer"], EYE_L["inner"]]]).mean()
    upper = y[list(EYE_R["upper"] + EYE_L["upper"])].mean()
    lower = y[list(EYE_R["lower"] + EYE_L["lower"])].mean()
    corners = y[[MOUTH_R, MOUTH_L]]
    return {
        "inner_brow_height": eye_line - y[list(BROW_R_INNER + BROW_L_INNER)].mean(),
        "outer_brow_height": eye_line - y[list(BROW_R_OUTER + BROW_L_OUTER)].mean(),
        "brow_gap": float(np.linalg.norm(p[BROW_L_INNER[1]] - p[BROW_R_INNER[1]])),
        "upper_lid_height": eye_line - upper,
        "lower_lid_height": lower - eye_line,
        "eye_opening": lower - upper,
        "nostril_height": y[list(NOSTRILS)].mean() - y[NOSE_TIP],
        "upper_lip_gap": y[UPPER_LIP_TOP] - y[NOSE_BASE],
        "corner_height": corners.mean() - y[NOSE_BASE],
        "corner_asymmetry": float(abs(corners[0] - corners[1])),
        "mouth_width": float(np.linalg.norm(p[MOUTH_L] - p[MOUTH_R])),
        "lip_thickness": (y[UPPER_LIP_INNER] - y[UPPER_LIP_TOP]) + (y[LOWER_LIP_BOTTOM] - y[LOWER_LIP_INNER]),
        "lip_gap": max(0.0, y[LOWER_LIP_INNER] - y[UPPER_LIP_INNER]),
        "jaw_opening": y[CHIN] - y[NOSE_BASE],
        "lower_lip_height": y[LOWER_LIP_BOTTOM] - y[NOSE_BASE],
        "corner_lift": (y[UPPER_LIP_INNER] + y[LOWER_LIP_INNER]) / 2 - corners.mean(),
    }


def measure_all(points: np.ndarray) -> np.ndarray:
    """``[T, 68, 2]`` normalised landmarks -> ``[T, F]`` measurements in ``FEATURES`` order."""
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"expected landmarks of shape [T, 68, 2], got {list(points.shape)}")
    return np.array([[m[name] for name in FEATURES] for m in map(measure, points)], dtype=np.float64).reshape(
        len(points), len(FEATURES)
    )
