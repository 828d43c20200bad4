"""Render and parse the answer format: ``<think>REASONING</think><answer>{JSON}</answer>``.

One module both writes the answer (synthesis, SFT targets) and reads model output back into a
:class:`Prediction`, so training targets, rewards and benchmark metrics agree on one format. The JSON is::

    {"emotion": "happiness", "confidence": 0.82, "alternatives": [{"label": "surprise", "confidence": 0.1}],
     "aus": [{"code": "AU12", "intensity": 3.1, "onset_s": 0.4, "apex_s": 1.0, "offset_s": 2.1}]}

Intensities are on the FACS 0-5 scale; times are seconds, ``null`` for still images.

:func:`render_answer` is strict: bad inputs raise ``ValueError`` naming the field. :func:`parse_answer`
never raises: an unparseable completion is a normal invalid prediction (it scores 0). It separates
``valid`` (an answer and a known emotion were recovered, however sloppily) from ``format_ok`` (the strict
format), so a format reward and an accuracy reward can be logged apart. Parsing only uses ``str.find``,
``json`` and linear regexes on at most :data:`MAX_CHARS` characters, so any input is parsed in linear time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from emoreason.au import BASIC, LabelSpace, known_au
from emoreason.constants import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    AU_ACTIVE_THRESHOLD,
    AU_INTENSITY_MAX,
    THINK_CLOSE,
    THINK_OPEN,
)

MAX_CHARS = 100_000  # longer completions are cut to this many characters before parsing
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
_TIME_KEYS = ("onset_s", "apex_s", "offset_s")

# One AU mention and any FACS combination after it: "AU12", "AU 6", "au06", "AU12C", "AU1+2+4", "AU6+AU12".
_AU_MENTION = re.compile(
    r"\bAU[\s_-]?0*(\d{1,2})(?!\d)(?:[A-E](?![a-z]))?((?:\s*\+\s*(?:AU[\s_-]?)?0*\d{1,2}(?!\d)(?:[A-E](?![a-z]))?)*)",
    re.IGNORECASE,
)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


@dataclass
class AUClaim:
    """One Action Unit the answer claims: canonical code, 0-5 intensity, optional timing in seconds."""

    code: str
    intensity: float
    onset_s: float | None = None
    apex_s: float | None = None
    offset_s: float | None = None


@dataclass
class Prediction:
    """A completion parsed by :func:`parse_answer`.

    ``valid``: an answer was recovered and its emotion is a label of the label space. ``format_ok``: exactly one
    think block then one answer block holding a JSON object, nothing but whitespace around them. ``error`` says
    why a prediction is invalid or not ``format_ok``. ``reasoning`` is the think block, or the text before the
    answer when the think tags are missing; ``cited_aus`` are the AUs it mentions, in order of first mention.
    """

    valid: bool
    format_ok: bool
    error: str | None = None
    reasoning: str = ""
    emotion: str | None = None
    confidence: float | None = None
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    aus: list[AUClaim] = field(default_factory=list)
    unknown_aus: list[str] = field(default_factory=list)
    cited_aus: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (alternatives as ``[label, confidence]`` pairs)."""
        return asdict(self)


def cited_aus(text: object) -> list[str]:
    """Canonical AUs mentioned in free text, in order of first mention; FACS combos are expanded.

    >>> cited_aus("Cheeks raised (AU06) and AU 12; brows AU1+2+4, again AU12.")
    ['AU6', 'AU12', 'AU1', 'AU2', 'AU4']
    """
    if not isinstance(text, str):
        return []
    found: dict[str, None] = {}
    for match in _AU_MENTION.finditer(text[:MAX_CHARS]):
        for number in (match.group(1), *re.findall(r"\d+", match.group(2))):
            code = known_au(int(number))
            if code is not None:
                found.setdefault(code)
    return list(found)


def _number(value: object, name: str, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _render_au(index: int, claim: AUClaim | dict) -> dict:
    if isinstance(claim, dict):
        try:
            claim = AUClaim(**claim)
        except TypeError as err:  # missing or unexpected keys
            raise ValueError(f"aus[{index}]: {err}") from None
    code = known_au(claim.code) if isinstance(claim.code, (str, int)) else None
    if code is None:
        raise ValueError(f"aus[{index}].code: unknown AU {claim.code!r}; use one of emoreason.au.AU_CODES")
    out = {
        "code": code,
        "intensity": round(_number(claim.intensity, f"aus[{index}].intensity", 0, AU_INTENSITY_MAX), 2),
    }
    for key in _TIME_KEYS:
        value = getattr(claim, key)
        out[key] = None if value is None else round(_number(value, f"aus[{index}].{key}", 0, math.inf), 2)
    return out


def _render_alternative(index: int, alternative: tuple[str, float] | dict, space: LabelSpace) -> dict:
    if isinstance(alternative, dict):
        alternative = (alternative.get("label"), alternative.get("confidence"))
    if not isinstance(alternative, (tuple, list)) or len(alternative) != 2:
        raise ValueError(f"alternatives[{index}]: expected (label, confidence), got {alternative!r}")
    label, conf = alternative
    name = space.normalize(label)
    if name is None:
        raise ValueError(f"alternatives[{index}].label: {label!r} is not in label space {space.name!r}")
    return {"label": name, "confidence": round(_number(conf, f"alternatives[{index}].confidence", 0, 1), 3)}


def render_answer(
    reasoning: str,
    emotion: str,
    confidence: float,
    aus: Iterable[AUClaim | dict],
    alternatives: Iterable[tuple[str, float] | dict] = (),
    label_space: LabelSpace = BASIC,
) -> str:
    """Write the answer format deterministically (compact JSON, rounded numbers).

    Args:
        reasoning: the chain of thought; must not contain the think/answer tags.
        emotion: a label (or synonym) of ``label_space``; written in its canonical spelling.
        confidence: in [0, 1], rounded to 3 decimals.
        aus: :class:`AUClaim` or dicts with the same keys; known AU codes, each at most once.
        alternatives: ``(label, confidence)`` pairs or ``{"label", "confidence"}`` dicts; omitted when empty.
        label_space: the labels ``emotion`` and ``alternatives`` must come from.

    Returns:
        ``<think>REASONING</think><answer>{JSON}</answer>``.

    Raises:
        ValueError: naming the offending field.

    >>> render_answer("AU6+12: a smile.", "happy", 0.9, [AUClaim("AU06", 3.0)])
    '<think>AU6+12: a smile.</think><answer>{"emotion":"happiness","confidence":0.9,"aus":[{"code":"AU6","intensity":3.0,"onset_s":null,"apex_s":null,"offset_s":null}]}</answer>'
    """
    if not isinstance(reasoning, str) or any(tag in reasoning for tag in _TAGS):
        raise ValueError(f"reasoning must be a str without the tags {_TAGS}")
    name = label_space.normalize(emotion)
    if name is None:
        raise ValueError(f"emotion: {emotion!r} is not in label space {label_space.name!r}: {label_space.labels}")
    payload: dict = {"emotion": name, "confidence": round(_number(confidence, "confidence", 0, 1), 3)}
    alts = [_render_alternative(i, alt, label_space) for i, alt in enumerate(alternatives)]
    if alts:
        payload["alternatives"] = alts
    payload["aus"] = [_render_au(i, claim) for i, claim in enumerate(aus)]
    codes = [claim["code"] for claim in payload["aus"]]
    if len(set(codes)) != len(codes):
        raise ValueError(f"aus: each AU may appear once, got {codes}")
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"{THINK_OPEN}{reasoning.strip()}{THINK_CLOSE}{ANSWER_OPEN}{body}{ANSWER_CLOSE}"


def _as_float(value: object) -> float | None:
    """A finite float from a JSON number or numeric string, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _clamp(value: float | None, low: float, high: float) -> float | None:
    return None if value is None else min(max(value, low), high)


def _split(text: str) -> tuple[str, str | None]:
    """(reasoning, body of the last answer block or ``None``); an unclosed last answer runs to the end."""
    answer_at = text.rfind(ANSWER_OPEN)
    head = text if answer_at < 0 else text[:answer_at]
    body = None
    if answer_at >= 0:
        start = answer_at + len(ANSWER_OPEN)
        end = text.find(ANSWER_CLOSE, start)
        body = text[start : end if end >= 0 else len(text)]
    open_at, close_at = head.find(THINK_OPEN), head.rfind(THINK_CLOSE)
    if open_at >= 0:
        head = head[open_at + len(THINK_OPEN) : close_at if close_at > open_at else len(head)]
    elif close_at >= 0:  # the chat template opened the think block in the prompt
        head = head[:close_at]
    return head.strip(), body


def _format_problem(text: str) -> str | None:
    """Why ``text`` breaks the strict tag layout, or ``None`` if it follows it."""
    stripped = text.strip()
    if stripped.count(THINK_OPEN) != 1 or stripped.count(THINK_CLOSE) != 1:
        return "expected exactly one <think> block"
    if stripped.count(ANSWER_OPEN) != 1 or stripped.count(ANSWER_CLOSE) != 1:
        return "expected exactly one <answer> block"
    think_end, answer_at = stripped.find(THINK_CLOSE), stripped.find(ANSWER_OPEN)
    if not (stripped.startswith(THINK_OPEN) and stripped.endswith(ANSWER_CLOSE) and think_end < answer_at):
        return "expected <think>...</think><answer>...</answer> and nothing else"
    if stripped[think_end + len(THINK_CLOSE) : answer_at].strip():
        return "text between </think> and <answer>"
    return None


def _load_json(body: str) -> tuple[object, bool]:
    """(decoded value or ``None``, whether it decoded without repair). Tries the body, then its outermost
    ``{...}`` (drops code fences and chatter), then that with trailing commas dropped and single quotes swapped."""
    try:
        return json.loads(body), True
    except (ValueError, RecursionError):
        pass
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        return None, False
    candidate = body[start : end + 1]
    repaired = _TRAILING_COMMA.sub(r"\1", candidate)
    if '"' not in repaired:
        repaired = repaired.replace("'", '"')
    for attempt in (candidate, repaired):
        try:
            return json.loads(attempt), False
        except (ValueError, RecursionError):
            continue
    return None, False


def _parse_alternatives(raw: object, space: LabelSpace) -> list[tuple[str, float]]:
    found: dict[str, float] = {}
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, dict):
            label, conf = item.get("label", item.get("emotion")), item.get("confidence")
        elif isinstance(item, list) and len(item) == 2:
            label, conf = item
        else:
            label, conf = item, None
        name = space.normalize(label)
        if name is not None and name not in found:
            found[name] = _clamp(_as_float(conf), 0.0, 1.0) or 0.0
    return list(found.items())


def _parse_aus(raw: object) -> tuple[list[AUClaim], list[str]]:
    """Claims keyed by canonical code (max intensity wins) and the unknown codes seen.

    A listed AU without a usable intensity counts as present at the FACS "A" threshold."""
    if isinstance(raw, dict):  # {"AU12": 3.1} shorthand
        raw = [{"code": code, "intensity": value} for code, value in raw.items()]
    claims: dict[str, AUClaim] = {}
    unknown: dict[str, None] = {}
    for item in raw if isinstance(raw, list) else ():
        raw_code = item.get("code", item.get("au")) if isinstance(item, dict) else None
        if isinstance(raw_code, bool) or not isinstance(raw_code, (str, int)):
            continue
        code = known_au(raw_code) if len(str(raw_code)) <= 16 else None
        if code is None:
            unknown.setdefault(str(raw_code)[:16])
            continue
        intensity = _as_float(item.get("intensity"))
        intensity = _clamp(AU_ACTIVE_THRESHOLD if intensity is None else intensity, 0.0, AU_INTENSITY_MAX)
        times = [_as_float(item.get(key)) for key in _TIME_KEYS]
        claim = AUClaim(code, intensity, *(t if t is not None and t >= 0 else None for t in times))
        if code not in claims or claim.intensity > claims[code].intensity:
            claims[code] = claim
    return list(claims.values()), list(unknown)


def _fill_from_object(pred: Prediction, obj: dict, space: LabelSpace) -> str | None:
    """Copy the answer object's fields into ``pred``; the reason it is invalid, or ``None``."""
    pred.confidence = _clamp(_as_float(obj.get("confidence")), 0.0, 1.0)
    pred.alternatives = _parse_alternatives(obj.get("alternatives"), space)
    pred.aus, pred.unknown_aus = _parse_aus(obj.get("aus"))
    raw = obj.get("emotion", obj.get("label"))
    if not isinstance(raw, str):
        return "answer JSON has no 'emotion' string"
    pred.emotion = space.normalize(raw)
    return None if pred.emotion else f"unknown emotion {raw[:40]!r} for label space {space.name!r}"


def parse_answer(text: object, label_space: LabelSpace = BASIC) -> Prediction:
    """Parse a completion into a :class:`Prediction`; never raises.

    Tolerates missing or duplicated tags (the last answer block wins), an unclosed answer, code fences,
    chatter around the JSON, trailing commas, single quotes, a bare label (``<answer>happy</answer>``) and
    wrongly typed fields (dropped, or clamped into range). Anything tolerated sets ``format_ok=False``.

    Args:
        text: the completion (``str``; ``bytes`` are decoded as UTF-8; anything else is invalid).
        label_space: the labels the emotion is normalised into.

    Returns:
        A :class:`Prediction`; ``valid`` is False with an ``error`` when no known emotion was recovered.

    >>> p = parse_answer('<think>AU6+12</think><answer>{"emotion": "happy", "confidence": 0.9}</answer>')
    >>> p.valid, p.format_ok, p.emotion, p.cited_aus
    (True, True, 'happiness', ['AU6', 'AU12'])
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return Prediction(False, False, error=f"completion is {type(text).__name__}, not str")
    problem = "completion longer than MAX_CHARS" if len(text) > MAX_CHARS else None
    text = text[:MAX_CHARS]
    reasoning, body = _split(text)
    pred = Prediction(False, False, reasoning=reasoning, cited_aus=cited_aus(reasoning))
    if body is None or not body.strip():
        pred.error = "no answer" if body is None else "empty answer"
        return pred
    value, strict = _load_json(body)
    if isinstance(value, dict):
        error = _fill_from_object(pred, value, label_space)
    else:  # a bare label, possibly quoted
        label = value if isinstance(value, str) else body.strip().strip("`'\".!").strip()
        pred.emotion = label_space.normalize(label) if len(label) <= 64 else None
        error = None if pred.emotion else "answer is neither a JSON object nor a known label"
        strict = False
    problem = problem or _format_problem(text) or (None if strict else "answer is not a strict JSON object")
    pred.valid, pred.format_ok = error is None, problem is None
    pred.error = error or problem
    return pred
