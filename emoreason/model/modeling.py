"""EmoReasonForConditionalGeneration: face and audio encoders feeding a causal language model.

The composed model only encodes, compresses, projects, writes the media tokens into the
placeholder positions of the prompt, and runs the language model (nanoVLM's shape)::

    crops [B, T, 3, S, S] -> face_tower -> [B, T, P, Dv] -> face_compressor -> [B, K, Dv] (+ AU logits)
                                                          -> face_connector -> [B, K, Dt]
    log-mel [B, mels, L]  -> audio_tower -> [B, L/2, Da] -> audio_connector -> [B, M, Dt]
    prompt ids with K <face> and M <audio> placeholders -> embeddings, placeholders replaced -> language_model
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from emoreason.au import REGIONS
from emoreason.model.audio_tower import AudioTower
from emoreason.model.compressor import FaceTokenCompressor
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.connector import AudioConnector, FaceConnector


@dataclass
class EmoReasonOutput(ModelOutput):
    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    au_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # [B, L, V]; with labels only the labelled positions: [N, V]
    au_logits: torch.Tensor | None = None  # [B, A]
    past_key_values: object | None = None
    au_intensity: torch.Tensor | None = None  # [B, A], with the intensity head (``face_au_levels``)


def build_media_modules(config: EmoReasonConfig) -> dict[str, nn.Module]:
    """The face and audio paths (towers, compressor, connectors) by attribute name; the vLLM model builds the same
    modules with these names, so one checkpoint loads in both."""
    from emoreason.model.face_tower import build_face_tower

    face_dim, audio_dim = config.face_config.hidden_size, config.audio_config.d_model
    text_dim = config.text_config.hidden_size
    face_tower = build_face_tower(config)  # built in this order: it fixes how a seed initialises them
    compressor = FaceTokenCompressor(
        face_dim,
        num_regions=len(REGIONS),
        queries_per_region=config.face_queries_per_region,
        temporal_slots=config.face_temporal_slots,
        num_heads=config.compressor_heads,
        max_frames=config.max_frames,
        au_codes=config.au_codes,
        au_intensity=config.face_au_tokens and config.face_au_levels,
    )
    return {
        "face_tower": face_tower,
        "face_compressor": compressor,
        "audio_tower": AudioTower(config.audio_config),
        "face_connector": FaceConnector(face_dim, text_dim, len(config.au_codes) if config.face_au_tokens else 0,
                                        none_token=config.face_au_none_token, levels=config.face_au_levels),
        "audio_connector": AudioConnector(audio_dim, text_dim, config.num_audio_tokens),
    }


class EmoReasonPreTrainedModel(PreTrainedModel):
    config_class = EmoReasonConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True


class EmoReasonForConditionalGeneration(EmoReasonPreTrainedModel):
    """The emoreason multimodal LLM (see the module docstring for the data flow)."""

    def __init__(self, config: EmoReasonConfig):
        super().__init__(config)
        for name, module in build_media_modules(config).items():
            setattr(self, name, module)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()
        if config.freeze_towers:
            self.freeze_towers()

    def freeze_towers(self) -> None:
        for tower in (self.face_tower, self.audio_tower):
            tower.requires_grad_(False)

    def train(self, mode: bool = True) -> EmoReasonForConditionalGeneration:
        """As ``nn.Module.train``, but frozen towers stay in eval mode: a frozen CNN tower's BatchNorm must keep
        its pretrained statistics (in train mode it would normalise by the batch and update them)."""
        super().train(mode)
        if mode and self.config.freeze_towers:
            self.face_tower.eval()
            self.audio_tower.eval()
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    @property
    def base_model(self) -> _Backbone:
        """Multimodal embeddings through the LM's transformer, without its head: TRL's fused LM head (SFT, GRPO)
        calls ``model.base_model(...)`` for hidden states and projects them through ``get_output_embeddings()``."""
        return _Backbone(self)

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    # ---- media encoders -------------------------------------------------------------------------

    def encode_faces(
        self,
        pixel_values: torch.Tensor | None,
        frame_mask: torch.Tensor | None = None,
        region_mask=None,
        face_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Face crops ``[B, T, 3, S, S]`` -> (LM-space face tokens ``[B, K, Dt]``, AU logits ``[B, A]``).

        ``face_features`` ``[B, T, P, Dv]``: the frozen face tower's output for those crops, computed earlier
        (training caches it per clip: :class:`emoreason.train.tower_cache.TowerCache`); the tower is then skipped."""
        tokens, compressed = self.compress_faces(pixel_values, frame_mask, region_mask, face_features)
        return tokens, compressed.au_logits

    def compress_faces(self, pixel_values, frame_mask=None, region_mask=None, face_features=None):
        """As :meth:`encode_faces`, with the compressor's whole output (the AU intensities too) in place of the
        AU logits: (face tokens ``[B, K, Dt]``, :class:`~emoreason.model.compressor.CompressorOutput`)."""
        if face_features is None:
            face_features = self.encode_face_crops(pixel_values)
        elif face_features.ndim != 4 or face_features.shape[1] > self.config.max_frames:
            raise ValueError(f"face_features: expected [B, T <= {self.config.max_frames}, P, D], "
                             f"got {list(face_features.shape)}")  # fmt: skip
        compressed = self.face_compressor(face_features, frame_mask=frame_mask, region_mask=region_mask)
        return self.face_connector(compressed.tokens, compressed.au_logits, compressed.au_intensity), compressed

    def encode_face_crops(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The face tower alone: crops ``[B, T, 3, S, S]`` -> patch tokens ``[B, T, P, Dv]``."""
        size = self.config.face_config.image_size
        if pixel_values.ndim != 5 or pixel_values.shape[2:] != (3, size, size):
            raise ValueError(
                f"pixel_values: expected [B, T, 3, {size}, {size}], got {list(pixel_values.shape)} "
                "(crop size must match face_config.image_size)"
            )
        if pixel_values.shape[1] > self.config.max_frames:
            raise ValueError(
                f"pixel_values: expected at most {self.config.max_frames} frames, got {pixel_values.shape[1]}"
            )
        dtype = next(self.face_tower.parameters()).dtype
        return self.face_tower(pixel_values.to(dtype))  # [B, T, P, Dv]

    def encode_audio(self, input_features: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, mels, L]`` -> LM-space audio tokens ``[B, M, Dt]``."""
        mels, length = self.config.audio_config.num_mel_bins, 2 * self.config.audio_config.max_source_positions
        if input_features.ndim != 3 or input_features.shape[1:] != (mels, length):
            raise ValueError(f"input_features: expected [B, {mels}, {length}], got {list(input_features.shape)}")
        dtype = next(self.audio_tower.parameters()).dtype
        return self.audio_connector(self.audio_tower(input_features.to(dtype)))

    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        face_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt embeddings with the media tokens written into the placeholder positions, and the compressor's
        output (:class:`~emoreason.model.compressor.CompressorOutput`; ``None`` without faces)."""
        embeds = self.get_input_embeddings()(input_ids)  # [B, L, Dt]
        compressed = None
        face_slots = input_ids == self.config.face_token_id  # [B, L]
        if pixel_values is not None or face_features is not None:
            face_tokens, compressed = self.compress_faces(pixel_values, frame_mask, face_features=face_features)
            embeds = _scatter(embeds, face_slots, face_tokens, "<face>")
        elif face_slots.any():
            raise ValueError(f"the prompt has {int(face_slots.sum())} <face> tokens but no pixel_values were given")
        audio_slots = input_ids == self.config.audio_token_id
        if audio_slots.any():
            if input_features is None:
                raise ValueError(f"the prompt has {int(audio_slots.sum())} <audio> tokens but no input_features")
            with_audio = audio_slots.any(1) if audio_mask is None else audio_mask.bool()  # [B]
            audio_tokens = self.encode_audio(input_features[with_audio])
            embeds[with_audio] = _scatter(embeds[with_audio], audio_slots[with_audio], audio_tokens, "<audio>")
        return embeds, compressed

    # ---- training and inference -----------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        au_labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        face_features: torch.Tensor | None = None,
        au_intensities: torch.Tensor | None = None,
        **kwargs,
    ) -> EmoReasonOutput:
        """LM loss on ``labels`` (-100 = ignored) plus ``au_loss_weight`` x the AU head's BCE on
        ``au_labels`` ``[B, A]`` (values in 0..1, NaN where a label is unknown), plus, with the intensity head
        (``face_au_levels``), its squared error on ``au_intensities`` ``[B, A]`` (0-5 where an AU is present with
        a known intensity, NaN elsewhere): ``au_loss`` is their sum.

        Without ``labels``, ``logits`` are every position's ``[B, L, V]``. With them, the LM head runs only where
        a next token is labelled (the answer: a third of an SFT row): ``logits`` are those positions' ``[N, V]``,
        in order, and ``lm_loss`` is their summed cross-entropy over ``num_items_in_batch`` (the labelled tokens
        of the whole accumulated batch, as the Trainer passes it), else over ``N``. ``face_features``: the frozen
        face tower's output for ``pixel_values``, when computed earlier (:meth:`encode_faces`).
        """
        compressed = None
        if inputs_embeds is None:
            inputs_embeds, compressed = self.embed(input_ids, pixel_values, frame_mask, input_features, audio_mask,
                                                   face_features)  # fmt: skip
        au_logits = None if compressed is None else compressed.au_logits
        au_intensity = None if compressed is None else compressed.au_intensity
        if labels is None:
            out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
            lm_loss, logits, past = None, out.logits, getattr(out, "past_key_values", None)
        else:
            hidden, labels = self.labelled_hidden_states(inputs_embeds, attention_mask, labels, input_ids, **kwargs)
            lm_loss, logits = self.answer_loss(hidden, labels, num_items_in_batch)
            past = None
        au_loss = None
        if au_labels is not None and au_logits is not None:
            au_loss = au_head_loss(au_logits, au_labels)
            if au_intensities is not None and au_intensity is not None:
                au_loss = au_loss + au_intensity_loss(au_intensity, au_intensities)
        loss = lm_loss
        if au_loss is not None:
            loss = au_loss * self.config.au_loss_weight if loss is None else loss + self.config.au_loss_weight * au_loss
        return EmoReasonOutput(loss, lm_loss, au_loss, logits, au_logits, past, au_intensity=au_intensity)

    def labelled_hidden_states(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LM's last hidden states ``[B, L', D]`` and the ``labels`` ``[B, L']`` they align with, for the loss.

        Every training row starts with the same tokens (the system prompt and the fixed instructions: 226 of a
        256-token smol prompt), none of them labelled. That shared prefix runs through the LM once, for the first
        row, and its keys and values are repeated for the others, which continue from it: about half the tokens of
        an SFT batch of 8. Gradients flow through the repeated cache as through the rows' own prefixes, and the
        hidden states of the unlabelled prefix, which no loss reads, are left out (``L' = L - prefix``).
        """
        backbone, batch = self.base_model, inputs_embeds.shape[0]
        checkpointing = getattr(_causal_lm(self.language_model), "is_gradient_checkpointing", False)  # no KV cache
        media = (self.config.face_token_id, self.config.audio_token_id)  # their embeddings differ between rows
        shared = 0 if checkpointing or input_ids is None else shared_prefix_length(input_ids, attention_mask, labels,
                                                                                   media)  # fmt: skip
        kwargs["use_cache"] = False
        if shared == 0:
            hidden = backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs).last_hidden_state
            return hidden, labels
        kwargs["use_cache"] = True
        prefix = backbone(inputs_embeds=inputs_embeds[:1, :shared], **kwargs).past_key_values
        prefix.batch_repeat_interleave(batch)  # [1, H, P, d] -> [B, H, P, d] in every layer
        positions = torch.arange(shared, inputs_embeds.shape[1], device=inputs_embeds.device).expand(batch, -1)
        rest = backbone(inputs_embeds=inputs_embeds[:, shared:], attention_mask=attention_mask,
                        past_key_values=prefix, position_ids=positions, **kwargs)  # fmt: skip
        return rest.last_hidden_state, labels[:, shared:]

    def answer_loss(
        self, hidden: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(token cross-entropy, logits ``[N, V]``) at the ``N`` positions whose next token is labelled.

        ``hidden`` is the LM's last hidden state ``[B, L, D]``; the hidden states are gathered before the LM head,
        so no full-vocabulary logits are built for the prompt. The cross-entropy is computed in float32."""
        if labels.shape != hidden.shape[:2]:
            raise ValueError(f"labels: expected {list(hidden.shape[:2])}, got {list(labels.shape)}")
        targets = labels[:, 1:].to(hidden.device)  # [B, L-1]: position t predicts token t+1
        scored = targets != -100
        logits = self.get_output_embeddings()(hidden[:, :-1][scored])  # [N, V]
        cap = getattr(self.config.text_config, "final_logit_softcapping", None)  # Gemma
        if cap:
            logits = torch.tanh(logits / cap) * cap
        total = nn.functional.cross_entropy(logits.float(), targets[scored], reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else scored.sum().clamp(min=1)
        return total / count, logits

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        face_features: torch.Tensor | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """New token ids ``[B, N]`` (the prompt is not repeated), from the LM's own ``generate``."""
        embeds, _ = self.embed(input_ids, pixel_values, frame_mask, input_features, audio_mask, face_features)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs)


class _Backbone:
    """Callable view of the model up to the LM's last hidden state (not a module: it owns no weights)."""

    def __init__(self, model: EmoReasonForConditionalGeneration):
        self.model = model

    def __call__(self, input_ids=None, attention_mask=None, pixel_values=None, frame_mask=None, input_features=None,
                 audio_mask=None, au_labels=None, inputs_embeds=None, face_features=None, au_intensities=None,
                 **kwargs):  # fmt: skip
        if inputs_embeds is None:
            inputs_embeds, _ = self.model.embed(input_ids, pixel_values, frame_mask, input_features, audio_mask,
                                                face_features)  # fmt: skip
        causal = _causal_lm(self.model.language_model)
        return causal.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)


MIN_SHARED_PREFIX = 16  # a shorter common prefix is not worth the LM's second call


def shared_prefix_length(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor, media_ids: tuple[int, ...] = ()
) -> int:
    """How many leading tokens every row of ``input_ids`` ``[B, L]`` shares, unpadded, before any media placeholder
    (``media_ids``), with no label on them or on the token after them (the last shared position predicts it); 0 for
    one row or a prefix under 16 tokens."""
    if input_ids.shape[0] < 2:
        return 0
    media = torch.isin(input_ids[0], torch.tensor(media_ids, device=input_ids.device))
    same = (input_ids == input_ids[:1]).all(0) & ~media  # [L]
    if attention_mask is not None:
        same &= attention_mask.bool().all(0)
    shared = int(same.int().cumprod(0).sum())
    labelled = (labels != -100).any(0).nonzero()  # [k, 1]
    if len(labelled):
        shared = min(shared, int(labelled[0, 0]) - 1)
    shared = min(shared, input_ids.shape[1] - 1)  # at least one position of each row runs on its own
    return shared if shared >= MIN_SHARED_PREFIX else 0


def _causal_lm(language_model: nn.Module) -> nn.Module:
    """The causal LM inside a peft wrapper (which keeps the LoRA layers inside it), or the LM itself."""
    return language_model.get_base_model() if hasattr(language_model, "get_base_model") else language_model


def _scatter(embeds: torch.Tensor, slots: torch.Tensor, tokens: torch.Tensor, name: str) -> torch.Tensor:
    """Write ``tokens`` [B, N, D] into the ``slots`` [B, L] positions of ``embeds`` [B, L, D]."""
    per_sample = slots.sum(1)  # [B]
    if not bool((per_sample == tokens.shape[1]).all()):
        raise ValueError(
            f"{name} placeholders per sample: expected {tokens.shape[1]} (one clip each), got {per_sample.tolist()}"
        )
    out = embeds.clone()
    out[slots] = tokens.reshape(-1, tokens.shape[-1]).to(embeds.dtype)
    return out


def au_head_loss(au_logits: torch.Tensor, au_labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the AU head over known labels (NaN labels are ignored)."""
    if au_labels.shape != au_logits.shape:
        raise ValueError(f"au_labels: expected {list(au_logits.shape)}, got {list(au_labels.shape)}")
    known = ~torch.isnan(au_labels)
    if not bool(known.any()):
        return au_logits.sum() * 0.0
    return nn.functional.binary_cross_entropy_with_logits(au_logits[known], au_labels[known].to(au_logits.dtype))


def au_intensity_loss(au_intensity: torch.Tensor, au_intensities: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the intensity head where ``au_intensities`` is known (not NaN): the AUs a clip shows,
    each with its intensity, on a 0-1 scale (intensity / 5) so it weighs as the AU head's BCE does. On the 0-5
    scale it dominated the clipped gradient (v18: grad norm 7-16 against 0.1-3 without it, BENCHMARKS.md)."""
    if au_intensities.shape != au_intensity.shape:
        raise ValueError(f"au_intensities: expected {list(au_intensity.shape)}, got {list(au_intensities.shape)}")
    known = ~torch.isnan(au_intensities)
    if not bool(known.any()):
        return au_intensity.sum() * 0.0
    truth = au_intensities[known].float().to(au_intensity.device)
    return nn.functional.mse_loss(au_intensity[known].float() / 5, truth / 5)
