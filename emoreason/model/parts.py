"""Build an emoreason model from local pretrained parts: a SigLIP face tower, a Whisper audio tower
and a causal LM, each a Hugging Face directory on disk (no hub), or a config dict for random weights (a CNN face
tower is built from its config and filled by :mod:`emoreason.model.importers`, as the ``smol`` preset does). The compressor and connectors start
from random weights; the language model can load in 4 bits (QLoRA) through bitsandbytes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from emoreason.model.audio_tower import AudioTower
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.face_tower import FaceTower
from emoreason.model.modeling import EmoReasonForConditionalGeneration


def _config(part: str | Path | dict, kind: str) -> dict | object:
    if isinstance(part, dict):
        return part
    path = Path(part)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{kind}: {path} has no config.json (expected a local Hugging Face model directory)")
    config = AutoConfig.from_pretrained(str(path))
    return getattr(config, "vision_config", config) if kind == "face" else config  # a full SigLIP -> its vision half


def build_from_parts(
    face: str | Path | dict,
    audio: str | Path | dict,
    language_model: str | Path | dict,
    tokenizer,
    quantize_4bit: bool = False,
    **config_kwargs,
) -> EmoReasonForConditionalGeneration:
    """A model whose towers and LM are loaded from local directories (or built from config dicts).

    Args:
        face, audio, language_model: local model directories, or config dicts for random weights.
        tokenizer: the tokenizer with emoreason's special tokens; the LM's embeddings are resized to it.
        quantize_4bit: load the LM in 4-bit NF4 (bitsandbytes) for QLoRA; then attach LoRA with
            :func:`emoreason.model.checkpoint.apply_lora`.
        config_kwargs: further :class:`EmoReasonConfig` fields (face_temporal_slots, num_audio_tokens, ...).
    """
    from emoreason.constants import AUDIO_TOKEN, FACE_TOKEN

    text = _config(language_model, "language_model")
    text_dict = text if isinstance(text, dict) else text.to_dict()
    config = EmoReasonConfig(
        face_config=_config(face, "face"), audio_config=_config(audio, "audio"),
        text_config=dict(text_dict, vocab_size=len(tokenizer)),
        face_token_id=tokenizer.convert_tokens_to_ids(FACE_TOKEN),
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN), **config_kwargs,
    )  # fmt: skip
    if config.face_tower != "siglip" and not isinstance(face, dict):
        raise ValueError(f"face: a directory loads a SigLIP tower, but face_tower={config.face_tower!r}; pass a config "
                         "dict and load the CNN's weights with emoreason.model.importers")  # fmt: skip
    model = EmoReasonForConditionalGeneration(config)
    if not isinstance(face, dict):
        model.face_tower = FaceTower.from_pretrained(face)
    if not isinstance(audio, dict):
        model.audio_tower = AudioTower.from_pretrained(audio)
    if not isinstance(language_model, dict):
        kwargs = {}
        if quantize_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32,
            )  # fmt: skip
        lm = AutoModelForCausalLM.from_pretrained(str(language_model), **kwargs)
        if lm.get_input_embeddings().num_embeddings != len(tokenizer):
            lm.resize_token_embeddings(len(tokenizer))
        model.language_model = lm
    if config.freeze_towers:
        model.freeze_towers()
    return model
