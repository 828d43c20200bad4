"""Face perception: the pretrained models, alignment, AU geometry, events and tracking."""

from __future__ import annotations

import numpy as np
import pytest

from emoreason.au import AU_CODES
from emoreason.face.align import align_crop, head_pose, normalize_landmarks
from emoreason.face.aus import intensities, neutral_baseline, reference_features
from emoreason.face.detect import FaceDetection, FaceDetector
from emoreason.face.events import all_events, detect_events
from emoreason.face.geometry import FEATURES, measure_all
from emoreason.face.models import mean_shape
from emoreason.face.track import FaceTracker
from emoreason.synthetic import astronaut_face


@pytest.fixture(scope="module")
def astronaut():
    image = astronaut_face(320)
    faces = FaceDetector().detect(image)
    return image, faces


def test_mean_shape_is_read_from_the_landmark_model():
    shape = mean_shape()
    assert shape.shape == (68, 2)
    # The mean face is left-right symmetric: outer eye corners mirror around x = 0.5.
    assert shape[36, 0] + shape[45, 0] == pytest.approx(1.0, abs=0.01)
    assert shape[8, 1] > shape[33, 1] > shape[27, 1]  # chin below nose below nasion


def test_detector_finds_the_real_face(astronaut):
    image, faces = astronaut
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 60 < x1 - x0 < 200 and faces[0].score > 0.5
    assert faces[0].landmarks.shape == (68, 2)
    assert (faces[0].landmarks[:, 0] > x0 - 20).all() and (faces[0].landmarks[:, 0] < x1 + 20).all()


def test_detector_rejects_bad_arrays():
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        FaceDetector().detect(np.zeros((10, 10), np.float32))


def test_normalisation_removes_position_size_and_rotation(astronaut):
    _, faces = astronaut
    points = faces[0].landmarks.astype(np.float64)
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rot.T * 1.7 + np.array([300.0, -40.0])
    a = measure_all(normalize_landmarks(points)[None])
    b = measure_all(normalize_landmarks(moved)[None])
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert head_pose(moved)[2] == pytest.approx(head_pose(points)[2] + 20, abs=0.5)  # roll follows


def test_mean_shape_reads_as_neutral():
    values = dict(zip(AU_CODES, intensities(reference_features()[None], reference_features())[0]))
    assert all(v == 0 for c, v in values.items() if c != "AU25")  # its lips are slightly apart


def test_smiling_face_reads_au12(astronaut):
    _, faces = astronaut
    features = measure_all(normalize_landmarks(faces[0].landmarks)[None])
    values = dict(zip(AU_CODES, intensities(features, reference_features())[0]))
    assert values["AU12"] >= 3.0
    assert values["AU15"] == 0 and values["AU4"] == 0  # no frown


def test_neutral_baseline_uses_the_least_expressive_frames():
    reference = reference_features()
    smile = reference.copy()
    smile[FEATURES.index("corner_height")] -= 0.05
    features = np.stack([reference] * 6 + [smile] * 10)
    neutral, used = neutral_baseline(features)
    assert set(used) <= set(range(6))
    np.testing.assert_allclose(neutral, reference)


def test_aligned_crop(astronaut):
    image, faces = astronaut
    crop = align_crop(image, faces[0].landmarks, size=112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    with pytest.raises(ValueError, match="at least 16"):
        align_crop(image, faces[0].landmarks, size=8)


def test_event_onset_apex_offset():
    times = np.arange(20) * 0.1
    series = np.zeros(20)
    series[5:13] = [0.6, 1.5, 3.0, 4.0, 3.0, 1.5, 0.7, 0.2]
    (event,) = detect_events(times, series, "AU12")
    assert event.onset_s == pytest.approx(0.5)  # grows back to where the movement starts
    assert event.apex_s == pytest.approx(0.8)
    assert event.offset_s == pytest.approx(1.2)  # first frame below half the A level
    assert event.intensity == 4.0


def test_an_event_still_on_at_the_end_stops_at_the_clip_end():
    times = np.arange(10) * 0.125  # 8 fps sampling of a clip that ends at 1.2 s (the last frame at 1.125 s)
    series = np.where(times > 0.5, 3.0, 0.0)
    (event,) = detect_events(times, series, "AU25")
    assert event.offset_s == pytest.approx(1.25)  # without the end: one sampling step past the last frame
    (event,) = detect_events(times, series, "AU25", end_s=1.2)
    assert event.offset_s == pytest.approx(1.2)


def test_short_eye_closure_is_a_blink_long_one_is_closed_eyes():
    times = np.arange(40) * 0.1
    values = np.zeros((40, len(AU_CODES)))
    a43 = AU_CODES.index("AU43")
    values[5:7, a43] = 4.0  # 0.2 s
    values[20:35, a43] = 4.0  # 1.5 s
    codes = [e.code for e in all_events(times, values)]
    assert codes == ["AU45", "AU43"]


def _face(x: float, y: float, size: float, score: float = 1.0) -> FaceDetection:
    return FaceDetection((x, y, x + size, y + size), score, np.zeros((68, 2), np.float32))


def test_tracker_keeps_people_apart_and_bridges_gaps():
    tracker = FaceTracker(max_gap=2)
    for t in range(10):
        faces = [_face(10 + t, 10, 100), _face(300 - t, 20, 60)]
        if t in (4, 5):
            faces = faces[1:]  # the left person is missed for two frames
        tracker.update(t, t * 0.1, faces)
    assert len(tracker.tracks) == 2
    left = next(tr for tr in tracker.tracks if tr.faces[0].box[0] < 100)
    assert len(left.faces) == 8 and all(f.box[0] < 100 for f in left.faces)
    assert tracker.main_track is left  # longest and largest


def test_tracker_drops_doubtful_tracks():
    tracker = FaceTracker()
    tracker.update(0, 0.0, [_face(0, 0, 80, score=0.1)])
    assert tracker.confirmed == [] and tracker.main_track is None
