"""Facial Action Units, emotion labels and FACS emotion prototypes: the one source of truth.

Every module that names an AU or an emotion imports it from here. AU codes are always written
``"AU1"``, ``"AU12"`` (no zero padding); :func:`normalize_au` turns the spellings found in corpora
(``"AU06"``, ``"au_12"``, ``"12"``, ``"AU12_r"``, ``"R12A"``) into that form.

The prototypes follow the EMFACS / FACS Investigator's Guide predictions (Ekman, Friesen & Hager,
2002) as tabulated in most AU-based emotion work (e.g. ExpLLM, Facial-R1): ``core`` AUs define the
expression, ``supporting`` AUs often accompany it, ``against`` AUs argue against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActionUnit:
    number: int
    name: str
    description: str  # what moves, in plain words
    region: str  # one of REGIONS
    muscles: str

    @property
    def code(self) -> str:
        return f"AU{self.number}"


# Face regions, top to bottom. The model's face compressor uses one query group per region.
REGIONS = ("brow", "eye", "cheek", "nose", "mouth", "jaw")

ACTION_UNITS: tuple[ActionUnit, ...] = (
    ActionUnit(1, "Inner Brow Raiser", "the inner ends of the eyebrows rise", "brow", "frontalis, pars medialis"),
    ActionUnit(2, "Outer Brow Raiser", "the outer ends of the eyebrows rise", "brow", "frontalis, pars lateralis"),
    ActionUnit(
        4,
        "Brow Lowerer",
        "the brows are lowered and drawn together",
        "brow",
        "corrugator supercilii, depressor supercilii",
    ),
    ActionUnit(
        5, "Upper Lid Raiser", "the upper eyelids rise and widen the eyes", "eye", "levator palpebrae superioris"
    ),
    ActionUnit(
        6,
        "Cheek Raiser",
        "the cheeks rise and narrow the eyes from below",
        "cheek",
        "orbicularis oculi, pars orbitalis",
    ),
    ActionUnit(
        7,
        "Lid Tightener",
        "the eyelids tighten and narrow the eye opening",
        "eye",
        "orbicularis oculi, pars palpebralis",
    ),
    ActionUnit(
        9, "Nose Wrinkler", "the nose wrinkles and the nostrils rise", "nose", "levator labii superioris alaeque nasi"
    ),
    ActionUnit(10, "Upper Lip Raiser", "the upper lip rises toward the nose", "mouth", "levator labii superioris"),
    ActionUnit(12, "Lip Corner Puller", "the lip corners are pulled up and out", "mouth", "zygomaticus major"),
    ActionUnit(14, "Dimpler", "the lip corners tighten and pull inward", "mouth", "buccinator"),
    ActionUnit(15, "Lip Corner Depressor", "the lip corners are pulled down", "mouth", "depressor anguli oris"),
    ActionUnit(17, "Chin Raiser", "the chin boss pushes the lower lip up", "jaw", "mentalis"),
    ActionUnit(20, "Lip Stretcher", "the lips are stretched sideways", "mouth", "risorius"),
    ActionUnit(23, "Lip Tightener", "the lips tighten and narrow", "mouth", "orbicularis oris"),
    ActionUnit(24, "Lip Pressor", "the lips press together", "mouth", "orbicularis oris"),
    ActionUnit(25, "Lips Part", "the lips part", "mouth", "depressor labii inferioris, relaxed mentalis"),
    ActionUnit(26, "Jaw Drop", "the jaw drops and the mouth opens", "jaw", "masseter relaxed, pterygoids"),
    ActionUnit(43, "Eyes Closed", "the eyes are closed", "eye", "relaxed levator palpebrae superioris"),
    ActionUnit(45, "Blink", "the eyes close and reopen quickly", "eye", "orbicularis oculi, levator relaxed"),
)

AU_BY_CODE: dict[str, ActionUnit] = {au.code: au for au in ACTION_UNITS}
AU_CODES: tuple[str, ...] = tuple(AU_BY_CODE)

_AU_PATTERN = re.compile(r"^\s*(?:au)?[\s_-]*0*(\d{1,2})[a-eA-E]?(?:[_-][a-z]+)?\s*$", re.IGNORECASE)


def normalize_au(code: str | int) -> str | None:
    """Return the canonical ``"AU<n>"`` code for a spelling of an AU, or ``None`` if it is not one.

    >>> normalize_au("AU06"), normalize_au("au_12"), normalize_au(25), normalize_au("R12A")
    ('AU6', 'AU12', 'AU25', 'AU12')
    """
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        text = str(code)
    elif isinstance(code, str):
        text = code.strip()
        if text[:1] in "rRlL" and text[1:2].isdigit():  # unilateral FACS notation, e.g. R12A
            text = text[1:]
    else:
        return None
    match = _AU_PATTERN.match(text)
    if not match:
        return None
    return f"AU{int(match.group(1))}"


def known_au(code: str | int) -> str | None:
    """Like :func:`normalize_au`, but ``None`` unless the AU is one emoreason defines."""
    canonical = normalize_au(code)
    return canonical if canonical in AU_BY_CODE else None


def intensity_letter(intensity: float) -> str:
    """FACS intensity letter (A-E) for a 0-5 intensity; ``"-"`` when below A."""
    level = int(round(float(intensity)))
    return "ABCDE"[min(level, 5) - 1] if level >= 1 else "-"


# ---------------------------------------------------------------------------------------------
# Emotions
# ---------------------------------------------------------------------------------------------

EMOTIONS: tuple[str, ...] = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")

EMOTION_SYNONYMS: dict[str, str] = {
    "angry": "anger",
    "anger": "anger",
    "annoyed": "anger",
    "annoyance": "anger",
    "rage": "anger",
    "irritated": "anger",
    "irritation": "anger",
    "furious": "anger",
    "frustrated": "anger",
    "contempt": "contempt",
    "contemptuous": "contempt",
    "scorn": "contempt",
    "disdain": "contempt",
    "disgust": "disgust",
    "disgusted": "disgust",
    "revulsion": "disgust",
    "aversion": "disgust",
    "fear": "fear",
    "afraid": "fear",
    "fearful": "fear",
    "scared": "fear",
    "terror": "fear",
    "anxious": "fear",
    "happiness": "happiness",
    "happy": "happiness",
    "joy": "happiness",
    "joyful": "happiness",
    "amusement": "happiness",
    "amused": "happiness",
    "pleased": "happiness",
    "smile": "happiness",
    "sadness": "sadness",
    "sad": "sadness",
    "sorrow": "sadness",
    "unhappy": "sadness",
    "grief": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
    "astonished": "surprise",
    "amazement": "surprise",
    "neutral": "neutral",
    "calm": "neutral",
    "none": "neutral",
    "no emotion": "neutral",
}


def normalize_emotion(label: object) -> str | None:
    """Canonical emotion for a label or synonym (case-insensitive), ``None`` if unknown.

    >>> normalize_emotion("Happy"), normalize_emotion("scared"), normalize_emotion("bored")
    ('happiness', 'fear', None)
    """
    if not isinstance(label, str):
        return None
    return EMOTION_SYNONYMS.get(" ".join(label.strip().lower().replace("_", " ").split()))


@dataclass(frozen=True)
class LabelSpace:
    """A corpus's label vocabulary and how each label maps to the canonical emotions.

    A compound label (``"happily surprised"``) maps to several canonical emotions; a label with no
    canonical counterpart (``"helplessness"``) maps to none and is scored only within its own space.
    """

    name: str
    labels: tuple[str, ...]
    to_canonical: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.to_canonical) - set(self.labels)
        if unknown:
            raise ValueError(f"LabelSpace {self.name!r}: to_canonical names labels not in labels: {sorted(unknown)}")

    def normalize(self, label: object) -> str | None:
        """The label as spelled in this space, accepting canonical synonyms; ``None`` if outside it."""
        if not isinstance(label, str):
            return None
        text = " ".join(label.strip().lower().replace("_", " ").split())
        if text in self.labels:
            return text
        canonical = normalize_emotion(text)
        for own in self.labels:
            if self.to_canonical.get(own, (own,)) == (canonical,):
                return own
        return None


BASIC = LabelSpace("basic", EMOTIONS, {e: (e,) for e in EMOTIONS})
# RAF-DB compound expressions (Li et al., 2017).
COMPOUND = LabelSpace(
    "compound",
    (
        "happily surprised",
        "happily disgusted",
        "sadly fearful",
        "sadly angry",
        "sadly surprised",
        "sadly disgusted",
        "fearfully angry",
        "fearfully surprised",
        "angrily surprised",
        "angrily disgusted",
        "disgustedly surprised",
    ),
    {
        "happily surprised": ("happiness", "surprise"),
        "happily disgusted": ("happiness", "disgust"),
        "sadly fearful": ("sadness", "fear"),
        "sadly angry": ("sadness", "anger"),
        "sadly surprised": ("sadness", "surprise"),
        "sadly disgusted": ("sadness", "disgust"),
        "fearfully angry": ("fear", "anger"),
        "fearfully surprised": ("fear", "surprise"),
        "angrily surprised": ("anger", "surprise"),
        "angrily disgusted": ("anger", "disgust"),
        "disgustedly surprised": ("disgust", "surprise"),
    },
)
# MAFW's 11 single labels (Liu et al., 2022): the 7 basic plus four with no basic counterpart.
MAFW = LabelSpace(
    "mafw",
    (
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    ),
    {e: (e,) for e in ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt")},
)
# CASME II micro-expressions (Yan et al., 2014): "repression" and "others" have no basic counterpart.
CASME2 = LabelSpace(
    "casme2",
    ("happiness", "disgust", "surprise", "repression", "others", "fear", "sadness"),
    {e: (e,) for e in ("happiness", "disgust", "surprise", "fear", "sadness")},
)
LABEL_SPACES: dict[str, LabelSpace] = {space.name: space for space in (BASIC, COMPOUND, MAFW, CASME2)}


# ---------------------------------------------------------------------------------------------
# FACS emotion prototypes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prototype:
    emotion: str
    core: tuple[str, ...]  # all expected in the full prototype
    supporting: tuple[str, ...] = ()  # often present, add weight
    against: tuple[str, ...] = ()  # argue against this emotion
    note: str = ""


PROTOTYPES: dict[str, Prototype] = {
    p.emotion: p
    for p in (
        Prototype(
            "happiness",
            ("AU6", "AU12"),
            ("AU25", "AU26"),
            ("AU15", "AU4", "AU9"),
            "a Duchenne smile: cheeks raised (AU6) with lip corners pulled up (AU12)",
        ),
        Prototype(
            "sadness",
            ("AU1", "AU4", "AU15"),
            ("AU17", "AU43"),
            ("AU12", "AU2", "AU5"),
            "inner brows raised and drawn together (AU1+4) with lip corners pulled down (AU15)",
        ),
        Prototype(
            "surprise",
            ("AU1", "AU2", "AU5", "AU26"),
            ("AU25",),
            ("AU4", "AU9", "AU7", "AU15"),
            "brows raised (AU1+2), eyes widened (AU5) and jaw dropped (AU26)",
        ),
        Prototype(
            "fear",
            ("AU1", "AU2", "AU4", "AU5", "AU20"),
            ("AU7", "AU25", "AU26"),
            ("AU12", "AU9"),
            "raised and drawn-together brows (AU1+2+4), widened eyes (AU5), lips stretched (AU20)",
        ),
        Prototype(
            "anger",
            ("AU4", "AU5", "AU7", "AU23"),
            ("AU24", "AU17", "AU10"),
            ("AU12", "AU1", "AU2"),
            "brows lowered (AU4), eyes glaring (AU5+7) and lips tightened (AU23)",
        ),
        Prototype(
            "disgust",
            ("AU9", "AU15"),
            ("AU10", "AU17", "AU4"),
            ("AU12", "AU2", "AU5"),
            "nose wrinkled (AU9) and upper lip raised (AU10) with lip corners down (AU15)",
        ),
        # Landmarks see AU14 as the asymmetry of the lip corners, so it is contempt's core here.
        Prototype(
            "contempt",
            ("AU14",),
            ("AU12",),
            ("AU6", "AU15", "AU1"),
            "a one-sided tightening of the lip corner (unilateral AU12+14)",
        ),
    )
}

for _proto in PROTOTYPES.values():  # guard the data against typos at import time
    for _code in _proto.core + _proto.supporting + _proto.against:
        if _code not in AU_BY_CODE:
            raise ValueError(f"prototype {_proto.emotion!r} names unknown AU {_code!r}")
