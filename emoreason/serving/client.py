"""Deprecated: the ``vllm`` backend (the client side) moved to :mod:`emoreason.backends.vllm`."""

import warnings

from emoreason.backends.vllm import API_KEY_ENV, VLLMBackend, audio_part, connect, explain_request, video_part

warnings.warn("emoreason.serving.client is deprecated: use emoreason.backends.vllm (VLLMBackend, connect)",
              DeprecationWarning, stacklevel=2)  # fmt: skip

VLLMExplainer = VLLMBackend

__all__ = ["API_KEY_ENV", "VLLMExplainer", "audio_part", "connect", "explain_request", "video_part"]
