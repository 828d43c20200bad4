"""Scoring for emotion and AU predictions: one set of functions for training rewards and benchmarks.

Per-sample scorers are small pure functions returning ``float`` or ``None`` ("not applicable"); rewards wrap
them and :func:`rate` averages them. Corpus metrics apply the same label and AU-presence rules, so a reward and
the benchmark it stands for cannot drift apart (nanochat's ``reward()`` calls ``evaluate()``). No metric returns
NaN: undefined values are ``None``; zero divisions score 0, like scikit-learn's ``zero_division=0``. AU
intensities follow :mod:`emoreason.data.schema`: 0 absent, 1..5 A..E, ``None`` present, unlisted unannotated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from emoreason.answer import AUClaim, Prediction, cited_aus
from emoreason.au import EMOTION_SYNONYMS, LABEL_SPACES, PROTOTYPES, LabelSpace, normalize_au, normalize_emotion
from emoreason.constants import AU_ACTIVE_THRESHOLD
from emoreason.reasoning.scoring import FULL_PRESENCE, supports

AUInput = Mapping[str, float | None] | Iterable[AUClaim] | Prediction | None  # AU dict, AU claims, or a prediction

# --- Shared rules ---


def _space(label_space: LabelSpace | str) -> LabelSpace:
    if isinstance(label_space, LabelSpace):
        return label_space
    if label_space not in LABEL_SPACES:
        raise ValueError(f"unknown label space {label_space!r}; use one of {sorted(LABEL_SPACES)}")
    return LABEL_SPACES[label_space]


def _components(label: str, space: LabelSpace) -> frozenset[str]:
    """The canonical emotions a gold label stands for (a compound label stands for several)."""
    own = space.normalize(label)
    if own is not None:
        return frozenset(space.to_canonical.get(own) or (own,))
    canonical = normalize_emotion(label)
    if canonical is None:
        raise ValueError(f"gold label {label!r} is neither in label space {space.name!r} nor a known emotion")
    return frozenset((canonical,))


def _predicted_label(pred: Prediction | str | None, space: LabelSpace) -> str | None:
    if isinstance(pred, Prediction):
        pred = pred.emotion if pred.valid else None
    return space.normalize(pred)


def _intensities(aus: AUInput, missing: float | None = None) -> dict[str, float | None]:
    """``{canonical code: intensity}`` from a dict, AU claims or a prediction; ``None`` values become ``missing``
    when it is given. Raises ``ValueError`` for a key that is not an AU code."""
    if aus is None:
        return {}
    if isinstance(aus, Prediction):
        aus = aus.aus
    items = aus.items() if isinstance(aus, Mapping) else ((claim.code, claim.intensity) for claim in aus)
    out: dict[str, float | None] = {}
    for code, value in items:
        canonical = normalize_au(code)
        if canonical is None:
            raise ValueError(f"{code!r} is not an AU code; write AUs like 'AU12'")
        out[canonical] = missing if value is None and missing is not None else value
    return out


def _f1(tp: int, fp: int, fn: int, empty: float = 0.0) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else empty


def _au_counts(pred: Mapping, gold: Mapping, codes: Iterable[str], threshold: float) -> tuple[int, int, int]:
    """(tp, fp, fn) over ``codes``; a predicted AU is present at ``threshold`` or above, a missing one is absent."""
    tp = fp = fn = 0
    for code in codes:
        predicted, actual = pred.get(code, 0.0) >= threshold, gold[code] is None or gold[code] >= AU_ACTIVE_THRESHOLD
        tp, fp, fn = tp + (predicted and actual), fp + (predicted and not actual), fn + (actual and not predicted)
    return tp, fp, fn


# --- Per-sample scorers (rewards and benchmarks) ---


def emotion_correct(
    pred: Prediction | str | None, gold_labels: Sequence[str], label_space: LabelSpace | str = "basic"
) -> float | None:
    """1.0 if the predicted emotion matches the gold, 0.0 if not, ``None`` if there is no gold label.

    The prediction must be a label of ``label_space`` (synonyms accepted); anything else, or an invalid
    prediction, scores 0. With several gold labels (multi-label annotation) it is correct when it is one of
    them, or when it is the compound label made of exactly those emotions (``"happily surprised"`` for
    ``["happiness", "surprise"]`` in the compound space). A gold label outside the space raises ``ValueError``.

    >>> emotion_correct("happy", ["happiness"]), emotion_correct("joy", ["anger", "happiness"])
    (1.0, 1.0)
    """
    space = _space(label_space)
    if not gold_labels:
        return None
    gold = {_components(label, space) for label in gold_labels}
    label = _predicted_label(pred, space)
    if label is None:
        return 0.0
    predicted = frozenset(space.to_canonical.get(label) or (label,))
    return float(predicted in gold or (len(gold_labels) > 1 and predicted == frozenset().union(*gold)))


def emotion_jaccard(
    pred: Prediction | str | Sequence[str] | None,
    gold_labels: Sequence[str],
    label_space: LabelSpace | str = "compound",
) -> float | None:
    """|P & G| / |P | G| between the canonical emotions predicted and in the gold; ``None`` without gold labels.

    Compound labels count as their parts, so ``"happily disgusted"`` against ``"happily surprised"`` scores 1/3.
    Predicted labels outside ``label_space`` are dropped (an invalid prediction scores 0).
    """
    space = _space(label_space)
    if not gold_labels:
        return None
    gold = frozenset().union(*(_components(label, space) for label in gold_labels))
    labels = [pred] if isinstance(pred, (str, Prediction)) or pred is None else pred
    owns = [own for own in (_predicted_label(label, space) for label in labels) if own is not None]
    predicted = {part for own in owns for part in space.to_canonical.get(own) or (own,)}
    return len(predicted & gold) / len(predicted | gold)


def au_f1(pred_aus: AUInput, gold: Mapping[str, float | None], threshold: float = AU_ACTIVE_THRESHOLD) -> float | None:
    """F1 of AU presence over the AUs annotated in ``gold``; ``None`` when gold annotates no AU.

    A predicted AU is present at intensity ``threshold`` or above (a claim without intensity counts as present);
    a gold AU is present at intensity None or 1+. Predicted AUs that gold does not annotate are ignored. When
    neither side has a present AU (every annotated AU correctly called absent) the score is 1.0.
    """
    gold = _intensities(gold)
    if not gold:
        return None
    pred = _intensities(pred_aus, missing=threshold)
    return _f1(*_au_counts(pred, gold, gold, threshold), empty=1.0)


def au_intensity_agreement(pred_aus: AUInput, gold: Mapping[str, float | None], tolerance: float = 0.0) -> float | None:
    """How strongly, where :func:`au_f1` says which: ``1 - mean error / 5`` on the 0-5 scale, the error
    ``max(|stated - gold| - tolerance, 0)`` (each capped at 5), over the AUs ``gold`` marks present with a known
    intensity that the prediction states an intensity for; ``None`` where there are none (occurrence-only gold, or
    none of its AUs named). ``tolerance``: the rounding of a stated level (0.5 for a FACS letter, A = 1 ... E = 5).
    """
    gold = {c: v for c, v in _intensities(gold).items() if v is not None and v >= AU_ACTIVE_THRESHOLD}
    pred = _intensities(pred_aus)
    errors = [min(max(abs(pred[c] - v) - tolerance, 0.0), 5.0) for c, v in gold.items() if pred.get(c) is not None]
    return 1.0 - sum(errors) / len(errors) / 5.0 if errors else None


def facs_consistent(pred: Prediction, label_space: LabelSpace | str = "basic") -> float | None:
    """1.0 if the AUs behind the answer support its emotion (``reasoning.scoring.supports``), else 0.0.

    The AUs are those the reasoning cites (read as intensity C) updated with the answer's own intensities. A
    compound emotion needs support for each part. ``None`` when there is no emotion, or it has no FACS
    prototype (MAFW's "anxiety").
    """
    space = _space(label_space)
    label = _predicted_label(pred, space)
    if label is None:
        return None
    parts = space.to_canonical.get(label) or (label,)
    if any(part not in PROTOTYPES and part != "neutral" for part in parts):
        return None
    aus: dict[str, float] = {code: FULL_PRESENCE for code in pred.cited_aus}
    aus.update(_intensities(pred.aus))
    return float(all(supports(aus, part) for part in parts))


def hallucinated_aus(pred_aus: AUInput, evidence: Mapping[str, float], tolerance: float = 1.0) -> list[str]:
    """AUs the answer claims present that the measured evidence contradicts, in claim order.

    A claim at intensity 1+ is contradicted when the evidence reads the AU as absent (below 1, FACS "A") *and*
    at least ``tolerance`` below the claim: a claim at 1.0 against a reading of 0.4 is detector noise, against
    0.0 it is a hallucination; an overstated intensity (claim 4, reading 2) is not. AUs the evidence does not
    measure cannot be contradicted.
    """
    measured = _intensities(evidence, missing=AU_ACTIVE_THRESHOLD)  # None: present, intensity unknown
    claims = _intensities(pred_aus, missing=AU_ACTIVE_THRESHOLD).items()
    absent = {code: value for code, value in measured.items() if value < AU_ACTIVE_THRESHOLD}
    return [code for code, v in claims if v >= AU_ACTIVE_THRESHOLD and code in absent and v - absent[code] >= tolerance]


def faithfulness(pred: AUInput, evidence: Mapping[str, float], tolerance: float = 1.0) -> float | None:
    """1 - hallucinated / checkable claims: the share of present AU claims the evidence does not contradict.

    Only claims the evidence measures are checkable, so padding an answer with unmeasurable AUs gains nothing.
    ``None`` when no claim is checkable.
    """
    claims = _intensities(pred, missing=AU_ACTIVE_THRESHOLD)
    measured = _intensities(evidence)
    checkable = {code: v for code, v in claims.items() if v >= AU_ACTIVE_THRESHOLD and code in measured}
    if not checkable:
        return None
    return 1.0 - len(hallucinated_aus(checkable, evidence, tolerance)) / len(checkable)


def format_valid(pred: Prediction) -> float:
    """1.0 if the completion follows the strict ``<think>...</think><answer>{...}</answer>`` format."""
    return float(pred.format_ok)


def rate(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not ``None`` (a FACS-consistency or hallucination rate); ``None`` if none are.

    >>> rate([1.0, None, 0.0, 1.0])
    0.6666666666666666
    """
    scored = [float(v) for v in values if v is not None]
    if any(math.isnan(v) for v in scored):
        raise ValueError("rate() got NaN; scorers return None for 'not applicable'")
    return sum(scored) / len(scored) if scored else None


# --- Corpus metrics ---


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def emotion_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> dict:
    """Single-label emotion classification metrics, as in DFEW / FERV39k / MAFW papers.

    A prediction that is ``None`` or not in ``labels`` is invalid: it is always wrong and lands in the extra
    last column ``"invalid"`` of the confusion matrix (rows true, columns predicted). ``accuracy`` is WAR;
    ``uar`` is the mean recall over classes present in ``y_true`` (sklearn's balanced accuracy); ``macro_f1``
    averages over classes occurring in ``y_true`` or ``y_pred``; ``weighted_f1`` weights by support.
    Raises ``ValueError`` for empty or unequal inputs or a true label outside ``labels``.
    """
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be non-empty and unique, got {labels}")
    if not y_true or len(y_true) != len(y_pred):
        raise ValueError(f"need equal, non-empty y_true and y_pred, got {len(y_true)} and {len(y_pred)}")
    index, k = {label: i for i, label in enumerate(labels)}, len(labels)
    confusion = np.zeros((k, k + 1), dtype=np.int64)
    for i, (true, pred) in enumerate(zip(y_true, y_pred)):
        if true not in index:
            raise ValueError(f"y_true[{i}] = {true!r} is not one of labels {labels}")
        confusion[index[true], index.get(pred, k) if isinstance(pred, str) else k] += 1
    tp, support, predicted = np.diag(confusion).astype(float), confusion.sum(axis=1), confusion[:, :k].sum(axis=0)
    recall, f1 = _safe_div(tp, support.astype(float)), _safe_div(2 * tp, (support + predicted).astype(float))
    n = int(support.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n),
        "uar": float(recall[support > 0].mean()),
        "macro_f1": float(f1[support + predicted > 0].mean()),
        "weighted_f1": float((f1 * support).sum() / n),
        "invalid_rate": float(confusion[:, k].sum() / n),
        "per_class_recall": dict(zip(labels, recall.tolist())),
        "per_class_f1": dict(zip(labels, f1.tolist())),
        "support": dict(zip(labels, support.tolist())),
        "confusion": confusion.tolist(),
        "confusion_columns": [*labels, "invalid"],
    }


def icc3_1(ratings: np.ndarray | Sequence[Sequence[float]]) -> float | None:
    """ICC(3,1) of a ``[n_targets, k_raters]`` matrix: two-way mixed, consistency, single rater.

    Shrout & Fleiss (1979): ``(BMS - EMS) / (BMS + (k - 1) EMS)`` with BMS the between-targets and EMS the
    residual mean square. ``None`` when undefined (no variance between targets nor residual).

    >>> round(icc3_1([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]), 2)
    0.71
    """
    x = np.asarray(ratings, dtype=float)  # [n, k]
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        raise ValueError(f"icc3_1 needs a finite [n_targets >= 2, k_raters >= 2] matrix, got shape {x.shape}")
    n, k = x.shape
    grand, rows, cols = x.mean(), x.mean(axis=1, keepdims=True), x.mean(axis=0, keepdims=True)
    bms = k * ((rows - grand) ** 2).sum() / (n - 1)
    ems = ((x - rows - cols + grand) ** 2).sum() / ((n - 1) * (k - 1))
    total_ms = ((x - grand) ** 2).sum() / (n * k - 1)
    denominator = bms + (k - 1) * ems
    if total_ms == 0 or denominator <= 1e-12 * total_ms:
        return None
    return float((bms - ems) / denominator)


def au_metrics(
    gold: Sequence[Mapping[str, float | None]],
    pred: Sequence[AUInput],
    codes: Iterable[str] | None = None,
    threshold: float = AU_ACTIVE_THRESHOLD,
) -> dict:
    """AU detection and intensity metrics (BP4D / DISFA protocol) over paired gold and predicted AU dicts.

    Per AU: ``f1`` of presence over the samples that annotate it (``None`` if none does, 0.0 with no positive
    on either side, like sklearn), and over samples with a gold intensity (0..5, not ``None``) the ``icc``
    (ICC(3,1) of gold against predicted; ``None`` below 2 samples or when undefined) and ``mae``. A predicted
    AU that is missing counts as intensity 0. ``codes`` defaults to every AU annotated in ``gold``. Means
    skip ``None``. Raises ``ValueError`` for empty or unequal inputs.
    """
    if not gold or len(gold) != len(pred):
        raise ValueError(f"need equal, non-empty gold and pred, got {len(gold)} and {len(pred)}")
    golds = [_intensities(g) for g in gold]
    preds = [_intensities(p, missing=threshold) for p in pred]
    if codes is None:
        codes = sorted({code for g in golds for code in g}, key=lambda code: int(code[2:]))
    per_au = {}
    for code in [normalize_au(c) or c for c in codes]:
        annotated = [(p, g) for p, g in zip(preds, golds) if code in g]
        rated = [(g[code], p.get(code, 0.0)) for p, g in annotated if g[code] is not None]
        counts = [_au_counts(p, g, [code], threshold) for p, g in annotated]
        matrix = np.asarray(rated, dtype=float).reshape(-1, 2)  # [n, 2]: gold, predicted
        per_au[code] = {
            "n": len(annotated),
            "f1": _f1(*np.sum(counts, axis=0).tolist()) if annotated else None,
            "n_intensity": len(rated),
            "icc": icc3_1(matrix) if len(rated) >= 2 else None,
            "mae": float(np.abs(matrix[:, 0] - matrix[:, 1]).mean()) if rated else None,
        }
    return {
        "n": len(golds),
        "per_au": per_au,
        "macro_f1": rate(m["f1"] for m in per_au.values()),
        "mean_icc": rate(m["icc"] for m in per_au.values()),
        "mean_mae": rate(m["mae"] for m in per_au.values()),
    }


def compound_metrics(
    y_true: Sequence[Sequence[str]],
    y_pred: Sequence[Prediction | str | Sequence[str] | None],
    label_space: LabelSpace | str = "compound",
) -> dict:
    """Exact match and mean per-sample Jaccard (:func:`emotion_jaccard`) of predicted and gold label sets.

    Labels are compared as canonical emotions, so a compound label equals the set of its parts. Raises
    ``ValueError`` for empty or unequal inputs or a sample with no gold label.
    """
    if not y_true or len(y_true) != len(y_pred):
        raise ValueError(f"need equal, non-empty y_true and y_pred, got {len(y_true)} and {len(y_pred)}")
    scores = [emotion_jaccard(p, [g] if isinstance(g, str) else g, label_space) for g, p in zip(y_true, y_pred)]
    if None in scores:
        raise ValueError(f"y_true[{scores.index(None)}] has no gold label")
    return {"n": len(scores), "exact_match": rate(float(s == 1.0) for s in scores), "jaccard": rate(scores)}


# "none" is an answer synonym for neutral but a pronoun in prose, so it is no cue.
_CUE_WORDS = {word: emotion for word, emotion in EMOTION_SYNONYMS.items() if word != "none"}
_CUE_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(_CUE_WORDS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def _cues(text: str | None) -> set[str]:
    if not isinstance(text, str):
        return set()
    emotions = {_CUE_WORDS[" ".join(m.group(1).lower().split())] for m in _CUE_PATTERN.finditer(text)}
    return emotions | set(cited_aus(text))


def cue_overlap(pred_text: str | None, gold_text: str) -> dict | None:
    """EMER-style overlap of the emotional cues two descriptions mention.

    The cues of a text are the canonical emotions its words name (any synonym in ``au.EMOTION_SYNONYMS``) and
    the AU codes it cites (``answer.cited_aus``, FACS combos expanded). Returns precision, recall and F1 of the
    predicted cue set against the gold one (0 on zero division) and both sets; ``None`` when the gold text names
    no cue. Purely lexical: a negated mention ("not happy") still counts.
    """
    pred, gold = _cues(pred_text), _cues(gold_text)
    if not gold:
        return None
    hits = len(pred & gold)
    return {
        "precision": hits / len(pred) if pred else 0.0,
        "recall": hits / len(gold),
        "f1": _f1(hits, len(pred) - hits, len(gold) - hits),
        "pred_cues": sorted(pred),
        "gold_cues": sorted(gold),
    }
