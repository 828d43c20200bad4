"""Synthetic media for tests: real video/audio files written with PyAV, and a voice-like test signal.

Not a test module (no ``test_`` prefix): test files import `write_video` and `voice_like` from here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    audio_start_s: float = 0.0,
) -> Path:
    """Write an H.264 (yuv420p) video, with an optional AAC mono audio track, to `path`.

    Args:
        path: output file; the container follows the suffix (``.mp4``, ``.mkv``, ...).
        frames: uint8 RGB frames, [T, H, W, 3], with even H and W (yuv420p needs them).
        fps: frame rate; may be fractional (29.97).
        audio: optional mono waveform, [N] float in [-1, 1] (any float dtype) or int16; None writes no audio track.
        sample_rate: rate of `audio` in Hz.
        audio_start_s: time of the first audio sample; > 0 makes the audio stream start after the video.

    Returns:
        The path written.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame height and width must be even for yuv420p, got {height}x{width}")
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _encode_audio(container, sound, audio, sample_rate, round(audio_start_s * sample_rate))
    return path


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int, offset: int) -> None:
    """Encode a mono waveform in 1024-sample chunks (the AAC frame size), the first sample at pts `offset`."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [N], got shape {audio.shape}")
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    chunk = 1024
    for start in range(0, len(audio), chunk):
        piece = audio[start : start + chunk]
        frame = av.AudioFrame.from_ndarray(piece[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, offset + start, Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def voice_like(
    duration_s: float,
    sample_rate: int = 16_000,
    f0_start: float = 150.0,
    f0_end: float = 250.0,
    syllables_per_s: float = 4.0,
    pause: tuple[float, float] | None = None,
    amplitude: float = 0.3,
) -> np.ndarray:
    """A voice-like float32 mono signal: a harmonic series on a linear f0 glide, chopped into syllables.

    Each syllable is a raised-cosine burst filling ~70% of its slot, so one onset per syllable; the gaps between
    syllables are short (< 0.1 s) and so not pauses. Samples inside `pause` (start_s, end_s) are exact zeros.

    Args:
        duration_s: length in seconds.
        sample_rate: Hz.
        f0_start, f0_end: fundamental frequency at the start and end, Hz (linear in time).
        syllables_per_s: syllable rate.
        pause: optional silent span (start_s, end_s).
        amplitude: peak amplitude of the harmonic series before the syllable envelope.

    Returns:
        [N] float32, N = round(duration_s * sample_rate).
    """
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    f0 = f0_start + (f0_end - f0_start) * t / duration_s
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    # Harmonics with a 1/k spectral tilt, like a glottal source.
    wave = sum(np.sin(k * phase) / k for k in range(1, 9))
    wave = wave / np.max(np.abs(wave)) * amplitude
    slot = (t * syllables_per_s) % 1.0
    envelope = np.where(slot < 0.7, np.sin(np.pi * slot / 0.7) ** 2, 0.0)
    wave = wave * envelope
    if pause is not None:
        wave[(t >= pause[0]) & (t < pause[1])] = 0.0
    return wave.astype(np.float32)


def gray_frames(count: int, height: int = 64, width: int = 64) -> np.ndarray:
    """`count` uniform mid-gray RGB frames, [T, H, W, 3] uint8, with a slowly changing level."""
    levels = np.linspace(96, 160, count).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()
