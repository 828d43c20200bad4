"""Tests for emoreason.metrics: per-sample scorer tables, and corpus metrics checked against scikit-learn."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    recall_score,
)

from emoreason.answer import AUClaim, Prediction, parse_answer
from emoreason.au import EMOTIONS, MAFW
from emoreason.metrics import (
    au_f1,
    au_metrics,
    compound_metrics,
    cue_overlap,
    emotion_correct,
    emotion_jaccard,
    emotion_metrics,
    facs_consistent,
    faithfulness,
    format_valid,
    hallucinated_aus,
    icc3_1,
    rate,
)

SEEDS = range(20)
INVALID = "<invalid>"  # how a None prediction is spelled for sklearn: a label outside `labels`


def pred(emotion: str | None, aus: dict[str, float] | None = None, cited: list[str] | None = None) -> Prediction:
    claims = [AUClaim(code, value) for code, value in (aus or {}).items()]
    return Prediction(emotion is not None, True, emotion=emotion, aus=claims, cited_aus=cited or [])


# --- per-sample scorers -------------------------------------------------------------------------

EMOTION_CASES = [
    # Exact canonical label.
    (("happiness", ["happiness"], "basic"), 1.0),
    # Synonym in the prediction and in the gold.
    (("happy", ["joy"], "basic"), 1.0),
    # Wrong label.
    (("anger", ["happiness"], "basic"), 0.0),
    # Unknown predicted label: wrong, not an error.
    (("bored", ["happiness"], "basic"), 0.0),
    # No prediction (unparseable completion): wrong.
    ((None, ["happiness"], "basic"), 0.0),
    # Invalid parsed prediction.
    ((Prediction(False, False, error="no answer"), ["happiness"], "basic"), 0.0),
    # Valid parsed prediction.
    ((parse_answer('<think>AU12</think><answer>{"emotion": "happy"}</answer>'), ["happiness"], "basic"), 1.0),
    # Multi-label gold: one of them is enough.
    (("surprise", ["happiness", "surprise"], "basic"), 1.0),
    # Compound gold given as its compound label.
    (("happily surprised", ["happily surprised"], "compound"), 1.0),
    # Compound gold given as its parts: the compound label made of exactly them is correct.
    (("happily surprised", ["happiness", "surprise"], "compound"), 1.0),
    # A different compound sharing one part is wrong.
    (("happily disgusted", ["happily surprised"], "compound"), 0.0),
    # A basic label is not in the compound space: wrong.
    (("happiness", ["happily surprised"], "compound"), 0.0),
    # A label only MAFW has.
    (("anxiety", ["anxiety"], MAFW), 1.0),
    # MAFW's "anxiety" is not basic "fear".
    (("fear", ["anxiety"], MAFW), 0.0),
    # Empty gold: not applicable.
    (("happiness", [], "basic"), None),
]


@pytest.mark.parametrize(("args", "expected"), EMOTION_CASES)
def test_emotion_correct(args, expected):
    assert emotion_correct(*args) == expected


def test_emotion_correct_rejects_bad_gold_and_space():
    with pytest.raises(ValueError, match="gold label 'bored'"):
        emotion_correct("happiness", ["bored"])
    with pytest.raises(ValueError, match="unknown label space"):
        emotion_correct("happiness", ["happiness"], "nope")


JACCARD_CASES = [
    # Same compound.
    (("happily surprised", ["happily surprised"]), 1.0),
    # Sharing one of three distinct parts.
    (("happily disgusted", ["happily surprised"]), 1 / 3),
    # A list of predicted labels is a set of parts.
    ((["sadly angry", "sadly fearful"], ["sadly angry"]), 2 / 3),
    # Invalid prediction.
    ((None, ["happily surprised"]), 0.0),
    # No gold.
    (("happily surprised", []), None),
]


@pytest.mark.parametrize(("args", "expected"), JACCARD_CASES)
def test_emotion_jaccard(args, expected):
    got = emotion_jaccard(*args)
    assert got is None if expected is None else got == pytest.approx(expected)


AU_F1_CASES = [
    # Perfect match.
    (({"AU6": 2.0, "AU12": 3.0}, {"AU6": 2.0, "AU12": None}), 1.0),
    # One hit, one miss, one false alarm: 2*1 / (2 + 1 + 1).
    (({"AU6": 2.0, "AU4": 1.0}, {"AU6": 3.0, "AU12": 2.0, "AU4": 0.0}), 0.5),
    # AU not annotated in gold is ignored (AU9).
    (({"AU6": 2.0, "AU9": 4.0}, {"AU6": 3.0}), 1.0),
    # Below threshold counts as absent.
    (({"AU6": 0.5}, {"AU6": 0.0}), 1.0),
    # Empty prediction against gold with all annotated AUs absent: both empty, defined as 1.0.
    (({}, {"AU6": 0.0, "AU12": 0.0}), 1.0),
    # Empty prediction against a present gold AU.
    (({}, {"AU12": None}), 0.0),
    # Gold without AU annotations: not applicable.
    (({"AU6": 2.0}, {}), None),
    # Non-canonical spellings are normalised.
    (({"AU06": 2.0}, {"au_6": 1.0}), 1.0),
    # AU claims (from a parsed answer) work as well as a dict.
    (([AUClaim("AU12", 3.0)], {"AU12": 2.0}), 1.0),
]


@pytest.mark.parametrize(("args", "expected"), AU_F1_CASES)
def test_au_f1(args, expected):
    assert au_f1(*args) == expected


FACS_CASES = [
    # Cited AU6+12 support happiness.
    (pred("happiness", cited=["AU6", "AU12"]), 1.0),
    # The answer's AUs count too.
    (pred("happiness", aus={"AU12": 3.0}), 1.0),
    # Brow lowerer does not support happiness.
    (pred("happiness", cited=["AU4"]), 0.0),
    # No AUs at all: no support for an expressive emotion.
    (pred("surprise"), 0.0),
    # No AUs fits neutral.
    (pred("neutral"), 1.0),
    # The answer's intensity 0 overrides a citation ("no AU12").
    (pred("happiness", aus={"AU12": 0.0}, cited=["AU12"]), 0.0),
    # No emotion: not applicable.
    (pred(None, cited=["AU12"]), None),
]


@pytest.mark.parametrize(("prediction", "expected"), FACS_CASES)
def test_facs_consistent(prediction, expected):
    assert facs_consistent(prediction) == expected


def test_facs_consistent_label_spaces():
    # Compound: each part needs support.
    both = pred("happily surprised", cited=["AU1", "AU2", "AU5", "AU6", "AU12", "AU26"])
    assert facs_consistent(both, "compound") == 1.0
    assert facs_consistent(pred("happily surprised", cited=["AU6", "AU12"]), "compound") == 0.0
    # A label without a FACS prototype: not applicable.
    assert facs_consistent(pred("anxiety", cited=["AU4"]), MAFW) is None


HALLUCINATION_CASES = [
    # Evidence agrees.
    (({"AU12": 3.0}, {"AU12": 2.8}), []),
    # Contradicting evidence: claimed at C, measured absent.
    (({"AU12": 3.0, "AU6": 2.0}, {"AU12": 0.1, "AU6": 2.0}), ["AU12"]),
    # Claim at A against 0.0 is a full step below: contradicted.
    (({"AU4": 1.0}, {"AU4": 0.0}), ["AU4"]),
    # Claim at A against a reading of 0.4: within tolerance, detector noise.
    (({"AU4": 1.0}, {"AU4": 0.4}), []),
    # Overstated intensity is not a hallucination: evidence still reads the AU present.
    (({"AU12": 4.0}, {"AU12": 1.5}), []),
    # Claims of absence are never hallucinated.
    (({"AU12": 0.0}, {"AU12": 4.0}), []),
    # AU the evidence does not measure cannot be contradicted.
    (({"AU43": 3.0}, {"AU12": 0.0}), []),
]


@pytest.mark.parametrize(("args", "expected"), HALLUCINATION_CASES)
def test_hallucinated_aus(args, expected):
    assert hallucinated_aus(*args) == expected


FAITHFULNESS_CASES = [
    # One of two checkable claims contradicted.
    (({"AU12": 3.0, "AU6": 2.0}, {"AU12": 0.0, "AU6": 2.0}), 0.5),
    # Unmeasured claims are not checkable, so they do not dilute a hallucination.
    (({"AU12": 3.0, "AU43": 3.0}, {"AU12": 0.0}), 0.0),
    # All consistent.
    ((pred("happiness", aus={"AU12": 3.0}), {"AU12": 3.0}), 1.0),
    # Empty AU list: nothing to check.
    (({}, {"AU12": 3.0}), None),
    # Only absent claims: nothing to check.
    (({"AU12": 0.0}, {"AU12": 3.0}), None),
]


@pytest.mark.parametrize(("args", "expected"), FAITHFULNESS_CASES)
def test_faithfulness(args, expected):
    assert faithfulness(*args) == expected


def test_format_valid_and_rate():
    assert format_valid(parse_answer('<think>r</think><answer>{"emotion": "sad"}</answer>')) == 1.0
    assert format_valid(parse_answer("<answer>sad</answer>")) == 0.0
    assert rate([1.0, None, 0.0, 0.5]) == pytest.approx(0.5)
    assert rate([None, None]) is None and rate([]) is None
    with pytest.raises(ValueError, match="NaN"):
        rate([float("nan")])


# --- corpus metrics against scikit-learn ----------------------------------------------------------


def random_predictions(seed: int, labels: list[str], n: int = 60) -> tuple[list[str], list[str | None]]:
    rng = random.Random(seed)
    present = rng.sample(labels, rng.randint(1, len(labels)))  # some classes may be missing from y_true
    y_true = [rng.choice(present) for _ in range(n)]
    y_pred = [t if rng.random() < 0.5 else rng.choice([*labels, None, "bored"]) for t in y_true]
    return y_true, y_pred


@pytest.mark.parametrize("seed", SEEDS)
def test_emotion_metrics_match_sklearn(seed):
    labels = list(EMOTIONS)
    y_true, y_pred = random_predictions(seed, labels)
    sk_pred = [p if p in labels else INVALID for p in y_pred]
    occurring = [label for label in labels if label in y_true or label in sk_pred]
    got = emotion_metrics(y_true, y_pred, labels)
    assert got["n"] == len(y_true)
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, sk_pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        assert got["uar"] == pytest.approx(balanced_accuracy_score(y_true, sk_pred))
    assert got["macro_f1"] == pytest.approx(
        f1_score(y_true, sk_pred, labels=occurring, average="macro", zero_division=0)
    )
    assert got["weighted_f1"] == pytest.approx(
        f1_score(y_true, sk_pred, labels=labels, average="weighted", zero_division=0)
    )
    recall = recall_score(y_true, sk_pred, labels=labels, average=None, zero_division=0)
    assert list(got["per_class_recall"].values()) == pytest.approx(recall.tolist())
    expected = confusion_matrix(y_true, sk_pred, labels=[*labels, INVALID])[: len(labels)]
    assert got["confusion"] == expected.tolist()
    assert got["confusion_columns"][-1] == "invalid"
    # The benchmark's accuracy is the mean of the per-sample reward.
    assert got["accuracy"] == pytest.approx(rate(emotion_correct(p, [t]) for t, p in zip(y_true, y_pred)))


def test_emotion_metrics_invalid_and_errors():
    got = emotion_metrics(["anger", "fear"], [None, None], ["anger", "fear"])
    assert got["accuracy"] == got["uar"] == got["macro_f1"] == 0.0
    assert got["invalid_rate"] == 1.0 and got["confusion"] == [[0, 0, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="non-empty"):
        emotion_metrics([], [], ["anger"])
    with pytest.raises(ValueError, match="equal"):
        emotion_metrics(["anger"], [], ["anger"])
    with pytest.raises(ValueError, match="not one of labels"):
        emotion_metrics(["joy"], ["anger"], ["anger"])


def random_aus(seed: int, n: int = 50) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    codes = ["AU1", "AU4", "AU6", "AU12", "AU25"]
    gold, pred = [], []
    for _ in range(n):
        annotated = rng.sample(codes, rng.randint(0, len(codes)))
        gold.append({c: rng.choice([None, 0, 0, 1, 2, 3, 4, 5]) for c in annotated})
        pred.append({c: round(rng.uniform(0, 5), 1) for c in codes if rng.random() < 0.6})
    return gold, pred


@pytest.mark.parametrize("seed", SEEDS)
def test_au_metrics_match_sklearn(seed):
    gold, pred = random_aus(seed)
    got = au_metrics(gold, pred)
    f1s, maes = [], []
    for code, m in got["per_au"].items():
        pairs = [(g[code], p.get(code, 0.0)) for g, p in zip(gold, pred) if code in g]
        y_true = [int(g is None or g >= 1) for g, _ in pairs]
        y_pred = [int(p >= 1) for _, p in pairs]
        f1s.append(f1_score(y_true, y_pred, zero_division=0))
        assert m["f1"] == pytest.approx(f1s[-1]) and m["n"] == len(pairs)
        rated = np.array([(g, p) for g, p in pairs if g is not None], dtype=float).reshape(-1, 2)
        assert m["n_intensity"] == len(rated)
        if len(rated):
            maes.append(mean_absolute_error(rated[:, 0], rated[:, 1]))
            assert m["mae"] == pytest.approx(maes[-1])
        if len(rated) >= 2:
            assert m["icc"] == pytest.approx(anova_icc3_1(rated))
    assert got["macro_f1"] == pytest.approx(np.mean(f1s))
    assert got["mean_mae"] == pytest.approx(np.mean(maes))


def test_au_metrics_edges():
    # Invalid predictions (None) mean no AU claimed; an AU nobody annotates has no F1.
    got = au_metrics([{"AU12": 3.0}, {"AU12": 0.0}, {"AU6": None}], [None, {"AU12": 2.0}, {}], codes=["AU12", "AU9"])
    assert got["per_au"]["AU12"]["f1"] == 0.0 and got["per_au"]["AU12"]["mae"] == pytest.approx(2.5)
    assert got["per_au"]["AU9"] == {"n": 0, "f1": None, "n_intensity": 0, "icc": None, "mae": None}
    assert got["macro_f1"] == 0.0
    # Occurrence-only gold: no intensity metrics, never NaN.
    got = au_metrics([{"AU12": None}, {"AU12": None}], [{"AU12": 3.0}, {}])
    assert got["per_au"]["AU12"]["icc"] is None and got["mean_icc"] is None and got["mean_mae"] is None
    with pytest.raises(ValueError, match="non-empty"):
        au_metrics([], [])
    with pytest.raises(ValueError, match="not an AU code"):
        au_metrics([{"smile": 1.0}], [{}])


# --- ICC(3,1) ------------------------------------------------------------------------------------

SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def anova_icc3_1(x) -> float:
    """Shrout & Fleiss (1979) Table 1 two-way ANOVA, written out with loops."""
    rows, n, k = [list(map(float, r)) for r in x], len(x), len(x[0])
    grand = sum(map(sum, rows)) / (n * k)
    row_means = [sum(r) / k for r in rows]
    col_means = [sum(r[j] for r in rows) / n for j in range(k)]
    ss_total = sum((v - grand) ** 2 for r in rows for v in r)
    ss_rows = k * sum((m - grand) ** 2 for m in row_means)
    ss_cols = n * sum((m - grand) ** 2 for m in col_means)
    bms, ems = ss_rows / (n - 1), (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    return (bms - ems) / (bms + (k - 1) * ems)


def test_icc3_1_shrout_fleiss_table():
    # Shrout & Fleiss (1979), Table 2 data: ICC(3,1) = 0.71 (and their Table 4 lists .71).
    assert icc3_1(SHROUT_FLEISS) == pytest.approx(0.71, abs=0.005)
    assert icc3_1(SHROUT_FLEISS) == pytest.approx(anova_icc3_1(SHROUT_FLEISS))


@pytest.mark.parametrize("seed", SEEDS)
def test_icc3_1_matches_anova(seed):
    rng = np.random.default_rng(seed)
    n, k = rng.integers(2, 30), rng.integers(2, 6)
    x = rng.normal(size=(n, 1)) + rng.normal(size=(1, k)) + 0.5 * rng.normal(size=(n, k))
    assert icc3_1(x) == pytest.approx(anova_icc3_1(x))


def test_icc3_1_edges():
    # A constant rater offset is perfect consistency.
    assert icc3_1([[1, 3], [2, 4], [5, 7]]) == pytest.approx(1.0)
    # No variance between targets nor residual: undefined.
    assert icc3_1([[2, 2], [2, 2]]) is None
    assert icc3_1([[0, 1], [0, 1], [0, 1]]) is None
    with pytest.raises(ValueError, match="n_targets >= 2"):
        icc3_1([[1, 2]])


# --- compound and cue overlap --------------------------------------------------------------------


def test_compound_metrics():
    gold = [["happily surprised"], ["sadly angry"], ["happiness", "surprise"], "fearfully angry"]
    pred = ["happily surprised", "happily disgusted", "happily surprised", None]
    got = compound_metrics(gold, pred)
    assert got["n"] == 4 and got["exact_match"] == pytest.approx(0.5)
    assert got["jaccard"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    with pytest.raises(ValueError, match="no gold label"):
        compound_metrics([[]], ["happily surprised"])
    with pytest.raises(ValueError, match="non-empty"):
        compound_metrics([], [])


CUE_CASES = [
    # Synonyms map to one canonical cue; FACS combos expand.
    (("A joyful smile, AU6+12.", "She is happy: cheeks up (AU6), lip corners pulled (AU12)."), (1.0, 1.0)),
    # Precise but incomplete: 2 of the 5 gold cues.
    (("Looks angry, AU4.", "Angry glare, AU4 and AU7, lips pressed AU24, AU23."), (1.0, 0.4)),
    # Wrong emotion only.
    (("sad", "surprised"), (0.0, 0.0)),
    # "none" in prose is not the neutral label.
    (("None of the AUs fire; surprised.", "surprise"), (1.0, 1.0)),
    # No prediction text.
    ((None, "happy"), (0.0, 0.0)),
]


@pytest.mark.parametrize(("args", "expected"), CUE_CASES)
def test_cue_overlap(args, expected):
    got = cue_overlap(*args)
    assert (got["precision"], got["recall"]) == pytest.approx(expected)
    p, r = expected
    assert got["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)


def test_cue_overlap_without_gold_cues():
    # A gold text naming no emotion and no AU: not applicable.
    assert cue_overlap("happy", "The person speaks.") is None
