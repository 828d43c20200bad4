"""The FACS reasoner: the default ``rules`` backend, with no language model.

Measured AU evidence -> key observations (each AU, how strong, when, what it signals) ->
interpretation (which AUs co-occur and match an emotion prototype, what the face's appearance reads
and whether the two agree, how they unfold, what the voice adds) -> conclusion (emotion, confidence,
alternatives), following ExpLLM's observation / interpretation / conclusion chain. Per frame the AU
prototypes and the expression CNN are fused (:mod:`.fusion`); segments come from an HMM over the
fused frames (:mod:`.temporal`), with frames where the face is hard to see counting less. It is
deterministic, and it says "neutral" or "uncertain" when
the evidence is weak rather than inventing an emotion. The same engine writes chain-of-thought
targets for instruction data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from emoreason.au import AU_BY_CODE, AU_CODES, EMOTIONS, PROTOTYPES
from emoreason.constants import AU_ACTIVE_THRESHOLD
from emoreason.face.events import AUEvent
from emoreason.reasoning.fusion import (
    agreement,
    appearance_weight,
    au_distribution,
    cnn_reading,
    frame_evidence,
    fuse,
    pooled,
    top,
)
from emoreason.reasoning.scoring import best_emotion, emotion_scores, prototype_support
from emoreason.reasoning.temporal import decode, low_quality_spans
from emoreason.report import AUReport, EmotionScore, Segment

LOW_QUALITY = 0.5  # face_quality below this: the face is covered or turned away, and the report says so
DISAGREEMENT_FACTOR = 0.75  # a segment's confidence when geometry and appearance disagree
THIN_COVERAGE = 0.3  # main face in fewer than this share of frames -> evidence is thin
HIGH_AROUSAL = frozenset({"anger", "fear", "surprise", "happiness"})


@dataclass
class FacsConclusion:
    emotion: EmotionScore | None
    aus: list[AUReport]
    segments: list[Segment]
    observations: list[str]
    interpretation: list[str]
    conclusion: str
    warnings: list[str] = field(default_factory=list)

    @property
    def reasoning(self) -> str:
        lines = ["Observations:"] + [f"- {o}" for o in self.observations]
        lines += ["Interpretation:"] + [f"- {i}" for i in self.interpretation]
        return "\n".join(lines + [f"Conclusion: {self.conclusion}"])


def _fmt(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.2f} s"


def associated_emotions(code: str) -> list[str]:
    return [e for e, p in PROTOTYPES.items() if code in p.core or code in p.supporting]


def observe(au: AUReport) -> str:
    """One observation line: the AU, its strength, its timing and what it is associated with."""
    info = AU_BY_CODE[au.code]
    text = f"{au.code} ({info.name}) at intensity {au.level} ({au.intensity:.1f}/5)"
    if len(au.events) > 1:
        spans = ", ".join(f"{_fmt(e['onset_s'])[:-2]}-{_fmt(e['offset_s'])}" for e in au.events)
        text += (f", {len(au.events)} times ({spans}), the strongest from {_fmt(au.onset_s)}, peaking at "
                 f"{_fmt(au.apex_s)}, fading by {_fmt(au.offset_s)}")  # fmt: skip
    elif au.onset_s is not None:
        text += f", from {_fmt(au.onset_s)}, peaking at {_fmt(au.apex_s)}, fading by {_fmt(au.offset_s)}"
    text += f": {info.description}"
    related = associated_emotions(au.code)
    return text + (f"; seen in {', '.join(related)}." if related else ".")


@dataclass
class SegmentReading:
    """What the two readings say about one segment: AU prototypes (geometry) and the expression CNN (appearance)."""

    au: np.ndarray  # [E] AU-prototype scores of the segment's peak AUs, EMOTIONS order
    appearance: np.ndarray  # [E] quality-weighted mean CNN reading (NaN without appearance columns)
    quality: float  # mean face quality of the segment's frames, 0..1
    agree: bool | None  # None without an appearance reading


@dataclass
class TimeReading:
    """Segments of one face's rows with the readings behind each, and the stretches where the face is hard to see."""

    segments: list[Segment]
    readings: list[SegmentReading]
    hidden: list[tuple[float, float]]  # (start_s, end_s) of low-quality stretches


def read_frames(table: pd.DataFrame, media_type: str = "video") -> TimeReading:
    """Segments of constant expression for one face's rows (``time_s``, AU columns, optional appearance columns
    and ``face_quality``), decoded from the per-frame fused readings with an HMM (:mod:`.temporal`)."""
    if table.empty:
        return TimeReading([], [], [])
    times = table["time_s"].to_numpy(np.float64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    weight = appearance_weight(media_type, table)
    frames = frame_evidence(table, weight)
    values = table[list(AU_CODES)].to_numpy(np.float64)
    segments, readings = [], []
    for start, end, _ in decode(frames["fused"], frames["quality"], times):
        rows = slice(start, end + 1)
        peak = dict(zip(AU_CODES, np.percentile(values[rows], 80, axis=0)))
        au = au_distribution(peak)
        appearance = pooled(frames["appearance"][rows], frames["quality"][rows])
        agree = agreement(au, appearance)
        fused = fuse(au, None if np.isnan(appearance).any() else appearance, weight)
        label, confidence = top(fused)
        if agree is False:
            confidence *= DISAGREEMENT_FACTOR
        scores = dict(zip(EMOTIONS, fused.tolist()))
        aus = [{"code": c, "intensity": round(v, 2)} for c, v in peak.items() if v >= AU_ACTIVE_THRESHOLD]
        end_s = times[end + 1] if end + 1 < len(times) else times[end] + step  # sampling may be uneven
        emotion = EmotionScore(label, round(confidence, 3), _alternatives(scores, label))
        if segments and segments[-1].emotion.label == label:  # two states read as one label: one segment
            segments[-1].end_s = float(end_s)
            continue
        segments.append(Segment(float(times[start]), float(end_s), emotion, aus))
        readings.append(SegmentReading(au, appearance, float(frames["quality"][rows].mean()), agree))
    hidden = low_quality_spans(frames["quality"], times, LOW_QUALITY) if media_type == "video" else []
    return TimeReading(segments, readings, hidden)


def segment_frames(table: pd.DataFrame, media_type: str = "video") -> list[Segment]:
    """Time segments of constant expression for one face's rows (see :func:`read_frames`)."""
    return read_frames(table, media_type).segments


def _alternatives(scores: dict[str, float], label: str, floor: float = 0.1) -> list[dict]:
    ranked = sorted(((s, e) for e, s in scores.items() if e != label and s >= floor), reverse=True)[:2]
    return [{"label": e, "confidence": round(s, 3)} for s, e in ranked]


def au_reports(events: Sequence[AUEvent]) -> list[AUReport]:
    """One report per AU: its strongest event in the AU's own fields, every event (time order) in ``events``.
    Times are rounded to 10 ms, offsets down, so none lies past the clip's end."""
    by_code: dict[str, list[AUEvent]] = {}
    for event in sorted(events, key=lambda e: e.onset_s):
        by_code.setdefault(event.code, []).append(event)
    reports = []
    for code, occurrences in by_code.items():
        best = max(occurrences, key=lambda e: e.intensity)
        timings = [{"onset_s": round(e.onset_s, 2), "apex_s": round(e.apex_s, 2), "offset_s": _floor(e.offset_s),
                    "intensity": round(e.intensity, 2)} for e in occurrences]  # fmt: skip
        reports.append(AUReport(code, round(best.intensity, 2), round(best.onset_s, 2), round(best.apex_s, 2),
                                _floor(best.offset_s), events=timings))  # fmt: skip
    return sorted(reports, key=lambda a: (a.onset_s, a.code))


def _floor(seconds: float) -> float:
    return math.floor(seconds * 100 + 1e-6) / 100


def _interpret_combinations(aus: dict[str, float]) -> list[str]:
    lines = []
    for emotion, proto in PROTOTYPES.items():
        support = prototype_support(aus, emotion)
        if support < 0.2:
            continue
        present = [c for c in proto.core if aus.get(c, 0) >= AU_ACTIVE_THRESHOLD]
        missing = [c for c in proto.core if c not in present]
        text = f"{'+'.join(present) or 'none of its core AUs'} matches the {emotion} prototype, {proto.note}"
        if missing:
            text += (
                f"; {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not visible, so the match is partial"
            )
        contrary = [c for c in proto.against if aus.get(c, 0) >= AU_ACTIVE_THRESHOLD]
        if contrary:
            text += f"; {', '.join(contrary)} argue{'s' if len(contrary) == 1 else ''} against it"
        lines.append(text + ".")
    return lines


def _interpret_appearance(reading: SegmentReading, segment: Segment) -> list[str]:
    """The appearance reading next to the AU one: cited with numbers, agreement or disagreement said."""
    if np.isnan(reading.appearance).any():
        return []
    label = segment.emotion.label
    seen, seen_p = cnn_reading(reading.appearance)
    cited = [a["code"] for a in segment.aus if a["code"] in _prototype_codes(label)]
    au_label, au_p = top(reading.au)
    text = f"The face's appearance reads {seen} {seen_p:.2f}"
    if reading.agree:
        support = f"{'+'.join(cited)} support{'s' if len(cited) == 1 else ''} it" if cited else "the AUs agree"
        text += f"; {support} (the AU prototypes read {au_label} {au_p:.2f})"
    else:
        text += f", but the AU prototypes read {au_label} {au_p:.2f}: the two disagree, so the confidence is lowered"
    if seen != label and reading.agree is not None:
        text += f"; together they read {label}"
    return [text + "."]


def _prototype_codes(emotion: str) -> set[str]:
    proto = PROTOTYPES.get(emotion)
    return set() if proto is None else set(proto.core) | set(proto.supporting)


def _interpret_timing(reports: list[AUReport]) -> list[str]:
    timed = [a for a in reports if a.onset_s is not None and a.code not in ("AU25", "AU45")]
    if len(timed) < 2:
        return []
    first = min(timed, key=lambda a: a.onset_s)
    peak = max(timed, key=lambda a: a.intensity)
    text = f"{first.code} moves first (from {_fmt(first.onset_s)})"
    if peak.code != first.code:
        text += f"; the strongest movement is {peak.code}, peaking at {_fmt(peak.apex_s)}"
    return [text + "."]


def _interpret_segments(segments: list[Segment]) -> list[str]:
    if len(segments) < 2:
        return []
    parts = [f"{s.emotion.label} from {_fmt(s.start_s)} to {_fmt(s.end_s)}" for s in segments]
    return [f"The expression changes over the clip: {'; then '.join(parts)}."]


def _interpret_voice(prosody, label: str | None) -> list[str]:
    if prosody is None:
        return []
    cues = prosody.cues()
    if not prosody.has_audio or prosody.silent:
        return [f"Voice: {cues[0] if cues else 'no usable audio'}, so the conclusion rests on the face alone."]
    if label is None:  # no face: describe the voice, draw no emotional conclusion from it
        return [f"Voice: {'; '.join(cues)}."]
    aroused = (prosody.pitch_range_semitones or 0) > 6 or (prosody.energy_db_range or 0) > 25
    fit = "fits" if aroused == (label in HIGH_AROUSAL) else "does not add support to"
    level = "high" if aroused else "low"
    return [f"Voice: {'; '.join(cues)}. This {level}-arousal delivery {fit} {label}."]


def reason(
    aus: list[AUReport],
    segments: list[Segment],
    faces_found: int,
    coverage: float = 1.0,
    prosody=None,
    readings: list[SegmentReading] | None = None,
    hidden: list[tuple[float, float]] | None = None,
) -> FacsConclusion:
    """Chain of thought and conclusion from AU evidence.

    Args:
        aus: the main face's AUs (strongest event of each; times None for a still image).
        segments: expression segments of the main face (one for an image).
        faces_found: faces found in the media; 0 gives a report that claims no emotion.
        coverage: share of analysed frames in which the main face was seen.
        prosody: a :class:`emoreason.cues.prosody.Prosody` or None.
        readings: per segment, what geometry and appearance say (:func:`read_frames`); None: AUs alone.
        hidden: (start_s, end_s) stretches where the face was hard to see; they counted less.
    """
    warnings: list[str] = []
    if faces_found == 0:
        conclusion = "no face was found, so no emotion is claimed."
        return FacsConclusion(
            None,
            [],
            [],
            ["No face was detected in any analysed frame."],
            _interpret_voice(prosody, None),
            conclusion,
            ["no face found"],
        )
    observations = [observe(a) for a in aus] or ["No Action Unit reaches intensity A; the face stays near its neutral."]
    peak = {a.code: a.intensity for a in aus}
    ranked = [s for s in segments if s.emotion.label != "neutral"]
    main = max(ranked, key=lambda s: s.emotion.confidence * max(s.end_s - s.start_s, 0.1), default=None)
    if main is None:
        label, confidence, scores = best_emotion(peak)
        emotion = EmotionScore(label, round(confidence, 3), _alternatives(scores, label))
    else:
        scores = emotion_scores(peak)
        # other segments of the same label (a clip that repeats its expression) are not an alternative to it
        others = {s.emotion.label for s in ranked} - {main.emotion.label}
        alternatives = [{"label": e, "confidence": round(scores[e], 3)} for e in sorted(others)]
        seen = {a["label"] for a in alternatives} | {main.emotion.label}
        alternatives += [a for a in main.emotion.alternatives if a["label"] not in seen]
        emotion = EmotionScore(main.emotion.label, main.emotion.confidence, alternatives[:3])
    if coverage < THIN_COVERAGE:
        warnings.append(f"the main face is visible in only {coverage:.0%} of analysed frames")
        emotion.confidence = round(emotion.confidence * 0.7, 3)
    # an alternative is weaker than the conclusion and has some support: none at or above it, none at 0.00
    emotion.alternatives = sorted((a for a in emotion.alternatives if 0.0 < a["confidence"] < emotion.confidence),
                                  key=lambda a: -a["confidence"])  # fmt: skip
    interpretation = _interpret_combinations(peak)
    if readings and len(readings) == len(segments) and main is not None:
        interpretation += _interpret_appearance(readings[segments.index(main)], main)
    elif readings and len(readings) == len(segments) == 1:
        interpretation += _interpret_appearance(readings[0], segments[0])
    interpretation += _interpret_timing(aus) + _interpret_segments(segments)
    for start, end in hidden or []:
        text = f"the face is hard to see {start:.1f}-{end:.1f} s (covered or turned away)"
        warnings.append(text)
        interpretation.append(f"The face is hard to see {start:.1f}-{end:.1f} s (covered or turned away): those "
                              "frames count less.")  # fmt: skip
    interpretation += _interpret_voice(prosody, emotion.label)
    if not interpretation:
        interpretation = ["No combination of AUs matches an emotion prototype."]
    conclusion = _conclude(emotion, warnings)
    return FacsConclusion(emotion, aus, segments, observations, interpretation, conclusion, warnings)


def _conclude(emotion: EmotionScore, warnings: list[str]) -> str:
    if emotion.label == "neutral":
        text = f"the evidence is weak, so the face reads as neutral (confidence {emotion.confidence:.2f})"
    else:
        text = f"the evidence supports {emotion.label} (confidence {emotion.confidence:.2f})"
    if emotion.alternatives:
        text += "; alternatives: " + ", ".join(f"{a['label']} ({a['confidence']:.2f})" for a in emotion.alternatives)
    if emotion.confidence < 0.4 and emotion.label != "neutral":
        text += "; this is uncertain"
    if warnings:
        text += f"; note: {'; '.join(warnings)}"
    return text + "."


def image_reports(intensities: dict[str, float]) -> list[AUReport]:
    """AUs of a still image (no timing), strongest first."""
    active = [(v, c) for c, v in intensities.items() if v >= AU_ACTIVE_THRESHOLD]
    return [AUReport(c, round(v, 2)) for v, c in sorted(active, reverse=True)]
