"""The FACS reasoner's fusion (AU prototypes x appearance), its time model and the per-person AU calibration,
on per-frame tables built here (the face analysis writes the same columns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emoreason.au import AU_CODES, EMOTIONS
from emoreason.face.aus import (
    AU_RULES,
    held_expression,
    intensities,
    neutral_baseline,
    reference_features,
)
from emoreason.face.expression import EXPRESSION_LABELS
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


def _net(label: str, p: float, frames: int) -> np.ndarray:
    """``[T, 7]`` expression-net probabilities: ``label`` at ``p``, the rest spread evenly."""
    row = np.full(len(EXPRESSION_LABELS), (1 - p) / (len(EXPRESSION_LABELS) - 1))
    row[EXPRESSION_LABELS.index(label)] = p
    return np.tile(row, (frames, 1))


def test_a_smile_held_through_the_clip_is_kept_where_the_net_reads_it():
    """No resting stretch: the clip's "rest" is the smile itself. Calibrated alone it is removed as the person's
    face; where the expression net reads those frames as happiness, AU12 stays, and an anatomical offset that is
    no part of a smile (thin lips: AU23) is still removed."""
    rng = np.random.default_rng(0)
    reference, rule = reference_features(), {r.code: r for r in AU_RULES}
    features = np.tile(reference, (32, 1)) + rng.normal(0, 0.001, (32, len(FEATURES)))
    features[:, FEATURES.index("corner_height")] -= 0.04  # lip corners up in every frame: against the nose
    features[:, FEATURES.index("corner_lift")] += 0.02  # and against the lips' middle
    features[:, FEATURES.index("lip_thickness")] -= 0.8 * rule["AU23"].full
    au12, au23 = AU_CODES.index("AU12"), AU_CODES.index("AU23")
    resting = intensities(features, reference, _net("neutral", 0.9, 32))
    assert resting[:, au12].max() == 0  # the net sees a resting face: the offset is this person's anatomy
    neutral, _ = neutral_baseline(features, appearance=_net("happiness", 0.95, 32))
    smiling = intensities(features, neutral, _net("happiness", 0.95, 32))
    assert smiling[:, au12].min() >= 3.0 and smiling[:, au23].max() == 0
    assert np.array_equal(intensities(features, reference), resting)  # without the net: as before
    held, per_au = held_expression(_net("happiness", 0.95, 4))
    assert held > 0.8 and per_au[au12] == pytest.approx(held, rel=0.1) and per_au[AU_CODES.index("AU1")] < 0.05


def test_a_resting_baseline_moves_to_the_population_shape_only_where_the_net_sees_an_expression():
    reference = reference_features()
    features = np.tile(reference, (16, 1))
    features[:, FEATURES.index("inner_brow_height")] += 0.01  # within the identity tolerance of the mean shape
    personal, _ = neutral_baseline(features, appearance=_net("neutral", 0.9, 16))
    assert personal[FEATURES.index("inner_brow_height")] == pytest.approx(
        reference[FEATURES.index("inner_brow_height")] + 0.01
    )
    population, _ = neutral_baseline(features, appearance=_net("sadness", 1.0, 16))
    assert np.allclose(population, reference)
    no_net, _ = neutral_baseline(features, appearance=np.full((16, 7), np.nan))
    assert np.allclose(no_net, personal)


def test_training_consistency_check_stays_au_based():
    assert supports(["AU6", "AU12"], "happiness") and not supports(["AU6", "AU12"], "sadness")


def test_calibration_removes_a_resting_offset_and_keeps_real_movement():
    rng = np.random.default_rng(0)
    reference = reference_features()
    # this person's lips rest thinner than the mean shape (AU23/AU24 geometry), and they smile for 8 frames
    rule = {r.code: r for r in AU_RULES}
    features = np.tile(reference, (32, 1)) + rng.normal(0, 0.001, (32, len(FEATURES)))
    features[:, FEATURES.index("lip_thickness")] -= 1.2 * rule["AU23"].full
    features[12:20, FEATURES.index("corner_height")] -= 0.04
    features[12:20, FEATURES.index("corner_lift")] += 0.02
    values = dict(zip(AU_CODES, intensities(features, reference).T))
    assert values["AU12"][12:20].min() >= 3.0 and values["AU12"][:12].max() == 0
    assert values["AU23"].max() < intensities(features[:1], reference)[0, AU_CODES.index("AU23")]
    single = dict(zip(AU_CODES, intensities(features[:1], reference)[0]))
    assert single["AU23"] == 5.0  # a still image keeps the hand-set scale
