"""Toy faces: the expression is visible where FACS says, ramps with time, and the dataset is fair and reproducible."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from emoreason.au import AU_CODES, EMOTIONS, PROTOTYPES
from emoreason.data.schema import Sample
from emoreason.io.video import iter_video_frames
from emoreason.toyfaces import ToyClip, draw_face, make_toy_dataset, random_clip, render_clip, toy_frames

SIZE = 112
# Face regions in frame fractions (y0, y1, x0, x1) for an unshifted, unscaled face.
REGIONS = {
    "brow": (0.18, 0.36, 0.2, 0.8),
    "eye": (0.36, 0.50, 0.2, 0.8),
    "nose": (0.43, 0.64, 0.38, 0.62),
    "mouth": (0.64, 0.90, 0.28, 0.72),
}
# Regions each emotion's core AUs change, and regions they leave alone.
REGION_CHANGES = {
    "anger": (("brow", "eye", "mouth"), ("nose",)),  # AU4, AU5+7, AU23
    "contempt": (("mouth",), ("brow", "eye", "nose")),  # AU14
    "disgust": (("nose", "mouth"), ("eye",)),  # AU9, AU15
    "fear": (("brow", "eye", "mouth"), ("nose",)),  # AU1+2+4, AU5, AU20
    "happiness": (("eye", "mouth"), ("brow",)),  # AU6, AU12
    "sadness": (("brow", "mouth"), ("nose",)),  # AU1+4, AU15
    "surprise": (("brow", "eye", "mouth"), ("nose",)),  # AU1+2, AU5, AU26
}


def centred(emotion: str, seed: int = 0, **aus: float) -> ToyClip:
    """A light-skinned, unshifted face (so REGIONS apply) of `emotion`, apex AUs overridden by `aus`."""
    spec = random_clip(emotion, np.random.default_rng(seed), tone=1, shape=0, distractor_p=0.0)
    apex = {code: 4.0 for code in spec.aus} | aus
    return dataclasses.replace(
        spec, aus=apex, shift=(0.0, 0.0), scale=1.0, skin=(241, 194, 160), background=(90, 140, 200)
    )


def crop(frame: np.ndarray, region: str) -> np.ndarray:
    y0, y1, x0, x1 = (round(v * frame.shape[0]) for v in REGIONS[region])
    return frame[y0:y1, x0:x1].astype(np.float64)


def dark(frame: np.ndarray, region: str, level: float = 90) -> np.ndarray:
    """[h, w] mask of the dark ink (brows, lip lines, the open mouth) in a region."""
    return crop(frame, region).mean(axis=-1) < level


def row_centroid(mask: np.ndarray) -> float:
    rows = np.nonzero(mask)[0]
    assert rows.size, "no dark pixels in the region"
    return float(rows.mean())


@pytest.mark.parametrize("emotion", sorted(REGION_CHANGES))
def test_apex_differs_from_neutral_in_the_expected_regions(emotion):
    spec = centred(emotion)
    neutral, apex = draw_face(spec, {}, SIZE), draw_face(spec, spec.aus, SIZE)
    change = {region: np.abs(crop(apex, region) - crop(neutral, region)).mean() for region in REGIONS}
    changed, unchanged = REGION_CHANGES[emotion]
    assert all(change[region] > 2.0 for region in changed), change
    assert all(change[region] < 1.5 for region in unchanged), change


def test_neutral_spec_has_no_aus_and_every_emotion_uses_its_prototype():
    rng = np.random.default_rng(3)
    assert random_clip("neutral", rng, distractor_p=0.0).aus == {}
    for emotion, prototype in PROTOTYPES.items():
        spec = random_clip(emotion, rng, distractor_p=0.0)
        assert set(spec.aus) == set(prototype.core)
        assert all(2.5 <= v <= 5.0 for v in spec.aus.values())
        assert 0.2 <= spec.onset_s < spec.apex_s < spec.offset_s <= 2.0 - 0.2


def corner_height(frame: np.ndarray) -> float:
    """Mean row of the lip line's leftmost 4 columns (the left lip corner), in mouth-crop pixels."""
    ink = dark(frame, "mouth")
    left = np.nonzero(ink.any(axis=0))[0].min()
    return row_centroid(ink[:, left : left + 4])


def test_au12_raises_the_mouth_corners_and_au15_lowers_them():
    spec = centred("neutral")
    neutral = corner_height(draw_face(spec, {}, SIZE))
    smile = corner_height(draw_face(spec, {"AU12": 4.0}, SIZE))
    frown = corner_height(draw_face(spec, {"AU15": 4.0}, SIZE))
    assert smile < neutral - 3 and frown > neutral + 3, (smile, neutral, frown)


def test_au26_opens_a_taller_dark_mouth():
    spec = centred("neutral")
    closed, open_ = draw_face(spec, {}, SIZE), draw_face(spec, {"AU25": 3.0, "AU26": 4.0}, SIZE)
    rows_closed = np.nonzero(dark(closed, "mouth", 70).any(axis=1))[0]
    rows_open = np.nonzero(dark(open_, "mouth", 70).any(axis=1))[0]
    assert dark(open_, "mouth", 70).sum() > 5 * max(dark(closed, "mouth", 70).sum(), 1)
    assert np.ptp(rows_open) > np.ptp(rows_closed) + 5


def test_au4_lowers_the_brows_and_au1_au2_raise_them():
    spec = centred("neutral")
    base = row_centroid(dark(draw_face(spec, {}, SIZE), "brow"))
    lowered = row_centroid(dark(draw_face(spec, {"AU4": 4.0}, SIZE), "brow"))
    raised = row_centroid(dark(draw_face(spec, {"AU1": 4.0, "AU2": 4.0}, SIZE), "brow"))
    assert lowered > base + 1.5 and raised < base - 1.5, (raised, base, lowered)


def test_au5_widens_the_eyes():
    spec = centred("neutral")
    white = [(crop(draw_face(spec, aus, SIZE), "eye").min(axis=-1) > 235).sum() for aus in ({}, {"AU5": 4.0})]
    assert white[1] > 1.3 * white[0], white


def test_intensity_ramps_up_to_the_apex():
    spec = centred("surprise")
    top = spec.apex_s - spec.hold_s / 2
    times = [0.0, spec.onset_s, (spec.onset_s + top) / 2, spec.apex_s, spec.offset_s + 0.1]
    frames = toy_frames(spec, times, SIZE).astype(np.float64)
    change = [np.abs(f - frames[0]).mean() for f in frames]
    assert change[1] == 0.0 and change[-1] == 0.0  # neutral before onset and after offset
    assert 0.0 < change[2] < change[3], change
    np.testing.assert_allclose(spec.strength(times), [0, 0, 0.5, 1, 0], atol=1e-9)


def test_render_clip_is_deterministic_and_noisy_per_clip():
    spec = random_clip("fear", np.random.default_rng(5))
    a = render_clip(spec, 64, 8, 2.0, np.random.default_rng(1))
    b = render_clip(spec, 64, 8, 2.0, np.random.default_rng(1))
    c = render_clip(spec, 64, 8, 2.0, np.random.default_rng(2))
    assert a.shape == (16, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # a different noise draw


def test_contact_sheet(tmp_path):
    """One apex frame per emotion, at 112 and 64 px: look at it when changing the drawing."""
    tiles = []
    for size in (112, 64):
        row = []
        for emotion in EMOTIONS:
            rng = np.random.default_rng(EMOTIONS.index(emotion))
            spec = random_clip(emotion, rng, distractor_p=0.0)
            frame = toy_frames(spec, [spec.apex_s], size, rng)[0]
            row.append(np.asarray(Image.fromarray(frame).resize((112, 112), Image.Resampling.NEAREST)))
        tiles.append(np.concatenate(row, axis=1))
    Image.fromarray(np.concatenate(tiles, axis=0)).save(tmp_path / "toyfaces.png")
    assert Image.open(tmp_path / "toyfaces.png").size == (112 * len(EMOTIONS), 224)


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    start = time.perf_counter()
    path = make_toy_dataset(out, 50, seed=11)
    return path, time.perf_counter() - start


def test_dataset_rows_are_balanced_subject_disjoint_and_fully_annotated(toy_dataset):
    path, _ = toy_dataset
    samples = [Sample.from_dict(json.loads(line)) for line in path.read_text().splitlines()]
    assert len(samples) == 50
    counts = Counter(s.emotion for s in samples)
    assert set(counts) == set(EMOTIONS) and max(counts.values()) - min(counts.values()) <= 1
    assert Counter(s.split for s in samples) == {"train": 40, "test": 10}
    subjects = {split: {s.subject for s in samples if s.split == split} for split in ("train", "test")}
    assert subjects["train"] and subjects["test"] and not subjects["train"] & subjects["test"]
    for s in samples:
        assert [a.code for a in s.aus] == list(AU_CODES)  # all 19 annotated
        present = {a.code for a in s.aus if a.intensity >= 1}
        assert present == set(PROTOTYPES[s.emotion].core if s.emotion != "neutral" else ())
        assert 0.2 <= s.onset_s < s.apex_s < s.offset_s <= 1.8
        assert s.dataset == "toyfaces" and s.media_type == "video" and s.labels == [s.emotion]
        assert s.provenance["generator"] == "toyfaces" and s.provenance["seed"] == 11


def test_dataset_videos_decode_with_the_expected_frame_count(toy_dataset):
    path, _ = toy_dataset
    for line in path.read_text().splitlines()[:3]:
        frames = list(iter_video_frames(path.parent / json.loads(line)["media"], fps=8.0))
        assert len(frames) == 16 and frames[0].image.shape == (112, 112, 3)


def test_dataset_generation_speed(toy_dataset):
    _, seconds = toy_dataset
    print(f"toyfaces: 50 clips of 16 frames at 112 px in {seconds:.1f} s")
    assert seconds < 15.0


def test_dataset_is_deterministic(tmp_path):
    first = make_toy_dataset(tmp_path / "a", 8, seed=4, size=64)
    second = make_toy_dataset(tmp_path / "b", 8, seed=4, size=64)
    other = make_toy_dataset(tmp_path / "c", 8, seed=5, size=64)
    assert first.read_text() == second.read_text() != other.read_text()
    for media in sorted((tmp_path / "a" / "clips").iterdir()):
        a = np.stack([f.image for f in iter_video_frames(media, fps=8.0)])
        b = np.stack([f.image for f in iter_video_frames(tmp_path / "b" / "clips" / media.name, fps=8.0)])
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_fail_loudly(tmp_path):
    with pytest.raises(ValueError, match="emotion"):
        random_clip("boredom", np.random.default_rng(0))
    with pytest.raises(ValueError, match="split_fractions"):
        make_toy_dataset(tmp_path, 4, split_fractions={"train": 1.0, "test": 0.0})
