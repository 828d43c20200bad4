"""The sample schema every dataset adapter writes and every recipe reads (one JSON object per line).

A row loads with ``datasets.load_dataset("json", data_files=...)``: every row has every field, AUs are a
list of ``{"code", "intensity"}`` objects (Arrow-friendly), and unknown values are ``null``.

AU intensity follows FACS 0-5: ``0`` = annotated absent, ``1..5`` = A..E, ``null`` = annotated present
with no intensity (occurrence-only corpora). An AU not listed is unknown (not annotated).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from emoreason.au import AU_BY_CODE, LABEL_SPACES, normalize_emotion

MEDIA_TYPES = ("video", "image", "frames")  # "frames": a folder of images (BP4D, DISFA, CASME II sequences)
SPLITS = ("train", "validation", "test")


@dataclass
class AULabel:
    code: str  # canonical "AU12"
    intensity: float | None  # 0 absent, 1..5 A..E, None present with unknown intensity

    def __post_init__(self) -> None:
        if self.code not in AU_BY_CODE:
            raise ValueError(f"unknown AU {self.code!r}")
        if self.intensity is not None and not 0 <= self.intensity <= 5:
            raise ValueError(f"{self.code}: intensity must be in 0..5 or None, got {self.intensity}")


@dataclass
class Sample:
    dataset: str  # corpus name, e.g. "dfew"
    media: str  # path of the video, image or frame folder
    media_type: str = "video"
    start_s: float | None = None  # span within the media (None = whole file)
    end_s: float | None = None
    onset_s: float | None = None  # expression phases where annotated (micro-expressions, AU events)
    apex_s: float | None = None
    offset_s: float | None = None
    labels: list[str] = field(default_factory=list)  # in the corpus's own label space
    label_space: str = "basic"
    emotion: str | None = None  # canonical emotion (au.EMOTIONS) when the corpus label maps to one
    aus: list[AULabel] = field(default_factory=list)
    description: str | None = None  # free text (MAFW, EMER-style)
    subject: str | None = None  # for subject-independent splits
    split: str | None = None  # "train" / "validation" / "test", or a fold name like "fold3"
    rationale: str | None = None  # a chain-of-thought target, when one exists
    provenance: dict[str, Any] | None = None  # who made this row: adapter, synthesis round, model, reward
    id: str = ""

    def __post_init__(self) -> None:
        if self.media_type not in MEDIA_TYPES:
            raise ValueError(f"media_type must be one of {MEDIA_TYPES}, got {self.media_type!r}")
        self.aus = [a if isinstance(a, AULabel) else AULabel(**a) for a in self.aus]
        if self.emotion is None and self.labels:
            self.emotion = canonical_emotion(self.labels, self.label_space)
        if not self.id:
            self.id = sample_id(self.dataset, self.media, self.start_s, self.end_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown sample fields: {sorted(unknown)}")
        return cls(**data)

    def au_dict(self) -> dict[str, float | None]:
        return {a.code: a.intensity for a in self.aus}

    @property
    def span(self) -> tuple[float | None, float | None] | None:
        """``(start_s, end_s)`` of the sample inside its media (a BP4D/DISFA segment, a CASME II onset-offset
        clip), for :func:`emoreason.face.evidence.collect`; None when the sample is the whole file."""
        return None if self.start_s is None and self.end_s is None else (self.start_s, self.end_s)


def canonical_emotion(labels: list[str], label_space: str) -> str | None:
    """The canonical emotion of a single-label sample (None for compound or unmapped labels)."""
    space = LABEL_SPACES.get(label_space)
    if len(labels) != 1:
        return None
    if space is None:
        return normalize_emotion(labels[0])
    mapped = space.to_canonical.get(space.normalize(labels[0]) or "", ())
    return mapped[0] if len(mapped) == 1 else None


def sample_id(dataset: str, media: str, start_s: float | None, end_s: float | None) -> str:
    """Stable id: the same media and span always give the same id (deduplication, resume, leak checks)."""
    key = f"{dataset}|{media}|{start_s}|{end_s}"
    return f"{dataset}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
