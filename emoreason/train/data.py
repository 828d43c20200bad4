"""Training data: sample rows -> conversations -> model inputs, with media preprocessed once and cached.

Each sample's media are read in one pass over its span (:func:`emoreason.face.evidence.collect`): face crops from
the face pipeline (detect, track, align the main face) or, for media that already is a face crop (``crops:
frames``, e.g. the synthetic toy faces), the frames themselves; the span's audio; the textualised evidence. They
are computed once and stored in ``cache_dir`` keyed by the sample id and the preprocessing settings, so later
epochs and runs never repeat face detection.
Unreadable media are skipped and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from emoreason.answer import AUClaim, render_answer
from emoreason.au import AU_CODES, intensity_letter
from emoreason.constants import DEFAULT_ANALYSIS_FPS
from emoreason.data.schema import Sample
from emoreason.face.evidence import CROP_MODES, Sampling, collect
from emoreason.io.errors import MediaError

logger = logging.getLogger(__name__)

TARGET_STYLES = ("facs", "compact")  # the SFT target: the FACS reasoner's full chain of thought, or one line


@dataclass
class MediaConfig:
    crops: str = "detect"  # "detect": the main face, aligned; "frames": the frames are face crops already
    fps: float = DEFAULT_ANALYSIS_FPS
    evidence: bool = True  # put the measured AU/prosody text into the prompt
    use_audio: bool = True

    def __post_init__(self) -> None:
        if self.crops not in CROP_MODES:
            raise ValueError(f"crops: expected one of {CROP_MODES}, got {self.crops!r}")

    def key(self) -> str:
        # "pass": 2 since samples are read over their span only (entries made before hold the whole video)
        return hashlib.sha1(json.dumps(self.__dict__ | {"pass": 2}, sort_keys=True).encode()).hexdigest()[:8]

    def sampling(self, model_crops: int) -> Sampling:
        """What :func:`~emoreason.face.evidence.collect` keeps of a sample for a model taking ``model_crops``."""
        return Sampling(fps=self.fps, model_crops=model_crops, crop_mode=self.crops, audio=self.use_audio)


@dataclass
class Prepared:
    crops: np.ndarray | None  # [T, S, S, 3] uint8
    waveform: np.ndarray | None  # [N] float32 at 16 kHz
    evidence: str | None


@dataclass
class CacheStats:
    hits: int = 0
    computed: int = 0
    skipped: Counter = field(default_factory=Counter)


def prepare_media(sample: Sample, processor, config: MediaConfig) -> Prepared:
    """Crops, audio and evidence text of one sample's span, from one pass over its media (MediaError if unusable)."""
    from emoreason.backends.rules import RulesBackend

    use_audio = config.use_audio and sample.media_type == "video"
    sampling = replace(config.sampling(processor.max_frames), audio=use_audio)
    evidence = collect(sample.media, span=sample.span, sampling=sampling)
    if config.crops == "frames":
        return Prepared(evidence.crops, evidence.waveform, None)
    if evidence.faces_found == 0 or evidence.crops is None:
        raise MediaError(f"{sample.media}: no face found")
    text = None
    if config.evidence:
        report = RulesBackend().explain(evidence)
        text = processor.textualize(aus=report.aus, prosody_cues=(report.audio or {}).get("cues"))
    return Prepared(evidence.crops, evidence.waveform, text or None)


class MediaCache:
    """``get(sample)`` returns the sample's :class:`Prepared` media, computing it at most once."""

    def __init__(self, cache_dir: str | Path, processor, config: MediaConfig):
        self.dir = Path(cache_dir) / config.key()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.processor, self.config = processor, config
        self.stats = CacheStats()

    def path(self, sample: Sample) -> Path:
        """The sample's cache entry: keyed by its id, its media (a moved corpus is not a cache hit) and the
        preprocessing settings (the folder); also the key of what is computed from these media later."""
        media = hashlib.sha1(str(Path(sample.media).resolve()).encode()).hexdigest()[:8]
        return self.dir / f"{sample.id}-{media}.pt"

    def get(self, sample: Sample) -> Prepared | None:
        path = self.path(sample)
        if path.is_file():
            self.stats.hits += 1
            data = torch.load(path, weights_only=False)
            return Prepared(**data) if data else None
        try:
            prepared = prepare_media(sample, self.processor, self.config)
            data = prepared.__dict__
        except MediaError as exc:
            logger.warning("skipping %s: %s", sample.id, exc)
            self.stats.skipped[str(exc).split(": ", 1)[-1][:60]] += 1
            prepared, data = None, {}
        # a name of this process's own: with several training processes (accelerate) two may prepare the same
        # sample at once, and a shared temporary name made one's rename fail after the other's
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        torch.save(data, tmp)
        tmp.replace(path)  # atomic: a killed run never leaves a half-written cache entry; the last writer wins
        self.stats.computed += 1
        return prepared


def target_text(sample: Sample, style: str = "facs") -> str | None:
    """The SFT target: the sample's rationale, else one written from its labels.

    ``style="facs"``: the FACS reasoner's chain of thought (observations with timing, interpretation against the
    prototypes, conclusion; 300-700 tokens). ``style="compact"``: one line naming the present AUs with their
    intensity letters and the conclusion, and the same answer JSON (50-200 tokens), for small models and short
    generation budgets. ``None`` when the sample has neither a rationale nor an emotion label.
    """
    if sample.rationale:
        return sample.rationale
    if style not in TARGET_STYLES:
        raise ValueError(f"style: expected one of {TARGET_STYLES}, got {style!r}")
    import random

    from emoreason.data.synth import label_aus, rules_target, verify

    if style == "compact":
        return compact_target(sample, label_aus(sample))
    target = rules_target(sample, random.Random(sample.id), label_aus(sample))
    if target is not None and verify(target, sample) is None:
        return target
    if sample.emotion is None:
        return None
    # no AU evidence that supports the label: an answer-only target still teaches the format and the label
    return render_answer("The AU evidence is not annotated for this clip.", sample.emotion, 1.0, [])


def compact_target(sample: Sample, evidence: list) -> str | None:
    """``<think>Observations: AU6 C, AU12 B. Conclusion: happiness.</think><answer>{...}</answer>`` from the
    labelled AUs (``evidence``: AUReports) and the gold emotion; ``None`` without an emotion label.

    The JSON states each AU at its letter's level (C = 3.0), the FACS intensity scale DISFA and BP4D annotate in,
    not at the label's decimals: the answer says how strongly once, and the JSON restates it (a copy, not a
    number the LM cannot see). Measured on the toy faces (the learning proof's v19 and v20, BENCHMARKS.md), the
    80-step smol SFT learned neither: it writes the training mean with decimals (3.6), the commonest level without
    (4.0), whatever its letter."""
    if sample.emotion is None:
        return None
    letters = [intensity_letter(a.intensity) for a in evidence]
    seen = ", ".join(f"{a.code} {letter}" for a, letter in zip(evidence, letters)) or "no Action Unit active"
    reasoning = f"Observations: {seen}. Conclusion: {sample.emotion}."
    claims = [AUClaim(a.code, float("ABCDE".index(letter) + 1) if letter != "-" else round(a.intensity, 1))
              for a, letter in zip(evidence, letters)]  # fmt: skip
    return render_answer(reasoning, sample.emotion, 1.0, claims)


def au_targets(sample: Sample) -> torch.Tensor:
    """``[A]`` AU head targets: 1 present, 0 absent, NaN not annotated."""
    values = torch.full((len(AU_CODES),), float("nan"))
    for au in sample.aus:
        values[AU_CODES.index(au.code)] = 1.0 if au.intensity is None or au.intensity >= 1 else 0.0
    return values


def au_intensity_targets(sample: Sample) -> torch.Tensor:
    """``[A]`` intensity head targets: the intensity (0-5) of each AU annotated present with one, NaN elsewhere
    (absent, occurrence-only, not annotated): the head says how strongly where the AU head says whether."""
    values = torch.full((len(AU_CODES),), float("nan"))
    for au in sample.aus:
        if au.intensity is not None and au.intensity >= 1:
            values[AU_CODES.index(au.code)] = min(float(au.intensity), 5.0)
    return values
