"""The ``vllm.general_plugins`` entry point: teach vLLM the emoreason config, model and video loader.

vLLM calls :func:`register` in every process it starts (API server, engine core, workers) before it reads a
checkpoint's ``config.json``. Registration is idempotent and cheap: the model class is registered by its import
path and only imported when a checkpoint asks for it.
"""

from __future__ import annotations

from emoreason.constants import ARCHITECTURE


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from emoreason.model.configuration import EmoReasonConfig
    from emoreason.serving import video_loader  # noqa: F401  (registers the "emoreason" video loader)

    AutoConfig.register(EmoReasonConfig.model_type, EmoReasonConfig, exist_ok=True)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, f"emoreason.serving.vllm_model:{ARCHITECTURE}")
