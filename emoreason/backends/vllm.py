"""The ``vllm`` backend: explain with an emoreason checkpoint served by vLLM (``emoreason serve``), through the
``openai`` client alone (the ``client`` extra: no torch, no vLLM here).

The request is the ``hf`` backend's prompt: the user text carries the ``<face>`` (and ``<audio>``) placeholders and
the textualised evidence measured here; the audio goes as an ``input_audio`` part (float WAV, so the server hears
the same samples). The video goes as a ``video_url`` part: the whole file as a ``data:`` URL (the server cuts the
face crops itself, with the same code), or, for a time span, the main face's aligned crops of that span as a
``video/jpeg`` frame list (the server then takes the frames as they are).
"""

from __future__ import annotations

import base64
import functools
import io
import mimetypes
import os
from pathlib import Path

import numpy as np

from emoreason.backends.base import ModelBackend, ServerError
from emoreason.constants import AUDIO_SAMPLE_RATE
from emoreason.face.evidence import Evidence
from emoreason.prompt import SYSTEM_PROMPT, user_prompt

API_KEY_ENV = "EMOREASON_API_KEY"


def video_part(path: str | Path) -> dict:
    """A ``video_url`` content part holding the file as a ``data:`` URL."""
    data = Path(path).read_bytes()
    mime = mimetypes.guess_type(str(path))[0] or "video/mp4"
    return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def crops_part(crops: np.ndarray, quality: int = 95) -> dict:
    """A ``video_url`` part holding ``crops`` ``[T, S, S, 3]`` uint8 as vLLM's ``video/jpeg`` frame list."""
    from PIL import Image

    frames = []
    for crop in crops:
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, format="JPEG", quality=quality)
        frames.append(base64.b64encode(buffer.getvalue()).decode())
    return {"type": "video_url", "video_url": {"url": "data:video/jpeg;base64," + ",".join(frames)}}


def audio_part(waveform: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> dict:
    """An ``input_audio`` content part: the waveform as 32-bit float WAV (lossless)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(waveform, np.float32), sample_rate, format="WAV", subtype="FLOAT")
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(), "format": "wav"},
    }


def explain_request(video: str | Path | dict, evidence: str | None = None,
                    waveform: np.ndarray | None = None) -> list[dict]:  # fmt: skip
    """Chat messages of an explain request for ``video`` (a file, or a ready ``video_url`` part)."""
    content = [video if isinstance(video, dict) else video_part(video)]
    if waveform is not None:
        content.append(audio_part(waveform))
    content.append({"type": "text", "text": user_prompt(evidence, has_audio=waveform is not None)})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


class VLLMBackend(ModelBackend):
    """Explain through an OpenAI-compatible emoreason server.

    Args:
        server: the server's base URL (``http://localhost:8000`` or ``.../v1``).
        model: a served model name; default: the checkpoint's LoRA adapter when the server has one (what the
            ``hf`` backend runs), else its only model.
        api_key: the server's ``--api-key`` (default: ``$EMOREASON_API_KEY``).
    """

    name = "vllm"

    def __init__(self, server: str, model: str | None = None, api_key: str | None = None,
                 max_new_tokens: int = 384, timeout_s: float = 300.0):  # fmt: skip
        try:
            import openai
        except ImportError as exc:
            raise ImportError(f"the vllm backend needs the openai client: pip install 'emoreason[client]' ({exc})"
                              ) from exc  # fmt: skip
        base = server.rstrip("/")
        self.server = base if base.endswith("/v1") else base + "/v1"
        self.client = openai.OpenAI(base_url=self.server, api_key=api_key or os.environ.get(API_KEY_ENV) or "none",
                                    timeout=timeout_s, max_retries=1)  # fmt: skip
        self.max_new_tokens = max_new_tokens
        self.served = model or self._default_model()
        self.model = f"{self.server} ({self.served})"

    def sampling(self, base):
        from dataclasses import replace

        # the server cuts the crops of a whole file itself; a span's crops are cut here and sent
        return replace(base, model_crops=max(base.model_crops, 16))

    def served_model(self) -> dict:
        """What the server says about the model in use: id, and ``root`` (its checkpoint or adapter path)."""
        for model in self._call(self.client.models.list).data:
            if model.id == self.served:
                return {"server": self.server, "model": model.id, "root": getattr(model, "root", None),
                        "parent": getattr(model, "parent", None)}  # fmt: skip
        raise ServerError(f"the server at {self.server} does not serve {self.served!r}")

    def _call(self, fn, *args, **kwargs):
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.APIConnectionError as exc:
            raise ServerError(f"cannot reach the emoreason server at {self.server} ({exc.__cause__ or exc})") from None
        except openai.APIStatusError as exc:
            message = exc.body.get("message", exc.message) if isinstance(exc.body, dict) else exc.message
            raise ServerError(
                f"the server at {self.server} refused the request (HTTP {exc.status_code}): {message}",
                status=exc.status_code,
            ) from None

    def _default_model(self) -> str:
        models = self._call(self.client.models.list).data
        if not models:
            raise ServerError(f"the server at {self.server} serves no model")
        adapters = [m.id for m in models if getattr(m, "parent", None)]
        return (adapters or [m.id for m in models])[0]

    def complete(self, evidence: Evidence, prompt_evidence: str | None) -> str:
        video = crops_part(evidence.crops) if evidence.span is not None else evidence.source
        response = self._call(
            self.client.chat.completions.create,
            model=self.served,
            messages=explain_request(video, prompt_evidence, evidence.waveform),
            max_tokens=self.max_new_tokens,
            temperature=0.0,
        )
        return response.choices[0].message.content or ""


@functools.lru_cache(maxsize=8)
def connect(server: str, model: str | None = None, api_key: str | None = None) -> VLLMBackend:
    """One :class:`VLLMBackend` per (server, model, key): an evaluation run asks the server for its models once,
    not once per sample (a failed connection is not cached)."""
    return VLLMBackend(server, model=model, api_key=api_key)


__all__ = ["API_KEY_ENV", "VLLMBackend", "audio_part", "connect", "crops_part", "explain_request", "video_part"]
