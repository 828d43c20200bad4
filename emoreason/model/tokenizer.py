"""emoreason's special tokens and a small byte-level BPE tokenizer trained in seconds, with no download.

Real checkpoints bring their own tokenizer (Qwen2 family); tests and tiny models use :func:`train_tiny_tokenizer`,
trained with the `tokenizers` library on text built from emoreason's own vocabulary (AU names and descriptions,
emotion labels, rendered answers, the prompt templates). It is byte-level, so it round-trips any text.

Two kinds of added tokens:
- control tokens (pad, eos, ChatML turn markers, the ``<face>``/``<audio>`` placeholders) are *special*: they are
  dropped by ``decode(skip_special_tokens=True)``;
- the answer tags (``<think>``, ``</answer>``, ...) are single ids but *not* special, so a completion decoded with
  ``skip_special_tokens=True`` (as TRL does before calling the rewards) keeps the tags the parser needs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from emoreason.answer import AUClaim, render_answer
from emoreason.au import ACTION_UNITS, AU_BY_CODE, EMOTION_SYNONYMS, LABEL_SPACES, PROTOTYPES, REGIONS, intensity_letter
from emoreason.constants import ANSWER_CLOSE, ANSWER_OPEN, AUDIO_TOKEN, FACE_TOKEN, THINK_CLOSE, THINK_OPEN
from emoreason.prompt import read_template

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"  # ChatML turn markers, as in Qwen
# <face> and <audio> come first so that a trained tokenizer gives them ids 0 and 1, the defaults of
# EmoReasonConfig.face_token_id / audio_token_id.
CONTROL_TOKENS = (FACE_TOKEN, AUDIO_TOKEN, PAD_TOKEN, EOS_TOKEN, IM_START, IM_END)
TAG_TOKENS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
SPECIAL_TOKENS = CONTROL_TOKENS + TAG_TOKENS
DEFAULT_MODEL_MAX_LENGTH = 4096

_SEED = 0
_NUM_ANSWERS = 800  # rendered answers in the corpus: enough for stable merges, ~0.5 MB of text


def train_tiny_tokenizer(
    vocab_size: int = 2048,
    extra_texts: Iterable[str] = (),
    *,
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on emoreason's vocabulary (deterministic, about a second).

    Args:
        vocab_size: total size including the special tokens; the trained vocabulary may come out smaller.
        extra_texts: more training text, e.g. transcripts of the instruction data.
        model_max_length: the longest sequence the tokenizer reports.

    Returns:
        A fast tokenizer with pad/eos set, every token of :data:`SPECIAL_TOKENS` a single id, and the ChatML
        chat template attached.

    >>> tok = train_tiny_tokenizer(512)
    >>> tok.decode(tok("<face> AU12 😀")["input_ids"])
    '<face> AU12 😀'
    """
    minimum = 256 + len(SPECIAL_TOKENS)  # the byte alphabet and the added tokens
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be >= {minimum} (256 bytes + {len(SPECIAL_TOKENS)} tokens), got {vocab_size}"
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),  # the tags are added after training
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in CONTROL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(extra_texts), trainer)
    # BpeTrainer marks all of its tokens special; the tags are added here so that they stay ordinary text.
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        extra_special_tokens=[IM_START, IM_END, FACE_TOKEN, AUDIO_TOKEN],
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,  # keep decode an exact inverse of encode
    )
    tokenizer.chat_template = read_template("chat_template.jinja")
    return tokenizer


def _corpus(extra_texts: Iterable[str]) -> Iterator[str]:
    """Training text: the AU and emotion vocabulary, evidence lines, rendered answers, templates, extra texts."""
    for au in ACTION_UNITS:
        yield f"{au.code} ({au.name}): {au.description}. Region: {au.region}. Muscles: {au.muscles}."
    yield "Regions: " + ", ".join(REGIONS) + "."
    for word, label in EMOTION_SYNONYMS.items():
        yield f"{word} {word.capitalize()} -> {label} {label.capitalize()}"
    for space in LABEL_SPACES.values():
        yield ", ".join(space.labels)
    for proto in PROTOTYPES.values():
        yield f"{proto.emotion}: {proto.note}; core {'+'.join(proto.core)}, against {'+'.join(proto.against)}."
    yield " ".join(str(i) for i in range(1000))
    yield '{"emotion": null, "confidence": 0.5, "aus": [], "alternatives": [{"label": "x"}], "ok": true, "no": false}'
    yield read_template("explain_prompt.jinja")
    yield read_template("chat_template.jinja")
    rng = random.Random(_SEED)
    for _ in range(_NUM_ANSWERS):
        yield _random_answer(rng)
    yield from extra_texts


def _random_answer(rng: random.Random) -> str:
    """A rendered answer with random AUs, intensities and times, and reasoning in the FACS reasoner's style."""
    emotion = rng.choice([*PROTOTYPES, "neutral"])
    claims, observations = [], []
    for code in rng.sample(list(AU_BY_CODE), rng.randint(0, 4)):
        intensity = round(rng.uniform(0.5, 5.0), 2)
        times = sorted(round(rng.uniform(0.0, 8.0), 2) for _ in range(3)) if rng.random() < 0.7 else [None] * 3
        claims.append(AUClaim(code, intensity, *times))
        line = f"{code} ({AU_BY_CODE[code].name}) at intensity {intensity_letter(intensity)} ({intensity:.1f}/5)"
        if times[0] is not None:
            line += f", from {times[0]:.2f} s, apex {times[1]:.2f} s, offset {times[2]:.2f} s"
        observations.append(f"- {line}: {AU_BY_CODE[code].description}.")
    note = PROTOTYPES[emotion].note if emotion in PROTOTYPES else "no Action Unit above trace level"
    reasoning = "\n".join(
        ["Observations:", *(observations or ["- no Action Unit moves clearly."])]
        + ["Interpretation:", f"- {note}.", f"Conclusion: the face shows {emotion}."]
    )
    alternatives = [(rng.choice(list(PROTOTYPES)), round(rng.random() * 0.3, 3))] if rng.random() < 0.3 else []
    alternatives = [a for a in alternatives if a[0] != emotion]
    return render_answer(reasoning, emotion, round(rng.uniform(0.3, 1.0), 3), claims, alternatives)


__all__ = [
    "CONTROL_TOKENS",
    "DEFAULT_MODEL_MAX_LENGTH",
    "EOS_TOKEN",
    "IM_END",
    "IM_START",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "TAG_TOKENS",
    "read_template",
    "train_tiny_tokenizer",
]
