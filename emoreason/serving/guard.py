"""ASGI middleware that ``emoreason serve`` puts in front of vLLM's server: the key on every route, a video in
every request.

vLLM 0.32's own ``--api-key`` check guards only paths under ``/v1``, ``/v2``, ``/inference`` and ``/cohere``:
``/tokenize`` (which runs the face pipeline on a chat ``video_url``), ``/detokenize``, ``/metrics``,
``/invocations`` (SageMaker's door to chat and completions), ``/scale_elastic_ep`` and the rest answer anyone.
With a key set, this middleware asks for it on every route but :data:`OPEN_PATHS`.

An emoreason answer is about a video, so a request without one is refused (HTTP 400) rather than answered from
the text alone:

- a body with ``messages`` (chat completions, their batch and render routes, ``/tokenize``, ``/invocations``)
  needs a ``video_url`` part in every conversation. A message's text may place the ``<face>`` and ``<audio>``
  placeholders itself (the emoreason client does, as the ``hf`` prompt does), but no more of them than the
  message has video and audio parts: vLLM checks that only for a modality the message has, so a typed ``<face>``
  with no video would reach the model as a face token without a face;
- the routes that take a bare prompt (:data:`PROMPT_ROUTES`: ``/v1/completions``, the Responses and Anthropic
  APIs, token-in generation, ...) are switched off, and so is ``/invocations`` without ``messages``;
- ``media_io_kwargs`` in a request is refused: it would override the server's video limits (size, length,
  frames) for that request.

A chat request that sends only a video is then completed into the emoreason client's request (measured evidence,
the video's audio track, the explain prompt): :mod:`~emoreason.serving.plain`.

vLLM loads it by import path (``--middleware emoreason.serving.guard.RequestGuard``) and adds it without
arguments; it reads the API keys from the app's parsed arguments (``app.state.args.api_key``), the same place
vLLM's own check reads them, or from ``VLLM_API_KEY``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

from emoreason.constants import AUDIO_TOKEN, FACE_TOKEN
from emoreason.serving.plain import CHAT_ROUTE, complete_plain_request

MIDDLEWARE_PATH = "emoreason.serving.guard.RequestGuard"
# No data and no work behind them; load balancers and orchestrators probe them without credentials. `/version` is
# not among them: the exact vLLM version helps an attacker pick a known vulnerability.
OPEN_PATHS = frozenset({"/health", "/ping"})
PROMPT_ROUTES = frozenset({
    "/v1/completions", "/v1/completions/render", "/v1/responses", "/v1/messages", "/generative_scoring",
    "/v1/systemone", "/inference/v1/generate", "/v1/generate",
})  # fmt: skip
# the content part types vLLM reads as each placeholder's medium
MEDIA_PARTS = {
    FACE_TOKEN: frozenset({"video_url", "video_embeds"}),
    AUDIO_TOKEN: frozenset({"audio_url", "input_audio", "audio_embeds"}),
}
_MEDIA_TYPES = frozenset().union(*MEDIA_PARTS.values())
_OTHER_MEDIA_TYPES = frozenset({"image_url", "input_image", "image_pil", "image_embeds", "prompt_embeds"})
# vLLM's order for a part without a type (renderers/chat_utils.py, _parse_chat_message_content_mm_part)
_KEY_ORDER = ("image_url", "image_pil", "image_embeds", "audio_embeds", "video_embeds", "prompt_embeds", "audio_url",
              "input_audio", "video_url")  # fmt: skip
# (also what the launcher's chat-template check raises: no quotes in it)
NEEDS_VIDEO = "an emoreason request needs a video of the face: add a video_url content part"
PROMPT_ROUTE_OFF = (
    "{path} is off on this server: an emoreason answer needs a video, so send a chat request with a video_url part "
    "to /v1/chat/completions"
)


def api_key_hashes(scope: dict) -> list[bytes]:
    """SHA-256 of each API key the server was started with (``--api-key``, else ``VLLM_API_KEY``)."""
    state = getattr(scope.get("app"), "state", None)
    keys = getattr(getattr(state, "args", None), "api_key", None) or [os.environ.get("VLLM_API_KEY")]
    keys = [keys] if isinstance(keys, str) else keys
    return [hashlib.sha256(key.encode()).digest() for key in keys if key]


def authorized(scope: dict, hashes: list[bytes]) -> bool:
    """Whether the request carries ``Authorization: Bearer <one of the keys>`` (compared in constant time)."""
    headers = dict((k.lower(), v) for k, v in scope.get("headers", []))
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return False
    digest = hashlib.sha256(token.encode("latin-1")).digest()
    match = False
    for expected in hashes:
        match |= secrets.compare_digest(digest, expected)
    return match


def _part_type(part: dict) -> str | None:
    """A content part's type as vLLM reads it: ``type``, or without it (or with a ``uuid``) the first media key."""
    kind = part.get("type")
    if isinstance(kind, str) and part.get("uuid") is None:
        return kind
    return next((key for key in _KEY_ORDER if key in part), kind)


def _typed_text(value: Any) -> Iterator[str]:
    """Every string in a message that can reach the prompt as text (not the media parts' URLs and data)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        if _part_type(value) in _MEDIA_TYPES | _OTHER_MEDIA_TYPES:
            return
        for item in value.values():
            yield from _typed_text(item)
    elif isinstance(value, list):
        for item in value:
            yield from _typed_text(item)


def _media_parts(message: Any) -> list[str]:
    content = message.get("content") if isinstance(message, dict) else None
    return [_part_type(part) for part in content if isinstance(part, dict)] if isinstance(content, list) else []


def _message_problem(message: Any) -> str | None:
    parts = _media_parts(message)
    text = "".join(_typed_text(message))
    for placeholder, kinds in MEDIA_PARTS.items():
        if text.count(placeholder) > sum(kind in kinds for kind in parts):
            medium = "video" if placeholder == FACE_TOKEN else "audio"
            return (f"the text has more {placeholder} placeholders than the message has {medium} parts: send the "
                    f"{medium} as a content part (the server places {placeholder} for it)")  # fmt: skip
    return None


def conversation_problem(messages: Any) -> str | None:
    """Why a chat request's ``messages`` (one conversation, or a batch of them) cannot be answered, or None."""
    if not isinstance(messages, list):
        return None  # not a chat request vLLM accepts: its own validation answers
    batch = bool(messages) and all(isinstance(item, list) for item in messages)
    for conversation in messages if batch else [messages]:
        parts = [kind for message in conversation for kind in _media_parts(message)]
        if not any(kind in MEDIA_PARTS[FACE_TOKEN] for kind in parts):
            others = sorted({kind for kind in parts if kind in _OTHER_MEDIA_TYPES})
            return NEEDS_VIDEO + (f" (this model reads no {', '.join(others)} parts)" if others else "")
        problem = next(filter(None, map(_message_problem, conversation)), None)
        if problem:
            return problem
    return None


def body_problem(path: str, body: Any) -> str | None:
    """Why a POST body to ``path`` is refused (the message for a 400), or None to let vLLM handle it."""
    if not isinstance(body, dict):
        return None
    if body.get("media_io_kwargs"):
        return ("media_io_kwargs cannot be set per request on this server: the operator sets the video limits "
                "(emoreason serve --max-video-s, --max-video-mb)")  # fmt: skip
    if "messages" in body:
        return conversation_problem(body["messages"])
    if path == "/invocations":
        return PROMPT_ROUTE_OFF.format(path="/invocations without messages")
    return None


async def _read_body(receive) -> tuple[bytes, bool]:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False  # the client went away
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks), True


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _error(scope: dict, send, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    kind = {400: "BadRequestError", 401: "AuthenticationError"}.get(status, "Error")
    payload = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class RequestGuard:
    """Pure ASGI middleware: the API key on every route but :data:`OPEN_PATHS`, then the body checks for POSTs."""

    def __init__(self, app) -> None:
        self.app = app
        self._hashes: list[bytes] | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS":
            return await self.app(scope, receive, send)  # lifespan; CORS preflight (no data, answered by CORS)
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if self._hashes is None:
            self._hashes = api_key_hashes(scope)
        if self._hashes and path not in OPEN_PATHS and not authorized(scope, self._hashes):
            return await _error(scope, send, 401, "a valid API key is needed: Authorization: Bearer <key>")
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if path in PROMPT_ROUTES:
            return await _error(scope, send, 400, PROMPT_ROUTE_OFF.format(path=path))
        body, complete = await _read_body(receive)
        if complete:
            try:
                parsed = json.loads(body) if body else None
            except (ValueError, RecursionError):  # not JSON: vLLM answers it with its own 4xx
                parsed = None
            problem = body_problem(path, parsed)
            if problem:
                return await _error(scope, send, 400, problem)
            if path == CHAT_ROUTE and isinstance(parsed, dict):
                try:
                    completed = await complete_plain_request(scope, parsed)
                except ValueError as exc:  # the video cannot be fetched or analysed
                    return await _error(scope, send, 400, str(exc))
                if completed is not None:
                    body = json.dumps(completed).encode()
                    scope = dict(scope, headers=[(k, v) for k, v in scope.get("headers", [])
                                                 if k.lower() != b"content-length"]
                                 + [(b"content-length", str(len(body)).encode())])  # fmt: skip
        return await self.app(scope, _replay(body, receive), send)
