"""Synthetic media: videos written with PyAV, a voice-like signal, and expression morphs of a real face.

Used by the demo (``scripts/make_demo_video.py``), the tests and the benchmarks. The face is a real
photograph that a registry package ships: scikit-image's ``astronaut`` (Eileen Collins, NASA, public
domain), smiling. :func:`expression_clip` warps its landmarks (piecewise affine) between a neutral
mouth, built from the landmark model's mean shape, and the photograph's own smile, so the clip has a
known AU12 onset, apex and offset. Needs the ``media`` extra (``av``, ``scikit-image``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    audio_start_s: float = 0.0,
    faststart: bool = False,
) -> Path:
    """Write an H.264 (yuv420p) video, with an optional AAC mono audio track, to `path`.

    Args:
        path: output file; the container follows the suffix (``.mp4``, ``.mkv``, ...).
        frames: uint8 RGB frames, [T, H, W, 3], with even H and W (yuv420p needs them).
        fps: frame rate; may be fractional (29.97).
        audio: optional mono waveform, [N] float in [-1, 1] (any float dtype) or int16; None writes no audio track.
        sample_rate: rate of `audio` in Hz.
        audio_start_s: time of the first audio sample; > 0 makes the audio stream start after the video.
        faststart: put the MP4 index first (as streaming sites do), so a truncated file still opens.

    Returns:
        The path written.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame height and width must be even for yuv420p, got {height}x{width}")
    import av

    path = Path(path)
    options = {"movflags": "faststart"} if faststart else None
    with av.open(str(path), mode="w", options=options) as container:
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
    import av

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


# ---------------------------------------------------------------------------------------------
# Expression morphs of a real photograph
# ---------------------------------------------------------------------------------------------

MOUTH = slice(48, 68)


def astronaut_face(size: int = 320) -> np.ndarray:
    """scikit-image's astronaut photograph cropped around her (smiling) face, ``[size, size, 3]`` uint8."""
    from PIL import Image
    from skimage import data

    crop = Image.fromarray(data.astronaut()[20:276, 94:350])  # 256 x 256 around the face
    return np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC))


def _neutral_mouth(landmarks: np.ndarray) -> np.ndarray:
    """The same face with the landmark model's mean (closed, relaxed) mouth in place of its own."""
    from emoreason.face.align import RIGID_POINTS, apply_transform, fit_similarity
    from emoreason.face.models import mean_shape

    rigid = list(RIGID_POINTS)
    to_mean = fit_similarity(landmarks[rigid], mean_shape()[rigid])
    from_mean = fit_similarity(mean_shape()[rigid], landmarks[rigid])
    normalised = apply_transform(to_mean, landmarks)
    mouth = mean_shape()[MOUTH].copy()
    mouth[:, 1] += normalised[33, 1] - mean_shape()[33, 1]  # keep the person's nose-to-mouth distance
    for upper, lower in ((13, 19), (14, 18), (15, 17)):  # close the lips: inner points meet midway
        mouth[[upper, lower], 1] = mouth[[upper, lower], 1].mean()
    normalised[MOUTH] = mouth
    return apply_transform(from_mean, normalised)


def _ramp(t: np.ndarray, onset: float, apex: float, release: float, offset: float) -> np.ndarray:
    """0 -> 1 between onset and apex, 1 until release, back to 0 at offset (raised-cosine edges)."""
    up = np.clip((t - onset) / max(apex - onset, 1e-6), 0, 1)
    down = np.clip((offset - t) / max(offset - release, 1e-6), 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def expression_clip(
    size: int = 320,
    fps: float = 12.0,
    duration_s: float = 3.0,
    smile: tuple[float, float, float, float] = (0.8, 1.3, 2.0, 2.5),
) -> tuple[np.ndarray, np.ndarray]:
    """A clip of the astronaut going from a neutral mouth into her smile and back.

    Args:
        smile: (onset, apex, release, offset) times in seconds of the smile.
    Returns:
        ``([T, size, size, 3] uint8 frames, [T] smile strength in 0..1)``.
    """
    from skimage.transform import PiecewiseAffineTransform, warp

    from emoreason.face.detect import FaceDetector

    image = astronaut_face(size)
    faces = FaceDetector(upsample=1).detect(image)
    if not faces:
        raise RuntimeError("no face found in the astronaut photograph")
    smiling = faces[0].landmarks.astype(np.float64)
    neutral = _neutral_mouth(smiling)
    edge = np.linspace(0, size - 1, 5)
    border = np.array([(x, y) for x in edge for y in edge if x in (0, size - 1) or y in (0, size - 1)])
    times = np.arange(int(round(duration_s * fps))) / fps
    strength = _ramp(times, *smile)
    source = image.astype(np.float64) / 255
    frames = []
    for alpha in strength:
        target = neutral + alpha * (smiling - neutral)
        # warp() needs the map from output pixels (target shape) back to input pixels (the photo).
        tform = PiecewiseAffineTransform.from_estimate(np.vstack([target, border]), np.vstack([smiling, border]))
        frames.append((warp(source, tform, order=1, mode="edge") * 255).round().astype(np.uint8))
    return np.stack(frames), strength
