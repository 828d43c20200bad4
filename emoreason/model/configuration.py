"""EmoReasonConfig: the towers, the face-token compressor, the connectors and the language model.

Sub-configs are ordinary transformers configs (a face tower for face crops: SigLIP, or a pretrained CNN whose
config lives in :mod:`emoreason.model.face_configs`; a Whisper encoder for log-mel audio; a Qwen2- or
Llama-family causal LM), so each part can be built from a local pretrained checkpoint of that family or from
its config alone (random weights, for tests). ``face_tower`` names the face tower's kind; ``face_config`` must be
that kind's config.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CONFIG_MAPPING, AutoConfig
from transformers.configuration_utils import PreTrainedConfig

from emoreason.au import AU_CODES, REGIONS
from emoreason.model import face_configs

# face_tower -> (model_type of its face_config, default fields)
FACE_TOWERS = {
    "siglip": ("siglip_vision_model", {"image_size": 224, "patch_size": 16}),
    "mobilenet_v2": (face_configs.MobileNetV2FaceConfig.model_type, {}),
    "mini_xception": (face_configs.MiniXceptionFaceConfig.model_type, {}),
}

MAX_FACE_TOKENS = 32  # FaceTrack-MM: a few tokens for the main face
MAX_AUDIO_TOKENS = 16


@strict
class EmoReasonConfig(PreTrainedConfig):
    r"""
    Args:
        face_tower: the face tower's kind: "siglip" (a SigLIP vision encoder), "mobilenet_v2" (torchvision's
            ImageNet CNN) or "mini_xception" (the FER2013 expression CNN).
        face_config: config of the face tower (aligned face crops in, patch tokens out); its model_type must be
            the one of ``face_tower`` (defaults follow ``face_tower``).
        audio_config: Whisper config; only its encoder is used (log-mel features in).
        text_config: config of the causal language model (Qwen2 family first).
        face_temporal_slots: temporal slots per AU region; face tokens = len(REGIONS) x slots (<= 32).
        num_audio_tokens: audio tokens per clip (<= 16).
        max_frames: face crops per clip.
        face_token_id, audio_token_id: ids of the ``<face>`` / ``<audio>`` placeholder tokens.
        au_loss_weight: weight of the AU head's auxiliary loss when AU labels are given.
        face_au_tokens: after the compressed tokens, one token per AU in the LM's own embedding of the AU's name,
            weighted by the AU head's probability (:class:`emoreason.model.connector.FaceConnector`).
        face_au_none_token: with ``face_au_tokens``, one more token after them that says whether any AU moved
            (its weight the probability that none did).
        face_au_levels: with ``face_au_tokens``, the compressor also regresses each AU's intensity (0-5) and each
            AU token is followed by a level token, the LM's embedding of its FACS letter (A-E) at that intensity.
        freeze_towers: keep the face and audio towers frozen (the default for training).
    """

    model_type = "emoreason"
    sub_configs = {"face_config": AutoConfig, "audio_config": AutoConfig, "text_config": AutoConfig}
    # (model_type, defaults) of each sub-config when it is given as None or as a dict without a model_type
    sub_config_defaults = {
        "face_config": FACE_TOWERS["siglip"],
        "audio_config": ("whisper", {}),
        "text_config": ("qwen2", {}),
    }

    face_tower: str = "siglip"
    face_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    face_temporal_slots: int = 4
    face_queries_per_region: int = 1
    compressor_heads: int = 4
    num_audio_tokens: int = 16
    max_frames: int = 16
    face_token_id: int = 0
    audio_token_id: int = 1
    au_codes: list[str] | None = None
    au_loss_weight: float = 0.5
    face_au_tokens: bool = False
    face_au_none_token: bool = False
    face_au_levels: bool = False
    freeze_towers: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        # built here, not by transformers, so the config reads the same under transformers 5.19 (vLLM's pin) and 5.23
        if self.face_tower not in FACE_TOWERS:
            raise ValueError(f"face_tower: expected one of {', '.join(FACE_TOWERS)}, got {self.face_tower!r}")
        sub_defaults = dict(self.sub_config_defaults, face_config=FACE_TOWERS[self.face_tower])
        for name, (model_type, defaults) in sub_defaults.items():
            value = getattr(self, name)
            if value is None:
                value = dict(defaults)
            if isinstance(value, dict):
                value = dict(value)
                value = CONFIG_MAPPING[value.pop("model_type", model_type)](**value)
            setattr(self, name, value)
        super().__post_init__(**kwargs)
        expected_type = FACE_TOWERS[self.face_tower][0]
        if self.face_config.model_type != expected_type:
            raise ValueError(f"face_config.model_type: expected {expected_type!r} for face_tower={self.face_tower!r}, "
                             f"got {self.face_config.model_type!r}")  # fmt: skip
        if self.au_codes is None:
            self.au_codes = list(AU_CODES)
        if not 1 <= self.num_compressed_face_tokens <= MAX_FACE_TOKENS:
            raise ValueError(
                f"face_temporal_slots={self.face_temporal_slots} gives {self.num_compressed_face_tokens} face tokens; "
                f"expected 1..{MAX_FACE_TOKENS} ({len(REGIONS)} regions x slots x queries_per_region)"
            )
        if not 1 <= self.num_audio_tokens <= MAX_AUDIO_TOKENS:
            raise ValueError(f"num_audio_tokens must be in 1..{MAX_AUDIO_TOKENS}, got {self.num_audio_tokens}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")

    @property
    def num_compressed_face_tokens(self) -> int:
        """The compressor's tokens: regions x queries x temporal slots."""
        return len(REGIONS) * self.face_queries_per_region * self.face_temporal_slots

    @property
    def num_face_tokens(self) -> int:
        """LM positions a ``<face>`` takes: the compressed tokens, then one AU token per AU with ``face_au_tokens``
        (each followed by its level token with ``face_au_levels``; and the none token with ``face_au_none_token``)."""
        if not self.face_au_tokens:
            return self.num_compressed_face_tokens
        au_tokens = len(self.au_codes) * (2 if self.face_au_levels else 1)
        return self.num_compressed_face_tokens + au_tokens + bool(self.face_au_none_token)


__all__ = ["EmoReasonConfig", "MAX_FACE_TOKENS", "MAX_AUDIO_TOKENS"]
