"""Connectors: project face and audio tokens into the language model's embedding space."""

from __future__ import annotations

import torch
from torch import nn


class FaceConnector(nn.Module):
    """Two-layer MLP (LLaVA-1.5's projector): compressed face tokens -> LM embeddings."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, K, Dv] -> [B, K, Dt]
        return self.proj(tokens)


class AudioConnector(nn.Module):
    """Pool the audio encoder's frames to ``num_tokens`` and project them: [B, L, Da] -> [B, M, Dt].

    Adaptive average pooling over time keeps the order of events (the first token summarises the
    start of the clip); the MLP maps each pooled frame into the LM's space.
    """

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool1d(frames.transpose(1, 2), self.num_tokens).transpose(1, 2)
        return self.proj(self.norm(pooled))  # [B, M, Dt]
