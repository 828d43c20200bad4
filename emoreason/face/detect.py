"""Face detection and 68-point landmarks on one RGB frame, with dlib's pretrained models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emoreason.face.models import face_detector, landmark_predictor, load_dlib

NUM_LANDMARKS = 68
# In a search window around a tracked face the face is rescaled to about this many pixels: well above
# the HOG detector's 80 px window, so no upsampling pass (4x the cost) is needed.
WINDOW_FACE_PX = 110


@dataclass(frozen=True)
class FaceDetection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    score: float  # detector margin; > 0 is a face by dlib's default threshold
    landmarks: np.ndarray  # [68, 2] x, y in frame pixels (iBUG 300-W order)

    @property
    def size(self) -> float:
        """Geometric mean of the box's width and height, in pixels."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0)))

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


class FaceDetector:
    """dlib's HOG face detector followed by the 68-point landmark regressor.

    Args:
        upsample: times the frame is upsampled before detection (each doubles the smallest findable
            face, ~80 px at 0, ~40 px at 1, and costs ~4x). ``None`` picks 1 for frames whose short
            side is under 400 px and 0 otherwise.
        threshold: detector margin a face must exceed; raise it to drop doubtful faces.
    """

    def __init__(self, upsample: int | None = None, threshold: float = 0.0):
        if upsample is not None and not 0 <= upsample <= 3:
            raise ValueError(f"upsample must be in 0..3 or None, got {upsample}")
        self.upsample = upsample
        self.threshold = threshold

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """All faces in an ``[H, W, 3]`` uint8 RGB frame, largest first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {image.shape} {image.dtype}")
        image = np.ascontiguousarray(image)
        upsample = self.upsample
        if upsample is None:
            upsample = 1 if min(image.shape[:2]) < 400 else 0
        rects, scores, _ = face_detector().run(image, upsample, self.threshold)
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        return self._with_landmarks(image, boxes, scores)

    def detect_near(self, image: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.75):
        """Faces in a window around ``box`` (a face seen in the previous frame), largest first.

        The window spans the box plus ``margin`` of its size on each side and is rescaled so the face
        is about WINDOW_FACE_PX: an order of magnitude cheaper than scanning the whole frame.
        """
        from PIL import Image

        x0, y0, x1, y1 = box
        size = float(np.sqrt(max(x1 - x0, 1) * max(y1 - y0, 1)))
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, size * (0.5 + margin)
        height, width = image.shape[:2]
        left, top = int(max(0, cx - half)), int(max(0, cy - half))
        right, bottom = int(min(width, cx + half)), int(min(height, cy + half))
        if right - left < 16 or bottom - top < 16:
            return []
        scale = WINDOW_FACE_PX / size
        window = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
        window = window.resize(
            (max(1, round(window.width * scale)), max(1, round(window.height * scale))), Image.Resampling.BILINEAR
        )
        rects, scores, _ = face_detector().run(np.asarray(window), 0, self.threshold)
        boxes = [
            (left + r.left() / scale, top + r.top() / scale, left + r.right() / scale, top + r.bottom() / scale)
            for r in rects
        ]
        return self._with_landmarks(np.ascontiguousarray(image), boxes, scores)

    @staticmethod
    def _with_landmarks(image: np.ndarray, boxes, scores) -> list[FaceDetection]:
        faces = [
            FaceDetection(tuple(map(float, box)), float(score), landmarks_in_box(image, box))
            for box, score in zip(boxes, scores)
        ]
        return sorted(faces, key=lambda face: -face.size)


def landmarks_in_box(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """68 landmarks for a face whose box is already known (for example from another detector)."""
    rect = load_dlib().rectangle(*(int(round(v)) for v in box))
    shape = landmark_predictor()(np.ascontiguousarray(image), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
