"""The explain request as text: system prompt, user prompt with media placeholders, textualised evidence.

Shared by the processor (training, the ``hf`` backend) and the vLLM client, which sends the same user text
with the ``<face>``/``<audio>`` placeholders in place, so both runtimes see one prompt. No torch here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib import resources

import jinja2

from emoreason.au import AU_BY_CODE, EMOTIONS, intensity_letter, known_au
from emoreason.constants import ANSWER_CLOSE, ANSWER_OPEN, AUDIO_TOKEN, FACE_TOKEN, THINK_CLOSE, THINK_OPEN

SYSTEM_PROMPT = (
    "You are an expert in the Facial Action Coding System (FACS). You explain which emotion a person's face, and "
    "voice when given, shows: you name the Action Units you see with their intensity and timing, interpret them, "
    "and conclude only what that evidence supports."
)


def read_template(name: str) -> str:
    """The text of a template shipped in ``emoreason/templates`` (package data)."""
    return (resources.files("emoreason") / "templates" / name).read_text(encoding="utf-8")


@functools.cache
def _user_template() -> jinja2.Template:
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(read_template("explain_prompt.jinja"))


def user_prompt(evidence: str | None = None, has_audio: bool = False) -> str:
    """The user turn: ``<face>`` (and ``<audio>``) placeholders, measured evidence, the question and answer format."""
    return _user_template().render(
        face_token=FACE_TOKEN, audio_token=AUDIO_TOKEN, has_audio=has_audio, evidence=(evidence or "").strip(),
        emotions=EMOTIONS, think_open=THINK_OPEN, think_close=THINK_CLOSE, answer_open=ANSWER_OPEN,
        answer_close=ANSWER_CLOSE,
    ).rstrip("\n")  # fmt: skip


def explain_messages(evidence: str | None = None, has_audio: bool = False, answer: str | None = None) -> list[dict]:
    """System and user messages of an explain request, plus the assistant ``answer`` when given (SFT)."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_prompt(evidence, has_audio)},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def textualize(aus: Iterable | None = None, prosody_cues: Iterable[str] | None = None) -> str:
    """Measured evidence as text: a ``Face:`` line of AUs and a ``Voice:`` line of prosody cues ('' if none).

    ``aus`` holds :class:`AUReport` objects or dicts with ``code``, ``intensity`` and optional
    ``onset_s``/``apex_s``/``offset_s``; ``prosody_cues`` are strings (or a ``Prosody`` with ``.cues()``).
    """
    if callable(getattr(prosody_cues, "cues", None)):
        prosody_cues = prosody_cues.cues()
    parts = [describe_au(au) for au in aus or ()]
    cues = [str(cue).strip().rstrip(".") for cue in prosody_cues or ()]
    lines = [f"{head}: {'; '.join(items)}." for head, items in (("Face", parts), ("Voice", cues)) if items]
    return "\n".join(lines)


def describe_au(au) -> str:
    """``AU12 (Lip Corner Puller) C 2.8 from 1.17 s, apex 1.92 s, offset 2.25 s`` for an AUReport or a dict."""
    get = au.get if isinstance(au, dict) else lambda key, default=None: getattr(au, key, default)
    code = known_au(get("code")) if isinstance(get("code"), (str, int)) else None
    if code is None:
        raise ValueError(f"unknown AU code {get('code')!r}; use one of emoreason.au.AU_CODES")
    intensity = get("intensity")
    if isinstance(intensity, bool) or not isinstance(intensity, (int, float)):
        raise ValueError(f"{code}: intensity must be a number, got {intensity!r}")
    level = intensity_letter(intensity)  # "-" below FACS "A": trace
    text = f"{code} ({AU_BY_CODE[code].name}) {level + ' ' if level != '-' else 'trace '}{intensity:.1f}"
    words = {"onset_s": "from", "apex_s": "apex", "offset_s": "offset"}
    timing = [f"{word} {get(key):.2f} s" for key, word in words.items() if get(key) is not None]
    return text + (" " + ", ".join(timing) if timing else "")
