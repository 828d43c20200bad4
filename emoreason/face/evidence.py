"""Evidence: everything the backends, the visual report and training take from one media file, made in one pass.

``collect(path, span, sampling)`` decodes the video once (frames sampled by time inside the span) and the audio
once (the span only). While the frames stream past the face analyzer it keeps what later steps need from them, so
nothing re-opens the file: the frames the model's crops come from (a bounded set, chosen before decoding) and, for
the HTML report, a small JPEG of every analysed frame. Every time stays on the source file's timeline.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emoreason.constants import (
    AUDIO_SAMPLE_RATE,
    CROP_SIZE,
    DEFAULT_ANALYSIS_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SIDE,
    IMAGE_MAX_SIDE,
    KEY_FRAME_SIDE,
    MODEL_AUDIO_S,
)
from emoreason.io.errors import MediaError, check_file
from emoreason.io.video import Frame, VideoFile, is_image, load_image, sample_times

logger = logging.getLogger(__name__)

CROP_MODES = ("detect", "frames")  # the main face aligned by the face pipeline; or the frames are crops already
# Crops are picked from this many times model_crops candidate frames, kept while the frames stream past: enough
# to find the main face's frames when it is not present throughout, and bounded (32 frames at 640 px ~ 22 MB).
_CANDIDATES_PER_CROP = 2


class SpanError(MediaError):
    """A time span that does not fit the media; ``which`` is ``"start"`` or ``"end"``."""

    def __init__(self, message: str, which: str):
        super().__init__(message)
        self.which = which


@dataclass(frozen=True)
class Sampling:
    """How much of a file to look at, and what to keep from it.

    Attributes:
        fps: frames analysed per second of video.
        max_frames: most frames analysed per clip (longer clips are sampled more sparsely).
        max_side: frames are decoded with their long side at most this many pixels.
        model_crops: aligned crops of the main face to keep for a model (0: none).
        crop_mode: ``"detect"`` aligns the main face; ``"frames"``: the frames are face crops already (toy faces),
            so no face analysis runs.
        key_frames: keep a small JPEG of every analysed frame for the visual report.
        audio: decode the audio track (prosody cues, and the waveform a model hears).
    """

    fps: float = DEFAULT_ANALYSIS_FPS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_side: int = DEFAULT_MAX_SIDE
    model_crops: int = 0
    crop_mode: str = "detect"
    key_frames: bool = False
    audio: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {self.fps}")
        for name, low in (("max_frames", 1), ("max_side", 64), ("model_crops", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode: expected one of {CROP_MODES}, got {self.crop_mode!r}")


@dataclass
class Evidence:
    """What one file (or one span of it) shows: the face analysis, the model's crops, key frames, the audio.

    Attributes:
        source: the file. media_type: ``"video"`` or ``"image"``.
        duration_s: length of the whole file (0 for an image).
        span: ``(start_s, end_s)`` analysed when a span was asked for, on the file's timeline; None = whole file.
        analysis: the :class:`~emoreason.face.analyzer.FaceAnalysis` (None in ``crop_mode="frames"``).
        crops: ``[T, S, S, 3]`` uint8 aligned crops of the main face (None when none were asked for or no face).
        crop_times: ``[T]`` times of the crops, seconds.
        key_frames: analysed frame number -> JPEG bytes (at most KEY_FRAME_SIDE), when asked for.
        key_frame_scale: key-frame pixels per analysed-frame pixel.
        audio: the first MODEL_AUDIO_S seconds of the span's audio, the model's window, as an
            :class:`~emoreason.io.audio.AudioClip` (None when audio was not asked for or is unreadable).
        prosody: :class:`~emoreason.cues.prosody.Prosody` of the whole span's audio.
    """

    source: str
    media_type: str
    duration_s: float
    span: tuple[float, float] | None
    sampling: Sampling
    analysis: object | None = None  # FaceAnalysis
    crops: np.ndarray | None = None
    crop_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    key_frames: dict[int, bytes] = field(default_factory=dict)
    key_frame_scale: float = 1.0
    audio: object | None = None  # AudioClip
    prosody: object | None = None  # Prosody
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def faces_found(self) -> int:
        return 0 if self.analysis is None else self.analysis.faces_found

    @property
    def waveform(self) -> np.ndarray | None:
        """The span's audio samples ``[N]`` float32 at 16 kHz, or None without an audio track."""
        clip = self.audio
        if clip is None or not clip.has_audio or not clip.waveform.size:
            return None
        return clip.waveform


def collect(
    path: str | Path,
    span: tuple[float | None, float | None] | None = None,
    sampling: Sampling | None = None,
    analyzer=None,
    progress: Callable[[int, int], None] | None = None,
) -> Evidence:
    """Decode ``path`` once (video, then audio) and gather the :class:`Evidence` that ``sampling`` asks for.

    Args:
        path: a video (anything decord reads) or an image.
        span: ``(start_s, end_s)`` on the file's timeline; either end may be None (the file's start or end).
        sampling: what to analyse and keep (default :class:`Sampling`).
        analyzer: a :class:`~emoreason.face.analyzer.FaceAnalyzer` (default: one with ``sampling``'s settings).
        progress: called as ``progress(done, total)`` per analysed frame.
    Raises:
        MediaError: the file is missing, empty or unreadable; SpanError: the span does not fit the file.

    >>> evidence = collect("clip.mp4", span=(1.0, 2.5), sampling=Sampling(model_crops=16))  # doctest: +SKIP
    >>> evidence.crops.shape, evidence.analysis.table["time_s"].min() >= 1.0  # doctest: +SKIP
    ((16, 224, 224, 3), True)
    """
    from emoreason.face.analyzer import FaceAnalyzer

    started = time.perf_counter()
    sampling = sampling or Sampling()
    check_file(path)  # before the face models load: a missing file fails at once
    analyzer = analyzer or FaceAnalyzer(fps=sampling.fps, max_frames=sampling.max_frames, max_side=sampling.max_side)
    if is_image(path):
        if span is not None and any(t is not None for t in span):
            raise SpanError(f"{path}: a still image has no time span", "start")
        evidence = _collect_image(path, sampling, analyzer, progress)
    else:
        evidence = _collect_video(path, span, sampling, analyzer, progress)
    if sampling.audio and evidence.media_type == "video":
        _add_audio(evidence)
    if evidence.analysis is not None:
        evidence.warnings[:0] = evidence.analysis.warnings
        evidence.timings.update(evidence.analysis.timings)
    evidence.timings["collect_s"] = round(time.perf_counter() - started, 4)
    return evidence


def _collect_image(path, sampling: Sampling, analyzer, progress) -> Evidence:
    frame = load_image(path, max_side=max(sampling.max_side, IMAGE_MAX_SIDE))
    keeper = _FrameKeeper([0] if sampling.model_crops else [], sampling.key_frames)
    evidence = Evidence(str(path), "image", 0.0, None, sampling)
    if sampling.crop_mode == "frames":
        evidence.crops, evidence.crop_times = frame.image[None], np.zeros(1)
        return evidence
    evidence.analysis = analyzer.analyze_frames(keeper.watch([frame]), str(path), "image", 0.0, 1, progress)
    keeper.finish(evidence)
    return evidence


def _collect_video(path, span, sampling: Sampling, analyzer, progress) -> Evidence:
    frames_are_crops = sampling.crop_mode == "frames"
    video = VideoFile(path, max_side=10**6 if frames_are_crops else sampling.max_side)
    start, end = resolve_span(span, video.info.duration_s, str(path))
    evidence = Evidence(str(path), "video", video.info.duration_s, None if span is None else (start, end), sampling,
                        warnings=list(video.warnings))  # fmt: skip
    if frames_are_crops:  # the frames are the crops: evenly spaced over the span, no face analysis
        count = max(sampling.model_crops, 1)
        times = start + (end - start) * (np.arange(count) + 0.5) / count
        frames = list(video.frames_at(times))
        evidence.crops = np.stack([f.image for f in frames])
        evidence.crop_times = np.array([f.time_s for f in frames])
        return evidence
    times = sample_times(end, sampling.fps, sampling.max_frames, start_s=start)
    total = len(video.indices_at(times))
    wanted = sampling.model_crops * _CANDIDATES_PER_CROP
    candidates = np.unique(np.linspace(0, total - 1, wanted).round().astype(int)).tolist() if wanted else []
    keeper = _FrameKeeper(candidates, sampling.key_frames)
    evidence.analysis = analyzer.analyze_frames(
        keeper.watch(video.frames_at(times)), str(path), "video", end - start, total, progress, end_s=end
    )
    keeper.finish(evidence)
    return evidence


def resolve_span(span, duration_s: float, name: str = "video") -> tuple[float, float]:
    """``(start, end)`` seconds of ``span`` inside a file of ``duration_s``; SpanError when it does not fit."""
    start, end = (None, None) if span is None else span
    start = 0.0 if start is None else float(start)
    end = duration_s if end is None else float(end)
    if not math.isfinite(start) or start < 0:
        raise SpanError(f"{name}: the span start must be a time >= 0 s, got {start}", "start")
    if start >= duration_s:
        raise SpanError(f"{name}: the span starts at {start:g} s, after the end of the video ({duration_s:.2f} s)",
                        "start")  # fmt: skip
    if not math.isfinite(end) or end <= start:
        raise SpanError(f"{name}: the span end ({end} s) must come after its start ({start} s)", "end")
    return start, min(end, duration_s)


def _add_audio(evidence: Evidence) -> None:
    """Prosody of the span's audio, measured as it streams past, and its first MODEL_AUDIO_S seconds kept for a
    model (the audio tower's window): memory does not grow with the video's length."""
    from emoreason.cues.prosody import FrameFeatures, Prosody, prosody_from_features
    from emoreason.io.audio import AudioClip, AudioStream

    tick = time.perf_counter()
    start, end = evidence.span if evidence.span is not None else (None, None)
    try:
        stream = AudioStream(evidence.source, AUDIO_SAMPLE_RATE, start_s=start, end_s=end)
        features, kept, room = FrameFeatures(AUDIO_SAMPLE_RATE), [], round(MODEL_AUDIO_S * AUDIO_SAMPLE_RATE)
        for chunk in stream:
            features.feed(chunk)
            if room > 0:
                kept.append(chunk[:room])
                room -= len(kept[-1])
        waveform = np.concatenate(kept) if kept else np.zeros(0, np.float32)
        evidence.audio = AudioClip(waveform, AUDIO_SAMPLE_RATE, start_s=stream.start_s, has_audio=stream.has_audio)
        evidence.prosody = (prosody_from_features(features, stream.start_s) if stream.has_audio
                            else Prosody(has_audio=False, duration_s=0.0))  # fmt: skip
    except MediaError as exc:
        evidence.warnings.append(f"audio could not be read ({exc}); reasoning from the face alone")
    evidence.timings["audio_s"] = round(time.perf_counter() - tick, 4)


class _FrameKeeper:
    """Watches the frames stream past the analyzer; keeps the crop candidates whole and key frames as JPEG."""

    def __init__(self, candidates: list[int], key_frames: bool):
        self.candidates = set(candidates)
        self.kept: dict[int, Frame] = {}  # analysed frame number -> frame
        self.want_key_frames = key_frames
        self.key_frames: dict[int, bytes] = {}
        self.scale = 1.0

    def watch(self, frames) -> Iterator[Frame]:
        for position, frame in enumerate(frames):
            if position in self.candidates:
                self.kept[position] = frame
            if self.want_key_frames:
                self.key_frames[position], self.scale = _jpeg(frame.image)
            yield frame

    def finish(self, evidence: Evidence) -> None:
        """Cut the main face's crops out of the kept frames; hand the key frames over."""
        evidence.key_frames, evidence.key_frame_scale = self.key_frames, self.scale
        if self.kept and evidence.analysis is not None:
            evidence.crops, evidence.crop_times = _main_face_crops(
                evidence.analysis, self.kept, evidence.sampling.model_crops
            )
        self.kept = {}


def _main_face_crops(analysis, kept: dict[int, Frame], count: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Aligned crops ``[T, CROP_SIZE, CROP_SIZE, 3]`` of the main face at up to ``count`` evenly spaced kept frames."""
    from emoreason.face.align import align_crop
    from emoreason.face.analyzer import LANDMARK_COLUMNS

    main = analysis.main_face()
    main = main[main["frame"].isin(list(kept))]
    if main.empty:
        return None, np.zeros(0)
    rows = main.iloc[np.unique(np.linspace(0, len(main) - 1, count).round().astype(int))]
    crops = [
        align_crop(kept[int(row["frame"])].image, row[LANDMARK_COLUMNS].to_numpy(float).reshape(-1, 2), CROP_SIZE)
        for _, row in rows.iterrows()
    ]
    return np.stack(crops), rows["time_s"].to_numpy(float)


def _jpeg(image: np.ndarray) -> tuple[bytes, float]:
    from PIL import Image

    picture = Image.fromarray(image)
    scale = min(1.0, KEY_FRAME_SIDE / max(picture.size))
    if scale < 1.0:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR)  # fmt: skip
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue(), scale


__all__ = ["CROP_MODES", "Evidence", "Sampling", "SpanError", "collect", "resolve_span"]
