"""Audio track of a video (or an audio file) as a mono float32 waveform at 16 kHz, decoded as a stream with PyAV.

A file without an audio stream is normal input (a silent screen recording, an image): `load_audio` returns an empty
clip with ``has_audio=False`` and the prosody cues say "no audio track". Only files that cannot be read at all
raise `MediaError`.

Memory bound: the track is decoded frame by frame straight to mono at `sample_rate` and only the requested span
is kept (64 kB per second at 16 kHz); nothing holds the whole decoded track (decord's `AudioReader`, used before,
decoded all of it up front: about 1.1 GB per hour of audio). See BENCHMARKS.md for measured peaks.

Mono is FFmpeg's swresample downmix for float output: stereo becomes (L + R) / sqrt(2), not the mean, so a sound
present in both channels comes out 3 dB louder than in either, and loud stereo can exceed 1.0.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoreason.constants import AUDIO_SAMPLE_RATE
from emoreason.io.decoders import open_container
from emoreason.io.errors import MediaError, check_file

logger = logging.getLogger(__name__)



@dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise
class AudioClip:
    """A mono waveform and where it sits in its file.

    Attributes:
        waveform: float32 samples, full scale 1.0 (a stereo downmix can exceed it), [N]. Empty when the file has
            no audio track.
        sample_rate: samples per second.
        start_s: time of ``waveform[0]`` in the file's timeline, seconds (the video frames' timeline too).
        has_audio: False when the file has no audio stream at all (then the waveform is empty).
    """

    waveform: np.ndarray  # [N] float32
    sample_rate: int
    start_s: float = 0.0
    has_audio: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.waveform, np.ndarray) or self.waveform.ndim != 1 or self.waveform.dtype != np.float32:
            got = (
                f"{self.waveform.dtype} {self.waveform.shape}"
                if isinstance(self.waveform, np.ndarray)
                else type(self.waveform).__name__
            )
            raise ValueError(f"AudioClip.waveform must be float32 [N], got {got}")
        if self.sample_rate <= 0:
            raise ValueError(f"AudioClip.sample_rate must be positive, got {self.sample_rate}")
        if not self.has_audio and self.waveform.size:
            raise ValueError(f"AudioClip.has_audio is False but the waveform has {self.waveform.size} samples")

    @property
    def duration_s(self) -> float:
        """Length of the waveform in seconds."""
        return self.waveform.size / self.sample_rate

    @property
    def end_s(self) -> float:
        """Time just after the last sample, in the file's timeline."""
        return self.start_s + self.duration_s


def load_audio(
    path: str | Path,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    start_s: float | None = None,
    end_s: float | None = None,
) -> AudioClip:
    """Read the audio track of a video or audio file as mono float32, resampled to `sample_rate`.

    The track is decoded as a stream (PyAV: FFmpeg's demuxers, decoders and resampler), from a seek to just before
    `start_s`, and only the span's samples are kept: memory is the span's waveform (64 kB per second at 16 kHz),
    not the whole track.

    Args:
        path: a video (mp4, mkv, webm, ...) or audio (wav, mp3, m4a, ...) file.
        sample_rate: output rate in Hz; 16 kHz is what the prosody cues and the audio tower expect.
        start_s: start of the span to keep, seconds in the file's timeline; None means the start of the file.
        end_s: end of the span to keep; None means the end of the track. Past the end, the clip is just shorter.

    Returns:
        An `AudioClip`. If the audio stream starts after time 0 (it can lag the video), the gap is filled with
        zeros so that ``waveform[0]`` is at `start_s`. If the file has no audio stream, an empty clip with
        ``has_audio=False``. The last ~64 ms may be decoder padding (AAC frames are 1024 samples).

    Raises:
        MediaError: the file is missing, empty, or not a media file FFmpeg can open.
        ValueError: `sample_rate` or the span is invalid.

    >>> clip = load_audio("interview.mp4", start_s=2.0, end_s=5.0)  # doctest: +SKIP
    >>> clip.sample_rate, round(clip.duration_s, 1)  # doctest: +SKIP
    (16000, 3.0)
    """
    stream = AudioStream(path, sample_rate, start_s, end_s)
    chunks = list(stream)
    waveform = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if stream.has_audio and waveform.size == 0:
        logger.warning("%s: no audio samples between %.2f s and %s", path, stream.start_s, end_s)
    return AudioClip(waveform, sample_rate, start_s=stream.start_s, has_audio=stream.has_audio)


class AudioStream:
    """The span's samples as they are decoded: iterate for float32 chunks [S] (each file sample once, in order).

    ``has_audio`` is False (and the iteration empty) for a file without an audio stream. The file is opened here and
    closed when the iteration ends.

    Raises:
        MediaError: the file is missing, empty, not a media file FFmpeg can open, or its audio is corrupt.
        ValueError: `sample_rate` or the span is invalid.
    """

    def __init__(self, path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE, start_s: float | None = None,
                 end_s: float | None = None):  # fmt: skip
        self.start_s = _check_span(sample_rate, start_s, end_s)
        self.path, self.sample_rate, self.end_s = check_file(path), sample_rate, end_s
        self._container = open_container(self.path, "cannot read audio, not a media file FFmpeg can open")
        self.has_audio = bool(self._container.streams.audio)
        if not self.has_audio:
            logger.info("%s has no audio stream", self.path)
            self._container.close()

    def __iter__(self):
        import av

        if not self.has_audio:
            return
        try:
            yield from _decode_span(self._container, self.sample_rate, self.start_s, self.end_s)
        except av.FFmpegError as err:
            raise MediaError(f"{self.path}: the audio track is corrupt ({err})") from err
        finally:
            self._container.close()


def _decode_span(container, sample_rate: int, start_s: float, end_s: float | None):
    """Yield the samples of the first audio stream from `start_s` to `end_s` (file timeline, zeros where the stream
    has none yet), mono float32 at `sample_rate`, in chunks [S]. The file's start time is time 0."""
    import av

    stream = container.streams.audio[0]
    origin = float(container.start_time or 0) / 1_000_000  # AV_TIME_BASE: the file's time 0
    if start_s > 1.0:  # skip what comes before the span (to a packet at or before it)
        container.seek(int((start_s - 0.5 + origin) / stream.time_base), stream=stream, backward=True)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    span = _Span(round(start_s * sample_rate), None if end_s is None else round(end_s * sample_rate))
    for frame in container.decode(stream):
        if span.position is None:
            stamp = frame.pts * stream.time_base if frame.pts is not None else 0
            span.position = round((float(stamp) - origin) * sample_rate)
        for out in resampler.resample(frame):
            yield from span.cut(out.to_ndarray()[0])
        if span.over():
            return
    if span.position is not None:
        for out in resampler.resample(None):  # flush
            yield from span.cut(out.to_ndarray()[0])


class _Span:
    """Cuts the decoded samples to [first, last) of the file's sample numbers, zero-filling a late stream start."""

    def __init__(self, first: int, last: int | None):
        self.first, self.last = first, last
        self.position: int | None = None  # file sample number of the next decoded sample
        self.started = False

    def over(self) -> bool:
        return self.last is not None and self.position is not None and self.position >= self.last

    def cut(self, samples: np.ndarray):
        position, end = self.position, self.position + samples.size
        if not self.started and position > self.first:  # the stream starts after the span: silence until it does
            gap = (position if self.last is None else min(position, self.last)) - self.first
            if gap > 0:
                yield np.zeros(gap, np.float32)
        self.started = True
        lo, hi = max(self.first, position), end if self.last is None else min(end, self.last)
        if hi > lo:
            yield np.asarray(samples[lo - position : hi - position], dtype=np.float32)
        self.position = end




def _check_span(sample_rate: int, start_s: float | None, end_s: float | None) -> float:
    """Validate the arguments; return the start time as a float."""
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    start = 0.0 if start_s is None else float(start_s)
    if not math.isfinite(start) or start < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if end_s is not None and not end_s > start:
        raise ValueError(f"end_s must be greater than start_s ({start}), got {end_s}")
    return start
