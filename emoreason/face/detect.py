"""Face detection and 68-point landmarks on one RGB frame, with pretrained models from registry wheels.

Two detectors with one interface (``detect(image)``, ``detect_near(image, box)``): dlib's HOG
detector (:class:`FaceDetector`) and MediaPipe's BlazeFace (:class:`BlazeFaceDetector`, see
:mod:`emoreason.face.blazeface`), which also finds small, bearded, occluded and turned faces. Both
give 68 points in dlib's (iBUG 300-W) layout, from dlib's landmark model or, for BlazeFace with
``landmarks="mesh"``, from the 468-point mesh mapped to that layout; both return :class:`FaceDetection`
records whose box is in dlib's convention, so everything downstream sees the same kind of box and
points whichever detector found the face. With the mesh, :meth:`BlazeFaceDetector.follow` finds a
face again in the next frame from its mesh alone, without a detector call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emoreason.face.align import RIGID_POINTS, fit_similarity
from emoreason.face.blazeface import BlazeFace, BlazeFaceOutput, as_rgb, detect_tiled, same_face
from emoreason.face.mesh import FaceMesh, MeshResult, mesh_to_ibug68
from emoreason.face.models import face_detector, landmark_predictor, load_dlib

NUM_LANDMARKS = 68
LANDMARK_SOURCES = ("dlib", "mesh")
# In a search window around a tracked face the face is rescaled to about this many pixels: well above
# the HOG detector's 80 px window, so no upsampling pass (4x the cost) is needed.
WINDOW_FACE_PX = 110


@dataclass(frozen=True)
class FaceDetection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    score: float  # dlib: detector margin (> 0 is a face); BlazeFace: face probability in [0, 1]
    landmarks: np.ndarray  # [68, 2] x, y in frame pixels (iBUG 300-W order)
    keypoints: np.ndarray | None = None  # BlazeFace: [6, 2] eyes, nose tip, mouth, ear tragions; dlib: None
    mesh: MeshResult | None = None  # the 468-point mesh (frame pixels), when it was run and saw a face
    mesh_score: float | None = None  # the mesh's face-presence probability (None: no mesh run; 0: it saw none)

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
        """All faces in an ``[H, W, 3]`` uint8 RGB frame (or ``[H, W]`` grey, ``[H, W, 4]`` RGBA), largest first."""
        image = np.ascontiguousarray(as_rgb(image))
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

        image = as_rgb(image)
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
    shape = landmark_predictor()(np.ascontiguousarray(as_rgb(image)), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# The FaceDetector interface
# ---------------------------------------------------------------------------------------------

# BlazeFace box -> the box dlib's HOG detector draws on the same face (which the 68-point model was
# trained on): centre shift in units of the BlazeFace box side, and the ratio of the sides. Medians
# over the faces both detectors found: 11 photo faces (the astronaut at 4 scales, Grace Hopper, 6
# portraits from face_recognition's test images) and 84-93 LFW faces (scikit-image's 25 px subset
# upscaled 6x). short: dx -0.016, dy -0.031, side 0.988 (sd 0.09); full: dx -0.004, dy +0.022, side
# 0.933 (sd 0.08).
# dx is set to 0: a face is left-right symmetric, and the measured shifts are within their spread.
DLIB_BOX = {"short": (0.0, -0.031, 0.988), "full": (0.0, 0.022, 0.933)}


def dlib_style_box(box: np.ndarray, model: str) -> tuple[float, float, float, float]:
    """A BlazeFace box ``[4]`` (x0, y0, x1, y1) converted to the box dlib's HOG detector would give."""
    dx, dy, ratio = DLIB_BOX[model]
    side = float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0)))
    cx, cy = (box[0] + box[2]) / 2 + dx * side, (box[1] + box[3]) / 2 + dy * side
    half = side * ratio / 2
    return float(cx - half), float(cy - half), float(cx + half), float(cy + half)


class BlazeFaceDetector:
    """MediaPipe's BlazeFace detectors with dlib's 68 landmarks: a drop-in for :class:`FaceDetector`.

    Two models cover two ranges. The full-range model, tiled when the frame is large, finds small and
    distant faces; the short-range model, one whole-frame pass, finds the faces that fill a good part of
    the frame, where the full-range one is weaker (upscaled LFW close-ups: 94 against 67 of 100 found,
    both at 0.6). A face both find keeps the full-range box. Each box is
    converted to dlib's convention (:data:`DLIB_BOX`) before the 68-point model fits its landmarks,
    and that dlib-style box is the one returned; BlazeFace's six keypoints ride along in
    ``FaceDetection.keypoints`` and its probability is the score.

    Args:
        min_score: face probability a detection must reach. 0.6: every real face measured here scored
            0.67 or more, while tiles and odd images gave non-faces up to 0.59.
        min_face_px: smallest face (box side, frame pixels) :meth:`detect` looks for; large frames are
            tiled to reach it (see :func:`~emoreason.face.blazeface.detect_tiled`). ``None`` runs one
            whole-frame pass: faces down to about 6% of the frame's long side.
        close_range: also run the short-range model (about 2 ms more a call).
        landmarks: ``"dlib"`` fits dlib's 68-point model in the box; ``"mesh"`` runs the 468-point mesh
            (:mod:`emoreason.face.mesh`) and maps it to the same 68-point layout
            (:data:`~emoreason.face.mesh.IBUG68_FROM_MESH`): 5x steadier from frame to frame, with dlib's model
            as the fallback where the mesh sees no face. The mesh and its presence score ride along.

    >>> faces = BlazeFaceDetector().detect(image)  # doctest: +SKIP
    >>> faces[0].box, faces[0].score, faces[0].landmarks.shape  # doctest: +SKIP
    """

    def __init__(
        self,
        min_score: float = 0.6,
        min_face_px: float | None = 40.0,
        close_range: bool = True,
        landmarks: str = "dlib",
    ):
        if min_face_px is not None and min_face_px < 8:
            raise ValueError(f"min_face_px must be at least 8 (or None), got {min_face_px}")
        if landmarks not in LANDMARK_SOURCES:
            raise ValueError(f"landmarks must be one of {LANDMARK_SOURCES}, got {landmarks!r}")
        self.landmarks = landmarks
        self.mesh = FaceMesh() if landmarks == "mesh" else None
        self.full = BlazeFace("full", min_score)
        self.short = BlazeFace("short", min_score) if close_range else None
        self.min_face_px = min_face_px

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """All faces in an ``[H, W, 3]`` uint8 RGB frame (or ``[H, W]`` grey, ``[H, W, 4]`` RGBA), largest first."""
        image = as_rgb(image)
        if self.min_face_px is None:
            found = [(self.full(image), "full")]
        else:
            found = [(detect_tiled(self.full, image, self.min_face_px), "full")]
        if self.short is not None:
            found.append((self.short(image), "short"))
        return self._with_landmarks(image, found)

    def detect_near(self, image: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.75):
        """Faces in a window around ``box`` (a face seen in the previous frame), largest first.

        The window spans the box plus ``margin`` of its size on each side, so the face fills about
        40% of it: the short-range model's range, with the full-range one as fallback. One call, two
        when the first finds nothing.
        """
        image = as_rgb(image)
        x0, y0, x1, y1 = box
        size = float(np.sqrt(max(x1 - x0, 1) * max(y1 - y0, 1)))
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, size * (0.5 + margin)
        window = (cx - half, cy - half, cx + half, cy + half)
        for model in (self.short, self.full):
            if model is not None and len(found := model(image, window)):
                return self._with_landmarks(image, [(found, model.model)])
        return []

    def follow(self, image: np.ndarray, face: FaceDetection) -> FaceDetection | None:
        """``face`` (seen in the previous frame, with its mesh) in this frame, by the mesh alone: no detector call.

        The box moves and scales with the mesh (a similarity fit of the new 68 points onto the old), so it
        keeps dlib's convention. ``None`` when there is no mesh to follow or the mesh says the face is gone.
        """
        if self.mesh is None or face.mesh is None:
            return None
        image = as_rgb(image)
        result = self.mesh.follow(image, face.mesh)
        if result is None:
            return None
        landmarks = mesh_to_ibug68(result.points)
        rigid = list(RIGID_POINTS)  # eye corners, nose bridge, outline at eye level: expressions barely move them
        matrix = fit_similarity(face.landmarks[rigid].astype(np.float64), landmarks[rigid].astype(np.float64))
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        cx, cy = matrix[:, :2] @ np.array(face.center) + matrix[:, 2]
        half = (face.box[2] - face.box[0]) * scale / 2, (face.box[3] - face.box[1]) * scale / 2
        box = (float(cx - half[0]), float(cy - half[1]), float(cx + half[0]), float(cy + half[1]))
        return FaceDetection(box, face.score, landmarks, face.keypoints, result, result.score)

    def _with_landmarks(self, image: np.ndarray, found: list[tuple[BlazeFaceOutput, str]]) -> list[FaceDetection]:
        # in the order given (full range first: out of its range the short-range model's box is loose
        # and off-centre), then best score first; a face another model already gave is skipped
        # (the score is the best any model gave the face: the full-range model scores close-ups lower)
        kept: list[list] = []
        for output, model in found:
            for i in np.argsort(-output.scores, kind="stable"):
                box, score = dlib_style_box(output.boxes[i], model), float(output.scores[i])
                same = same_face(np.array(box), np.array([k[0] for k in kept])) if kept else np.zeros(0, bool)
                if not same.any():
                    kept.append([box, score, output.keypoints[i], output.boxes[i]])
                else:
                    first = kept[int(np.argmax(same))]
                    first[1] = max(first[1], score)
        image = np.ascontiguousarray(image)
        faces = []
        for box, score, keypoints, raw_box in kept:
            # the mesh's crop is defined on BlazeFace's own box (MediaPipe's detection-to-ROI), not dlib's
            result: MeshResult | None = self.mesh(image, raw_box, keypoints) if self.mesh is not None else None
            if result is None:  # dlib's points; the mesh's score says it saw no face (0: it did not)
                landmarks = landmarks_in_box(image, box)
                faces.append(FaceDetection(box, score, landmarks, keypoints, None, None if self.mesh is None else 0.0))
            else:
                faces.append(FaceDetection(box, score, mesh_to_ibug68(result.points), keypoints, result, result.score))
        return sorted(faces, key=lambda face: -face.size)
