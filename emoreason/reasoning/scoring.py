"""How strongly a set of AU intensities supports each emotion, from the FACS prototypes.

The same function scores the rules backend's conclusion, the segments of a clip, and (in training)
whether a model's cited AUs support the emotion it concludes, so all three agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from emoreason.au import EMOTIONS, PROTOTYPES

FULL_PRESENCE = 3.0  # intensity C counts as fully present
NEUTRAL_WEIGHT = 0.35  # neutral's score when no expressive AU is present at all
MIN_EMOTION_SCORE = 0.2  # below this the face reads as neutral
_NOT_EXPRESSIVE = frozenset({"AU25", "AU43", "AU45"})  # lips apart, eyes closed: states, not emotions


def presence(intensity: float) -> float:
    return min(max(float(intensity) / FULL_PRESENCE, 0.0), 1.0)


def prototype_support(aus: Mapping[str, float], emotion: str) -> float:
    """0..1: coverage of the emotion's core AUs, lifted by supporting AUs, cut by contrary ones."""
    proto = PROTOTYPES[emotion]
    core = sum(presence(aus.get(code, 0.0)) for code in proto.core) / len(proto.core)
    support = (
        sum(presence(aus.get(code, 0.0)) for code in proto.supporting) / len(proto.supporting)
        if proto.supporting
        else 0.0
    )
    against = max((presence(aus.get(code, 0.0)) for code in proto.against), default=0.0)
    return core * (0.85 + 0.15 * support) * (1.0 - 0.7 * against)


def emotion_scores(aus: Mapping[str, float]) -> dict[str, float]:
    """Normalised scores over :data:`EMOTIONS` (sum to 1) for AU intensities ``{code: 0..5}``."""
    raw = {emotion: prototype_support(aus, emotion) for emotion in PROTOTYPES}
    expressive = max((presence(v) for c, v in aus.items() if c not in _NOT_EXPRESSIVE), default=0.0)
    raw["neutral"] = NEUTRAL_WEIGHT * (1.0 - expressive) + (0.15 if max(raw.values()) < MIN_EMOTION_SCORE else 0.0)
    total = sum(raw.values()) or 1.0
    return {emotion: raw[emotion] / total for emotion in EMOTIONS}


def best_emotion(aus: Mapping[str, float]) -> tuple[str, float, dict[str, float]]:
    """(label, confidence, all scores): the top emotion, or neutral when no prototype is supported."""
    scores = emotion_scores(aus)
    raw_best = max(PROTOTYPES, key=lambda e: prototype_support(aus, e))
    if prototype_support(aus, raw_best) < MIN_EMOTION_SCORE:
        return "neutral", scores["neutral"], scores
    label = max(scores, key=scores.get)
    return label, scores[label], scores


def supports(aus: Mapping[str, float] | list[str], emotion: str) -> bool:
    """Whether the AUs (intensities, or a list of cited codes read as intensity C) fit ``emotion``."""
    if not isinstance(aus, Mapping):
        aus = {code: FULL_PRESENCE for code in aus}
    if emotion == "neutral":
        return best_emotion(aus)[0] == "neutral"
    if emotion not in PROTOTYPES:
        return False
    return prototype_support(aus, emotion) >= MIN_EMOTION_SCORE
