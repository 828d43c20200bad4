"""Tests for emoreason.train.rewards: a (completion, columns, expected) table per reward, the registry, total_reward."""

from __future__ import annotations

import functools
import json

import pytest

from emoreason.data.schema import Sample
from emoreason.train.rewards import (
    REWARDS,
    au_f1_reward,
    au_intensity_reward,
    emotion_reward,
    facs_consistency_reward,
    faithfulness_reward,
    format_reward,
    get_rewards,
    length_reward,
    observed_aus,
    total_reward,
)


def answer(emotion: str, aus: dict[str, float] | None = None, think: str = "r") -> str:
    payload = {
        "emotion": emotion,
        "confidence": 0.9,
        "aus": [{"code": c, "intensity": v} for c, v in (aus or {}).items()],
    }
    return f"<think>{think}</think><answer>{json.dumps(payload)}</answer>"


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def gold(**aus: float | None) -> list[dict]:
    return [{"code": code, "intensity": value} for code, value in aus.items()]


SMILE = answer("happiness", {"AU6": 3.0, "AU12": 3.5}, think="Cheeks raised (AU6), lip corners pulled up (AU12).")
WORDS = " ".join(["word"] * 100)

FORMAT_CASES = [
    # The strict format.
    (SMILE, {}, 1.0),
    # Missing think tags: valid after repair, half credit.
    ('AU12 up.<answer>{"emotion": "happy"}</answer>', {}, 0.5),
    # Nested think tags: valid, not strict.
    ('<think>a <think>b</think> c</think><answer>{"emotion": "happy"}</answer>', {}, 0.5),
    # A bare label instead of the JSON object.
    ("<think>r</think><answer>happy</answer>", {}, 0.5),
    # No answer block at all.
    ("<think>AU6 and AU12</think> happy", {}, 0.0),
    # Unknown label in a strict layout: the format is right (emotion_reward scores the label).
    (answer("bored"), {}, 1.0),
    # Unknown label in a sloppy layout: nothing valid was recovered.
    ("<answer>bored</answer>", {}, 0.0),
    # A compound label is no label of the basic space...
    ("<think>r</think><answer>happily surprised</answer>", {}, 0.0),
    # ...but is one in the compound space, read from the row's label_space column.
    ("<think>r</think><answer>happily surprised</answer>", {"label_space": "compound"}, 0.5),
    # Conversational completion (TRL with a chat dataset).
    (chat(SMILE), {}, 1.0),
    # Conversational completion whose content is a list of text parts (multimodal chat templates).
    ([{"role": "assistant", "content": [{"type": "text", "text": SMILE}]}], {}, 1.0),
    # Not text at all: an invalid prediction, not an error.
    (None, {}, 0.0),
]

EMOTION_CASES = [
    # Correct label.
    (SMILE, {"labels": ["happiness"]}, 1.0),
    # Synonyms on both sides.
    (answer("joy"), {"labels": ["happy"]}, 1.0),
    # Wrong label.
    (answer("anger"), {"labels": ["happiness"]}, 0.0),
    # Unknown predicted label scores 0.
    (answer("bored"), {"labels": ["happiness"]}, 0.0),
    # Missing tags do not cost accuracy (format_reward scores them).
    ('<answer>{"emotion": "happy"}</answer>', {"labels": ["happiness"]}, 1.0),
    # Unparseable completion.
    ("I think they are happy.", {"labels": ["happiness"]}, 0.0),
    # No gold label (EMER-style description row): not applicable.
    (SMILE, {"labels": []}, None),
    (SMILE, {"labels": None}, None),
    # Compound space: the compound label is right, one of its parts alone is not a compound label.
    (answer("happily surprised"), {"labels": ["happily surprised"], "label_space": "compound"}, 1.0),
    (answer("happiness"), {"labels": ["happily surprised"], "label_space": "compound"}, 0.0),
    # Multi-label gold: the compound made of exactly those emotions is correct.
    (answer("happily surprised"), {"labels": ["happiness", "surprise"], "label_space": "compound"}, 1.0),
    # A label with no basic counterpart, in its own space.
    (answer("anxiety"), {"labels": ["anxiety"], "label_space": "mafw"}, 1.0),
    # Conversational completion.
    (chat(SMILE), {"labels": ["happiness"]}, 1.0),
]

AU_F1_CASES = [
    # Claimed AUs match the gold.
    (SMILE, {"aus": gold(AU6=3.0, AU12=4.0)}, 1.0),
    # AU12 annotated absent (0) but claimed: tp 1, fp 1 -> 2/3.
    (SMILE, {"aus": gold(AU6=2.0, AU12=0)}, 2 / 3),
    # Gold "present, intensity unknown" (occurrence-only corpora) counts as present.
    (SMILE, {"aus": gold(AU6=None, AU12=None)}, 1.0),
    # Claims of AUs the gold does not annotate are ignored.
    (answer("happiness", {"AU6": 3, "AU12": 3, "AU9": 2}), {"aus": gold(AU6=3.0, AU12=3.0)}, 1.0),
    # Every annotated AU correctly left out.
    (answer("neutral"), {"aus": gold(AU4=0, AU15=0)}, 1.0),
    # Empty AU list: no AU annotated, not applicable.
    (SMILE, {"aus": []}, None),
    (SMILE, {"aus": None}, None),
    # No answer: nothing claimed, the present gold AU is missed.
    ("<think>AU12</think>", {"aus": gold(AU12=3.0)}, 0.0),
    # Gold as a {code: intensity} dict.
    (SMILE, {"aus": {"AU6": 3.0, "AU12": 3.0}}, 1.0),
    # Conversational completion.
    (chat(SMILE), {"aus": gold(AU6=3.0, AU12=4.0)}, 1.0),
    # A compact observation line must agree too: the lower of the JSON's and the observations' F1 (v11's hack:
    # the gold "no AU" in the JSON, AU1 in the reasoning the conclusion follows).
    (answer("contempt", think="Observations: AU1 D. Conclusion: contempt."), {"aus": gold(AU1=0, AU14=0)}, 0.0),
    (answer("neutral", think="Observations: no Action Unit active. Conclusion: neutral."), {"aus": gold(AU1=0)}, 1.0),
    (answer("happiness", {"AU6": 3, "AU12": 3}, think="Observations: AU6 C. Conclusion: happiness."),
     {"aus": gold(AU6=3.0, AU12=3.0)}, 2 / 3),
    (answer("happiness", {"AU6": 3, "AU12": 3}, think="Observations: AU6 C, AU12 C. Conclusion: happiness."),
     {"aus": gold(AU6=3.0, AU12=3.0)}, 1.0),
    # Free-form reasoning (the FACS reasoner's, which names AUs it did not see) is not read.
    (answer("happiness", {"AU6": 3, "AU12": 3}, think="Observations:\n- AU6 raised\n- AU4 not visible"),
     {"aus": gold(AU6=3.0, AU12=3.0, AU4=0)}, 1.0),
]

FACS_CASES = [
    # Cited and claimed AUs form the happiness prototype.
    (SMILE, {}, 1.0),
    # Contradictory reasoning: cites AU15+AU4 (sadness) but concludes happiness.
    (answer("happiness", think="Lip corners pulled down (AU15) and brows lowered (AU4)."), {}, 0.0),
    # The answer's own AUs support it without any citation.
    (answer("happiness", {"AU6": 3, "AU12": 3}), {}, 1.0),
    # No AUs and a neutral conclusion agree.
    (answer("neutral"), {}, 1.0),
    # ... but not on a clip that shows AUs: consistency is paid to grounded answers only (no free reward for a
    # content-free answer); where the clip shows none, claiming none is grounded.
    (answer("neutral"), {"aus": gold(AU12=3.0)}, 0.0),
    (answer("neutral"), {"aus": gold(AU12=0.0)}, 1.0),
    (SMILE, {"aus": gold(AU12=3.0)}, 1.0),
    (answer("happiness", {"AU6": 3, "AU12": 3}), {"aus": gold(AU1=3.0, AU2=3.0)}, 0.0),
    # No emotion recovered: not applicable.
    ("<think>AU6+12</think>", {}, None),
    # An emotion without a FACS prototype: not applicable.
    (answer("anxiety"), {"label_space": "mafw"}, None),
    # A compound emotion needs support for each part.
    (answer("happily surprised", think="AU6+12, AU1+2+5+26"), {"label_space": "compound"}, 1.0),
    (answer("happily surprised", think="AU6+12"), {"label_space": "compound"}, 0.0),
    # Conversational completion.
    (chat(SMILE), {}, 1.0),
]

FAITHFULNESS_CASES = [
    # Every claim agrees with the measured evidence.
    (SMILE, {"evidence_aus": {"AU6": 2.0, "AU12": 3.0}}, 1.0),
    # AU4 claimed at 2 but measured absent: one of two checkable claims hallucinated.
    (answer("anger", {"AU4": 2.0, "AU7": 3.0}), {"evidence_aus": {"AU4": 0.0, "AU7": 3.0}}, 0.5),
    # Evidence as a list of {"code", "intensity"}, the schema's Arrow-friendly form.
    (answer("anger", {"AU4": 2.0, "AU7": 3.0}), {"evidence_aus": gold(AU4=0.0, AU7=3.0)}, 0.5),
    # Only unmeasured AUs claimed: nothing checkable.
    (answer("disgust", {"AU9": 3.0}), {"evidence_aus": {"AU12": 3.0}}, None),
    # No AUs claimed.
    (answer("neutral"), {"evidence_aus": {"AU12": 0.0}}, None),
    # No evidence column, or an empty value.
    (SMILE, {}, None),
    (SMILE, {"evidence_aus": {}}, None),
    (SMILE, {"evidence_aus": None}, None),
    # Conversational completion.
    (chat(SMILE), {"evidence_aus": {"AU6": 0.0, "AU12": 3.0}}, 0.5),
]

LENGTH_CASES = [
    # Inside the 20-200 word band.
    (answer("happy", think=WORDS), {}, 1.0),
    # 10 words: half way up from 0.
    (answer("happy", think=" ".join(["w"] * 10)), {}, 0.5),
    # Empty reasoning.
    (answer("happy", think=""), {}, 0.0),
    # 300 words: half way down to 0 at 400.
    (answer("happy", think=" ".join([WORDS] * 3)), {}, 0.5),
    # Past twice the upper bound.
    (answer("happy", think=" ".join([WORDS] * 5)), {}, 0.0),
    # Missing think tags: the text before the answer is the reasoning.
    (WORDS + '<answer>{"emotion": "happy"}</answer>', {}, 1.0),
    # Invalid answer: no credit for length alone.
    (answer("bored", think=WORDS), {}, 0.0),
    # Conversational completion.
    (chat(answer("happy", think=WORDS)), {}, 1.0),
]

AU_INTENSITY_CASES = [
    # Stated intensities equal the gold ones.
    (SMILE, {"aus": gold(AU6=3.0, AU12=3.5)}, 1.0),
    # Off by 1 on one of two AUs: 1 - 0.5 / 5.
    (SMILE, {"aus": gold(AU6=4.0, AU12=3.5)}, 0.9),
    # Each error counts up to the scale's 5 (a gold 1.0 stated 5.0: 1 - 4 / 5).
    (answer("happiness", {"AU12": 5.0}), {"aus": gold(AU12=1.0)}, 0.2),
    # Not applicable: occurrence-only gold, no gold-present AU, none of them named, no answer.
    (SMILE, {"aus": gold(AU6=None, AU12=None)}, None),
    (SMILE, {"aus": gold(AU4=0)}, None),
    (answer("neutral"), {"aus": gold(AU12=3.0)}, None),
    ("<think>AU12</think>", {"aus": gold(AU12=3.0)}, None),
    (SMILE, {"aus": []}, None),
    # A compact line's letters are held to the gold within their rounding (D = 4 for 4.4: no error)...
    (answer("happiness", {"AU6": 4.0, "AU12": 4.4}, think="Observations: AU6 D, AU12 D. Conclusion: happiness."),
     {"aus": gold(AU6=4.0, AU12=4.4)}, 1.0),
    # ... and the lower of the two counts: v15's GRPO answer, JSON 2.5 for a gold 4.4 under a letter D
    (answer("sadness", {"AU1": 2.5}, think="Observations: AU1 D. Conclusion: sadness."), {"aus": gold(AU1=4.4)},
     1 - 1.9 / 5),
    (answer("sadness", {"AU1": 4.4}, think="Observations: AU1 A. Conclusion: sadness."), {"aus": gold(AU1=4.4)},
     1 - 2.9 / 5),
]

CASES = [
    pytest.param(fn, *case, id=f"{fn.__name__}-{i}")
    for fn, table in [
        (format_reward, FORMAT_CASES),
        (emotion_reward, EMOTION_CASES),
        (au_f1_reward, AU_F1_CASES),
        (au_intensity_reward, AU_INTENSITY_CASES),
        (facs_consistency_reward, FACS_CASES),
        (faithfulness_reward, FAITHFULNESS_CASES),
        (length_reward, LENGTH_CASES),
    ]
    for i, case in enumerate(table)
]


@pytest.mark.parametrize(("fn", "completion", "columns", "expected"), CASES)
def test_reward_table(fn, completion, columns, expected):
    batch = {key: [value] for key, value in columns.items()}
    (got,) = fn([completion], **batch)
    assert got == (None if expected is None else pytest.approx(expected))


def test_trl_call_batch_with_extra_keywords():
    # TRL passes prompts, completion_ids, trainer_state, logging hooks and every other column as keywords.
    completions = [chat(SMILE), chat("no answer")]
    columns = {"labels": [["happiness"], []], "aus": [gold(AU12=3.0), []], "media": ["a.mp4", "b.mp4"]}
    extra = {"prompts": [[], []], "completion_ids": [[1], [2]], "trainer_state": None, "log_metric": print}
    assert emotion_reward(completions, **columns, **extra) == [1.0, None]
    assert au_f1_reward(completions, **columns, **extra) == [1.0, None]
    assert format_reward(completions, **columns, **extra) == [1.0, 0.0]


def test_column_errors():
    with pytest.raises(ValueError, match="'labels' has 1 entries for 2 completions"):
        emotion_reward([SMILE, SMILE], labels=[["happiness"]])
    with pytest.raises(ValueError, match="unknown label space 'open'"):
        format_reward([SMILE], label_space=["open"])


def test_length_band_via_partial():
    short = functools.partial(length_reward, min_words=5, max_words=10)
    assert short([answer("happy", think="one two three four five six")]) == [1.0]
    assert short([answer("happy", think=" ".join(["w"] * 15))]) == [0.5]


def test_observed_aus_reads_the_letters_as_levels():
    assert observed_aus("Observations: AU6 C, AU12 E. Conclusion: happiness.") == {"AU6": 3.0, "AU12": 5.0}
    assert observed_aus("Observations: AU6, AU12 B.") == {"AU6": None, "AU12": 2.0}
    assert observed_aus("Observations: no Action Unit active. Conclusion: neutral.") == {}
    assert observed_aus("Cheeks raised (AU6).") is None and observed_aus(None) is None


def test_registry_names_match_logged_names():
    assert list(REWARDS) == ["format", "emotion", "au_f1", "au_intensity", "facs_consistency", "faithfulness", "length"]
    for name, fn in REWARDS.items():
        assert fn.__name__ == f"{name}_reward"  # TRL logs rewards/<__name__>/mean
    assert get_rewards(["emotion", "format"]) == [emotion_reward, format_reward]


def test_registry_unknown_name():
    with pytest.raises(ValueError, match=r"unknown reward\(s\) \['acuracy'\]; known rewards: \['au_f1', "):
        get_rewards(["format", "acuracy"])


def test_total_reward_renormalises_over_applicable_rewards():
    weights = {"format": 1.0, "emotion": 2.0, "au_f1": 1.0}
    wrong = answer("anger", {"AU12": 3.0})  # strict format, wrong label, AU12 right
    # au_f1 not applicable without AU labels: (1 * 1 + 2 * 0) / (1 + 2).
    assert total_reward(wrong, {"labels": ["happiness"], "aus": []}, weights) == pytest.approx(1 / 3)
    # With AU labels: (1 * 1 + 2 * 0 + 1 * 1) / 4.
    assert total_reward(wrong, {"labels": ["happiness"], "aus": gold(AU12=3.0)}, weights) == pytest.approx(0.5)
    # Nothing applicable.
    assert total_reward(wrong, {"labels": [], "aus": []}, {"emotion": 1.0, "au_f1": 1.0}) == 0.0


def test_total_reward_on_a_schema_row():
    row = Sample(dataset="toy", media="a.mp4", labels=["happy"], aus=gold(AU6=3.0, AU12=4.0)).to_dict()
    weights = dict.fromkeys(REWARDS, 1.0)
    smile = answer("happiness", {"AU6": 3.0, "AU12": 4.0}, think="AU6 and AU12 are active. " + WORDS)
    assert total_reward(chat(smile), row, weights) == pytest.approx(1.0)  # faithfulness: no evidence, dropped
    assert total_reward("garbage", row, weights) == 0.0


def test_total_reward_bad_weights():
    with pytest.raises(ValueError, match="finite and >= 0"):
        total_reward(SMILE, {}, {"format": -1.0})
    with pytest.raises(ValueError, match="unknown reward"):
        total_reward(SMILE, {}, {"fromat": 1.0})
