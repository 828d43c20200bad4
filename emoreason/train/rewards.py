"""GRPO rewards: one small pure function per concern, each a thin wrapper over an :mod:`emoreason.metrics` scorer.

Every reward has TRL's signature ``fn(completions, **columns) -> list[float | None]``: ``completions`` are strings
or conversational lists (``[{"role": "assistant", "content": ...}]``), dataset columns arrive as keyword lists
with one entry per completion, and unknown keywords (``prompts``, ``trainer_state``, other columns) are ignored.
``None`` means "not applicable" (TRL turns it into NaN and leaves it out of that reward's mean). The recipe picks
rewards by name (:data:`REWARDS`) and weights them with ``GRPOConfig.reward_weights``, so each is logged as
``rewards/<name>_reward/mean``. Because the scoring lives in :mod:`emoreason.metrics`, a reward cannot drift from
the benchmark it stands for.

AU columns (gold ``aus`` and ``evidence_aus``) are lists of ``{"code", "intensity"}`` as in
:mod:`emoreason.data.schema`, or ``{code: intensity}`` dicts. Prefer the list form in a ``datasets`` column:
Arrow stores a dict column as a struct, filling each row's missing codes with null, which reads as "present".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from emoreason.answer import Prediction, parse_answer
from emoreason.au import LABEL_SPACES, LabelSpace
from emoreason.metrics import (
    au_f1,
    au_intensity_agreement,
    emotion_correct,
    facs_consistent,
    faithfulness,
    format_valid,
)

Reward = Callable[..., list[float | None]]
# the compact target's observation line (emoreason.train.data.compact_target): "Observations: AU6 C, AU12 B." or
# "Observations: no Action Unit active."; the FACS reasoner's longer rationales do not match it
_AU_ITEM = r"AU\d{1,2}(?: [A-E])?"
_OBSERVATIONS = re.compile(rf"Observations:\s*(no Action Unit active|{_AU_ITEM}(?:, {_AU_ITEM})*)\s*\.")
LENGTH_BAND = (20, 200)  # reasoning words scoring 1.0; the reward falls to 0 at 0 words and at twice the maximum


def _text(completion: object) -> object:
    """The text of a completion: a string as is, the last assistant message of a conversation (its content a
    string or a list of ``{"type": "text", "text": ...}`` parts). Anything else is returned unchanged, for
    :func:`parse_answer` to report as an invalid prediction."""
    if isinstance(completion, list) and completion and all(isinstance(m, Mapping) for m in completion):
        replies = [m for m in completion if m.get("role", "assistant") == "assistant"] or completion
        content = replies[-1].get("content")
        if isinstance(content, list):
            return "".join(p.get("text") or "" for p in content if isinstance(p, Mapping))
        return content
    return completion


def _space(name: str | None) -> LabelSpace:
    if name is None:
        return LABEL_SPACES["basic"]
    if name not in LABEL_SPACES:
        raise ValueError(f"unknown label space {name!r}; use one of {sorted(LABEL_SPACES)}")
    return LABEL_SPACES[name]


def _column(values: Sequence | None, n: int, name: str) -> list:
    """A dataset column as a list of ``n`` entries (``None`` entries when the column is absent)."""
    if values is None:
        return [None] * n
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} entries for {n} completions")
    return list(values)


def _parse(completions: Sequence, label_space: Sequence[str | None] | None) -> list[tuple[Prediction, LabelSpace]]:
    spaces = [_space(name) for name in _column(label_space, len(completions), "label_space")]
    return [(parse_answer(_text(c), space), space) for c, space in zip(completions, spaces)]


def _au_dict(value: Mapping | Sequence | None) -> dict[str, float | None]:
    """``{code: intensity}`` from a dict or a list of ``{"code", "intensity"}``; ``{}`` for ``None``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    return {item["code"]: item.get("intensity") for item in value}


def format_reward(completions, label_space=None, **kwargs) -> list[float | None]:
    """1.0 for the strict ``<think>...</think><answer>{JSON}</answer>`` format, 0.5 for an answer that is
    valid only after repair (missing or nested tags, a bare label, sloppy JSON), 0.0 otherwise."""
    return [format_valid(p) or (0.5 if p.valid else 0.0) for p, _ in _parse(completions, label_space)]


def emotion_reward(completions, labels, label_space=None, **kwargs) -> list[float | None]:
    """:func:`~emoreason.metrics.emotion_correct` against the gold ``labels``; ``None`` where there are none."""
    gold = _column(labels, len(completions), "labels")
    return [emotion_correct(p, g or [], s) for (p, s), g in zip(_parse(completions, label_space), gold)]


def observed_aus(reasoning: str) -> dict[str, float | None] | None:
    """The AUs of a compact observation line, ``{code: level}`` with the letter's level (A = 1 ... E = 5; ``None``
    without a letter; ``{}`` for "no Action Unit active"), ``None`` when the reasoning has no such line."""
    match = _OBSERVATIONS.search(reasoning or "")
    if match is None:
        return None
    if match[1].startswith("no "):
        return {}
    return {code: float("ABCDE".index(letter[0]) + 1) if letter else None
            for code, _, letter in (item.partition(" ") for item in match[1].split(", "))}  # fmt: skip


def au_f1_reward(completions, aus, **kwargs) -> list[float | None]:
    """:func:`~emoreason.metrics.au_f1` of the answer's AUs against the gold ``aus``; ``None`` where no AU is
    annotated.

    Where the reasoning has a compact observation line (:func:`observed_aus`), the reward is the lower of the JSON's
    F1 and the observations' F1: otherwise GRPO learned to write the gold AUs in the JSON while the reasoning,
    which the conclusion follows, cited others ("Observations: AU1 D. Conclusion: contempt." with ``"aus": []`` on
    neutral clips; the learning proof's v11 run, BENCHMARKS.md)."""
    gold = _column(aus, len(completions), "aus")
    rewards: list[float | None] = []
    for (pred, _), row in zip(_parse(completions, None), gold):
        score = au_f1(pred, _au_dict(row))
        observed = observed_aus(pred.reasoning) if score is not None else None
        rewards.append(score if observed is None else min(score, au_f1(observed, _au_dict(row))))
    return rewards


def au_intensity_reward(completions, aus, **kwargs) -> list[float | None]:
    """:func:`~emoreason.metrics.au_intensity_agreement` of the stated intensities with the gold ones, over the
    gold-present AUs the answer names (which AUs is :func:`au_f1_reward`'s; this is how strongly); ``None`` where
    it names none of them or the gold has no intensities. A compact observation line's letters are held to it too
    (within their rounding, 0.5), the lower of the two: GRPO with no reward on intensities moved the JSON's to
    2.5 for a gold 4.4 while the letter stayed D (the learning proof's v15, BENCHMARKS.md)."""
    gold = _column(aus, len(completions), "aus")
    rewards: list[float | None] = []
    for (pred, _), row in zip(_parse(completions, None), gold):
        truth, letters = _au_dict(row), observed_aus(pred.reasoning)
        scores = [au_intensity_agreement(pred, truth), au_intensity_agreement(letters, truth, tolerance=0.5)]
        rewards.append(min((s for s in scores if s is not None), default=None))
    return rewards


def facs_consistency_reward(completions, label_space=None, aus=None, **kwargs) -> list[float | None]:
    """:func:`~emoreason.metrics.facs_consistent`: do the cited and claimed AUs support the concluded emotion?

    Grounded where the gold ``aus`` are given: consistency is paid only to an answer that gets at least one of the
    clip's AUs right (AU F1 > 0; where the clip shows none, one that claims none). Otherwise "neutral, no AUs" is
    consistent on every clip: from a weak SFT start GRPO and self-improvement collapsed onto it (the learning
    proof's v7 run, BENCHMARKS.md)."""
    gold = _column(aus, len(completions), "aus") if aus is not None else [None] * len(completions)
    rewards: list[float | None] = []
    for (pred, space), row in zip(_parse(completions, label_space), gold):
        score = facs_consistent(pred, space)
        if score and row:
            f1 = au_f1(pred, _au_dict(row))
            score = score if f1 is None or f1 > 0 else 0.0
        rewards.append(score)
    return rewards


def faithfulness_reward(completions, evidence_aus=None, **kwargs) -> list[float | None]:
    """:func:`~emoreason.metrics.faithfulness` of the claimed AUs to the measured ``evidence_aus`` (the AU head's
    or the landmark analyser's readings); ``None`` without evidence or without a checkable claim."""
    evidence = _column(evidence_aus, len(completions), "evidence_aus")
    return [faithfulness(p, _au_dict(e)) if e else None for (p, _), e in zip(_parse(completions, None), evidence)]


def length_reward(completions, label_space=None, min_words=LENGTH_BAND[0], max_words=LENGTH_BAND[1], **kwargs):
    """1.0 for ``min_words..max_words`` words of reasoning, linear down to 0 at 0 words and at ``2 * max_words``;
    0.0 for an invalid answer. Change the band with ``functools.partial`` (TRL still logs ``length_reward``)."""
    rewards: list[float | None] = []
    for pred, _ in _parse(completions, label_space):
        words = len(pred.reasoning.split())
        score = words / min_words if words < min_words else max(0.0, min(1.0, 2.0 - words / max_words))
        rewards.append(score if pred.valid else 0.0)
    return rewards


REWARDS: dict[str, Reward] = {
    fn.__name__.removesuffix("_reward"): fn
    for fn in (
        format_reward,
        emotion_reward,
        au_f1_reward,
        au_intensity_reward,
        facs_consistency_reward,
        faithfulness_reward,
        length_reward,
    )  # fmt: skip
}


def get_rewards(names: Sequence[str]) -> list[Reward]:
    """The reward functions named in a recipe, in order; ``ValueError`` for an unknown name."""
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; known rewards: {sorted(REWARDS)}")
    return [REWARDS[name] for name in names]


def total_reward(completion: object, row: Mapping, weights: Mapping[str, float]) -> float:
    """One weighted score for a completion of one dataset ``row`` (the self-improvement filter).

    Rewards returning ``None`` (not applicable to this row, e.g. ``au_f1`` without AU labels) count as 0 and
    their weight is dropped, so the result is the weighted mean over the applicable rewards: in [0, 1], and a
    row is neither penalised nor favoured for missing annotations. 0.0 when no reward applies. Weights must be
    finite and non-negative; unknown names raise ``ValueError`` as in :func:`get_rewards`.
    """
    bad = {name: w for name, w in weights.items() if not 0 <= w < float("inf")}
    if bad:
        raise ValueError(f"reward weights must be finite and >= 0, got {bad}")
    columns = {key: [value] for key, value in row.items()}
    scored = [(w, fn([completion], **columns)[0]) for fn, w in zip(get_rewards(list(weights)), weights.values())]
    applicable = [(w, r) for w, r in scored if r is not None]
    total_weight = sum(w for w, _ in applicable)
    return sum(w * r for w, r in applicable) / total_weight if total_weight > 0 else 0.0
