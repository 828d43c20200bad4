"""Synthetic media: videos written with PyAV, a voice-like signal, and expression morphs of a real face.

Used by the demo (``scripts/make_demo_video.py``), the tests and the benchmarks. The face is a real
photograph that a registry package ships: scikit-image's ``astronaut`` (Eileen Collins, NASA, public
domain), smiling. :func:`expression_clip` warps its landmarks (piecewise affine) between a neutral
mouth, built from the landmark model's mean shape, and the photograph's own smile, so the clip has a
known AU12 onset, apex and offset. Needs the ``media`` extra (``av``, ``scikit-image``).
"""

from __future__ import annotations

from collections.abc import Iterator
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
        frames: uint8 RGB frames, [T, H, W, 3], with even H and W (yuv420p needs them), or an iterator of
            [H, W, 3] frames (encoded as they come).
        fps: frame rate; may be fractional (29.97).
        audio: optional mono waveform, [N] float in [-1, 1] (any float dtype) or int16; None writes no audio track.
        sample_rate: rate of `audio` in Hz.
        audio_start_s: time of the first audio sample; > 0 makes the audio stream start after the video.
        faststart: put the MP4 index first (as streaming sites do), so a truncated file still opens.

    Returns:
        The path written.
    """
    import itertools

    if isinstance(frames, (np.ndarray, list, tuple)):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
        first = frames[0] if len(frames) else None
    else:  # an iterator of [H, W, 3] frames: a long clip is encoded as it is made, never held whole
        frames = iter(frames)
        first = next(frames, None)
        frames = itertools.chain([first], frames) if first is not None else iter(())
    if first is None:
        raise ValueError("frames must hold at least one frame")
    height, width = first.shape[:2]
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
            if image.shape != first.shape or image.dtype != np.uint8:
                raise ValueError(f"every frame must be uint8 {first.shape}, got {image.dtype} {image.shape}")
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


# ---------------------------------------------------------------------------------------------
# AU-controlled morphs and micro-expressions
# ---------------------------------------------------------------------------------------------

# FACS-described landmark displacements at full intensity (E), in units of the distance between the eye centres,
# on the 68-point layout: {AU: ((points, dx outward, dy down), ...)}. "Outward" is away from the face's midline, so
# one entry serves both sides. After Ekman, Friesen & Hager's FACS manual (what each AU moves, and which way).
AU_DISPLACEMENTS: dict[str, tuple[tuple[tuple[int, ...], float, float], ...]] = {
    "AU1": (((21, 22), 0.0, -0.10), ((20, 23), 0.0, -0.07), ((19, 24), 0.0, -0.03)),
    "AU2": (((17, 26), 0.0, -0.10), ((18, 25), 0.0, -0.08), ((19, 24), 0.0, -0.04)),
    "AU4": (((21, 22), -0.05, 0.07), ((20, 23), -0.03, 0.06), ((19, 24), 0.0, 0.04), ((18, 25), 0.0, 0.02)),
    "AU5": (((37, 38, 43, 44), 0.0, -0.04),),
    "AU6": (((40, 41, 46, 47), 0.0, -0.03), ((1, 2, 14, 15), 0.0, -0.02)),
    "AU7": (((40, 41, 46, 47), 0.0, -0.04), ((37, 38, 43, 44), 0.0, 0.01)),
    "AU9": (((31, 32, 33, 34, 35), 0.0, -0.04), ((50, 51, 52), 0.0, -0.02)),
    "AU10": (((49, 50, 51, 52, 53, 61, 62, 63), 0.0, -0.05),),
    "AU12": (((48, 54), 0.07, -0.08), ((49, 53, 59, 55, 60, 64), 0.035, -0.04)),
    "AU15": (((48, 54), 0.0, 0.06), ((59, 55, 60, 64), 0.0, 0.03)),
    "AU17": (((55, 56, 57, 58, 59, 65, 66, 67), 0.0, -0.04), ((7, 8, 9), 0.0, -0.03)),
    "AU20": (((48, 54), 0.08, 0.01), ((49, 53, 59, 55, 60, 64), 0.04, 0.0)),
    "AU25": (((65, 66, 67), 0.0, 0.04), ((56, 57, 58), 0.0, 0.03)),
    "AU26": (((65, 66, 67, 56, 57, 58), 0.0, 0.08), ((5, 6, 7, 8, 9, 10, 11), 0.0, 0.08), ((55, 59), 0.0, 0.05)),
}
_MIDLINE = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)
_RIGHT_SIDE = frozenset(range(0, 8)) | frozenset(range(17, 22)) | frozenset(range(36, 42)) | {31, 32, 48, 49, 59,
                                                                                              60, 67}  # fmt: skip


def au_displacement(landmarks: np.ndarray, aus: dict[str, float], side: str = "both") -> np.ndarray:
    """``[68, 2]`` landmark displacement (pixels) of the ``aus`` ({code: intensity 0..5}) on a face whose 68
    points are ``landmarks``; ``side``: ``"both"``, ``"right"`` or ``"left"`` (the subject's) for a one-sided AU.
    AU45 (a blink) closes the upper lids onto the lower ones by its intensity / 5."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"landmarks: expected [68, 2], got {list(points.shape)}")
    unknown = set(aus) - set(AU_DISPLACEMENTS) - {"AU45"}
    if unknown:
        raise ValueError(f"no displacement for {sorted(unknown)}; known: {sorted(AU_DISPLACEMENTS)} and AU45")
    if side not in ("both", "right", "left"):
        raise ValueError(f"side must be both, right or left, got {side!r}")
    iod = float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))
    midline = points[list(_MIDLINE), 0].mean()
    shift = np.zeros_like(points)
    for code, intensity in aus.items():
        scale = float(np.clip(intensity, 0.0, 5.0)) / 5.0
        if code == "AU45":
            for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
                shift[upper, 1] += scale * (points[lower, 1] - points[upper, 1]) * 0.9
            continue
        for indices, outward, down in AU_DISPLACEMENTS[code]:
            for i in indices:
                sign = 1.0 if points[i, 0] >= midline else -1.0
                shift[i] += scale * iod * np.array([outward * sign, down])
    if side != "both":
        keep = np.array([(i in _RIGHT_SIDE) == (side == "right") or i in _MIDLINE for i in range(68)])
        shift[~keep] = 0.0
        shift[list(_MIDLINE)] *= 0.5
    return shift


class FaceMorpher:
    """Moves one photographed face by Action Units: the landmark displacements of :func:`au_displacement`
    spread over the face piecewise-linearly (the face's Delaunay triangles, pinned at a ring around the face),
    applied with one ``cv2.remap`` a frame, so a 200 fps clip costs milliseconds a frame.

    >>> morpher = FaceMorpher(photo, landmarks68)  # doctest: +SKIP
    >>> frame = morpher({"AU12": 1.5}, head=(2.0, 0.0, 0.5))  # doctest: +SKIP
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray):
        from scipy.spatial import Delaunay

        self.image = np.ascontiguousarray(image)
        self.landmarks = np.asarray(landmarks, np.float64)
        height, width = self.image.shape[:2]
        centre = self.landmarks.mean(0)
        radius = np.linalg.norm(self.landmarks - centre, axis=1).max()
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = centre + 1.6 * radius * np.stack([np.cos(angles), np.sin(angles)], 1)
        self.nodes = np.vstack([self.landmarks, ring])
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self.grid = np.stack([xs, ys], -1)
        triangles = Delaunay(self.nodes)
        simplex = triangles.find_simplex(self.grid.reshape(-1, 2))
        inside = simplex >= 0
        transform = triangles.transform[simplex[inside]]  # barycentric coordinates of each covered pixel
        delta = self.grid.reshape(-1, 2)[inside] - transform[:, 2]
        bary = np.einsum("nij,nj->ni", transform[:, :2], delta)
        self._pixels = np.flatnonzero(inside)
        self._corners = triangles.simplices[simplex[inside]]  # [P, 3]
        self._weights = np.hstack([bary, 1 - bary.sum(1, keepdims=True)]).astype(np.float32)  # [P, 3]

    def field(self, shift: np.ndarray) -> np.ndarray:
        """``[H, W, 2]`` displacement of every pixel for a ``[68, 2]`` landmark ``shift`` (zero off the face)."""
        nodes = np.vstack([shift, np.zeros((len(self.nodes) - 68, 2))]).astype(np.float32)
        out = np.zeros((self.grid.shape[0] * self.grid.shape[1], 2), np.float32)
        out[self._pixels] = (nodes[self._corners] * self._weights[..., None]).sum(1)
        return out.reshape(self.grid.shape)

    def __call__(self, aus: dict[str, float], side: str = "both", head: tuple[float, float, float] = (0, 0, 0),
                 gain: float = 1.0) -> np.ndarray:  # fmt: skip
        """The photo with ``aus`` applied (``side`` as in :func:`au_displacement`), then the head moved by
        ``head`` = (dx px, dy px, roll degrees) and the light scaled by ``gain``; uint8, the photo's shape."""
        import cv2

        moved = self.grid - self.field(au_displacement(self.landmarks, aus, side))  # pull: out(x) = in(x - d)
        frame = cv2.remap(self.image, moved[..., 0], moved[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        dx, dy, roll = head
        if dx or dy or roll:
            height, width = frame.shape[:2]
            matrix = cv2.getRotationMatrix2D(tuple(self.landmarks.mean(0)), roll, 1.0)
            matrix[:, 2] += (dx, dy)
            frame = cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        if gain != 1.0:
            frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        return frame


def scripted_frames(morpher: FaceMorpher, script: list[tuple[dict[str, float], tuple[float, float, float, float]]],
                    fps: float = 25.0, seconds: float = 6.0) -> np.ndarray:  # fmt: skip
    """``[T, H, W, 3]`` frames of ``morpher``'s face following ``script``: ``(aus, (onset, apex, release, offset)
    s)`` pairs, each AU ramped up from onset to apex, held, and down from release to offset (times may lie outside
    the clip: an expression held from before its start or past its end); overlapping entries add up."""
    out = []
    for t in np.arange(int(round(seconds * fps))) / fps:
        aus: dict[str, float] = {}
        for applied, (onset, apex, release, offset) in script:
            level = _ramp(np.array([t]), onset, apex, release, offset)[0]
            for code, value in applied.items():
                aus[code] = aus.get(code, 0.0) + level * value
        out.append(morpher(aus) if aus else morpher.image)
    return np.stack(out)


def face_photos() -> dict[str, np.ndarray]:
    """The real face photographs installed packages ship, cropped around the face (RGB uint8, even sides):
    scikit-image's astronaut (Eileen Collins, NASA, public domain) and matplotlib's Grace Hopper (US Navy,
    public domain). Needs the ``media`` extra."""
    import matplotlib.cbook
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as photo:
        hopper = np.asarray(photo.convert("RGB").crop((90, 40, 430, 380)).resize((320, 320)))
    return {"astronaut": astronaut_face(320), "hopper": hopper}


def micro_clip(*args, **kwargs) -> np.ndarray:
    """:func:`micro_frames` as one ``[T, H, W, 3]`` array."""
    return np.stack(list(micro_frames(*args, **kwargs)))


def micro_frames(
    image: np.ndarray,
    landmarks: np.ndarray,
    events: list[dict],
    fps: float = 200.0,
    duration_s: float = 3.0,
    blinks: list[dict] = (),
    head: list[dict] = (),
    noise: float = 2.0,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Frames ``[H, W, 3]`` of a face at rest with brief AU movements (micro-expressions), blinks and head motion,
    one at a time (a 60 s clip at 200 fps is 12,000 frames).

    Args:
        events: ``{"aus": {code: intensity}, "onset_s", "apex_s", "offset_s"[, "release_s", "side"]}``: each AU
            rises from 0 at onset to its intensity at the apex (held until ``release_s``) and falls back to 0 at the
            offset (raised-cosine ramps).
        blinks: ``{"onset_s", "offset_s"}``: the lids close fully midway (AU45).
        head: ``{"onset_s", "offset_s", "dx", "dy", "roll"}``: the head moves by that much and back.
        noise: standard deviation of the Gaussian pixel noise added to every frame (sensor noise).
    """
    rng = np.random.default_rng(seed)
    morpher = FaceMorpher(image, landmarks)
    times = np.arange(int(round(duration_s * fps))) / fps
    for t in times:
        aus: dict[str, float] = {}
        side = "both"
        for event in events:
            release = event.get("release_s", event["apex_s"])  # a held expression: apex to release at full
            level = _ramp(np.array([t]), event["onset_s"], event["apex_s"], release, event["offset_s"])[0]
            if level > 0:
                for code, intensity in event["aus"].items():
                    aus[code] = aus.get(code, 0.0) + level * intensity
                side = event.get("side", "both")
        for blink in blinks:
            middle = (blink["onset_s"] + blink["offset_s"]) / 2
            level = _ramp(np.array([t]), blink["onset_s"], middle, middle, blink["offset_s"])[0]
            if level > 0:
                aus["AU45"] = aus.get("AU45", 0.0) + 5.0 * level
        pose = np.zeros(3)
        for move in head:
            middle = (move["onset_s"] + move["offset_s"]) / 2
            level = _ramp(np.array([t]), move["onset_s"], middle, middle, move["offset_s"])[0]
            pose += level * np.array([move.get("dx", 0.0), move.get("dy", 0.0), move.get("roll", 0.0)])
        frame = morpher(aus, side, head=tuple(pose)) if aus or pose.any() else image
        if noise:
            frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        yield frame


MICRO_PATTERNS = (("AU12",), ("AU6", "AU12"), ("AU1", "AU2"), ("AU4",), ("AU15",), ("AU9",), ("AU1", "AU4"),
                  ("AU10",), ("AU17",), ("AU20",), ("AU4", "AU7"))  # fmt: skip


def micro_episode(rng: np.random.Generator, duration_s: float = 8.0, micro: int = 2) -> dict:
    """A random script for :func:`micro_clip`: ``micro`` micro-expressions (an AU pattern of
    :data:`MICRO_PATTERNS` at intensity 1-2.5 of 5, 0.06-0.5 s onset to offset), a blink, and half the time a head
    movement and a macro-expression (1-1.6 s, stronger) as distractors, apart from each other by at least 0.7 s.
    Returns ``{"events", "blinks", "head", "macro"}`` (``events`` are the micro-expressions: the labels)."""
    items = ["micro"] * micro + ["blink"] + (["head"] if rng.random() < 0.5 else []) + (
        ["macro"] if rng.random() < 0.5 else [])  # fmt: skip
    rng.shuffle(items)
    lengths = {"micro": (0.06, 0.5), "blink": (0.1, 0.3), "head": (0.3, 0.8), "macro": (1.0, 1.6)}
    spans = [(kind, float(rng.uniform(*lengths[kind]))) for kind in items]
    free = duration_s - 0.8 - sum(length for _, length in spans) - 0.7 * (len(spans) - 1)
    if free < 0:
        raise ValueError(f"duration_s {duration_s} is too short for {len(spans)} movements")
    gaps = rng.dirichlet(np.ones(len(spans) + 1)) * free
    script: dict = {"events": [], "blinks": [], "head": [], "macro": []}
    t = 0.4 + gaps[0]
    for (kind, length), gap in zip(spans, gaps[1:]):
        onset, offset = t, t + length
        if kind in ("micro", "macro"):
            pattern = MICRO_PATTERNS[rng.integers(len(MICRO_PATTERNS))] if kind == "micro" else ("AU6", "AU12")
            level = rng.uniform(1.0, 2.5) if kind == "micro" else rng.uniform(2.5, 4.0)
            rise = rng.uniform(0.3, 0.5) * length if kind == "micro" else 0.3
            event = {"aus": {code: float(level) for code in pattern}, "onset_s": onset, "apex_s": onset + rise,
                     "offset_s": offset}  # fmt: skip
            if kind == "macro":  # held: rise 0.3 s, hold, fall 0.3 s (the ramp's apex..release)
                event["release_s"] = offset - 0.3
            script["events" if kind == "micro" else "macro"].append(event)
        elif kind == "blink":
            script["blinks"].append({"onset_s": onset, "offset_s": offset})
        else:
            script["head"].append({"onset_s": onset, "offset_s": offset, "dx": float(rng.uniform(-4, 4)),
                                   "dy": float(rng.uniform(-3, 3)), "roll": float(rng.uniform(-2, 2))})  # fmt: skip
        t = offset + 0.7 + gap
    return script
