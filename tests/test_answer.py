"""Tests for emoreason.answer: a table of (completion, expected fields), round trips, render validation."""

from __future__ import annotations

import json
import random

import pytest

from emoreason.answer import MAX_CHARS, AUClaim, Prediction, cited_aus, parse_answer, render_answer
from emoreason.au import AU_CODES, BASIC, COMPOUND, EMOTIONS, MAFW

GOOD_JSON = '{"emotion": "happiness", "confidence": 0.82, "aus": [{"code": "AU12", "intensity": 3.1}]}'
GOOD = f"<think>Cheeks raised (AU6) and lip corners up (AU12).</think><answer>{GOOD_JSON}</answer>"


def answer(payload: object, think: str = "r") -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"<think>{think}</think><answer>{body}</answer>"


CASES = [
    # The canonical, strictly formatted answer.
    (
        GOOD,
        {
            "valid": True,
            "format_ok": True,
            "error": None,
            "emotion": "happiness",
            "confidence": 0.82,
            "aus": [AUClaim("AU12", 3.1)],
            "cited_aus": ["AU6", "AU12"],
        },
    ),
    # Whitespace and newlines around and between the blocks are allowed.
    (
        f"\n <think>\nr\n</think>\n<answer>\n{GOOD_JSON}\n</answer>\n",
        {"valid": True, "format_ok": True, "reasoning": "r"},
    ),
    # Missing <think> but a valid answer: valid, not format_ok; the text before the answer is the reasoning.
    (
        f"AU6 up.<answer>{GOOD_JSON}</answer>",
        {"valid": True, "format_ok": False, "reasoning": "AU6 up.", "cited_aus": ["AU6"]},
    ),
    # <think> opened by the chat template (only </think> in the completion).
    (f"AU12 pulled.</think><answer>{GOOD_JSON}</answer>", {"valid": True, "format_ok": False, "cited_aus": ["AU12"]}),
    # Unclosed <think>: reasoning runs up to the answer.
    (f"<think>AU4 AU15<answer>{GOOD_JSON}</answer>", {"valid": True, "format_ok": False, "cited_aus": ["AU4", "AU15"]}),
    # Unclosed <answer> (the stop string was stripped): still parsed, not format_ok.
    (f"<think>r</think><answer>{GOOD_JSON}", {"valid": True, "format_ok": False, "emotion": "happiness"}),
    # No answer block at all.
    (
        "<think>AU6 and AU12</think> happy",
        {"valid": False, "format_ok": False, "error": "no answer", "cited_aus": ["AU6", "AU12"]},
    ),
    # Empty answer block.
    ("<think>r</think><answer>  </answer>", {"valid": False, "format_ok": False, "error": "empty answer"}),
    # Two answer blocks: the last wins, not format_ok.
    (
        answer({"emotion": "fear"}) + "<answer>" + GOOD_JSON + "</answer>",
        {"valid": True, "format_ok": False, "emotion": "happiness", "error": "expected exactly one <answer> block"},
    ),
    # Nested answer tags: the innermost (last opened) block is used.
    (
        f"<think>r</think><answer><answer>{GOOD_JSON}</answer></answer>",
        {"valid": True, "format_ok": False, "emotion": "happiness"},
    ),
    # Nested think tags.
    (
        f"<think>a <think>AU9</think> b</think><answer>{GOOD_JSON}</answer>",
        {"valid": True, "format_ok": False, "cited_aus": ["AU9"]},
    ),
    # An answer quoted inside the reasoning does not count; the real one after it does.
    (
        f"<think>not <answer>sad</answer> but</think><answer>{GOOD_JSON}</answer>",
        {"emotion": "happiness", "format_ok": False},
    ),
    # Text outside the blocks breaks the strict format only.
    (GOOD + " Hope this helps!", {"valid": True, "format_ok": False}),
    (
        "<think>r</think> so <answer>" + GOOD_JSON + "</answer>",
        {"format_ok": False, "error": "text between </think> and <answer>"},
    ),
    # Answer before think: wrong order.
    (f"<answer>{GOOD_JSON}</answer><think>r</think>", {"valid": True, "format_ok": False}),
    # Bare label, synonym and quoted: valid, not format_ok.
    ("<think>r</think><answer>happy</answer>", {"valid": True, "format_ok": False, "emotion": "happiness"}),
    ("<think>r</think><answer> 'Scared'. </answer>", {"valid": True, "emotion": "fear"}),
    (answer('"surprised"'), {"valid": True, "format_ok": False, "emotion": "surprise"}),
    # Unknown emotion: invalid with a reason, yet the format is fine.
    (
        answer({"emotion": "bored", "confidence": 0.5}),
        {
            "valid": False,
            "format_ok": True,
            "emotion": None,
            "error": "unknown emotion 'bored' for label space 'basic'",
        },
    ),
    ("<think>r</think><answer>the person looks bored</answer>", {"valid": False, "format_ok": False}),
    # No emotion key, or a non-string emotion.
    (answer({"confidence": 0.5}), {"valid": False, "format_ok": True, "error": "answer JSON has no 'emotion' string"}),
    (answer({"emotion": ["happy"]}), {"valid": False}),
    # "label" is accepted in place of "emotion"; synonyms are normalised.
    (answer({"label": "Joyful"}), {"valid": True, "emotion": "happiness"}),
    # Empty AU list and no confidence.
    (answer({"emotion": "neutral", "aus": []}), {"valid": True, "format_ok": True, "aus": [], "confidence": None}),
    # JSON inside ```json fences with chatter: recovered, not format_ok.
    (
        answer(f"Here it is:\n```json\n{GOOD_JSON}\n```"),
        {"valid": True, "format_ok": False, "confidence": 0.82, "error": "answer is not a strict JSON object"},
    ),
    # Trailing commas and single quotes are repaired.
    (
        answer("{'emotion': 'sad', 'aus': [{'code': 'AU15', 'intensity': 2,},],}"),
        {"valid": True, "format_ok": False, "emotion": "sadness", "aus": [AUClaim("AU15", 2.0)]},
    ),
    # Unrepairable JSON-looking text.
    (answer("{emotion: happy"), {"valid": False, "format_ok": False}),
    # A JSON array instead of an object.
    (answer([{"emotion": "happy"}]), {"valid": False, "format_ok": False}),
    # Garbage types: confidence "high", aus a string, intensity as a string, NaN, bool.
    (answer({"emotion": "anger", "confidence": "high", "aus": "AU12"}), {"valid": True, "confidence": None, "aus": []}),
    (
        answer('{"emotion": "anger", "confidence": NaN, "aus": [{"code": "AU4", "intensity": "3"}]}'),
        {"valid": True, "format_ok": True, "confidence": None, "aus": [AUClaim("AU4", 3.0)]},
    ),
    (
        answer({"emotion": "anger", "confidence": True, "aus": [1, None, {"code": True}, {"code": {"x": 1}}]}),
        {"valid": True, "confidence": None, "aus": [], "unknown_aus": []},
    ),
    # Numeric-string confidence is read; out-of-range values are clamped.
    (answer({"emotion": "anger", "confidence": "0.7"}), {"confidence": 0.7}),
    (
        answer({"emotion": "anger", "confidence": 7, "aus": [{"code": "AU4", "intensity": 9, "onset_s": -1}]}),
        {"confidence": 1.0, "aus": [AUClaim("AU4", 5.0)]},
    ),
    # AU codes: spellings normalised, unknown codes dropped and noted, duplicates keep the max intensity.
    (
        answer(
            {
                "emotion": "happy",
                "aus": [
                    {"code": "AU06", "intensity": 1},
                    {"code": "au_12", "intensity": 2.5},
                    {"code": "AU99", "intensity": 4},
                    {"code": "AU6", "intensity": 3.5, "apex_s": 1.2},
                ],
            }
        ),
        {"aus": [AUClaim("AU6", 3.5, apex_s=1.2), AUClaim("AU12", 2.5)], "unknown_aus": ["AU99"]},
    ),
    # An AU listed without an intensity counts as present at the FACS "A" threshold; {"AU12": 3} shorthand.
    (answer({"emotion": "happy", "aus": [{"code": 12}]}), {"aus": [AUClaim("AU12", 1.0)]}),
    (
        answer({"emotion": "happy", "aus": {"AU12": 3, "AU6": "x"}}),
        {"aus": [AUClaim("AU12", 3.0), AUClaim("AU6", 1.0)]},
    ),
    # Alternatives: dicts, pairs and bare labels; unknown labels dropped, duplicates kept once.
    (
        answer(
            {
                "emotion": "happy",
                "alternatives": [
                    {"label": "surprised", "confidence": 0.1},
                    ["sad", 0.05],
                    "fear",
                    {"label": "bored", "confidence": 0.3},
                    {"label": "surprise", "confidence": 0.2},
                ],
            }
        ),
        {"alternatives": [("surprise", 0.1), ("sadness", 0.05), ("fear", 0.0)]},
    ),
    (answer({"emotion": "happy", "alternatives": "surprise"}), {"valid": True, "alternatives": []}),
    # FACS combos in the reasoning are expanded, in order of first mention.
    (
        answer({"emotion": "fear"}, think="AU1+2+4 with AU5, AU 20 and au06; again AU1"),
        {"cited_aus": ["AU1", "AU2", "AU4", "AU5", "AU20", "AU6"]},
    ),
    # Non-string inputs: None, int, bytes.
    (None, {"valid": False, "format_ok": False, "error": "completion is NoneType, not str"}),
    (42, {"valid": False, "error": "completion is int, not str"}),
    (GOOD.encode(), {"valid": True, "format_ok": True, "emotion": "happiness"}),
    (b"\xff\xfe<answer>sad</answer>", {"valid": True, "emotion": "sadness"}),
    # Empty string.
    ("", {"valid": False, "format_ok": False, "error": "no answer"}),
    # Deeply nested JSON must not blow the recursion limit.
    (answer("[" * 50_000), {"valid": False}),
    (answer("{" * 50_000 + "}" * 50_000), {"valid": False}),
    # Longer than MAX_CHARS: only the prefix is read, so an answer past it is lost.
    ("x" * MAX_CHARS + GOOD, {"valid": False, "error": "no answer"}),
    (GOOD + " " * MAX_CHARS, {"valid": True, "format_ok": False, "error": "completion longer than MAX_CHARS"}),
]


@pytest.mark.parametrize(("completion", "expected"), CASES)
def test_parse_answer_table(completion: object, expected: dict) -> None:
    prediction = parse_answer(completion)
    assert isinstance(prediction, Prediction)
    assert {key: getattr(prediction, key) for key in expected} == expected
    if not prediction.valid or not prediction.format_ok:
        assert prediction.error


@pytest.mark.parametrize(
    ("completion", "space", "expected"),
    [
        # A compound label in its own space.
        (answer({"emotion": "Happily_Surprised"}), COMPOUND, {"valid": True, "emotion": "happily surprised"}),
        # A basic label is not a compound one.
        (answer({"emotion": "happy"}), COMPOUND, {"valid": False, "emotion": None}),
        # MAFW labels with no basic counterpart, and basic synonyms mapped into MAFW.
        (answer({"emotion": "helplessness"}), MAFW, {"valid": True, "emotion": "helplessness"}),
        (answer({"emotion": "joy"}), MAFW, {"valid": True, "emotion": "happiness"}),
        ("<think>r</think><answer>anxiety</answer>", BASIC, {"valid": False}),
    ],
)
def test_parse_answer_label_spaces(completion: str, space, expected: dict) -> None:
    prediction = parse_answer(completion, space)
    assert {key: getattr(prediction, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AU12, AU 6, AU06 and AU-12", ["AU12", "AU6"]),
        ("AU1+2+4 then AU6+12", ["AU1", "AU2", "AU4", "AU6", "AU12"]),
        ("AU6 + AU12 and AU12C with AU1B+2C", ["AU6", "AU12", "AU1", "AU2"]),
        ("because beautiful AUx AU99 AU123 AU0", []),  # words containing "au", unknown or malformed codes
        ("(AU5+7) and AU23.", ["AU5", "AU7", "AU23"]),
        (None, []),
    ],
)
def test_cited_aus(text: object, expected: list[str]) -> None:
    assert cited_aus(text) == expected


def test_to_dict_is_json_serialisable() -> None:
    data = parse_answer(GOOD).to_dict()
    assert data["aus"] == [{"code": "AU12", "intensity": 3.1, "onset_s": None, "apex_s": None, "offset_s": None}]
    assert json.loads(json.dumps(data))["emotion"] == "happiness"


def test_render_is_deterministic_and_strict() -> None:
    text = render_answer(
        " AU6+12 ", "joy", 0.81234, [AUClaim("AU06", 2.345, 0.1, 0.456, 1.0)], alternatives=[("surprise", 0.1)]
    )
    assert text == (
        '<think>AU6+12</think><answer>{"emotion":"happiness","confidence":0.812,'
        '"alternatives":[{"label":"surprise","confidence":0.1}],'
        '"aus":[{"code":"AU6","intensity":2.35,"onset_s":0.1,"apex_s":0.46,"offset_s":1.0}]}</answer>'
    )
    prediction = parse_answer(text)
    assert prediction.valid and prediction.format_ok and prediction.error is None


def _random_case(rng: random.Random, space) -> dict:
    codes = rng.sample(AU_CODES, rng.randint(0, 6))
    aus = []
    for code in codes:
        times = sorted(round(rng.uniform(0, 10), 2) for _ in range(3)) if rng.random() < 0.5 else [None] * 3
        aus.append(AUClaim(code, round(rng.uniform(0, 5), 2), *times))
    others = [label for label in space.labels if rng.random() < 0.3]
    return {
        "reasoning": " ".join(
            rng.choice(["Brows", "AU4", "AU1+2", "lowered.", "{", "}", '"', "<", "\n"]) for _ in range(20)
        ),
        "emotion": rng.choice(space.labels),
        "confidence": round(rng.random(), 3),
        "aus": aus,
        "alternatives": [(label, round(rng.random(), 3)) for label in others],
    }


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("space", [BASIC, COMPOUND, MAFW], ids=lambda s: s.name)
def test_render_parse_round_trip(seed: int, space) -> None:
    case = _random_case(random.Random(seed), space)
    text = render_answer(**case, label_space=space)
    prediction = parse_answer(text, space)
    assert prediction.valid and prediction.format_ok, prediction.error
    assert prediction.reasoning == case["reasoning"].strip()
    assert prediction.emotion == case["emotion"]
    assert prediction.confidence == case["confidence"]
    assert prediction.aus == case["aus"]
    assert prediction.alternatives == case["alternatives"]
    assert prediction.unknown_aus == []
    assert prediction.cited_aus == cited_aus(case["reasoning"])
    assert render_answer(**case, label_space=space) == text  # deterministic


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"emotion": "bored"}, "emotion"),
        ({"emotion": "happily surprised"}, "emotion"),  # compound label outside the basic space
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"confidence": "high"}, "confidence"),
        ({"aus": [AUClaim("AU99", 1.0)]}, "aus[0].code"),
        ({"aus": [{"code": "AU12", "intensity": 6}]}, "aus[0].intensity"),
        ({"aus": [{"code": "AU12"}]}, "aus[0]"),
        ({"aus": [AUClaim("AU12", 1.0), AUClaim("AU4", 1.0, onset_s=-0.5)]}, "aus[1].onset_s"),
        ({"aus": [AUClaim("AU12", 1.0, offset_s=float("inf"))]}, "aus[0].offset_s"),
        ({"aus": [AUClaim("AU12", 1.0), AUClaim("AU012", 2.0)]}, "aus:"),  # duplicate after normalising
        ({"alternatives": [("bored", 0.1)]}, "alternatives[0].label"),
        ({"alternatives": [("sad", -0.1)]}, "alternatives[0].confidence"),
        ({"alternatives": ["sad"]}, "alternatives[0]"),
        ({"reasoning": "done</think>"}, "reasoning"),
        ({"reasoning": "<answer>sad</answer>"}, "reasoning"),
        ({"reasoning": None}, "reasoning"),
    ],
)
def test_render_rejects_bad_inputs(kwargs: dict, field_name: str) -> None:
    arguments = {"reasoning": "r", "emotion": "happy", "confidence": 0.5, "aus": [], **kwargs}
    with pytest.raises(ValueError, match=field_name.replace("[", r"\[").replace("]", r"\]")):
        render_answer(**arguments)


def test_render_accepts_every_basic_emotion_and_au() -> None:
    aus = [{"code": code, "intensity": 1.0} for code in AU_CODES]
    for emotion in EMOTIONS:
        prediction = parse_answer(render_answer("r", emotion, 0.5, aus))
        assert prediction.emotion == emotion and [claim.code for claim in prediction.aus] == list(AU_CODES)


@pytest.mark.parametrize("seed", range(20))
def test_parse_never_raises_on_mutated_answers(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "{", "}", "[", "]", ",", ":", '"', "'", "AU", "1", "+"]
    for _ in range(200):
        text = list(GOOD)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(text) + 1)
            if rng.random() < 0.5:
                text.insert(at, rng.choice(pieces))
            else:
                del text[at : at + rng.randint(1, 10)]
        prediction = parse_answer("".join(text))
        assert prediction.valid == (prediction.emotion is not None)
        assert prediction.error or (prediction.valid and prediction.format_ok)
        assert prediction.confidence is None or 0.0 <= prediction.confidence <= 1.0
        assert all(0.0 <= claim.intensity <= 5.0 for claim in prediction.aus)
