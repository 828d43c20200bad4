"""The face tower: a SigLIP-style vision encoder from transformers, run on aligned face crops; and
:func:`build_face_tower`, the one place that turns ``config.face_tower`` into a module (the transformers and the
vLLM model both call it through ``build_media_modules``, so their parameter names match).

Every tower maps crops ``[B, T, 3, S, S]`` to per-frame patch tokens ``[B, T, P, D]`` (D = face_config.hidden_size):
SigLIP's patch embeddings, or a CNN's last feature map positions (:mod:`emoreason.model.mobilenet_v2`,
:mod:`emoreason.model.mini_xception`).
"""

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


def grid_position_embedding(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position codes ``[height * width, dim]`` (row-major), as in MAE.

    A CNN's feature-map positions carry no explicit position, unlike SigLIP's patch tokens, and the compressor's
    region queries need to tell the mouth from the brow; the CNN towers add these (a buffer, not a weight)."""
    if dim % 4:
        raise ValueError(f"dim: expected a multiple of 4, got {dim}")
    freqs = 1.0 / (10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4)))  # [D/4]
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                                indexing="ij")  # fmt: skip
    parts = [f(axis.reshape(-1, 1) * freqs) for axis in (rows, cols) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1)  # [H*W, D]


def build_face_tower(config) -> nn.Module:
    """The face tower of an :class:`~emoreason.model.EmoReasonConfig`, random weights (importers fill them)."""
    if config.face_tower == "siglip":
        return FaceTower(config.face_config)
    if config.face_tower == "mobilenet_v2":
        from emoreason.model.mobilenet_v2 import MobileNetV2FaceTower

        return MobileNetV2FaceTower(config.face_config)
    if config.face_tower == "mini_xception":
        from emoreason.model.mini_xception import MiniXceptionFaceTower

        return MiniXceptionFaceTower(config.face_config)
    raise ValueError(f"face_tower: expected siglip, mobilenet_v2 or mini_xception, got {config.face_tower!r}")
