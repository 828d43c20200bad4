"""The ``rules`` backend: the FACS reasoner over the measured evidence; no model, deterministic, the default."""

from __future__ import annotations

import time
from dataclasses import asdict

from emoreason.answer import render_answer
from emoreason.au import AU_CODES
from emoreason.backends.base import Backend
from emoreason.face.evidence import Evidence
from emoreason.reasoning.facs import FacsConclusion, au_reports, image_reports, read_frames, reason
from emoreason.report import EmotionReport, Segment


class RulesBackend(Backend):
    """Measured AUs and prosody -> observations, interpretation, conclusion (:mod:`emoreason.reasoning.facs`)."""

    name = "rules"

    def explain(self, evidence: Evidence) -> EmotionReport:
        tick = time.perf_counter()
        analysis = evidence.analysis
        if analysis is None:
            raise ValueError("the rules backend needs a face analysis: collect with crop_mode='detect'")
        stretch = evidence.span or (0.0, evidence.duration_s)
        result = _reason(analysis, evidence.prosody, stretch)
        answer = None
        if result.emotion is not None:
            answer = render_answer(
                result.reasoning,
                result.emotion.label,
                result.emotion.confidence,
                result.aus,
                [(a["label"], a["confidence"]) for a in result.emotion.alternatives],
            )
        timings = dict(evidence.timings, reason_s=round(time.perf_counter() - tick, 4))
        timings["total_s"] = round(evidence.timings.get("collect_s", 0.0) + timings["reason_s"], 4)
        return EmotionReport(
            source=evidence.source,
            media_type=evidence.media_type,
            duration_s=round(evidence.duration_s, 3),
            frames_analyzed=analysis.frames_analyzed,
            faces_found=analysis.faces_found,
            aus=result.aus,
            emotion=result.emotion,
            segments=result.segments,
            reasoning=result.reasoning,
            answer=answer,
            backend=self.name,
            model=None,
            audio=_audio_dict(evidence.prosody),
            main_face=_main_face(analysis),
            warnings=list(evidence.warnings) + result.warnings,
            timings=timings,
            span=None if evidence.span is None else [round(t, 3) for t in evidence.span],
            faces=_faces(analysis, result, stretch),
            frames=analysis.table,
            evidence=evidence,
        )


def _reason(analysis, prosody, stretch: tuple[float, float], track_id: int | None = None) -> FacsConclusion:
    """The FACS reasoner on one tracked face (``None``: the main face)."""
    if track_id is None or track_id == analysis.main_track_id:
        rows, events = analysis.main_face(), analysis.events
    else:
        rows, events = analysis.face(track_id), analysis.track_events.get(track_id, [])
    if rows.empty:
        return reason([], [], 0, prosody=prosody)
    coverage = rows["frame"].nunique() / max(analysis.frames_analyzed, 1)
    if analysis.media_type == "image":
        row = dict(zip(AU_CODES, rows[list(AU_CODES)].iloc[0].to_numpy(float)))
        aus = image_reports(row)
        timed = read_frames(rows.iloc[:1], "image")
        segments = [Segment(0.0, 0.0, timed.segments[0].emotion, timed.segments[0].aus)]
    else:
        aus = au_reports(events)
        timed = read_frames(rows, "video")
        segments = timed.segments
        _clamp_times(aus, segments, *stretch)
    return reason(aus, segments, analysis.faces_found, coverage=coverage, prosody=prosody,
                  readings=timed.readings, hidden=timed.hidden)  # fmt: skip


def _faces(analysis, main: FacsConclusion, stretch: tuple[float, float]) -> list[dict]:
    """Every tracked person's reading, the main face first (the voice is not attributed to the others)."""
    faces = []
    for track_id in analysis.track_ids():
        is_main = track_id == analysis.main_track_id
        result = main if is_main else _reason(analysis, None, stretch, track_id)
        faces.append(_track_summary(analysis, analysis.face(track_id), track_id) | {
            "is_main": is_main,
            "emotion": None if result.emotion is None else asdict(result.emotion),
            "aus": [asdict(a) for a in result.aus],
            "segments": [asdict(s) for s in result.segments],
            "reasoning": result.reasoning,
        })  # fmt: skip
    return faces


def _clamp_times(aus: list, segments: list, start: float, end: float) -> None:
    """Keep AU events and segments inside the analysed stretch: an event's offset is the sample after its last
    active frame, which can fall up to one sample past the clip's end."""

    def clamp(t: float | None) -> float | None:
        return None if t is None else round(min(max(t, start), end), 4)

    for au in aus:
        au.onset_s, au.apex_s, au.offset_s = clamp(au.onset_s), clamp(au.apex_s), clamp(au.offset_s)
        au.events = [{k: clamp(v) if k.endswith("_s") else v for k, v in event.items()} for event in au.events]
    for segment in segments:
        segment.start_s, segment.end_s = clamp(segment.start_s), clamp(segment.end_s)


def _audio_dict(prosody) -> dict | None:
    if prosody is None:
        return None
    data = prosody.to_dict()
    data["cues"] = prosody.cues()
    return data


def _main_face(analysis) -> dict | None:
    main = analysis.main_face()
    if main.empty:
        return None
    return _track_summary(analysis, main, analysis.main_track_id) | {
        "neutral_reference_s": [round(t, 2) for t in analysis.neutral_times]
    }


def _track_summary(analysis, rows, track_id: int) -> dict:
    box = rows[["face_x0", "face_y0", "face_x1", "face_y1"]].median().round(1).tolist()
    return {
        "track_id": int(track_id),
        "frames_present": int(len(rows)),
        "first_seen_s": float(rows["time_s"].min()),
        "last_seen_s": float(rows["time_s"].max()),
        "median_box": box,
        "frame_size": list(analysis.frame_size),  # width, height of the frames the boxes refer to
    }


__all__ = ["RulesBackend"]
