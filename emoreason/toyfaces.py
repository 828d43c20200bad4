"""Toy faces: cartoon face videos whose Action Units are drawn from known labels.

A training benchmark where the answer is only in the pixels: each clip shows one cartoon face (the frame is the
face crop) going neutral -> expression -> neutral, with the FACS prototype AUs of its emotion (``au.PROTOTYPES``)
driving the geometry. Skin tone, face shape, background, head position and frame noise vary, so no one picture
solves it, and every person (skin tone x face shape) shows every emotion, so splits can be subject-independent.

>>> spec = random_clip("happiness", np.random.default_rng(0))
>>> render_clip(spec, size=64, fps=8, duration_s=2.0).shape
(16, 64, 64, 3)
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from emoreason.au import AU_CODES, EMOTIONS, PROTOTYPES
from emoreason.data.schema import Sample
from emoreason.synthetic import write_video

SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 90), (160, 102, 66), (120, 78, 52))
# Face shapes: (face half-width, eye offset from the midline, mouth half-width, hairline angle in degrees).
FACE_SHAPES = ((0.43, 0.165, 0.125, 52), (0.40, 0.155, 0.115, 58), (0.45, 0.175, 0.135, 48), (0.41, 0.16, 0.13, 62))
DRAWN_AUS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20")
DRAWN_AUS += ("AU23", "AU24", "AU25", "AU26", "AU43")  # AU45 (blink) is not drawn: it is never in a spec
_DARK, _SS = (40, 28, 24), 2  # feature ink; supersampling factor (drawn at 2x, box-filtered down)


@dataclass(frozen=True)
class ToyClip:
    """One clip: the expression (apex AU intensities and timing) and the nuisance look of the face."""

    emotion: str
    aus: dict[str, float]  # apex intensity 0..5 of each AU shown
    onset_s: float  # the expression starts rising
    apex_s: float  # middle of the apex plateau
    offset_s: float  # back to neutral
    hold_s: float  # length of the apex plateau
    tone: int  # index into SKIN_TONES
    shape: int  # index into FACE_SHAPES
    skin: tuple[int, int, int]
    background: tuple[int, int, int]
    shift: tuple[float, float] = (0.0, 0.0)  # head translation, fraction of the frame
    scale: float = 1.0
    noise: float = 0.0  # std of per-pixel Gaussian noise, grey levels
    side: int = 1  # which lip corner a unilateral AU14 pulls: -1 image left, +1 image right

    @property
    def subject(self) -> str:
        return f"tone{self.tone}-shape{self.shape}"

    def strength(self, times: np.ndarray) -> np.ndarray:
        """Expression strength 0..1 at `times`: raised-cosine rise, apex plateau, raised-cosine fall."""
        t = np.asarray(times, dtype=np.float64)
        top, release = self.apex_s - self.hold_s / 2, self.apex_s + self.hold_s / 2
        up = np.clip((t - self.onset_s) / (top - self.onset_s), 0, 1)
        down = np.clip((self.offset_s - t) / (self.offset_s - release), 0, 1)
        return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def random_clip(emotion: str, rng: np.random.Generator, tone: int | None = None, shape: int | None = None,
                duration_s: float = 2.0, distractor_p: float = 0.3) -> ToyClip:  # fmt: skip
    """A random clip of `emotion`: its prototype core AUs at apex 2.5-5, maybe one weak (< 1) distractor AU."""
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion must be one of {EMOTIONS}, got {emotion!r}")
    if duration_s < 1.0:
        raise ValueError(f"duration_s must be >= 1.0 to fit onset, apex and offset, got {duration_s}")
    core = PROTOTYPES[emotion].core if emotion in PROTOTYPES else ()
    level = rng.uniform(2.5, 5.0)
    aus = {code: float(np.clip(level + rng.normal(0, 0.3), 2.5, 5.0)) for code in core}
    if rng.random() < distractor_p:
        pool = [code for code in DRAWN_AUS if code not in core]
        aus[pool[rng.integers(len(pool))]] = float(rng.uniform(0.3, 0.9))
    onset = rng.uniform(0.2, 0.35 * duration_s)
    offset = rng.uniform(0.65 * duration_s, duration_s - 0.2)
    span = offset - onset
    hold = rng.uniform(0.1, 0.3) * span
    apex = rng.uniform(onset + 0.2 * span + hold / 2, offset - 0.2 * span - hold / 2)
    tone = int(rng.integers(len(SKIN_TONES))) if tone is None else tone
    shape = int(rng.integers(len(FACE_SHAPES))) if shape is None else shape
    skin = np.clip(np.array(SKIN_TONES[tone]) + rng.integers(-12, 13, 3), 0, 255)
    while True:  # a background that stands apart from the skin
        rgb = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.95))) * 255
        if np.linalg.norm(rgb - skin) > 90:
            break
    skin, rgb, shift = tuple(int(v) for v in skin), tuple(int(v) for v in rgb), rng.uniform(-0.03, 0.03, 2)
    look = (skin, rgb, (float(shift[0]), float(shift[1])), float(rng.uniform(0.94, 1.04)), float(rng.uniform(1, 4)))
    return ToyClip(emotion, aus, onset, apex, offset, hold, tone, shape, *look, int(rng.choice([-1, 1])))


class _Canvas:
    """Draws in face units (0..1, y down) with the clip's head shift and scale, at `_SS` x the output size."""

    def __init__(self, spec: ToyClip, size: int):
        self.spec, self.px = spec, size * _SS
        self.image = Image.new("RGB", (self.px, self.px), spec.background)
        self.draw = ImageDraw.Draw(self.image)
        self.skin = np.array(spec.skin, dtype=np.float64)

    def p(self, x: float, y: float) -> tuple[float, float]:
        s, (dx, dy) = self.spec.scale, self.spec.shift
        return (0.5 + s * (x - 0.5) + dx) * self.px, (0.5 + s * (y - 0.5) + dy) * self.px

    def w(self, width: float) -> int:
        return max(1, round(width * self.spec.scale * self.px))

    def tint(self, level: float) -> tuple[int, ...]:
        """A wrinkle colour: skin at level 0, a dark shade of it at level >= 1."""
        a = min(max(level, 0.0), 1.0) * 0.75
        return tuple(int(v) for v in self.skin * (1 - a) + self.skin * 0.35 * a)

    def line(self, points, fill, width: float) -> None:
        self.draw.line([self.p(x, y) for x, y in points], fill=fill, width=self.w(width), joint="curve")

    def poly(self, points, fill, outline=None) -> None:
        self.draw.polygon([self.p(x, y) for x, y in points], fill=fill, outline=outline)


def _curve(left, mid, right, n: int = 9) -> list[tuple[float, float]]:
    """Quadratic Bezier from `left` to `right` passing through `mid` at its halfway point."""
    (x0, y0), (x2, y2) = left, right
    cx, cy = 2 * mid[0] - (x0 + x2) / 2, 2 * mid[1] - (y0 + y2) / 2
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * np.array(left) + 2 * t * (1 - t) * np.array([cx, cy]) + t**2 * np.array(right)
    return [tuple(p) for p in pts]


def _upper_face(c: _Canvas, a, eye_dx: float) -> None:
    """Forehead lines, brows (AU1, AU2, AU4), eyes (AU5, AU6, AU7, AU43) and cheek lines (AU6)."""
    if a("AU1") + a("AU2") > 0:
        for y in (0.19, 0.225):
            c.line(_curve((0.38, y + 0.01), (0.5, y), (0.62, y + 0.01)), c.tint((a("AU1") + a("AU2")) / 6), 0.008)
    for s in (-1, 1):
        c.line([(0.5 + s * 0.012 * a("AU4"), 0.33), (0.5 + s * 0.012 * a("AU4"), 0.38)], c.tint(a("AU4") / 4), 0.01)
        ex, ey = 0.5 + s * eye_dx, 0.42
        inner = (0.5 + s * (0.075 - 0.006 * a("AU4")), 0.30 - 0.018 * a("AU1") + 0.011 * a("AU4") + 0.004 * a("AU9"))
        mid = (ex + s * 0.01, 0.275 - 0.007 * (a("AU1") + a("AU2")) + 0.008 * a("AU4"))
        outer = (ex + s * 0.11, 0.295 - 0.018 * a("AU2") + 0.004 * a("AU4"))
        c.line([inner, mid, outer], _DARK, 0.032)
        up = 0.042 * (1 + 0.13 * a("AU5") - 0.05 * a("AU7")) * max(1 - 0.19 * a("AU43"), 0.05)
        lo = 0.042 * max(1 + 0.04 * a("AU5") - 0.1 * a("AU6") - 0.08 * a("AU7"), 0.2)
        theta = np.linspace(0, np.pi, 12)
        top = [(ex + 0.075 * np.cos(q), ey - up * np.sin(q)) for q in theta]
        bottom = [(ex + 0.075 * np.cos(q), ey + lo * np.sin(q)) for q in theta[::-1]]
        c.poly(top + bottom, (250, 250, 250))
        r, iy = min(0.028, 0.9 * (up + lo) / 2), ey + (lo - up) / 2
        c.draw.ellipse([*c.p(ex - r, iy - r), *c.p(ex + r, iy + r)], fill=(70, 45, 30))
        c.draw.ellipse([*c.p(ex - r / 2, iy - r / 2), *c.p(ex + r / 2, iy + r / 2)], fill=(10, 10, 10))
        c.line(top, _DARK, 0.012)
        c.line(bottom, c.tint(0.6 + a("AU7") / 5), 0.007)
        if a("AU6") > 0:
            cy = ey + 0.075 - 0.008 * a("AU6")
            c.line(_curve((ex - 0.06, cy), (ex, cy + 0.015), (ex + 0.06, cy)), c.tint(a("AU6") / 3), 0.008)
            c.line([(ex + s * 0.085, ey), (ex + s * 0.115, ey + 0.02)], c.tint(a("AU6") / 3), 0.007)


def _nose(c: _Canvas, a) -> None:
    """Nose sides and base, nostrils (rise and widen with AU9) and bridge wrinkles (AU9)."""
    base, wide = 0.605 - 0.007 * a("AU9"), 0.045 + 0.004 * a("AU9")
    for s in (-1, 1):
        c.line([(0.5 + s * 0.025, 0.46), (0.5 + s * wide, base - 0.02)], c.tint(0.5), 0.008)
        c.draw.ellipse([*c.p(0.5 + s * 0.022 - 0.012, base - 0.008), *c.p(0.5 + s * 0.022 + 0.012, base + 0.008)],
                       fill=c.tint(1.0))  # fmt: skip
    c.line(_curve((0.5 - wide, base - 0.01), (0.5, base + 0.022), (0.5 + wide, base - 0.01)), c.tint(0.8), 0.009)
    for k in range(3):
        y = 0.45 + 0.02 * k
        c.line([(0.47, y), (0.5, y - 0.006), (0.53, y)], c.tint(a("AU9") / 3), 0.007)


def _mouth(c: _Canvas, a, half_width: float) -> None:
    """Lips through the corners (AU12, AU14, AU15, AU20, AU23, AU24), opening (AU10, AU25, AU26), folds."""
    corners = []
    for s in (-1, 1):
        pull = 0.009 * a("AU14") if s == c.spec.side else 0.0
        x = 0.5 + s * (half_width + 0.005 * a("AU12") + 0.016 * a("AU20") - 0.008 * a("AU23") - 0.003 * a("AU24"))
        x -= s * pull
        y = 0.75 - 0.013 * a("AU12") + 0.013 * a("AU15") + 0.003 * a("AU20") - 1.25 * pull
        corners.append((x, y))
    left, right = corners
    mx = (left[0] + right[0]) / 2
    thin = max(1 - 0.13 * a("AU23") - 0.1 * a("AU24") - 0.06 * a("AU20"), 0.2)
    gap = max(0.008 * a("AU25") + 0.022 * a("AU26") + 0.004 * a("AU10") - 0.004 * a("AU17"), 0.0)
    upper_in = 0.75 - 0.007 * a("AU10") - 0.25 * gap
    lower_in = 0.75 + 0.75 * gap - 0.005 * a("AU17")
    lip = tuple(int(v) for v in c.skin * 0.5 + np.array([150.0, 40, 50]) * 0.5)
    upper = _curve(left, (mx, upper_in - 0.022 * thin), right)
    lower = _curve(left, (mx, lower_in + 0.028 * thin), right)
    c.poly(upper + lower[::-1], lip)
    inner_top, inner_bottom = _curve(left, (mx, upper_in), right), _curve(left, (mx, lower_in), right)
    if gap > 0.002:
        c.poly(inner_top + inner_bottom[::-1], (60, 20, 25))
    c.line(inner_top, _DARK, 0.008)
    c.line(inner_bottom, _DARK, 0.008)
    fold = max(0.6 * a("AU9"), a("AU10"), 0.7 * a("AU12")) / 5
    for s, (x, y) in ((-1, left), (1, right)):
        c.line(_curve((0.5 + s * 0.06, 0.6), (x + s * 0.035, (0.6 + y) / 2), (x + s * 0.02, y)), c.tint(fold), 0.007)
        if s == c.spec.side and a("AU14") > 0:
            c.line([(x + s * 0.015, y - 0.02), (x + s * 0.022, y + 0.015)], c.tint(a("AU14") / 3), 0.008)
    chin = lower_in + 0.028 * thin + 0.06
    c.line(_curve((0.45, chin), (0.5, chin + 0.012), (0.55, chin)), c.tint(a("AU17") / 4), 0.008)


def draw_face(spec: ToyClip, aus: dict[str, float], size: int = 112) -> np.ndarray:
    """One noise-free frame of `spec`'s face showing `aus` (code -> intensity 0..5), ``[size, size, 3]`` uint8."""
    c = _Canvas(spec, size)

    def a(code: str) -> float:
        return float(aus.get(code, 0.0))

    half_width, eye_dx, mouth_width, hairline = FACE_SHAPES[spec.shape]
    face = [*c.p(0.5 - half_width, 0.04), *c.p(0.5 + half_width, 0.96 + 0.012 * a("AU26"))]  # AU26: chin lower
    c.draw.ellipse(face, fill=spec.skin)
    c.draw.chord(face, 180 + hairline, 360 - hairline, fill=(50 + 12 * spec.shape, 35, 25))
    _upper_face(c, a, eye_dx)
    _nose(c, a)
    _mouth(c, a, mouth_width)
    return np.asarray(c.image.reduce(_SS))


def toy_frames(spec: ToyClip, times, size: int = 112, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frames of `spec` at `times` (seconds), ``[T, size, size, 3]`` uint8; `rng` adds the clip's frame noise."""
    strength = spec.strength(np.atleast_1d(times))
    frames = np.stack([draw_face(spec, {k: v * s for k, v in spec.aus.items()}, size) for s in strength])
    if rng is None or spec.noise <= 0:
        return frames
    noise = rng.standard_normal(frames.shape, dtype=np.float32) * spec.noise
    return np.clip(frames + noise, 0, 255).round().astype(np.uint8)


def render_clip(spec: ToyClip, size: int = 112, fps: float = 8.0, duration_s: float = 2.0,
                rng: np.random.Generator | None = None) -> np.ndarray:  # fmt: skip
    """The whole clip, one frame every ``1 / fps`` s from 0: ``[round(duration_s * fps), size, size, 3]`` uint8."""
    return toy_frames(spec, np.arange(round(duration_s * fps)) / fps, size, rng)


def _shares(total: int, fractions: dict[str, float], minimum: int = 0) -> dict[str, int]:
    """Split `total` by `fractions` (largest remainder), each share at least `minimum`."""
    raw = {k: total * f / sum(fractions.values()) for k, f in fractions.items()}
    shares = {k: max(int(v), minimum) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: int(raw[k]) - raw[k])[: max(total - sum(shares.values()), 0)]:
        shares[k] += 1
    return shares


def make_toy_dataset(out_dir: str | Path, n: int, seed: int = 0, split_fractions: dict[str, float] | None = None,
                     size: int = 112, fps: float = 8.0, duration_s: float = 2.0,
                     emotions: tuple[str, ...] = EMOTIONS) -> Path:  # fmt: skip
    """Write `n` toy clips (``clips/*.mp4``, no audio) and their samples (``toy.jsonl``) under `out_dir`.

    Emotions are balanced overall and within each split; splits are by subject (skin tone x face shape), and every
    subject shows every emotion. Each row annotates all AUs: the clip's apex intensities, 0 for the rest.

    Returns:
        The path of ``toy.jsonl``.
    """
    fractions = dict(split_fractions or {"train": 0.8, "test": 0.2})
    persons = [(t, s) for t in range(len(SKIN_TONES)) for s in range(len(FACE_SHAPES))]
    if any(f <= 0 for f in fractions.values()) or len(fractions) > len(persons):
        raise ValueError(f"split_fractions must be positive, at most {len(persons)} splits, got {fractions}")
    rng = np.random.default_rng(seed)
    persons = [persons[i] for i in rng.permutation(len(persons))]
    plan, start, clips = [], 0, _shares(n, fractions)
    for split, share in _shares(len(persons), fractions, minimum=1).items():
        members, start = persons[start : start + share], start + share
        for j in range(clips[split]):  # each member shows every emotion; the emotion cycle runs on across splits
            plan.append((split, emotions[len(plan) % len(emotions)], members[(j // len(emotions)) % len(members)]))
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, k in enumerate(rng.permutation(len(plan))):
        split, emotion, (tone, shape) = plan[k]
        clip_rng = np.random.default_rng([seed, i])
        spec = random_clip(emotion, clip_rng, tone, shape, duration_s)
        media = f"clips/s{seed}-{i:05d}.mp4"
        write_video(out_dir / media, render_clip(spec, size, fps, duration_s, clip_rng), fps)
        aus = [{"code": code, "intensity": round(spec.aus.get(code, 0.0), 1)} for code in AU_CODES]
        sample = Sample(dataset="toyfaces", media=media, media_type="video", onset_s=round(spec.onset_s, 3),
                        apex_s=round(spec.apex_s, 3), offset_s=round(spec.offset_s, 3), labels=[emotion],
                        label_space="basic", aus=aus, subject=spec.subject, split=split,
                        provenance={"generator": "toyfaces", "seed": seed, "index": i})  # fmt: skip
        rows.append(sample.to_json())
    path = out_dir / "toy.jsonl"
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    os.replace(partial, path)  # never a half-written toy.jsonl
    return path


__all__ = ["DRAWN_AUS", "ToyClip", "draw_face", "make_toy_dataset", "random_clip", "render_clip", "toy_frames"]
