"""Micro-expressions: brief, subtle AU movements spotted at the video's native frame rate (MEGC-style spotting).

The main face is followed in every frame (BlazeFace, then the face mesh frame to frame) and warped into an
upright ``CROP``-pixel grey crop by its rigid points, so head translation, roll and scale are removed before any
motion is measured. Motion in the AU regions comes from OpenCV's Farneback optical flow against a sliding
reference, as in the feature-difference spotting of MEGC's baseline (Li et al., 2018) and the main-directional
flow of MDMD: for each centre frame ``c``, with ``k`` frames of ``LAG_S``,

    d(c) = flow(crop[c - k] -> crop[c])       what moved since before the event
    e(c) = flow(crop[c - k] -> crop[c + k])   what is still moved after it

each averaged over a region, the nose bridge's motion (alignment jitter, head motion) subtracted. A movement that
returns to rest has ``|d|`` high and ``|e|`` near zero; a macro-expression (it stays) and a head turn (it stays or
moves every region alike) do not. ``|d| - |e|``, in units of each region's own noise, is the spotting signal; its
runs above threshold are the candidates. A candidate longer than ``MAX_S`` is not micro; one whose only movement
is the upper lid going down, or during which the landmarks' eye opening closes by a third, is a blink; one where the head moved more than
the face did is head motion; one whose region's landmarks do not come back to where they were (the end of a held
expression, where the mesh settles) did not return. The rest are reported with the AUs their regions' flow directions mean (FACS:
inner brow up AU1, lip corners up AU12, ...), the optical strain at the apex (STSTNet's third channel), and the
emotion the FACS prototypes read from those AUs.

Memory: the crops of ``2k + 1`` frames (16 kB each) and about 1 kB a frame of motion series, whatever the
frame size; frames are decoded in small batches and dropped.

The two thresholds (``NOISE_Z``, ``FLOOR``) were fitted on synthetic micro-expressions of one person
(``scripts/bench_micro.py --fit``) and are reported on another (BENCHMARKS.md).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emoreason.face.align import RIGID_POINTS, fit_similarity
from emoreason.face.models import mean_shape

CROP = 128  # side of the aligned face crop, pixels
PADDING = 0.15  # the mean shape fills the crop but this margin on each side
LAG_S = 0.3  # reference lag k: before onset and after offset of a movement of up to 2 * LAG_S
MAX_S = 0.5  # longest micro-expression (onset to offset); MEGC's bound
BLINK_MAX_S = 0.6
BLINK_SHARE = 0.5  # a blink: the upper lid's movement leads, other regions (flow spilling over) under this share
NOISE_Z = 6.0  # a region's signal must reach this many times its resting level (median over the clip)...
FLOOR = 0.2  # ...and this many crop pixels (a 128 px crop: 0.2 px is about 0.5% of the eye distance)
SMOOTH_S = 0.025  # the motion series are averaged over this window (5 frames at 200 fps; none at 30 fps)
EDGE = 0.2  # onset and offset: where the apex region's signal falls below this share of its peak
RETURN_SHARE = 1.5  # a micro-expression comes back: its landmarks after it within this many times its flow (the
# release of a held smile left a 0.6 px flow bump with the landmarks 1.35 px from where they were: ratio 2.2; the
# tests' micro-expressions pass at 1.0). Set from that clip, then NOISE_Z/FLOOR refitted with it (BENCHMARKS.md)
HEAD_SHARE = 0.6  # head motion: the rigid anchors moved past their noise and this share of the apex region's move
FARNEBACK = (0.5, 3, 9, 3, 5, 1.1, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags

# region: (points on the 68-point layout, subject's right side; the left side mirrors them)
_PAIRS = {
    "brow_inner": ((20, 21), (22, 23)),
    "brow_outer": ((17, 18), (25, 26)),
    "upper_lid": ((37, 38), (43, 44)),
    "lower_lid": ((40, 41), (46, 47)),
    "nose": ((31, 32), (34, 35)),
    "mouth_corner": ((48,), (54,)),
}
_SINGLE = {"upper_lip": (50, 51, 52), "lower_lip": (56, 57, 58)}
# rigid anchors: what expressions barely move (the face outline beside the eyes, nose bridge and tip: not the eye
# corners, whose boxes catch the lids in a blink); their motion is the head's
# (and the alignment's jitter), fitted as an affine flow and taken out of every region
_RIGID = (1, 15, 27, 30)
REGIONS = tuple(_PAIRS) + ("upper_lip", "lower_lip")
EYE_REGIONS = frozenset({"upper_lid", "lower_lid"})


@dataclass
class MicroExpression:
    onset_s: float
    apex_s: float
    offset_s: float
    onset_frame: int
    apex_frame: int
    offset_frame: int
    aus: list[str]
    emotion: str | None  # the FACS prototype the AUs support; None when they support none
    strength: float  # peak signal, in multiples of the threshold
    amplitude: float  # apex movement of the strongest region, as a share of the eye distance
    strain: float  # optical strain at the apex in that region
    regions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class MicroAnalysis:
    """What :func:`spot_micro` found in one clip (or span) of one face."""

    source: str
    fps: float
    frames: int  # frames analysed
    face_frames: int  # frames where the face was followed
    duration_s: float
    micro_expressions: list[MicroExpression]
    blinks: list[dict]  # {"onset_s", "apex_s", "offset_s"}
    rejected: dict[str, int]  # candidates not reported: {"too long": n, "head motion": n, "did not return": n}
    thresholds: dict[str, float]
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    series: pd.DataFrame | None = field(default=None, repr=False)  # per centre frame: time_s, signal, regions

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("series", "micro_expressions")}
        return data | {"micro_expressions": [m.to_dict() for m in self.micro_expressions]}


@dataclass
class Motion:
    """The measured motion of one clip: per centre frame (position, time, ``[R, 2]`` flow from ``lag`` frames before,
    the same from ``lag`` after, ``[R]`` strain, the anchors' motion), and the eye opening of every frame."""

    source: str
    fps: float
    frames: int
    face_frames: int
    duration_s: float
    lag: int
    rows: list[tuple]
    opening: np.ndarray
    timings: dict[str, float]
    shape: np.ndarray | None = None  # [frames, R, 2] each region's landmarks in the crop (NaN: no face)


def _crop_geometry() -> tuple[np.ndarray, dict[str, tuple[tuple[int, int, int, int], ...]], float]:
    """The mean shape's points in the crop, each region's pixel box ``(y0, y1, x0, x1)`` (right, left), and the eye
    distance there."""
    ref = mean_shape()
    lo, hi = ref.min(0), ref.max(0)
    target = (ref - (lo + hi) / 2) * (CROP / ((hi - lo).max() * (1 + 2 * PADDING))) + CROP / 2
    eye_distance = float(np.linalg.norm(target[36:42].mean(0) - target[42:48].mean(0)))
    half = eye_distance * 0.1  # region half-size: about a sixth of the brow's length

    def box(points) -> tuple[int, int, int, int]:
        pts = target[list(points)]
        (x0, y0), (x1, y1) = pts.min(0) - half, pts.max(0) + half
        return max(int(y0), 0), int(math.ceil(y1)), max(int(x0), 0), int(math.ceil(x1))

    masks = {name: (box(right), box(left)) for name, (right, left) in _PAIRS.items()}
    masks |= {name: (box(points),) for name, points in _SINGLE.items()}
    masks |= {f"rigid{point}": (box((point,)),) for point in _RIGID}
    return target, masks, eye_distance


class _Regions:
    """Mean flow vector (x outward from the midline, y down) and mean strain of each region, after the rigid
    anchors' affine motion (head motion, alignment jitter) is taken out."""

    def __init__(self):
        self.target, self.masks, self.eye_distance = _crop_geometry()
        self.midline = float(self.target[[27, 28, 29, 30, 33, 51, 57, 8], 0].mean())
        ys, xs = np.mgrid[0:CROP, 0:CROP]
        self.coords = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64)  # [H, W, 3]
        self.centres = {box: _in(self.coords, box).reshape(-1, 3).mean(0) for parts in self.masks.values()
                        for box in parts}  # fmt: skip
        self.anchor_masks = [self.masks[f"rigid{p}"][0] for p in _RIGID]
        self.anchor_xy = np.stack([self.centres[box] for box in self.anchor_masks])  # [4, 3]

    def landmarks(self, points: np.ndarray) -> np.ndarray:
        """``[R, 2]`` each region's landmark position in the crop (``points``: the 68 aligned landmarks), x outward
        from the midline as in :meth:`measure`: the difference of two frames' is the regions' landmark movement."""
        out = np.zeros((len(REGIONS), 2))
        for i, name in enumerate(REGIONS):
            parts = _PAIRS[name] if name in _PAIRS else (_SINGLE[name],)
            for side, indices in enumerate(parts):
                xy = points[list(indices)].mean(0)
                if len(parts) == 2 and side == 0:
                    xy = np.array([-xy[0], xy[1]])
                out[i] += xy / len(parts)
        return out

    def measure(self, flow: np.ndarray, with_strain: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
        """``flow [CROP, CROP, 2]`` -> (``[R, 2]`` region vectors, ``[R]`` strain, the anchors' mean motion in px)."""
        anchor_flow = np.stack([_in(flow, box).reshape(-1, 2).mean(0) for box in self.anchor_masks])  # [4, 2]
        affine, *_ = np.linalg.lstsq(self.anchor_xy, anchor_flow, rcond=None)  # [3, 2]: flow = [x, y, 1] @ affine
        vectors, strains = np.zeros((len(REGIONS), 2)), np.zeros(len(REGIONS))
        strain = _strain(flow - self.coords @ affine) if with_strain else None
        for i, name in enumerate(REGIONS):
            parts = self.masks[name]
            mean = np.zeros(2)
            for side, box in enumerate(parts):  # the mean over a box of the affine flow is its value at the centre
                v = _in(flow, box).reshape(-1, 2).mean(0) - self.centres[box] @ affine
                if len(parts) == 2 and side == 0:  # the subject's right is the image's left: outward is -x
                    v = v * np.array([-1.0, 1.0])
                mean += v / len(parts)
                if strain is not None:
                    strains[i] += _in(strain, box).mean() / len(parts)
            vectors[i] = mean
        return vectors, strains, float(np.linalg.norm(anchor_flow, axis=1).mean())


def _in(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = box
    return array[y0:y1, x0:x1]


def _strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude ``[H, W]`` of a flow field (STSTNet's third input channel)."""
    ux, uy = np.gradient(flow[..., 0], axis=(1, 0))
    vx, vy = np.gradient(flow[..., 1], axis=(1, 0))
    return np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2)


# region -> ((AU, direction (x outward, y down)), ...): the FACS movement each direction of flow there means
_AU_DIRECTIONS = {
    "brow_inner": (("AU1", (0, -1)), ("AU4", (-0.5, 0.87))),
    "brow_outer": (("AU2", (0, -1)), ("AU4", (0, 1))),
    "upper_lid": (("AU5", (0, -1)),),
    "lower_lid": (("AU6", (0, -1)),),
    "nose": (("AU9", (0, -1)),),
    "upper_lip": (("AU10", (0, -1)),),
    "mouth_corner": (("AU12", (0.6, -0.8)), ("AU15", (0, 1)), ("AU20", (1, 0))),
    "lower_lip": (("AU17", (0, -1)), ("AU25", (0, 1))),
}
_COS_MIN = 0.7  # a movement reads as an AU when its direction is within about 45 degrees of the AU's


def region_aus(vectors: dict[str, np.ndarray]) -> list[str]:
    """AU codes for the regions' apex movement vectors (x outward, y down), FACS order; AU6 needs AU12 (a raised
    lower lid without a smile is AU7)."""
    from emoreason.au import AU_CODES

    found = set()
    for name, vector in vectors.items():
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            continue
        best = max(_AU_DIRECTIONS.get(name, ()), key=lambda a: float(np.dot(vector, a[1])) / np.linalg.norm(a[1]),
                   default=None)  # fmt: skip
        if best is not None and float(np.dot(vector, best[1])) / (norm * np.linalg.norm(best[1])) >= _COS_MIN:
            found.add(best[0])
    if "AU6" in found and "AU12" not in found:
        found = (found - {"AU6"}) | {"AU7"}
    return [code for code in AU_CODES if code in found]


def _eye_opening(landmarks: np.ndarray) -> float:
    """Lid-to-lid opening of both eyes in eye distances (landmark signal for blinks)."""
    upper = landmarks[[37, 38, 43, 44], 1].mean()
    lower = landmarks[[40, 41, 46, 47], 1].mean()
    eye_distance = float(np.linalg.norm(landmarks[36:42].mean(0) - landmarks[42:48].mean(0))) or 1.0
    return float(lower - upper) / eye_distance


class _Follower:
    """The main face in each frame: BlazeFace to find it, the mesh to follow it; ``None`` where it is lost."""

    def __init__(self, detector=None):
        from emoreason.face.detect import BlazeFaceDetector

        self.detector = detector or BlazeFaceDetector(landmarks="mesh")
        self.last = None

    def __call__(self, image: np.ndarray):
        face = self.detector.follow(image, self.last) if self.last is not None else None
        if face is None:
            faces = self.detector.detect(image)
            if faces and self.last is not None:  # the one nearest where the face was
                cx, cy = self.last.center
                faces.sort(key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
            face = faces[0] if faces else None
        self.last = face
        return face


def spot_micro(
    path: str | Path,
    span: tuple[float | None, float | None] | None = None,
    *,
    max_side: int = 640,
    detector=None,
    progress: Callable[[int, int], None] | None = None,
    noise_z: float = NOISE_Z,
    floor: float = FLOOR,
) -> MicroAnalysis:
    """Spot the micro-expressions of the main face in a video (or a span of it), at its native frame rate.

    Args:
        path: a video file. span: ``(start_s, end_s)``, either end None.
        max_side: frames are decoded with their long side at most this (the face crop is ``CROP`` px anyway).
        noise_z, floor: the spotting thresholds (see the module docstring); the defaults are the fitted ones.
    Raises:
        MediaError: the file is missing, unreadable or not a video; SpanError: a span outside the video.

    >>> found = spot_micro("clip.mp4")  # doctest: +SKIP
    >>> [(m.apex_s, m.aus, m.emotion) for m in found.micro_expressions]  # doctest: +SKIP
    [(2.08, ['AU12'], 'happiness')]
    """
    return find_micro(measure_motion(path, span, max_side=max_side, detector=detector, progress=progress),
                      noise_z, floor)  # fmt: skip


def measure_motion(
    path: str | Path,
    span: tuple[float | None, float | None] | None = None,
    *,
    max_side: int = 640,
    detector=None,
    progress: Callable[[int, int], None] | None = None,
) -> Motion:
    """Every frame's face crop and the AU regions' motion around it (the first half of :func:`spot_micro`)."""
    import cv2

    from emoreason.face.evidence import resolve_span
    from emoreason.io.errors import MediaError
    from emoreason.io.video import VideoFile, is_image

    started = time.perf_counter()
    if is_image(path):
        raise MediaError(f"{path}: micro-expressions need a video (a still image has no movement)")
    video = VideoFile(path, max_side)
    start_s, end_s = resolve_span(span, video.info.duration_s, str(path))
    stamps = video.stamps
    chosen = np.flatnonzero((stamps >= start_s - 1e-9) & (stamps < end_s - 1e-9))
    if len(chosen) == 0:
        chosen = np.array([int(np.searchsorted(stamps, start_s, side="right")) - 1]).clip(0)
    fps = _native_fps(stamps[chosen], video.info.fps)
    lag = max(2, int(round(LAG_S * fps)))
    regions, follower = _Regions(), _Follower(detector)
    rigid = list(RIGID_POINTS)
    crops: deque = deque(maxlen=2 * lag + 1)  # (frame index, time, crop), consecutive frames with a face
    rows: list[tuple] = []
    opening = np.full(len(chosen), np.nan)
    shape = np.full((len(chosen), len(REGIONS), 2), np.nan, np.float32)
    decode_s = track_s = flow_s = 0.0
    tick = time.perf_counter()
    for position, frame in enumerate(video.frames_at(stamps[chosen] + 1e-6)):
        decode_s += time.perf_counter() - tick
        tick = time.perf_counter()
        face = follower(frame.image)
        if face is None or face.landmarks is None:
            crops.clear()  # motion cannot be measured across a gap
            track_s += time.perf_counter() - tick
            tick = time.perf_counter()
            continue
        landmarks = np.asarray(face.landmarks, np.float64)
        to_crop = fit_similarity(landmarks[rigid], regions.target[rigid])
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY) if frame.image.ndim == 3 else frame.image
        crop = cv2.warpAffine(grey, to_crop, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        opening[position] = _eye_opening(landmarks)
        shape[position] = regions.landmarks(landmarks @ to_crop[:, :2].T + to_crop[:, 2])
        crops.append((position, frame.time_s, crop))
        track_s += time.perf_counter() - tick
        tick = time.perf_counter()
        if len(crops) == crops.maxlen:
            before, (centre_pos, centre_t, middle), after = crops[0][2], crops[lag], crops[-1][2]
            since = cv2.calcOpticalFlowFarneback(before, middle, None, *FARNEBACK)
            until = cv2.calcOpticalFlowFarneback(after, middle, None, *FARNEBACK)
            d, strain, head = regions.measure(since, with_strain=True)
            e, _, _ = regions.measure(until)
            rows.append((centre_pos, centre_t, d, e, strain, head))
            flow_s += time.perf_counter() - tick
        if progress:
            progress(position + 1, len(chosen))
        tick = time.perf_counter()
    timings = {"decode_s": round(decode_s, 3), "track_s": round(track_s, 3), "flow_s": round(flow_s, 3),
               "total_s": round(time.perf_counter() - started, 3)}  # fmt: skip
    return Motion(str(path), fps, len(chosen), int(np.isfinite(opening).sum()), float(end_s - start_s), lag, rows,
                  opening, timings, shape)  # fmt: skip


def find_micro(motion: Motion, noise_z: float = NOISE_Z, floor: float = FLOOR) -> MicroAnalysis:
    """The micro-expressions, blinks and rejected candidates in measured ``motion`` at these thresholds (cheap:
    a fit of the thresholds measures each clip once and calls this per setting)."""
    thresholds = {"noise_z": noise_z, "floor": floor, "lag_frames": motion.lag, "fps": motion.fps}
    analysis = MicroAnalysis(motion.source, motion.fps, motion.frames, motion.face_frames, motion.duration_s, [], [],
                             {"too long": 0, "head motion": 0, "did not return": 0}, thresholds, dict(motion.timings))  # fmt: skip
    if motion.face_frames == 0:
        analysis.warnings.append("no face found: no micro-expression can be spotted")
    elif not motion.rows:
        analysis.warnings.append(f"too short to spot: needs {2 * motion.lag + 1} consecutive frames with the face "
                                 f"({2 * LAG_S:.1f} s)")  # fmt: skip
    else:
        _find_events(analysis, motion.rows, _Regions(), motion.opening, noise_z, floor, motion.shape)
    return analysis


def _native_fps(stamps: np.ndarray, stated: float | None) -> float:
    steps = np.diff(stamps)
    steps = steps[steps > 0]
    if len(steps):
        return float(1.0 / np.median(steps))
    return float(stated) if stated else 25.0


def _find_events(analysis: MicroAnalysis, rows, regions: _Regions, opening, noise_z, floor, shape=None) -> None:
    positions = np.array([r[0] for r in rows])
    centre_times = np.array([r[1] for r in rows])
    d = np.stack([r[2] for r in rows])  # [N, R, 2]
    e = np.stack([r[3] for r in rows])
    strain = np.stack([r[4] for r in rows])  # [N, R]
    head = np.array([r[5] for r in rows])  # [N] the anchors' own motion, px
    width = max(1, int(round(SMOOTH_S * analysis.fps)))  # flow noise is frame to frame; a movement lasts >= 40 ms
    d, e = _smooth(d, width), _smooth(e, width)
    since, until = np.linalg.norm(d, axis=-1), np.linalg.norm(e, axis=-1)  # [N, R]
    agree = (d * e).sum(-1) > 0.5 * since * until  # the centre frame sits apart from both sides the same way
    moved = np.where(agree, np.minimum(since, until), 0.0)  # [N, R] px: moved from before and back after
    rest = np.median(since, axis=0)  # [R] resting level of each region (most frames are at rest)
    threshold = np.maximum(noise_z * rest, floor)
    signal = moved / threshold  # [N, R], >= 1: a movement that came back
    analysis.thresholds["regions_px"] = {name: round(float(t), 4) for name, t in zip(REGIONS, threshold)}
    analysis.series = pd.DataFrame({"time_s": centre_times, "signal": signal.max(1), "head_px": head} |
                                   {name: signal[:, i] for i, name in enumerate(REGIONS)})  # fmt: skip
    fps, lag = analysis.fps, analysis.thresholds["lag_frames"]
    active = signal.max(1) >= 1.0
    eye_distance = regions.eye_distance
    for start, stop in _runs(active, gap=max(1, int(round(0.02 * fps)))):
        peak = start + int(np.argmax(signal[start:stop].max(1)))
        region = int(np.argmax(signal[peak]))
        level = moved[:, region]
        edge = EDGE * level[peak]
        onset, offset = peak, peak
        while onset > 0 and level[onset - 1] > edge and positions[onset - 1] == positions[onset] - 1:
            onset -= 1
        while offset < len(level) - 1 and level[offset + 1] > edge and positions[offset + 1] == positions[offset] + 1:
            offset += 1
        top = np.flatnonzero(level[onset : offset + 1] >= 0.9 * level[peak]) + onset  # apex: middle of the top
        apex = int(top[len(top) // 2]) if len(top) else peak
        span_s = (positions[offset] - positions[onset] + 1) / fps
        names = [REGIONS[i] for i in np.flatnonzero(signal[peak] >= 1.0)]
        vectors = {REGIONS[i]: (d[apex, i] + e[apex, i]) / 2 for i in np.flatnonzero(signal[peak] >= 0.5)}
        event = {"onset_s": float(centre_times[onset]), "apex_s": float(centre_times[apex]),
                 "offset_s": float(centre_times[offset]) + 1 / fps}  # fmt: skip
        closing = _closes_eyes(opening, positions[onset], positions[offset], lag)
        lid = REGIONS.index("upper_lid")
        others = [signal[peak, i] for i, name in enumerate(REGIONS) if name not in EYE_REGIONS]
        lid_leads = region == lid and max(others) < BLINK_SHARE * signal[peak, lid] and d[peak, lid, 1] > 0
        if closing or lid_leads:  # the eyes closed (landmarks), or only the upper lids moved, and down
            if span_s <= BLINK_MAX_S:
                analysis.blinks.append(event)
            else:
                analysis.rejected["too long"] += 1
            continue
        if span_s > MAX_S + 1.5 / fps:
            analysis.rejected["too long"] += 1
            continue
        if head[peak] >= HEAD_SHARE * moved[peak, region] and head[peak] > noise_z * np.median(head):
            analysis.rejected["head motion"] += 1
            continue
        if _stayed(shape, positions[peak], lag, region) > RETURN_SHARE * moved[peak, region]:
            analysis.rejected["did not return"] += 1
            continue
        vectors = {k: v for k, v in vectors.items() if k != "upper_lid" or v[1] < 0}
        aus = region_aus(vectors)
        strengths = {name: float(signal[peak, REGIONS.index(name)]) for name in vectors}
        analysis.micro_expressions.append(MicroExpression(
            onset_s=event["onset_s"], apex_s=event["apex_s"], offset_s=event["offset_s"],
            onset_frame=int(positions[onset]), apex_frame=int(positions[apex]), offset_frame=int(positions[offset]),
            aus=aus, emotion=_emotion(aus, _au_levels(vectors, aus, strengths)), strength=float(signal[peak].max()),
            amplitude=float(moved[apex, region] / eye_distance), strain=float(strain[apex, region]), regions=names,
        ))  # fmt: skip


def _stayed(shape: np.ndarray | None, centre: int, lag: int, region: int) -> float:
    """How far the region's landmarks are from where they were ``lag`` frames before ``centre`` when ``lag`` frames
    after it (crop px; 0 where either frame has no face)."""
    if shape is None or centre - lag < 0 or centre + lag >= len(shape):
        return 0.0
    moved = float(np.linalg.norm(shape[centre + lag, region] - shape[centre - lag, region]))
    return moved if math.isfinite(moved) else 0.0


def _smooth(series: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` frames along the first axis (edges: the frames there are)."""
    if width <= 1 or len(series) < width:
        return series
    kernel = np.ones(width) / width
    flat = series.reshape(len(series), -1)
    counts = np.convolve(np.ones(len(series)), kernel, mode="same")
    out = np.stack([np.convolve(flat[:, j], kernel, mode="same") for j in range(flat.shape[1])], 1) / counts[:, None]
    return out.reshape(series.shape)


def _runs(active: np.ndarray, gap: int = 1) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of True, joining runs separated by at most ``gap`` False frames."""
    runs: list[list[int]] = []
    for i in np.flatnonzero(active):
        if runs and i - runs[-1][1] <= gap:
            runs[-1][1] = i + 1
        else:
            runs.append([int(i), int(i) + 1])
    return [(a, b) for a, b in runs]


def _closes_eyes(opening: np.ndarray, onset: int, offset: int, lag: int) -> bool:
    """Whether the landmarks' eye opening fell by at least a third during the event (against the lag before)."""
    before = opening[max(0, onset - lag) : onset + 1]
    during = opening[onset : offset + 1]
    if not np.isfinite(before).any() or not np.isfinite(during).any():
        return False
    rest = float(np.nanmedian(before))
    return rest > 0 and float(np.nanmin(during)) < rest * 2 / 3


def _au_levels(vectors: dict[str, np.ndarray], aus: list[str], strengths: dict[str, float]) -> dict[str, float]:
    """A 0-5 level for each AU: its region's movement against the strongest region's (the leading AU at 5)."""
    top = max(strengths.values(), default=0.0) or 1.0
    levels = {}
    for name, vector in vectors.items():
        for code in region_aus({name: vector}):
            code = "AU7" if code == "AU6" and "AU7" in aus else code
            if code in aus:
                levels[code] = max(levels.get(code, 0.0), 5.0 * strengths[name] / top)
    return levels


def _emotion(aus: list[str], levels: dict[str, float] | None = None) -> str | None:
    """The FACS prototype the AUs support (each at ``levels``, default C), or None when they support none."""
    from emoreason.reasoning.scoring import FULL_PRESENCE, best_emotion

    if not aus:
        return None
    label, _, _ = best_emotion({code: (levels or {}).get(code, FULL_PRESENCE) for code in aus})
    return None if label == "neutral" else label


def describe(events: list[dict]) -> list[str]:
    """One observation line per micro-expression, for the chain of thought."""
    lines = []
    for m in events:
        length = m["offset_s"] - m["onset_s"]
        aus = ", ".join(m["aus"]) or "no AU we can name"
        meaning = f"; {m['emotion']} would show these" if m.get("emotion") else ""
        lines.append(f"Micro-expression at {m['onset_s']:.2f}-{m['offset_s']:.2f} s ({length * 1000:.0f} ms, apex "
                     f"{m['apex_s']:.2f} s): {aus} moved briefly and returned to rest{meaning}")  # fmt: skip
    return lines


# ---------------------------------------------------------------------------------------------
# Recognition of one event from its onset and apex frames (spotted, or annotated as in CASME II)
# ---------------------------------------------------------------------------------------------

FEATURE_NAMES = tuple(f"{region}_{part}" for region in REGIONS for part in ("out", "down", "strain"))


@dataclass
class MicroReading:
    """One event read from its onset and apex frames: STSTNet's three channels (horizontal and vertical flow, optical
    strain) pooled in each AU region, and what they mean in FACS terms."""

    features: np.ndarray  # [len(FEATURE_NAMES)]: per region, flow outward and down (crop px) and strain
    aus: list[str]
    emotion: str | None
    vectors: dict[str, list[float]]  # region -> [outward, down], for the regions that moved


def read_onset_apex(onset: np.ndarray, apex: np.ndarray, detector=None) -> MicroReading | None:
    """The movement from ``onset`` to ``apex`` (RGB or grey frames of one face); ``None`` when no face is found.

    Both frames are warped by the onset face's rigid points (the same transform: the flow then holds the movement,
    and the rigid anchors' affine motion takes out a small head shift), the flow is Farneback's, and the AUs are
    those of the regions that moved at least half as far as the one that moved most."""
    import cv2

    from emoreason.face.blazeface import as_rgb

    onset, apex = as_rgb(np.asarray(onset)), as_rgb(np.asarray(apex))
    if onset.shape != apex.shape:
        raise ValueError(f"onset and apex frames differ in size: {onset.shape} vs {apex.shape}")
    faces = (detector or _default_detector()).detect(onset)
    if not faces:
        return None
    regions = _Regions()
    rigid = list(RIGID_POINTS)
    to_crop = fit_similarity(np.asarray(faces[0].landmarks, np.float64)[rigid], regions.target[rigid])
    crops = [cv2.warpAffine(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), to_crop, (CROP, CROP), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE) for image in (onset, apex)]  # fmt: skip
    flow = cv2.calcOpticalFlowFarneback(crops[0], crops[1], None, *FARNEBACK)
    vectors, strains, _ = regions.measure(flow, with_strain=True)
    features = np.concatenate([vectors, strains[:, None]], 1).ravel()
    norms = np.linalg.norm(vectors, axis=1)
    moved = {REGIONS[i]: vectors[i] for i in np.flatnonzero(norms >= max(0.5 * norms.max(), FLOOR))}
    aus = region_aus(moved)
    levels = _au_levels(moved, aus, {name: float(np.linalg.norm(v)) for name, v in moved.items()})
    return MicroReading(features, aus, _emotion(aus, levels), {k: [round(float(x), 4) for x in v]
                                                              for k, v in moved.items()})  # fmt: skip


_DETECTOR = None


def _default_detector():
    global _DETECTOR
    if _DETECTOR is None:
        from emoreason.face.detect import BlazeFaceDetector

        _DETECTOR = BlazeFaceDetector(landmarks="mesh")
    return _DETECTOR


def event_frames(media: str | Path, onset: float, apex: float, media_type: str = "video",
                 fps: float | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The onset and apex frames of an event: from a video by time (seconds), or from a frame folder (CASME II's
    ``img46.jpg`` ...) by frame number.

    Raises:
        MediaError: the file or folder is missing or unreadable, or holds no frame with that number.
    """
    from emoreason.io.errors import MediaError

    media = Path(media)
    if media_type == "frames":
        if not media.is_dir():
            raise MediaError(f"{media}: not a folder of frames")
        numbered = {}
        for file in media.iterdir():
            digits = "".join(ch for ch in file.stem if ch.isdigit())
            if digits and file.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"):
                numbered[int(digits)] = file
        missing = [int(n) for n in (onset, apex) if int(n) not in numbered]
        if missing:
            raise MediaError(f"{media}: no frame numbered {missing[0]} (it holds {len(numbered)} numbered images)")
        from emoreason.io.image import load_image

        return load_image(numbered[int(onset)]).image, load_image(numbered[int(apex)]).image
    from emoreason.io.video import VideoFile

    video = VideoFile(media)
    frames = {frame.index: frame.image for frame in video.frames_at(np.array([onset, apex]) + 1e-6)}
    index = video.indices_at(np.array([onset + 1e-6, apex + 1e-6]))
    return frames[int(index[0])], frames[int(index[-1])]


class MicroHead:
    """A head written by ``emoreason train micro`` (``micro_head.json``: plain numbers), applied to the features of
    :func:`read_onset_apex`: standardise, then the logistic regression's most likely class.

    Raises:
        MediaError: the file is missing; ValueError: it is not a micro head or its features differ from this
            version's.
    """

    def __init__(self, path: str | Path):
        import json

        from emoreason.io.errors import check_file

        data = json.loads(check_file(path).read_text())
        if not isinstance(data, dict) or data.get("features") != list(FEATURE_NAMES):
            raise ValueError(f"{path}: not a micro-expression head for these features ({len(FEATURE_NAMES)} flow "
                             f"numbers); retrain it with `emoreason train micro`")  # fmt: skip
        self.label_space, self.classes = data["label_space"], list(data["classes"])
        self.mean, self.scale = np.array(data["mean"]), np.array(data["scale"])
        self.coef, self.intercept = np.array(data["coef"]), np.array(data["intercept"])

    def __call__(self, features: np.ndarray) -> tuple[str, float]:
        """(label, probability) for one event's ``[F]`` features."""
        z = (np.asarray(features, np.float64) - self.mean) / np.where(self.scale > 0, self.scale, 1.0)
        logits = self.coef @ z + self.intercept
        if len(self.classes) == 2:  # sklearn's binary head has one row: the second class's logit
            p = 1.0 / (1.0 + np.exp(-logits[0]))
            return (self.classes[1], float(p)) if p >= 0.5 else (self.classes[0], float(1 - p))
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        return self.classes[best], float(probs[best])


def event_points(sample) -> tuple[float, float]:
    """Onset and apex of a sample: frame numbers for a frame folder, seconds for a video; without an apex the
    middle of onset and offset (MEGC's practice for CASME II's missing apexes)."""
    if sample.media_type == "frames":
        frames = sample.provenance["frames"]
        onset, apex, offset = frames["onset"], frames.get("apex"), frames.get("offset")
        return onset, apex if apex is not None else (onset + offset) // 2 if offset is not None else onset
    apex = sample.apex_s if sample.apex_s is not None else (
        (sample.onset_s + sample.offset_s) / 2 if sample.offset_s is not None else sample.onset_s)  # fmt: skip
    return sample.onset_s, apex


def prototype_label(emotion: str | None, space) -> str | None:
    """The FACS reading of an event (a basic emotion, or None) in the corpus's label space."""
    if emotion is None:
        return space.normalize("others") if "others" in space.labels else None
    return space.normalize(emotion)
