"""The audio tower: a Whisper encoder from transformers, run on log-mel features."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedConfig, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder


class AudioTower(nn.Module):
    """``[B, mels, 2 * max_source_positions]`` log-mel features -> ``[B, max_source_positions, D]``."""

    def __init__(self, config: PreTrainedConfig):
        super().__init__()
        self.encoder = WhisperEncoder(config)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> AudioTower:
        """Take the encoder of a local Whisper checkpoint (the decoder is dropped)."""
        tower = cls.__new__(cls)
        nn.Module.__init__(tower)
        tower.encoder = WhisperModel.from_pretrained(str(path)).get_encoder()
        return tower

    @property
    def config(self) -> PreTrainedConfig:
        return self.encoder.config

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_features).last_hidden_state  # [B, L, D]
