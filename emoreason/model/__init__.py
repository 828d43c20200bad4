"""The emoreason multimodal model: face and audio towers, face-token compressor, connectors, LoRA LM.

Needs the ``model`` extra (torch, transformers, peft).
"""

from emoreason.model.checkpoint import CheckpointError, apply_lora, load_checkpoint, merge_lora, save_checkpoint
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.modeling import EmoReasonForConditionalGeneration
from emoreason.model.presets import PRESETS, build_preset
from emoreason.model.processor import EmoReasonProcessor

__all__ = [
    "CheckpointError",
    "EmoReasonConfig",
    "EmoReasonForConditionalGeneration",
    "EmoReasonProcessor",
    "PRESETS",
    "apply_lora",
    "build_preset",
    "load_checkpoint",
    "merge_lora",
    "save_checkpoint",
]
