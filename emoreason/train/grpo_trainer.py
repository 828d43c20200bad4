"""The GRPO trainer: TRL's ``GRPOTrainer`` with the face and audio tensors carried to generation and to the
log-prob forward, which TRL cannot do for this model on its own.

Its own module, at module level, so it can be imported, documented and tested; it needs ``trl``, so only the
GRPO stage (:func:`emoreason.train.grpo.build_trainer`) imports it, when a run builds its trainer.
"""

from __future__ import annotations

import json

import torch
from trl import GRPOTrainer
from trl.models.utils import unwrap_model_for_generation
from trl.trainer.utils import pad

from emoreason.data.schema import Sample
from emoreason.model.processor import MEDIA_KEYS


class EmoReasonGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer, carrying the face and audio tensors to ``generate`` and to the log-prob forward.

    A subclass is unavoidable: TRL 1.16 builds prompts with the tokenizer's chat template (our placeholders
    must expand to the compressed face/audio tokens) and forwards only image tensors of its known VLM layouts,
    silently dropping ``frame_mask``, ``input_features`` and ``audio_mask``. The overrides only supply those:
    prompt ids and media per row (``_generate_and_score_completions``, ``_tokenize_prompts``), generation with
    media (``_generate_single_turn``; our ``generate`` returns only the new tokens) and the media for each
    log-prob forward (``_compute_loss``, ``_get_per_token_logps_and_entropies``, which also scores only the
    completion positions). Scoring, advantages and the loss are TRL's. With ``beta > 0`` the KL reference is a
    frozen copy of the starting model (:func:`reference_copy`), which TRL cannot build for this model.
    """

    def __init__(self, *args, processor, cache, towers=None, **kwargs):
        """TRL's arguments plus the emoreason ``processor``, the ``cache`` of prepared media and (a frozen face tower)
        the :class:`~emoreason.train.tower_cache.TowerCache` of its outputs per clip."""
        self.emo_processor, self.media_cache, self.towers = processor, cache, towers
        self._media_keys = MEDIA_KEYS if towers is None else ("face_features",) + MEDIA_KEYS[1:]
        self._prompt_ids: list[list[int]] = []
        self._media: dict[str, torch.Tensor] = {}
        config = kwargs["args"]
        # the KL term's reference: the starting policy (the SFT model), copied before the trainer wraps its forward
        reference = reference_copy(kwargs["model"]) if config.beta != 0.0 else None
        beta, config.beta = config.beta, 0.0  # TRL would build its reference from a hub id: not for this model
        try:
            super().__init__(*args, **kwargs)
        finally:
            config.beta = beta
        if reference is not None:
            self.beta, self.ref_model = beta, self.accelerator.prepare_model(reference, evaluation_mode=True)

    def _prompt_features(self, row: str):
        """One row's prompt as model inputs: ids with the media placeholders expanded, plus its media; and the
        row's media cache key (the tower cache's key too)."""
        sample = Sample.from_dict(json.loads(row))
        prepared = self.media_cache.get(sample)  # cached; usable (checked upfront)
        messages = self.emo_processor.build_messages(prepared.evidence, has_audio=prepared.waveform is not None)
        return self.emo_processor(messages, faces=prepared.crops, audio=prepared.waveform), str(
            self.media_cache.path(sample))  # fmt: skip

    def _generate_and_score_completions(self, inputs):
        """Override: our prompt ids and media for the batch, then TRL's; the media ride on its output."""
        features, keys = zip(*(self._prompt_features(x["row"]) for x in inputs))
        self._prompt_ids = [f["input_ids"][0].tolist() for f in features]
        device = self.accelerator.device
        media = {k: torch.cat([f[k] for f in features]) for k in MEDIA_KEYS}  # [B*G, ...]
        if self.towers is not None:  # the frozen tower's output, once per clip (generation and every forward)
            media["face_features"] = self.towers.features(list(keys), media.pop("pixel_values"))
        self._media = {k: media[k].to(device) for k in self._media_keys}
        output = super()._generate_and_score_completions(inputs)
        return output | self._media  # split and shuffled with the completions, for _compute_loss

    def _tokenize_prompts(self, prompts):
        """Override: the ids made above (TRL's chat template would not expand the placeholders)."""
        return self._prompt_ids, None, {}

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        """Override: ``generate`` with the media; completions cut after their first EOS (kept)."""
        device, pad_id = self.accelerator.device, self._tokenizer.pad_token_id
        rows = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(rows, padding_value=pad_id, padding_side="left").to(device)
        attention_mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(device)
        with (
            unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                        gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                        generation_kwargs=self.generation_kwargs,
                                        gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs)
            as model, torch.no_grad(), self._dist.summon_full_params(self.model_wrapped, recurse=False),
            self.accelerator.autocast(),  # bf16 rollouts where training is bf16 (the KV cache is on: no checkpointing)
        ):  # fmt: skip
            completion_ids = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                **self._media,
                generation_config=self.generation_config,
            )  # fmt: skip  [B, N] new
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=completion_ids.device))
        ends = torch.where(is_eos.any(1), is_eos.int().argmax(1), completion_ids.size(1))  # first EOS, kept
        return [row[: int(end) + 1].tolist() for row, end in zip(completion_ids.cpu(), ends.cpu())], None

    def _compute_loss(self, model, inputs):
        """Override: the media of this (split, shuffled) batch, for the log-prob forward; TRL's loss."""
        self._media = {k: inputs[k] for k in self._media_keys}
        return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                           **image_inputs):  # fmt: skip
        """Override: the forward with the media, through the model's own loss path (the LM head only at the
        completion tokens, the rows' shared prompt prefix run once); log-probs and entropies ``[B, logits_to_keep]``.
        TRL's fused LM head would score every prompt position too on a CPU."""
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids, mask = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
            media = {k: v[start : start + batch_size] for k, v in self._media.items()}
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100  # only the completion is scored
            with self.accelerator.autocast():
                logits = model(input_ids=ids, attention_mask=mask, **media, labels=labels).logits  # [N, V]
            scored = labels[:, 1:] != -100  # [B, L-1]: position t scores token t+1
            log_probs = (logits.float() / self.temperature).log_softmax(-1)
            token = log_probs.gather(-1, labels[:, 1:][scored][:, None])[:, 0]  # [N]
            logps.append(token.new_zeros(scored.shape).masked_scatter(scored, token)[:, -logits_to_keep:])
            if compute_entropy:
                with torch.no_grad():
                    entropy = -(log_probs.exp() * log_probs).sum(-1)
                entropies.append(entropy.new_zeros(scored.shape).masked_scatter(scored, entropy)[:, -logits_to_keep:])
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None


def reference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` as it is now, in eval mode: GRPO's KL reference. Where training starts from an
    SFT checkpoint that is the SFT policy (its LoRA included), not the base LM that TRL's adapter-disabling
    reference would give, which never saw the answer format."""
    import copy

    if "forward" in vars(model):  # a trainer's wrapper would still call the original model's forward
        raise ValueError("reference_copy: copy the model before a trainer wraps its forward")
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference
