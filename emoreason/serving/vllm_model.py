"""The emoreason model for vLLM: the Hugging Face towers, compressor and connectors around vLLM's own LM.

Parameter names are those of :class:`emoreason.model.EmoReasonForConditionalGeneration`, so one checkpoint
(``model.safetensors``) loads in both; the language model is vLLM's implementation of the text config's
architecture (Qwen2 first), so paged attention, batching, LoRA and structured outputs come from vLLM.

Video items arrive as aligned face crops from the ``emoreason`` video loader
(:mod:`emoreason.serving.video_loader`); audio items as 16 kHz mono waveforms. Both go through the same
:class:`EmoReasonProcessor` preprocessing as training. Each ``<face>`` placeholder becomes ``num_face_tokens``
positions and each ``<audio>`` ``num_audio_tokens``, as in transformers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsLoRA, SupportsMultiModal
from vllm.model_executor.models.module_mapping import MultiModelKeys
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems, MultiModalDataParser
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
)

from emoreason.constants import AUDIO_SAMPLE_RATE, AUDIO_TOKEN, FACE_TOKEN
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.modeling import build_media_modules
from emoreason.model.processor import EmoReasonProcessor

_LM_ARCHITECTURES = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM"}


@functools.lru_cache(maxsize=4)
def _processor(path: str) -> EmoReasonProcessor:
    return EmoReasonProcessor.from_pretrained(path)


class EmoReasonProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> EmoReasonConfig:
        return self.ctx.get_hf_config(EmoReasonConfig)

    def get_hf_processor(self, **kwargs: object) -> EmoReasonProcessor:
        return _processor(self.ctx.model_config.model)

    def get_supported_mm_processor_kwargs(self) -> dict[str, set[str]]:
        return {}

    def get_data_parser(self) -> MultiModalDataParser:
        return MultiModalDataParser(
            target_sr=AUDIO_SAMPLE_RATE, target_channels=1, expected_hidden_size=self._get_expected_hidden_size()
        )

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"video": 1, "audio": 1}

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int] | None = None):
        config = self.get_hf_config()
        return {"video": config.num_face_tokens, "audio": config.num_audio_tokens}


class EmoReasonDummyInputsBuilder(BaseDummyInputsBuilder[EmoReasonProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return FACE_TOKEN * mm_counts.get("video", 0) + AUDIO_TOKEN * mm_counts.get("audio", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: MultiModalDummyOptions):
        processor = self.info.get_hf_processor()
        crops = np.zeros((processor.max_frames, 224, 224, 3), np.uint8)
        return {
            "video": [crops] * mm_counts.get("video", 0),
            "audio": [np.zeros(processor.num_audio_samples, np.float32)] * mm_counts.get("audio", 0),
        }


class EmoReasonMultiModalProcessor(BaseMultiModalProcessor[EmoReasonProcessingInfo]):
    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        processor = self.info.get_hf_processor()
        out: dict[str, torch.Tensor] = {}
        videos = [v[0] if isinstance(v, tuple) else v for v in hf_data.get("videos") or ()]
        if videos:
            faces = [processor.preprocess_faces(np.asarray(v, dtype=np.uint8)) for v in videos]
            out["pixel_values"] = torch.stack([pixels for pixels, _ in faces])
            out["frame_mask"] = torch.stack([mask for _, mask in faces])
        audios = [a[0] if isinstance(a, tuple) else a for a in hf_data.get("audio") or ()]
        if audios:
            out["input_features"] = torch.stack([processor.preprocess_audio(np.asarray(a))[0] for a in audios])
        return BatchFeature(out)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]):
        return {
            "pixel_values": MultiModalFieldConfig.batched("video"),
            "frame_mask": MultiModalFieldConfig.batched("video"),
            "input_features": MultiModalFieldConfig.batched("audio"),
        }

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        config = self.info.get_hf_config()
        face, audio = config.face_token_id, config.audio_token_id
        return [
            PromptReplacement(modality="video", target=[face], replacement=[face] * config.num_face_tokens),
            PromptReplacement(modality="audio", target=[audio], replacement=[audio] * config.num_audio_tokens),
        ]


@MULTIMODAL_REGISTRY.register_processor(
    EmoReasonMultiModalProcessor, info=EmoReasonProcessingInfo, dummy_inputs=EmoReasonDummyInputsBuilder
)
class EmoReasonForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsLoRA):
    """vLLM twin of :class:`emoreason.model.EmoReasonForConditionalGeneration` (same parameter names)."""

    packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
    # peft saves the LM's LoRA as base_model.model.{model,lm_head}.*; in this model the LM is `language_model`
    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={"model.": "language_model.model.", "lm_head.": "language_model.lm_head."}
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("video"):
            return FACE_TOKEN
        if modality.startswith("audio"):
            return AUDIO_TOKEN
        raise ValueError(f"emoreason models take a video (face) and an audio item, not {modality!r}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config: EmoReasonConfig = vllm_config.model_config.hf_config
        self.config = config
        media = build_media_modules(config)  # the transformers model's modules, so parameter names match
        with self._mark_tower_model(vllm_config, "video"):
            for name in ("face_tower", "face_compressor", "face_connector"):
                setattr(self, name, media[name])
        with self._mark_tower_model(vllm_config, "audio"):
            for name in ("audio_tower", "audio_connector"):
                setattr(self, name, media[name])
        architecture = _LM_ARCHITECTURES.get(config.text_config.model_type)
        if architecture is None:
            raise ValueError(
                f"text_config.model_type {config.text_config.model_type!r} is not one emoreason serves "
                f"({', '.join(_LM_ARCHITECTURES)})"
            )
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config.text_config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=[architecture],
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def _encode_faces(self, pixel_values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        dtype = next(self.face_tower.parameters()).dtype
        patches = self.face_tower(pixel_values.to(dtype))  # [N, T, P, Dv]
        compressed = self.face_compressor(patches, frame_mask=frame_mask.bool())
        # [N, K (+ AU tokens), Dt]
        return self.face_connector(compressed.tokens, compressed.au_logits, compressed.au_intensity)

    def _encode_audio(self, input_features: torch.Tensor) -> torch.Tensor:
        dtype = next(self.audio_tower.parameters()).dtype
        return self.audio_connector(self.audio_tower(input_features.to(dtype)))  # [N, M, Dt]

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        embeddings: list[torch.Tensor] = []
        pixel_values = kwargs.get("pixel_values")
        if pixel_values is not None:
            pixel_values = _stack(pixel_values)
            embeddings += list(self._encode_faces(pixel_values, _stack(kwargs["frame_mask"])))
        input_features = kwargs.get("input_features")
        if input_features is not None:
            embeddings += list(self._encode_audio(_stack(input_features)))
        return embeddings

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs: object):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)

    def get_mm_mapping(self) -> MultiModelKeys:
        return MultiModelKeys.from_string_field(
            language_model="language_model",
            connector=["face_connector.", "audio_connector."],
            tower_model=["face_tower.", "face_compressor.", "audio_tower."],
        )


def _stack(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.stack(list(value))
