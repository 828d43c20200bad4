"""Audio track of a video (or an audio file) as a mono float32 waveform at 16 kHz, read with decord.

A file without an audio stream is normal input (a silent screen recording, an image): `load_audio` returns an empty
clip with ``has_audio=False`` and the prosody cues say "no audio track". Only files that cannot be read at all
raise `MediaError`.

Memory bound: decord's `AudioReader` decodes and resamples the *whole* audio track in its constructor; it cannot
seek to a span. Decoding straight to mono at `sample_rate` keeps that small: at 16 kHz the peak is about 0.27 MB
per second of track (about 1 GB for a one-hour file, measured), whatever span is asked for. Only the requested
span is copied out and kept (64 kB per second); the decoded track is freed before `load_audio` returns.

Mono is decord's (FFmpeg's swresample) downmix for float output: stereo becomes (L + R) / sqrt(2), not the mean,
so a sound present in both channels comes out 3 dB louder than in either, and loud stereo can exceed 1.0.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoreason.constants import AUDIO_SAMPLE_RATE
from emoreason.io.errors import MediaError, check_file, native_stderr_silenced

logger = logging.getLogger(__name__)

# decord raises a bare DECORDError; this text in its message is how "no audio stream" differs from "unreadable".
_NO_AUDIO_STREAM = "Can't find audio stream"
# decord prefixes its messages with "[12:00:00] /path/to/audio_reader.cc:112: "; strip that for our message.
_DECORD_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")


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
        MediaError: the file is missing, empty, or not a media file decord (FFmpeg) can open.
        ValueError: `sample_rate` or the span is invalid.

    >>> clip = load_audio("interview.mp4", start_s=2.0, end_s=5.0)  # doctest: +SKIP
    >>> clip.sample_rate, round(clip.duration_s, 1)  # doctest: +SKIP
    (16000, 3.0)
    """
    from decord import AudioReader, DECORDError

    start_s = _check_span(sample_rate, start_s, end_s)
    path = check_file(path)
    try:
        with native_stderr_silenced():
            reader = AudioReader(str(path), sample_rate=sample_rate, mono=True)
    except DECORDError as err:
        reason = _DECORD_PREFIX.sub("", str(err).strip().splitlines()[0]).replace(f"ERROR opening: {path}, ", "")
        if _NO_AUDIO_STREAM in reason:
            logger.info("%s has no audio stream", path)
            return AudioClip(np.zeros(0, np.float32), sample_rate, start_s=start_s, has_audio=False)
        raise MediaError(f"{path}: cannot read audio, not a media file FFmpeg can open ({reason})") from err

    padding = _leading_padding(reader)
    first = round(start_s * sample_rate)
    last = reader.shape[1] + max(padding, 0) if end_s is None else round(end_s * sample_rate)
    # Sample i of the decoded track is at file time (padding + i) / sample_rate.
    lead = max(0, min(padding, last) - first)
    samples = _copy_span(reader, max(first - padding, 0), max(last - padding, 0))
    del reader  # frees the whole decoded track
    waveform = np.concatenate([np.zeros(lead, np.float32), samples]) if lead else samples
    if waveform.size == 0:
        logger.warning("%s: no audio samples between %.2f s and %s", path, start_s, end_s)
    return AudioClip(waveform, sample_rate, start_s=start_s, has_audio=True)


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


def _leading_padding(reader) -> int:
    """Samples between time 0 and the audio stream's first sample (its start time), per decord.

    decord 0.6 computes this but exposes it only through `add_padding()`, which copies the whole track; read the
    value from its private getter instead (decord is pinned at 0.6.0), and pad only the requested span.
    """
    getter = getattr(reader, "_AudioReader__get_num_padding", None)
    return int(getter()) if getter is not None else 0


def _copy_span(reader, first: int, last: int) -> np.ndarray:
    """Samples [first, last) of channel 0 as a float32 copy, [S].

    decord's public slicing builds a Python list of every index (about 0.17 us per sample: 1.6 s for ten minutes of
    audio); the decoded array it indexes into is a plain numpy attribute, so slice that when it is there.
    """
    total = reader.shape[1]
    first, last = min(first, total), min(max(last, first), total)
    decoded = getattr(reader, "_array", None)
    if isinstance(decoded, np.ndarray):
        return np.array(decoded[0, first:last], dtype=np.float32)
    return np.asarray(reader[first:last].asnumpy()[0], dtype=np.float32)
