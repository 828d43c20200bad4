"""The ``vllm`` backend: explain with an emoreason checkpoint served by vLLM (``emoreason serve``).

The request is the same as the ``hf`` backend's prompt: the user text carries the ``<face>`` (and ``<audio>``)
placeholders and the textualised evidence measured here, the video goes as a ``video_url`` part (the server cuts
the face crops itself, with the same code) and the audio track as an ``input_audio`` part (float WAV, so the
server sees the same samples). Only the ``openai`` client is needed here, not vLLM.
"""

from __future__ import annotations

import base64
import functools
import io
import mimetypes
import os
from pathlib import Path

import numpy as np

from emoreason.constants import AUDIO_SAMPLE_RATE
from emoreason.face.analyzer import FaceAnalysis
from emoreason.model.backend import ModelExplainer
from emoreason.prompt import SYSTEM_PROMPT, user_prompt
from emoreason.serving import ServerError

API_KEY_ENV = "EMOREASON_API_KEY"


def video_part(path: str | Path) -> dict:
    """A ``video_url`` content part holding the file as a ``data:`` URL."""
    data = Path(path).read_bytes()
    mime = mimetypes.guess_type(str(path))[0] or "video/mp4"
    return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def audio_part(waveform: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> dict:
    """An ``input_audio`` content part: the waveform as 32-bit float WAV (lossless)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(waveform, np.float32), sample_rate, format="WAV", subtype="FLOAT")
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(), "format": "wav"},
    }


def explain_request(video: str | Path, evidence: str | None = None, waveform: np.ndarray | None = None) -> list[dict]:
    """Chat messages of an explain request for ``video`` (the prompt the ``hf`` backend builds)."""
    content = [video_part(video)]
    if waveform is not None:
        content.append(audio_part(waveform))
    content.append({"type": "text", "text": user_prompt(evidence, has_audio=waveform is not None)})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


class VLLMExplainer(ModelExplainer):
    """Explain analyses through an OpenAI-compatible emoreason server.

    Args:
        server: the server's base URL (``http://localhost:8000`` or ``.../v1``).
        model: a served model name; default: the checkpoint's LoRA adapter when the server has one (what the
            ``hf`` backend runs), else its only model.
        api_key: the server's ``--api-key`` (default: ``$EMOREASON_API_KEY``).
    """

    backend = "vllm"

    def __init__(self, server: str, model: str | None = None, api_key: str | None = None,
                 max_new_tokens: int = 384, timeout_s: float = 300.0):  # fmt: skip
        import openai

        base = server.rstrip("/")
        self.server = base if base.endswith("/v1") else base + "/v1"
        self.client = openai.OpenAI(base_url=self.server, api_key=api_key or os.environ.get(API_KEY_ENV) or "none",
                                    timeout=timeout_s, max_retries=1)  # fmt: skip
        self.max_new_tokens = max_new_tokens
        self.model = model or self._default_model()
        self.path = f"{self.server} ({self.model})"

    def served_model(self) -> dict:
        """What the server says about the model in use: id, and ``root`` (its checkpoint or adapter path)."""
        for model in self._call(self.client.models.list).data:
            if model.id == self.model:
                return {"server": self.server, "model": model.id, "root": getattr(model, "root", None),
                        "parent": getattr(model, "parent", None)}  # fmt: skip
        raise ServerError(f"the server at {self.server} does not serve {self.model!r}")

    def _call(self, fn, *args, **kwargs):
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.APIConnectionError as exc:
            raise ServerError(f"cannot reach the emoreason server at {self.server} ({exc.__cause__ or exc})") from None
        except openai.APIStatusError as exc:
            message = exc.body.get("message", exc.message) if isinstance(exc.body, dict) else exc.message
            raise ServerError(
                f"the server at {self.server} refused the request (HTTP {exc.status_code}): {message}"
            ) from None

    def _default_model(self) -> str:
        models = self._call(self.client.models.list).data
        if not models:
            raise ServerError(f"the server at {self.server} serves no model")
        adapters = [m.id for m in models if getattr(m, "parent", None)]
        return (adapters or [m.id for m in models])[0]

    def complete(self, analysis: FaceAnalysis, waveform: np.ndarray | None, evidence: str | None) -> str:
        response = self._call(
            self.client.chat.completions.create,
            model=self.model,
            messages=explain_request(analysis.source, evidence, waveform),
            max_tokens=self.max_new_tokens,
            temperature=0.0,
        )
        return response.choices[0].message.content or ""


@functools.lru_cache(maxsize=8)
def connect(server: str, model: str | None = None, api_key: str | None = None) -> VLLMExplainer:
    """One :class:`VLLMExplainer` per (server, model, key): an evaluation run asks the server for its models once,
    not once per sample (a failed connection is not cached)."""
    return VLLMExplainer(server, model=model, api_key=api_key)
