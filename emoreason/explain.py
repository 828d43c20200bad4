"""``emoreason.explain``: a video or image in, an :class:`EmotionReport` out.

One evidence pass (:func:`emoreason.face.evidence.collect`) and one backend (:mod:`emoreason.backends`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from emoreason.backends import backend_name, get_backend
from emoreason.constants import BACKENDS, DEFAULT_ANALYSIS_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from emoreason.face.evidence import Evidence, Sampling, collect
from emoreason.report import EmotionReport, EmotionScore

logger = logging.getLogger(__name__)


def explain(
    path: str | Path,
    model: str | Path | None = None,
    *,
    span: tuple[float | None, float | None] | None = None,
    fps: float = DEFAULT_ANALYSIS_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
    use_audio: bool = True,
    key_frames: bool = True,
    progress: Callable[[int, int], None] | None = None,
    analyzer=None,
    server: str | None = None,
    api_key: str | None = None,
    micro: bool = False,
) -> EmotionReport:
    """Explain the emotion a face shows in a video (or a span of it) or an image.

    Detects and tracks faces, measures the main face's Action Units against its own neutral frames,
    reads prosody from the audio track, and reasons from that evidence to an emotion.

    Args:
        path: a video (anything ffmpeg reads) or an image (.jpg, .png, ...).
        model: an emoreason checkpoint directory: the ``hf`` backend runs it in-process (needs the
            ``model`` extra). ``None`` (the default) uses the FACS reasoner (``rules``), which needs no model.
        span: ``(start_s, end_s)``: analyse only that part of a video; every time in the report stays on the
            video's timeline and the report records the span. Either end may be None.
        fps, max_frames, max_side: frame sampling (see :class:`~emoreason.face.evidence.Sampling`).
        use_audio: read prosody cues (and, for a model, the waveform) from the audio track.
        key_frames: keep a small JPEG of each analysed frame for the visual report's key frames
            (:func:`emoreason.viz.html.save_html`; about 10 kB a frame).
        progress: called as ``progress(done, total)`` per analysed frame.
        server: URL of an emoreason vLLM server (``emoreason serve``): the ``vllm`` backend sends the video and
            the measured evidence there (needs the ``openai`` package); ``model`` then names a served model
            (default: the checkpoint's LoRA adapter when served, else its only model). ``api_key``: the
            server's key (default ``$EMOREASON_API_KEY``).
        micro: also spot micro-expressions: the main face at the video's native frame rate
            (:func:`emoreason.face.micro.spot_micro`), into ``report.micro_expressions`` and the chain of thought.
    Returns:
        An :class:`EmotionReport`; ``faces_found == 0`` and ``emotion is None`` when no face is seen.
    Raises:
        MediaError: the file is missing, empty, unreadable or not an image/video (SpanError: a span that does not
            fit the video).
        CheckpointError: ``model`` is not a complete emoreason checkpoint (the message names the file).
        ServerError: the server cannot be reached or refuses the request.

    >>> report = emoreason.explain("clip.mp4")       # doctest: +SKIP
    >>> report.emotion.label, [a.code for a in report.aus]  # doctest: +SKIP
    ('happiness', ['AU6', 'AU12', 'AU25'])
    """
    # the backend first: a bad checkpoint or an unreachable server fails before minutes of video analysis
    backend = get_backend(backend_name(model, server), model=None if model is None else str(model), server=server,
                          api_key=api_key)  # fmt: skip
    sampling = backend.sampling(Sampling(fps=fps, max_frames=max_frames, max_side=max_side, audio=use_audio,
                                         key_frames=key_frames))  # fmt: skip
    evidence = collect(path, span=span, sampling=sampling, analyzer=analyzer, progress=progress)
    report = backend.explain(evidence)
    return with_micro(report, max_side=max_side) if micro else report


def with_micro(report: EmotionReport, max_side: int = DEFAULT_MAX_SIDE, progress=None) -> EmotionReport:
    """``report`` with the micro-expressions of its video (its span) spotted at the native frame rate, listed in
    ``micro_expressions`` and in the chain of thought's observations; an image gets an empty list and a warning."""
    from emoreason.face.micro import describe, spot_micro

    if report.media_type != "video":
        return replace(report, micro_expressions=[], warnings=[*report.warnings, "micro-expressions need a video: "
                       "a still image has no movement"])  # fmt: skip
    found = spot_micro(report.source, tuple(report.span) if report.span else None, max_side=max_side,
                       progress=progress)  # fmt: skip
    events = [m.to_dict() for m in found.micro_expressions]
    summary = {k: v for k, v in found.to_dict().items() if k not in ("micro_expressions", "source", "warnings")}
    lines = describe(events) or [f"No micro-expression: no brief movement that returned to rest in {found.frames} "
                                 f"frames at {found.fps:.0f} fps"]  # fmt: skip
    reasoning = _insert_observations(report.reasoning, lines)
    return replace(report, micro_expressions=events, micro_analysis=summary, reasoning=reasoning,
                   warnings=[*report.warnings, *found.warnings],
                   timings={**report.timings, "micro_s": found.timings.get("total_s", 0.0)})  # fmt: skip


def _insert_observations(reasoning: str, lines: list[str]) -> str:
    """``lines`` as observations: before the Interpretation section when there is one, else at the end."""
    bullets = "\n".join(f"- {line}" for line in lines)
    marker = "\nInterpretation:"
    if marker in reasoning:
        head, tail = reasoning.split(marker, 1)
        return f"{head}\n{bullets}{marker}{tail}"
    return f"{reasoning}\nMicro-expressions:\n{bullets}" if reasoning else f"Micro-expressions:\n{bullets}"


def explain_evidence(evidence: Evidence, backend: str = "rules", **options) -> EmotionReport:
    """The report of evidence already collected, by the backend called ``backend``."""
    return get_backend(backend, **options).explain(evidence)


def explain_analysis(analysis, use_audio: bool = False) -> EmotionReport:
    """Deprecated: the FACS reasoner's report of a face analysis; use ``collect`` and a backend instead."""
    import warnings

    warnings.warn("explain_analysis is deprecated: use emoreason.face.evidence.collect and "
                  "emoreason.backends.get_backend('rules').explain", DeprecationWarning, stacklevel=2)  # fmt: skip
    evidence = Evidence(analysis.source, analysis.media_type, analysis.duration_s, None, Sampling(audio=use_audio),
                        analysis=analysis, warnings=list(analysis.warnings), timings=dict(analysis.timings))  # fmt: skip
    return replace(get_backend("rules").explain(evidence), evidence=None)


__all__ = ["explain", "with_micro", "explain_evidence", "explain_analysis", "EmotionReport", "EmotionScore", "BACKENDS"]
