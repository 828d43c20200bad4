"""FaceAnalyzer's default pipeline: BlazeFace, the mesh as 68 points, expression and quality columns, prefetching.

Real faces only from packages that ship them (scikit-image's astronaut, public domain); the harder cases
(grey, RGBA, a small face in a large canvas, a hand over the mouth) are built from it, as in test_face_models.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from emoreason.face.analyzer import (
    EXPRESSION_COLUMNS,
    LANDMARK_COLUMNS,
    QUALITY_COLUMN,
    FaceAnalyzer,
    face_quality,
    prefetch,
)
from emoreason.face.detect import BlazeFaceDetector, FaceDetection, FaceDetector
from emoreason.face.mesh import IBUG68_FROM_MESH, FaceMesh, mesh_to_ibug68
from emoreason.io.video import Frame

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer()


def _table(analyzer: FaceAnalyzer, image: np.ndarray):
    return analyzer.analyze_frames([Frame(0, 0.0, image)], "photo", "image", 0.0, 1).table


def test_expression_and_quality_columns_have_the_emotion_names(analyzer, astronaut):
    assert EXPRESSION_COLUMNS == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    table = _table(analyzer, astronaut)
    assert len(table) == 1 and table["is_main"].all()
    row = table.iloc[0]
    assert row[EXPRESSION_COLUMNS].sum() == pytest.approx(1.0, abs=1e-3)
    assert row[EXPRESSION_COLUMNS].astype(float).idxmax() == "happiness"
    assert 0.9 < row[QUALITY_COLUMN] <= 1.0
    off = _table(FaceAnalyzer(detector="dlib", expressions=False), astronaut)
    assert off[EXPRESSION_COLUMNS].isna().all().all() and off[QUALITY_COLUMN].iloc[0] > 0.9


def test_detector_by_name_and_bad_names_refused():
    assert isinstance(FaceAnalyzer(detector="dlib").detector, FaceDetector)
    default = FaceAnalyzer().detector
    assert isinstance(default, BlazeFaceDetector) and default.landmarks == "mesh"
    with pytest.raises(ValueError, match="blazeface"):
        FaceAnalyzer(detector="retinaface")
    with pytest.raises(ValueError, match="landmarks"):
        BlazeFaceDetector(landmarks="mediapipe")


def test_mesh_as_68_points_lies_on_dlibs(astronaut):
    """The MediaPipe-468 -> iBUG-68 correspondence, checked against dlib's own points on a real face."""
    assert len(IBUG68_FROM_MESH) == 68
    dlib_face = FaceDetector().detect(astronaut)[0]
    mesh_face = BlazeFaceDetector(landmarks="mesh").detect(astronaut)[0]
    assert mesh_face.mesh is not None and mesh_face.mesh_score > 0.9
    np.testing.assert_allclose(mesh_face.landmarks, mesh_to_ibug68(mesh_face.mesh.points))
    error = np.linalg.norm(mesh_face.landmarks - dlib_face.landmarks, axis=1) / dlib_face.size
    assert error.mean() < 0.035  # measured 2.2% (scripts/bench_detection.py)
    assert error[27:48].max() < 0.06  # nose and eyes: each point within a few percent of the face
    with pytest.raises(ValueError, match="468"):
        mesh_to_ibug68(np.zeros((68, 2)))


def test_follow_moves_with_the_face_and_stops_without_one(astronaut):
    detector = BlazeFaceDetector(landmarks="mesh")
    face = detector.detect(astronaut)[0]
    shifted = np.roll(astronaut, (6, -8), axis=(0, 1))
    moved = detector.follow(shifted, face)
    assert moved is not None and moved.mesh is not None
    np.testing.assert_allclose(np.subtract(moved.center, face.center), (-8, 6), atol=1.5)
    assert moved.size == pytest.approx(face.size, rel=0.03)
    assert detector.follow(skimage_data.coffee(), face) is None  # the mesh sees no face there
    no_mesh = FaceDetection(face.box, face.score, face.landmarks)
    assert detector.follow(astronaut, no_mesh) is None


def test_mesh_follow_is_steady_on_a_still_face(astronaut):
    """The followed crop moves with the face, not with the mesh's own noise: a still face stays still."""
    mesh = FaceMesh()
    face = BlazeFaceDetector(landmarks="mesh").detect(astronaut)[0]
    rng = np.random.default_rng(0)
    result, points = face.mesh, []
    for _ in range(8):
        noisy = np.clip(astronaut + rng.normal(0, 2.0, astronaut.shape), 0, 255).astype(np.uint8)
        result = mesh.follow(noisy, result)
        points.append(mesh_to_ibug68(result.points))
    motion = np.linalg.norm(np.diff(points, axis=0), axis=2).mean()
    assert motion < 0.3  # ~0.05 px; rebuilding the crop from the points walked 1.1 px a frame


@pytest.mark.parametrize("kind", ["grey", "rgba", "small", "hand"])
def test_failure_classes_are_found_by_the_default(analyzer, astronaut, kind):
    dlib_box = (176.0, 72.0, 290.0, 186.0)  # about where dlib's HOG puts the astronaut's face
    region = dlib_box
    if kind == "grey":
        image = np.asarray(Image.fromarray(astronaut).convert("L"))
    elif kind == "rgba":
        image = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    elif kind == "small":  # a 60 px face in a 2400x1600 photo
        patch = np.asarray(Image.fromarray(astronaut[30:230, 120:330]).resize((133, 126)))
        image = np.full((1600, 2400, 3), 128, np.uint8)
        image[1000:1126, 700:833] = patch
        region = (700, 1000, 833, 1126)
    else:  # a hand over the mouth
        picture = Image.fromarray(astronaut.copy())
        x0, y0, x1, y1 = dlib_box
        w, h = x1 - x0, y1 - y0
        ImageDraw.Draw(picture).ellipse(
            (x0 + 0.15 * w, y0 + 0.62 * h, x0 + 0.85 * w, y1 + 0.25 * h), fill=(224, 172, 140)
        )
        image = np.asarray(picture)
    table = _table(analyzer, image)
    faces = table[table["track_id"] >= 0]
    assert len(faces) == 1
    cx, cy = (faces["face_x0"] + faces["face_x1"]).iloc[0] / 2, (faces["face_y0"] + faces["face_y1"]).iloc[0] / 2
    assert region[0] < cx < region[2] and region[1] < cy < region[3]
    assert not faces[LANDMARK_COLUMNS + EXPRESSION_COLUMNS].isna().any().any()


def test_face_quality_falls_with_a_turned_covered_or_unseen_face(analyzer, astronaut):
    keypoints = np.zeros((6, 2), np.float32)
    face = FaceDetection((0.0, 0.0, 100.0, 100.0), 0.95, np.zeros((68, 2), np.float32), keypoints, mesh_score=0.95)
    assert face_quality(face, 5.0) == pytest.approx(0.95)
    assert face_quality(face, -35.0) == pytest.approx(0.95 * 0.5)
    assert face_quality(face, 60.0) == 0.0
    unseen = FaceDetection(face.box, 0.95, face.landmarks, keypoints, mesh_score=0.0)  # the mesh saw no face
    assert face_quality(unseen, 0.0) == 0.0
    doubtful = FaceDetection(face.box, 0.7, face.landmarks, keypoints, mesh_score=1.0)  # BlazeFace unsure
    assert face_quality(doubtful, 0.0) == pytest.approx(0.5)
    assert face_quality(FaceDetection(face.box, 1.2, face.landmarks), 0.0) == 1.0  # dlib: no presence measure
    # a hand over a real face's mouth lowers it
    picture = Image.fromarray(astronaut.copy())
    ImageDraw.Draw(picture).ellipse((193, 143, 273, 215), fill=(224, 172, 140))
    clear, covered = _table(analyzer, astronaut), _table(analyzer, np.asarray(picture))
    assert covered[QUALITY_COLUMN].iloc[0] < clear[QUALITY_COLUMN].iloc[0]


def test_video_table_has_a_row_per_frame_with_expressions(smile_video, analyzer):
    analysis = analyzer.analyze(smile_video)
    main = analysis.main_face()
    assert analysis.faces_found == 1 and len(main) == analysis.frames_analyzed
    assert (main[EXPRESSION_COLUMNS].sum(axis=1) - 1).abs().max() < 1e-3
    assert main[QUALITY_COLUMN].min() > 0.8  # a frontal face, seen throughout
    assert main["AU12"].max() > 1.0 and "AU12" in {e.code for e in analysis.events}
    assert set(analysis.timings) >= {"decode_s", "detect_s", "expression_s", "measure_s"}


def test_prefetch_keeps_order_and_raises_decoding_errors_here():
    frames = [Frame(i, i / 10, np.zeros((4, 4, 3), np.uint8)) for i in range(10)]
    assert [f.index for f in prefetch(iter(frames), ahead=2)] == list(range(10))

    def broken():
        yield frames[0]
        raise OSError("truncated file")

    got = []
    with pytest.raises(OSError, match="truncated"):
        for frame in prefetch(broken()):
            got.append(frame.index)
    assert got == [0]
    early = prefetch(iter(frames), ahead=2)
    assert next(early).index == 0
    early.close()  # a consumer that stops early ends the decoding thread
