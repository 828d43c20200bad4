"""EmotionReport: the one result schema of every backend (rules, hf, vllm).

JSON-serialisable through :meth:`EmotionReport.to_dict`; the per-frame analysis table travels with
the report in memory (``frames``) but is not part of its JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import pandas as pd

from emoreason.au import AU_BY_CODE, intensity_letter


@dataclass
class AUReport:
    code: str
    intensity: float  # at the apex, 0..5
    onset_s: float | None = None  # None for still images
    apex_s: float | None = None
    offset_s: float | None = None
    name: str = ""
    level: str = ""  # FACS letter A-E
    # every occurrence in time order, [{"onset_s", "apex_s", "offset_s", "intensity"}]; the fields above hold the
    # strongest (empty for still images and for answers that give one timing)
    events: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.code not in AU_BY_CODE:
            raise ValueError(f"unknown AU code {self.code!r}")
        self.name = self.name or AU_BY_CODE[self.code].name
        self.level = self.level or intensity_letter(self.intensity)


@dataclass
class EmotionScore:
    label: str
    confidence: float
    alternatives: list[dict[str, float | str]] = field(default_factory=list)  # [{"label", "confidence"}]


@dataclass
class Segment:
    start_s: float
    end_s: float
    emotion: EmotionScore
    aus: list[dict[str, float | str]] = field(default_factory=list)  # [{"code", "intensity"}]


@dataclass
class EmotionReport:
    """What the face (and voice) in one video or image shows, and the reasoning from it.

    ``emotion`` is ``None`` when no face was found: no emotion is claimed without a face.
    """

    source: str
    media_type: str  # "video" | "image"
    duration_s: float
    frames_analyzed: int
    faces_found: int
    aus: list[AUReport]
    emotion: EmotionScore | None
    segments: list[Segment]
    reasoning: str  # the chain of thought: observations, interpretation, conclusion
    answer: str | None  # as a model writes it: <think>...</think><answer>{json}</answer>; None without a face
    backend: str  # "rules" | "hf" | "vllm"
    model: str | None = None
    audio: dict[str, Any] | None = None  # prosody measurements and text cues; None for images
    main_face: dict[str, Any] | None = None  # track id, frames present, median box
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    span: list[float] | None = None  # [start_s, end_s] analysed, on the source's timeline; None = the whole file
    # one entry per tracked person, the main face first (its entry repeats the top-level fields):
    # {"track_id", "is_main", "frames_present", "first_seen_s", "last_seen_s", "median_box", "emotion", "aus",
    #  "segments", "reasoning"}; the rules backend fills it, model backends explain the main face only
    faces: list[dict[str, Any]] = field(default_factory=list)
    # micro-expressions of the main face, spotted at the native frame rate (explain(..., micro=True)): [{"onset_s",
    # "apex_s", "offset_s", "onset_frame", "apex_frame", "offset_frame", "aus", "emotion", "strength", "amplitude",
    # "strain", "regions"}]; None when not looked for. micro_analysis: fps, frames, blinks, rejected, thresholds
    micro_expressions: list[dict[str, Any]] | None = None
    micro_analysis: dict[str, Any] | None = None
    frames: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    # in memory only, like `frames`: the Evidence the report was made from (key frames for the visual report)
    evidence: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in _IN_MEMORY}
        return _json_safe({k: asdict(v) if is_dataclass(v) else v for k, v in fields.items()} | {
            "aus": [asdict(a) for a in self.aus], "segments": [asdict(s) for s in self.segments]})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per AU found: code, name, level, intensity, onset, apex, offset."""
        columns = ["code", "name", "level", "intensity", "onset_s", "apex_s", "offset_s"]
        return pd.DataFrame([asdict(au) for au in self.aus], columns=columns)

    def summary(self) -> str:
        """A few human-readable lines: the conclusion and the AUs behind it."""
        if self.faces_found == 0:
            return f"{self.source}: no face found; no emotion claimed."
        if self.emotion is None:
            return f"{self.source}: no emotion claimed ({self.backend} backend; see the warnings)."
        head = f"{self.source}: {self.emotion.label} (confidence {self.emotion.confidence:.2f})"
        aus = ", ".join(f"{a.code} {a.level}" for a in self.aus) or "no AU above trace level"
        lines = [head, f"AUs: {aus}"]
        if self.micro_expressions is not None:
            found = ", ".join(f"{' '.join(m['aus']) or 'movement'} at {m['apex_s']:.2f} s"
                              for m in self.micro_expressions)  # fmt: skip
            lines.append(f"Micro-expressions: {found or 'none'}")
        return "\n".join(lines)


_IN_MEMORY = ("frames", "evidence")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value
