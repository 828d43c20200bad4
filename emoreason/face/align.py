"""Face alignment: fit landmarks to the landmark model's mean shape, and cut aligned face crops.

Crops are what the model's face tower sees; normalised landmarks are what the AU geometry measures.
Both use the same rigid points (eye corners, nose bridge, face outline at eye level), which facial
expressions barely move, so the alignment removes head position, size and pose, not expression.
"""

from __future__ import annotations

import numpy as np

from emoreason.face.models import mean_shape

# Eye corners (36, 39, 42, 45), nose bridge (27-30), face outline at eye level (0, 16).
RIGID_POINTS = (36, 39, 42, 45, 27, 28, 29, 30, 0, 16)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``src`` onto ``dst`` (Umeyama, 1991).

    Args:
        src, dst: ``[N, 2]`` corresponding points.
    Returns:
        ``[2, 3]`` matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    var = (src_c**2).sum() / len(src)
    scale = float(np.trace(np.diag(s) @ sign) / var) if var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine map (six parameters) from ``src`` onto ``dst``; ``[2, 3]`` like above.

    Under weak perspective a head turn foreshortens the face along one axis: an affine fit on rigid
    points undoes that anisotropic scaling, which a similarity fit cannot.
    """
    design = np.hstack([src, np.ones((len(src), 1))])  # [N, 3]
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)  # [3, 2]
    return solution.T


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def normalize_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks mapped into the mean shape's frame (face width ~1) by an affine fit on rigid points."""
    if landmarks.shape != (68, 2):
        raise ValueError(f"expected landmarks of shape (68, 2), got {landmarks.shape}")
    rigid = list(RIGID_POINTS)
    matrix = fit_affine(landmarks[rigid].astype(np.float64), mean_shape()[rigid])
    return apply_transform(matrix, landmarks.astype(np.float64))


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Approximate (yaw, pitch, roll) in degrees from 2D landmarks.

    Roll is the eye line's angle. Yaw is read from where the nose tip sits between the two face
    outlines at its height, pitch from the nose bridge's length against the eye-to-mouth distance,
    both relative to the mean shape. Good to about 10 degrees for |angles| < 40: enough to flag
    turned-away frames, not a 3D head-pose estimate.
    """
    pts = landmarks.astype(np.float64)
    ref = mean_shape()
    eye_l, eye_r = pts[36:42].mean(0), pts[42:48].mean(0)
    roll = float(np.degrees(np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])))
    upright = apply_transform(fit_similarity(pts[list(RIGID_POINTS)], ref[list(RIGID_POINTS)]), pts)

    def nose_position(shape: np.ndarray) -> float:
        left, right = shape[2, 0], shape[14, 0]
        return (shape[30, 0] - left) / max(right - left, 1e-6) * 2 - 1  # -1..1, 0 = centred

    yaw = float(np.degrees(np.arcsin(np.clip(nose_position(upright) - nose_position(ref), -1, 1))))

    def bridge_ratio(shape: np.ndarray) -> float:
        eyes = (shape[39] + shape[42]) / 2
        mouth = (shape[48] + shape[54]) / 2
        return (shape[30, 1] - eyes[1]) / max(mouth[1] - eyes[1], 1e-6)

    pitch = float(np.degrees(np.arcsin(np.clip((bridge_ratio(upright) - bridge_ratio(ref)) * 2.5, -1, 1))))
    return yaw, pitch, roll


def align_crop(image: np.ndarray, landmarks: np.ndarray, size: int = 224, padding: float = 0.25) -> np.ndarray:
    """An upright ``[size, size, 3]`` face crop: the mean shape, padded by ``padding``, fills the crop."""
    from PIL import Image

    if size < 16:
        raise ValueError(f"crop size must be at least 16, got {size}")
    ref = mean_shape()
    lo, hi = ref.min(0), ref.max(0)
    scale = size / ((hi - lo).max() * (1 + 2 * padding))
    target = (ref - (lo + hi) / 2) * scale + size / 2
    rigid = list(RIGID_POINTS)
    # PIL wants the inverse map (output pixel -> input pixel).
    inverse = fit_similarity(target[rigid], landmarks[rigid].astype(np.float64))
    crop = Image.fromarray(image).transform(
        (size, size), Image.Transform.AFFINE, tuple(inverse.ravel()), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(crop)
