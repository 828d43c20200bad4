"""The tiny tokenizer, the chat and prompt templates, and EmoReasonProcessor (text expansion, media, batching)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import torch

from emoreason.answer import AUClaim, parse_answer, render_answer
from emoreason.au import EMOTIONS
from emoreason.constants import ANSWER_CLOSE, ANSWER_OPEN, AUDIO_TOKEN, FACE_TOKEN, THINK_CLOSE, THINK_OPEN
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.processor import IGNORE_INDEX, SYSTEM_PROMPT, EmoReasonProcessor
from emoreason.model.tiny import TINY_AUDIO, TINY_FACE, TINY_TEXT
from emoreason.model.tokenizer import SPECIAL_TOKENS, TAG_TOKENS, train_tiny_tokenizer
from emoreason.report import AUReport

FACE_TOKENS, AUDIO_TOKENS, FRAMES, SIZE = 12, 4, 8, 64  # what the tiny config below gives


@pytest.fixture(scope="module")
def config():
    # the tiny checkpoint's parts, with a shorter audio window (100 positions = 2 s)
    return EmoReasonConfig(
        face_config=TINY_FACE,
        audio_config=dict(TINY_AUDIO, max_source_positions=100),
        text_config=dict(TINY_TEXT, vocab_size=2048),
        face_temporal_slots=2,
        num_audio_tokens=AUDIO_TOKENS,
        max_frames=FRAMES,
    )


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_tokenizer(vocab_size=2048)


@pytest.fixture(scope="module")
def processor(tokenizer, config):
    return EmoReasonProcessor.from_config(tokenizer, config)


def crops(count: int, height: int = 40, width: int = 32) -> np.ndarray:
    """Face crops whose pixels all equal their frame index (so sampling can be read back)."""
    return np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], (count, height, width, 3)).copy()


# ---- tokenizer -------------------------------------------------------------------------------------------------


def test_tokenizer_size_and_special_tokens_are_single_ids(tokenizer):
    assert len(tokenizer) <= 2048  # fits the tiny LM's embedding table
    for token in SPECIAL_TOKENS:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.model_max_length == 4096


def test_tokenizer_trains_quickly_and_learns_extra_texts():
    start = time.perf_counter()
    small = train_tiny_tokenizer(vocab_size=600, extra_texts=["zygomaticus zygomaticus"] * 200)
    assert time.perf_counter() - start < 30  # about 0.2 s here; no download, no GPU
    assert len(small) <= 600 and small.tokenize(" zygomaticus") == ["Ġzygomaticus"]
    with pytest.raises(ValueError, match="vocab_size must be >= 266"):
        train_tiny_tokenizer(vocab_size=100)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  two leading spaces, a tab\tand\r\nnewlines\n\n",
        "Grüße, 日本語, emoji 😀🙂 and combining e\u0301",
        '<think>AU6+AU12</think><answer>{"emotion":"happiness"}</answer><|im_end|>',
        "\x00\x01 control bytes \u200b zero width",
    ],
)
def test_tokenizer_round_trips_any_text(tokenizer, text):
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_answer_tags_survive_skip_special_tokens(tokenizer):
    # TRL decodes completions with skip_special_tokens=True before the rewards parse them.
    answer = render_answer("AU6 and AU12: a smile.", "happy", 0.9, [AUClaim("AU12", 3.0, 0.4, 1.0, 2.1)])
    ids = tokenizer(answer + "<|im_end|><|pad|>", add_special_tokens=False)["input_ids"]
    assert [tokenizer.convert_tokens_to_ids(t) in ids for t in TAG_TOKENS] == [True] * 4
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded == answer and parse_answer(decoded).format_ok


# ---- templates -------------------------------------------------------------------------------------------------


def test_chat_template_is_chatml(tokenizer):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    closed = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert closed.endswith("<|im_start|>user\nU<|im_end|>\n")


def test_chat_template_marks_assistant_tokens_for_assistant_only_loss(tokenizer):
    messages = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "<think>t</think>"}]
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tokenizer.decode(marked) == "<think>t</think><|im_end|>"


def test_explain_prompt_asks_for_what_the_parser_reads(processor):
    messages = processor.build_messages(evidence="Face: AU12 (Lip Corner Puller) C 2.8", has_audio=True)
    assert [m["role"] for m in messages] == ["system", "user"] and messages[0]["content"] == SYSTEM_PROMPT
    user = messages[1]["content"]
    # the fixed instructions first (one prefix for every request: vLLM's prefix cache), then media and evidence
    assert user.startswith("Which emotion does this person's face and voice show?")
    assert user.splitlines()[-4:] == [
        FACE_TOKEN,
        AUDIO_TOKEN,
        "Measured evidence:",
        "Face: AU12 (Lip Corner Puller) C 2.8",
    ]
    assert (
        f"{THINK_OPEN}observations, interpretation, conclusion{THINK_CLOSE}{ANSWER_OPEN}{{json}}{ANSWER_CLOSE}" in user
    )
    # The keys the prompt names are exactly the keys render_answer writes (and parse_answer reads).
    answer = render_answer("r", "happiness", 0.8, [AUClaim("AU12", 2.5, 0.4, 1.0, 2.1)])
    payload = json.loads(answer[answer.index(ANSWER_OPEN) + len(ANSWER_OPEN) : -len(ANSWER_CLOSE)])
    assert set(re.findall(r'"(\w+)"', user)) - {"AU12"} == set(payload) | set(payload["aus"][0])
    assert re.search(r"one of: ([a-z, ]+)\)", user).group(1).split(", ") == list(EMOTIONS)


def test_explain_prompt_without_audio_or_evidence(processor):
    user = processor.build_messages()[1]["content"]
    assert user.startswith("Which emotion does this person's face show?") and user.endswith("\n" + FACE_TOKEN)
    assert AUDIO_TOKEN not in user and "Measured evidence" not in user and "voice show" not in user
    answered = processor.build_messages(answer="<think>x</think><answer>{}</answer>")
    assert answered[-1] == {"role": "assistant", "content": "<think>x</think><answer>{}</answer>"}


# ---- text and placeholders -------------------------------------------------------------------------------------


def test_placeholders_expand_to_the_configured_number_of_tokens(processor):
    messages = processor.build_messages(has_audio=True)
    out = processor(messages, faces=crops(3), audio=np.zeros(16_000, np.float32))
    ids = out["input_ids"][0]
    assert (ids == processor.face_token_id).sum() == FACE_TOKENS
    assert (ids == processor.audio_token_id).sum() == AUDIO_TOKENS
    face_at = (ids == processor.face_token_id).nonzero().flatten()
    assert face_at.tolist() == list(range(face_at[0], face_at[0] + FACE_TOKENS))  # one contiguous run
    assert out["input_ids"].dtype == torch.long and out["attention_mask"].tolist() == [[1] * ids.numel()]
    assert processor.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    assert "labels" not in out


@pytest.mark.parametrize(
    ("text", "faces", "audio", "message"),
    [
        # two face placeholders, one clip
        (f"{FACE_TOKEN}{FACE_TOKEN} hi", crops(2), None, "text has 2 <face> placeholders but 1 face clip was given"),
        # a placeholder with no clip
        (f"{FACE_TOKEN} hi", None, None, "text has 1 <face> placeholder but no face clip was given"),
        # a clip with no placeholder
        ("hi", crops(2), None, "text has 0 <face> placeholders but 1 face clip was given"),
        # audio placeholder without audio
        (f"{FACE_TOKEN}{AUDIO_TOKEN}", crops(2), None, "text has 1 <audio> placeholder but no audio clip was given"),
        # two audio placeholders
        (f"{FACE_TOKEN}{AUDIO_TOKEN}{AUDIO_TOKEN}", crops(2), np.zeros(100), "text has 2 <audio> placeholders"),
    ],
)
def test_placeholder_media_mismatch_raises(processor, text, faces, audio, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        processor(text, faces=faces, audio=audio)


def test_training_sample_masks_the_prompt(processor):
    answer = render_answer("AU12 rises.", "happiness", 0.9, [AUClaim("AU12", 3.0)])
    messages = processor.build_messages(answer=answer)
    with pytest.raises(ValueError, match="add_generation_prompt=False"):
        processor(messages, faces=crops(2))
    out = processor(messages, faces=crops(2), add_generation_prompt=False)
    labels, ids = out["labels"][0], out["input_ids"][0]
    assert labels.shape == ids.shape
    trained = ids[labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(trained) == answer + "<|im_end|>\n"
    assert processor.decode(ids).endswith("assistant\n" + answer + "\n")  # tags kept, turn markers dropped


# ---- media -----------------------------------------------------------------------------------------------------


def test_preprocess_faces_resizes_normalises_and_pads(processor):
    pixels, mask = processor.preprocess_faces(crops(3, height=50, width=30))
    assert pixels.shape == (FRAMES, 3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert mask.tolist() == [True] * 3 + [False] * (FRAMES - 3)
    expected = torch.tensor([0, 1, 2], dtype=torch.float32) / 255.0 / 0.5 - 1.0  # (x / 255 - 0.5) / 0.5
    assert torch.allclose(pixels[:3].mean(dim=(1, 2, 3)), expected, atol=1e-6)
    assert pixels[3:].abs().sum() == 0


def test_preprocess_faces_samples_evenly_when_too_many(processor):
    pixels, mask = processor.preprocess_faces(crops(22))
    assert mask.all()
    frame_index = ((pixels[:, 0, 0, 0] + 1.0) * 0.5 * 255.0).round().long()
    assert frame_index.tolist() == [0, 3, 6, 9, 12, 15, 18, 21]  # first and last kept, even steps


def test_preprocess_faces_none_and_bad_input(processor):
    pixels, mask = processor.preprocess_faces(None)
    assert pixels.shape == (FRAMES, 3, SIZE, SIZE) and not mask.any() and pixels.abs().sum() == 0
    with pytest.raises(ValueError, match=r"uint8 \[T, H, W, 3\].*float32 \[4, 4, 3\]"):
        processor.preprocess_faces(np.zeros((4, 4, 3), np.float32))


def test_preprocess_audio_shapes_silence_and_none(processor):
    frames = 2 * 100  # 2 x max_source_positions of the tiny config: 2 s of 10 ms frames
    rng = np.random.default_rng(0)
    speech, present = processor.preprocess_audio(rng.normal(0, 0.1, 3 * 16_000).astype(np.float32))  # 3 s: cut
    assert speech.shape == (80, frames) and speech.dtype == torch.float32 and present
    silence, present = processor.preprocess_audio(np.zeros(8_000, np.float32))
    assert present and torch.isfinite(silence).all() and silence.std() == 0  # silent audio is still audio
    none, present = processor.preprocess_audio(None)
    assert not present and none.shape == (80, frames) and none.abs().sum() == 0
    assert processor.preprocess_audio(np.zeros(0, np.float32))[1] is False
    resampled, present = processor.preprocess_audio(rng.normal(0, 0.1, 8_000), sample_rate=8_000)
    assert present and resampled.shape == (80, frames)
    with pytest.raises(ValueError, match="mono"):
        processor.preprocess_audio(np.zeros((2, 100), np.float32))


# ---- batching, decoding, save/load -----------------------------------------------------------------------------


def test_collate_pads_right_for_training_and_left_for_generation(processor):
    pad = processor.tokenizer.pad_token_id
    with_audio = processor(processor.build_messages(has_audio=True), faces=crops(2), audio=np.zeros(1600))
    without = processor(processor.build_messages(evidence="Face: AU12 (Lip Corner Puller) C 2.8"), faces=crops(9))
    long, short = sorted((with_audio, without), key=lambda f: -f["input_ids"].shape[1])
    gap = long["input_ids"].shape[1] - short["input_ids"].shape[1]
    assert gap > 0
    right = processor.collate(
        [long, short], labels=[[1] * long["input_ids"].shape[1], [2] * short["input_ids"].shape[1]]
    )
    assert right["input_ids"][1, -gap:].tolist() == [pad] * gap and right["attention_mask"][1, -gap:].sum() == 0
    assert right["labels"][1, -gap:].tolist() == [IGNORE_INDEX] * gap
    left = processor.collate([long, short], padding_side="left")
    assert left["input_ids"][1, :gap].tolist() == [pad] * gap and left["attention_mask"][1, :gap].sum() == 0
    assert torch.equal(left["input_ids"][1, gap:], short["input_ids"][0])
    assert left["pixel_values"].shape == (2, FRAMES, 3, SIZE, SIZE) and left["input_features"].shape == (2, 80, 200)
    assert left["audio_mask"].tolist() == [True, False] or left["audio_mask"].tolist() == [False, True]
    with pytest.raises(ValueError, match="label lengths"):
        processor.collate([long, short], labels=[[1], [2]])


def test_decode_keeps_tags_and_drops_control_tokens(processor):
    answer = '<think>AU12.</think><answer>{"emotion":"happiness"}</answer>'
    ids = processor.tokenizer(f"<|im_start|>assistant\n{answer}<|im_end|><|endoftext|><|pad|>")["input_ids"]
    assert processor.decode(ids) == f"assistant\n{answer}"
    assert processor.decode(torch.tensor([ids, ids])) == [f"assistant\n{answer}"] * 2


def test_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = EmoReasonProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    messages = processor.build_messages(evidence="Voice: 2 pauses.", has_audio=True)
    audio = np.sin(np.linspace(0, 2000, 16_000)).astype(np.float32)
    a, b = (p(messages, faces=crops(4), audio=audio) for p in (processor, loaded))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_from_pretrained_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="processor_config.json"):
        EmoReasonProcessor.from_pretrained(tmp_path)


def test_from_config_sizes_and_token_id_check(processor, tokenizer, config):
    assert (processor.num_face_tokens, processor.num_audio_tokens) == (config.num_face_tokens, AUDIO_TOKENS)
    assert processor.max_audio_s == pytest.approx(2.0)  # 100 positions x 2 mel frames x 10 ms
    assert (processor.face_token_id, processor.audio_token_id) == (config.face_token_id, config.audio_token_id)
    wrong = EmoReasonConfig(**{**config.to_dict(), "face_token_id": 7})
    with pytest.raises(ValueError, match="face_token_id=7"):
        EmoReasonProcessor.from_config(tokenizer, wrong)


def test_textualize_writes_codes_levels_and_times(processor):
    text = processor.textualize(
        aus=[
            AUReport("AU12", 2.8, 1.17, 1.92, 2.25),
            {"code": "AU25", "intensity": 1.6},
            {"code": "au06", "intensity": 0.4},
        ],
        prosody_cues=["voice pitch is high (median 240 Hz)", "2 pauses (0.8 s in total)"],
    )
    face, voice = text.splitlines()
    assert face == (
        "Face: AU12 (Lip Corner Puller) C 2.8 from 1.17 s, apex 1.92 s, offset 2.25 s; "
        "AU25 (Lips Part) B 1.6; AU6 (Cheek Raiser) trace 0.4."
    )
    assert voice == "Voice: voice pitch is high (median 240 Hz); 2 pauses (0.8 s in total)."
    assert processor.textualize() == ""
    with pytest.raises(ValueError, match="AU99"):
        processor.textualize(aus=[{"code": "AU99", "intensity": 1.0}])
