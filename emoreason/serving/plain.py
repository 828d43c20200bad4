"""A plain OpenAI request that sends only a video gets the prompt ``emoreason explain --server`` sends.

The emoreason client measures the face's AUs and the voice's prosody itself, writes them into the user text with
the ``<face>``/``<audio>`` placeholders, and adds the video's audio track as an ``input_audio`` part. A plain
``openai`` client sends the video alone. For such a request (a user turn holding one ``video_url`` part and no
text, in a conversation where no text places ``<face>``) the guard middleware asks the server's analysis pool for
the same evidence (:mod:`~emoreason.serving.analysis`, kind ``evidence``: the same ``collect`` and FACS reasoner as
the client) and rewrites the request into the client's: the system prompt (when the request has none), the video
part as it came, the audio track (unless the request sends its own audio part, which is then used, and its
prosody measured), and the explain prompt with the evidence. The same video sent by both gets the same answer.

A request with its own text is left as written (its author chose the prompt); so is a ``video/jpeg`` frame list
(the frames are taken as face crops already cut, as the emoreason client sends a time span).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from emoreason.constants import FACE_TOKEN

CHAT_ROUTE = "/v1/chat/completions"
_AUDIO_PARTS = ("input_audio", "audio_url")
# threads that wait for the analysis pool (they only block): not asyncio's default executor, which vLLM shares
_WAITERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="emoreason-analysis-wait")


class _Bytes:
    """A media IO for vLLM's connector that returns the medium's bytes undecoded (its size limit kept)."""

    def __init__(self, max_video_mb: float):
        self.kwargs = {"max_video_mb": max_video_mb}

    def load_bytes(self, data: bytes) -> bytes:
        return data

    def load_base64(self, media_type: str, data: str) -> bytes:
        try:
            return base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            raise ValueError("the video's data: URL is not valid base64") from None

    def load_file(self, filepath: Path) -> bytes:
        return Path(filepath).read_bytes()

    def get_max_bytes(self) -> int:
        return int(self.kwargs["max_video_mb"] * 2**20)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "".join(_text(v) for k, v in value.items() if k in ("text", "content"))
    if isinstance(value, list):
        return "".join(_text(item) for item in value)
    return ""


def plain_video_turn(messages: Any) -> tuple[int, dict, dict | None] | None:
    """``(message index, video part, own audio part or None)`` of the user turn to complete, or None when the
    request is not a plain video request (a batch, a text that places ``<face>``, a turn with text of its own)."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None
    if any(FACE_TOKEN in _text(m.get("content")) for m in messages):
        return None  # the emoreason client (or a caller) wrote its own prompt
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users or not isinstance(messages[users[-1]].get("content"), list):
        return None
    index = users[-1]
    parts = messages[index]["content"]
    if not all(isinstance(p, dict) for p in parts):
        return None
    videos = [p for p in parts if p.get("type") == "video_url"]
    audios = [p for p in parts if p.get("type") in _AUDIO_PARTS]
    others = [p for p in parts if p.get("type") not in ("video_url", *_AUDIO_PARTS)]
    if len(videos) != 1 or len(audios) > 1 or any(p.get("type") != "text" or _text(p).strip() for p in others):
        return None
    video = videos[0].get("video_url")
    url = video.get("url") if isinstance(video, dict) else video
    if not isinstance(url, str) or url[:16].lower().startswith("data:video/jpeg"):
        return None
    return index, videos[0], audios[0] if audios else None


def video_settings(scope: dict) -> dict:
    """The server's video settings (``num_frames``, ``max_video_s``, ``max_video_mb``) from its parsed arguments."""
    from emoreason.serving.video_loader import DEFAULT_MAX_VIDEO_MB, DEFAULT_MAX_VIDEO_S, DEFAULT_NUM_FRAMES

    args = getattr(getattr(scope.get("app"), "state", None), "args", None)
    kwargs = getattr(args, "media_io_kwargs", None) or {}
    if isinstance(kwargs, str):
        kwargs = json.loads(kwargs)
    video = kwargs.get("video", {}) if isinstance(kwargs, dict) else {}
    return {
        "num_frames": int(video.get("num_frames", DEFAULT_NUM_FRAMES)),
        "max_video_s": float(video.get("max_video_s", DEFAULT_MAX_VIDEO_S)),
        "max_video_mb": float(video.get("max_video_mb", DEFAULT_MAX_VIDEO_MB)),
    }


async def fetch_video(scope: dict, url: str, max_video_mb: float) -> bytes:
    """The video's bytes, through the ``emoreason`` media connector with the server's allowed folder and hosts
    (the same checks the video loader's fetch makes: no http(s) unless allowed, ``file://`` inside the folder)."""
    from emoreason.serving.media import GuardedMediaConnector

    args = getattr(getattr(scope.get("app"), "state", None), "args", None)
    connector = GuardedMediaConnector(
        allowed_local_media_path=getattr(args, "allowed_local_media_path", None) or "",
        allowed_media_domains=getattr(args, "allowed_media_domains", None) or None,
    )
    try:
        return await connector.load_from_url_async(url, _Bytes(max_video_mb))
    except (NotImplementedError, RuntimeError) as exc:  # vLLM's "only base64 data URLs", ...: the caller's URL
        raise ValueError(f"the video URL cannot be read: {exc}") from None


def own_audio_cues(part: dict) -> list[str] | None:
    """Prosody cues of a request's own ``input_audio`` part (None when it cannot be read here: no Voice line)."""
    from emoreason.constants import AUDIO_SAMPLE_RATE

    payload = part.get("input_audio")
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
        return None
    try:
        import librosa
        import soundfile

        from emoreason.cues.prosody import analyze_prosody
        from emoreason.io.audio import AudioClip

        samples, rate = soundfile.read(io.BytesIO(base64.b64decode(payload["data"])), dtype="float32",
                                       always_2d=True)  # fmt: skip
        waveform = samples.mean(axis=1)
        if rate != AUDIO_SAMPLE_RATE:
            waveform = librosa.resample(waveform, orig_sr=rate, target_sr=AUDIO_SAMPLE_RATE)
        return analyze_prosody(AudioClip(waveform, AUDIO_SAMPLE_RATE)).cues()
    except Exception:  # noqa: BLE001  (vLLM reads the part itself and answers a bad one; the evidence goes without)
        return None


async def complete_plain_request(scope: dict, body: dict) -> dict | None:
    """``body`` rewritten into the emoreason client's request when it is a plain video request, else None.

    Raises:
        ValueError: the video cannot be fetched or analysed (the message says why: HTTP 400).
    """
    from emoreason.backends.vllm import audio_part
    from emoreason.prompt import SYSTEM_PROMPT, textualize, user_prompt
    from emoreason.serving.analysis import server_pool
    from emoreason.serving.video_loader import check_size

    found = plain_video_turn(body.get("messages"))
    if found is None:
        return None
    index, video, own_audio = found
    settings = video_settings(scope)
    url = video["video_url"]["url"] if isinstance(video["video_url"], dict) else video["video_url"]
    data = await fetch_video(scope, url, settings["max_video_mb"])
    check_size(data, settings["max_video_mb"])
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(_WAITERS, server_pool().run, "evidence", data, settings["num_frames"],
                                        settings["max_video_s"])  # fmt: skip
    evidence = result.evidence
    content: list[dict] = [video]
    if own_audio is not None:
        content.append(own_audio)
        cues = await loop.run_in_executor(_WAITERS, own_audio_cues, own_audio)
        evidence = textualize(aus=result.aus, prosody_cues=cues)
    elif result.waveform is not None:
        content.append(audio_part(result.waveform))
    content.append({"type": "text", "text": user_prompt(evidence or None, has_audio=len(content) > 1)})
    messages = list(body["messages"])
    messages[index] = dict(messages[index], content=content)
    if messages[0].get("role") != "system":
        messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
    return dict(body, messages=messages)


__all__ = ["CHAT_ROUTE", "complete_plain_request", "fetch_video", "plain_video_turn", "video_settings"]
