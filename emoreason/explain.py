"""``emoreason.explain``: a video or image in, an :class:`EmotionReport` out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from emoreason.answer import render_answer
from emoreason.au import AU_CODES
from emoreason.constants import DEFAULT_ANALYSIS_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from emoreason.cues.prosody import analyze_prosody
from emoreason.face.analyzer import FaceAnalysis, FaceAnalyzer
from emoreason.io.audio import load_audio
from emoreason.io.errors import MediaError
from emoreason.reasoning.facs import FacsConclusion, au_reports, image_reports, reason, segment_frames
from emoreason.report import EmotionReport, EmotionScore, Segment

logger = logging.getLogger(__name__)

BACKENDS = ("rules", "hf", "vllm")


def explain(
    path: str | Path,
    model: str | Path | None = None,
    *,
    fps: float = DEFAULT_ANALYSIS_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
    use_audio: bool = True,
    progress: Callable[[int, int], None] | None = None,
    analyzer: FaceAnalyzer | None = None,
    server: str | None = None,
    api_key: str | None = None,
) -> EmotionReport:
    """Explain the emotion a face shows in a video or image.

    Detects and tracks faces, measures the main face's Action Units against its own neutral frames,
    reads prosody from the audio track, and reasons from that evidence to an emotion.

    Args:
        path: a video (anything ffmpeg reads) or an image (.jpg, .png, ...).
        model: an emoreason checkpoint directory: the ``hf`` backend runs it in-process (needs the
            ``model`` extra). ``None`` (the default) uses the FACS reasoner (``rules``), which needs no model.
        fps, max_frames, max_side: frame sampling (see :class:`FaceAnalyzer`).
        use_audio: read prosody cues from the audio track.
        progress: called as ``progress(done, total)`` per analysed frame.
        server: URL of an emoreason vLLM server (``emoreason serve``): the ``vllm`` backend sends the video and
            the measured evidence there (needs the ``openai`` package); ``model`` then names a served model
            (default: the checkpoint's LoRA adapter when served, else its only model). ``api_key``: the
            server's key (default ``$EMOREASON_API_KEY``).
    Returns:
        An :class:`EmotionReport`; ``faces_found == 0`` and ``emotion is None`` when no face is seen.
    Raises:
        MediaError: the file is missing, empty, unreadable or not an image/video.
        CheckpointError: ``model`` is not a complete emoreason checkpoint (the message names the file).
        ServerError: the server cannot be reached or refuses the request.

    >>> report = emoreason.explain("clip.mp4")       # doctest: +SKIP
    >>> report.emotion.label, [a.code for a in report.aus]  # doctest: +SKIP
    ('happiness', ['AU6', 'AU12', 'AU25'])
    """
    analyzer = analyzer or FaceAnalyzer(fps=fps, max_frames=max_frames, max_side=max_side)
    explainer = None
    if server is not None:  # connect first: an unreachable server fails before minutes of video analysis
        try:
            from emoreason.serving.client import connect
        except ImportError as exc:
            raise ImportError(
                f"the vllm backend needs the openai client: pip install 'emoreason[serve]' ({exc})"
            ) from exc
        explainer = connect(server, None if model is None else str(model), api_key)
    elif model is not None:  # load first: a bad checkpoint fails before minutes of video analysis
        try:
            from emoreason.model.backend import load_explainer
        except ImportError as exc:
            raise ImportError(f"the hf backend needs the model extra: pip install 'emoreason[model]' ({exc})") from exc
        explainer = load_explainer(str(model))
    analysis = analyzer.analyze(path, progress=progress)
    report = explain_analysis(analysis, use_audio=use_audio)
    return report if explainer is None else explainer.explain(analysis, report)


def explain_analysis(analysis: FaceAnalysis, use_audio: bool = True) -> EmotionReport:
    """The FACS reasoner's report for a face analysis already made (see :meth:`FaceAnalyzer.analyze`)."""
    started = time.perf_counter()
    path = analysis.source
    warnings = list(analysis.warnings)
    prosody = None
    audio_s = 0.0
    if analysis.media_type == "video" and use_audio:
        tick = time.perf_counter()
        try:
            prosody = analyze_prosody(load_audio(path))
        except MediaError as exc:
            warnings.append(f"audio could not be read ({exc}); reasoning from the face alone")
        audio_s = time.perf_counter() - tick
    tick = time.perf_counter()
    result = _reason(analysis, prosody)
    warnings += result.warnings
    answer = None
    if result.emotion is not None:
        answer = render_answer(
            result.reasoning,
            result.emotion.label,
            result.emotion.confidence,
            result.aus,
            [(a["label"], a["confidence"]) for a in result.emotion.alternatives],
        )
    timings = dict(analysis.timings, audio_s=round(audio_s, 4), reason_s=round(time.perf_counter() - tick, 4))
    timings["total_s"] = round(analysis.timings.get("total_s", 0.0) + time.perf_counter() - started, 4)
    return EmotionReport(
        source=str(path),
        media_type=analysis.media_type,
        duration_s=round(analysis.duration_s, 3),
        frames_analyzed=analysis.frames_analyzed,
        faces_found=analysis.faces_found,
        aus=result.aus,
        emotion=result.emotion,
        segments=result.segments,
        reasoning=result.reasoning,
        answer=answer,
        backend="rules",
        model=None,
        audio=_audio_dict(prosody),
        main_face=_main_face(analysis),
        warnings=warnings,
        timings=timings,
        frames=analysis.table,
    )


def _reason(analysis: FaceAnalysis, prosody) -> FacsConclusion:
    main = analysis.main_face()
    if main.empty:
        return reason([], [], 0, prosody=prosody)
    coverage = main["frame"].nunique() / max(analysis.frames_analyzed, 1)
    if analysis.media_type == "image":
        row = dict(zip(AU_CODES, main[list(AU_CODES)].iloc[0].to_numpy(float)))
        aus = image_reports(row)
        segment = segment_frames(main)[0]
        segments = [Segment(0.0, 0.0, segment.emotion, segment.aus)]
    else:
        aus = au_reports(analysis.events)
        segments = segment_frames(main)
    return reason(aus, segments, analysis.faces_found, coverage=coverage, prosody=prosody)


def _audio_dict(prosody) -> dict | None:
    if prosody is None:
        return None
    data = prosody.to_dict()
    data["cues"] = prosody.cues()
    return data


def _main_face(analysis: FaceAnalysis) -> dict | None:
    main = analysis.main_face()
    if main.empty:
        return None
    box = main[["face_x0", "face_y0", "face_x1", "face_y1"]].median().round(1).tolist()
    return {
        "track_id": int(analysis.main_track_id),
        "frames_present": int(len(main)),
        "first_seen_s": float(main["time_s"].min()),
        "last_seen_s": float(main["time_s"].max()),
        "median_box": box,
        "frame_size": list(analysis.frame_size),  # width, height of the frames the boxes refer to
        "neutral_reference_s": [round(t, 2) for t in analysis.neutral_times],
    }


__all__ = ["explain", "explain_analysis", "EmotionReport", "EmotionScore", "BACKENDS"]
