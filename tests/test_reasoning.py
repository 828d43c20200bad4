"""The FACS reasoner's fusion (AU prototypes x appearance), its time model and the per-person AU calibration,
on per-frame tables built here (the face analysis writes the same columns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emoreason.au import AU_CODES, EMOTIONS
from emoreason.face.aus import AU_RULES, intensities, reference_features
from emoreason.face.geometry import FEATURES
from emoreason.reasoning.facs import read_frames, reason
from emoreason.reasoning.fusion import APPEARANCE_LABELS, au_distribution, fuse
from emoreason.reasoning.scoring import supports

FPS = 8.0


def _table(spans, quality=None) -> pd.DataFrame:
    """Rows at FPS: ``spans`` = [(seconds, {AU: intensity}, appearance label or None)]."""
    rows, t = [], 0.0
    for seconds, aus, seen in spans:
        for _ in range(int(seconds * FPS)):
            row = {"time_s": round(t, 4), **{c: float(aus.get(c, 0.0)) for c in AU_CODES}}
            for label in APPEARANCE_LABELS:
                row[label] = np.nan if seen is None else (0.9 if label == seen else 0.1 / 6)
            rows.append(row)
            t += 1 / FPS
    table = pd.DataFrame(rows)
    table["face_quality"] = 1.0 if quality is None else quality(table["time_s"].to_numpy())
    return table


SMILE = {"AU6": 2.5, "AU12": 3.5}
SAD = {"AU1": 3.0, "AU4": 2.5, "AU15": 3.0}


def labels(table) -> list[str]:
    return [s.emotion.label for s in read_frames(table).segments]


def test_fuse_without_appearance_keeps_the_au_reading():
    au = au_distribution(SMILE)
    np.testing.assert_allclose(fuse(au, np.full(len(EMOTIONS), np.nan), 0.9), au)
    with pytest.raises(ValueError, match="weight"):
        fuse(au, None, 1.5)


def test_neutral_smile_neutral_gives_three_segments():
    table = _table([(1.5, {}, "neutral"), (1.5, SMILE, "happiness"), (1.5, {}, "neutral")])
    segments = read_frames(table).segments
    assert [s.emotion.label for s in segments] == ["neutral", "happiness", "neutral"]
    assert segments[1].start_s == pytest.approx(1.5, abs=0.15) and segments[1].end_s == pytest.approx(3.0, abs=0.15)


def test_sad_then_happy_changes_directly():
    assert labels(_table([(2.0, SAD, "sadness"), (2.0, SMILE, "happiness")])) == ["sadness", "happiness"]


def test_without_appearance_columns_the_aus_decide():
    table = _table([(1.5, {}, None), (1.5, SMILE, None), (1.5, {}, None)])
    assert labels(table) == ["neutral", "happiness", "neutral"]
    assert labels(table.drop(columns=list(APPEARANCE_LABELS) + ["face_quality"])) == labels(table)


def test_a_one_frame_flicker_is_no_segment():
    table = _table([(1.0, {}, "neutral"), (0.125, SMILE, "happiness"), (1.0, {}, "neutral")])
    assert labels(table) == ["neutral"]


def test_a_covered_face_counts_less_and_the_report_says_so():
    # 2-3 s: a hand over the mouth; the CNN reads fear there, the AUs nothing; quality drops to 0.1
    spans = [(2.0, SAD, "sadness"), (1.0, {}, "fear"), (2.0, SAD, "sadness")]
    table = _table(spans, quality=lambda t: np.where((t >= 2.0) & (t < 3.0), 0.1, 1.0))
    timed = read_frames(table)
    assert [s.emotion.label for s in timed.segments] == ["sadness"]
    assert timed.hidden == [(2.0, pytest.approx(3.0))]
    result = reason([], timed.segments, 1, readings=timed.readings, hidden=timed.hidden)
    assert any("hard to see 2.0-3.0 s" in w for w in result.warnings)
    assert "count less" in result.reasoning


def test_chain_of_thought_cites_both_and_says_when_they_disagree():
    agree = read_frames(_table([(2.0, SAD, "sadness")]))
    text = reason([], agree.segments, 1, readings=agree.readings).reasoning
    assert "appearance reads sadness 0.90" in text and "AU1+AU4+AU15 support it" in text  # the CNN's own 0.9
    clash = read_frames(_table([(2.0, SAD, "happiness")]))
    text = reason([], clash.segments, 1, readings=clash.readings).reasoning
    assert "disagree" in text
    assert clash.segments[0].emotion.confidence < agree.segments[0].emotion.confidence


def test_a_still_held_smile_is_read_by_its_appearance():
    # no AU moves over the clip (the geometry is relative to the person's rest), the CNN sees a smile throughout
    assert labels(_table([(3.0, {}, "happiness")])) == ["happiness"]


def test_training_consistency_check_stays_au_based():
    assert supports(["AU6", "AU12"], "happiness") and not supports(["AU6", "AU12"], "sadness")


def test_calibration_removes_a_resting_offset_and_keeps_real_movement():
    rng = np.random.default_rng(0)
    reference = reference_features()
    # this person's lips rest thinner than the mean shape (AU23/AU24 geometry), and they smile for 8 frames
    rule = {r.code: r for r in AU_RULES}
    features = np.tile(reference, (32, 1)) + rng.normal(0, 0.001, (32, len(FEATURES)))
    features[:, FEATURES.index("lip_thickness")] -= 1.2 * rule["AU23"].full
    features[12:20, FEATURES.index("corner_height")] -= 0.06
    values = dict(zip(AU_CODES, intensities(features, reference).T))
    assert values["AU12"][12:20].min() >= 3.0 and values["AU12"][:12].max() == 0
    assert values["AU23"].max() < intensities(features[:1], reference)[0, AU_CODES.index("AU23")]
    single = dict(zip(AU_CODES, intensities(features[:1], reference)[0]))
    assert single["AU23"] == 5.0  # a still image keeps the hand-set scale
