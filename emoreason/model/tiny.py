"""A complete tiny emoreason checkpoint from configs: random weights, a small trained tokenizer.

For tests, demos and CI (no model hub here). Attention heads are 64 wide because vLLM's CPU backend
rejects smaller head sizes. Builds in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from emoreason.model.checkpoint import apply_lora, save_checkpoint
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.modeling import EmoReasonForConditionalGeneration

TINY_FACE = {"model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 1, "num_attention_heads": 1, "image_size": 64, "patch_size": 16}  # fmt: skip
TINY_AUDIO = {
    "model_type": "whisper",
    "d_model": 64,
    "encoder_layers": 1,
    "encoder_attention_heads": 1,
    "encoder_ffn_dim": 128,
    "decoder_layers": 1,
    "decoder_attention_heads": 1,
    "decoder_ffn_dim": 64,
    "num_mel_bins": 80,
    "max_source_positions": 150,
    "vocab_size": 64,
    "pad_token_id": 0,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "decoder_start_token_id": 0,
}  # fmt: skip  (the decoder is never used)
TINY_TEXT = {"model_type": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64, "max_position_embeddings": 2048,
             "tie_word_embeddings": False}  # fmt: skip


def tiny_config(tokenizer, **overrides) -> EmoReasonConfig:
    """Config of the tiny model, with the placeholder ids and vocabulary of ``tokenizer``."""
    from emoreason.constants import AUDIO_TOKEN, FACE_TOKEN

    text = dict(TINY_TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=None)  # fmt: skip
    values = {
        "face_config": TINY_FACE, "audio_config": TINY_AUDIO, "text_config": text, "face_temporal_slots": 2,
        "num_audio_tokens": 4, "max_frames": 8, "face_token_id": tokenizer.convert_tokens_to_ids(FACE_TOKEN),
        "audio_token_id": tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
    }  # fmt: skip
    values.update(overrides)
    return EmoReasonConfig(**values)


def build_tiny(seed: int = 0, lora: bool = True, **overrides):
    """(model, processor) with random weights; LoRA attached to the language model if ``lora``."""
    from emoreason.model.processor import EmoReasonProcessor
    from emoreason.model.tokenizer import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer()
    config = tiny_config(tokenizer, **overrides)
    torch.manual_seed(seed)
    model = EmoReasonForConditionalGeneration(config)
    if lora:
        apply_lora(model, r=8, alpha=16, dropout=0.0)
    return model, EmoReasonProcessor.from_config(tokenizer, config)


def make_tiny_checkpoint(path: str | Path, seed: int = 0, lora: bool = True, **overrides) -> Path:
    """Write a complete tiny checkpoint directory (config, weights, adapter, tokenizer, processor); ``overrides``:
    config fields, as :func:`build_tiny`."""
    model, processor = build_tiny(seed=seed, lora=lora, **overrides)
    return save_checkpoint(model, path, processor=processor)
