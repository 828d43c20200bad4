"""The face tower: a SigLIP-style vision encoder from transformers, run on aligned face crops."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedConfig, SiglipVisionConfig, SiglipVisionModel


class FaceTower(nn.Module):
    """Per-frame patch tokens: ``[B, T, 3, S, S]`` crops -> ``[B, T, P, D]``."""

    def __init__(self, config: PreTrainedConfig):
        super().__init__()
        self.encoder = SiglipVisionModel(config)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FaceTower:
        """Load the vision encoder of a local SigLIP checkpoint (a vision-only or a full SigLIP model)."""
        tower = cls.__new__(cls)
        nn.Module.__init__(tower)
        tower.encoder = SiglipVisionModel.from_pretrained(str(path))
        return tower

    @property
    def config(self) -> SiglipVisionConfig:
        return self.encoder.config

    @property
    def num_patches(self) -> int:
        return (self.config.image_size // self.config.patch_size) ** 2

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, frames = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)  # [B*T, 3, S, S]
        patches = self.encoder(pixel_values=flat).last_hidden_state  # [B*T, P, D]
        return patches.unflatten(0, (batch, frames))  # [B, T, P, D]
