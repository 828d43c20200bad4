"""GRPO with TRL's GRPOTrainer: sample completions for each clip, score them with the rewards, push the policy
toward the better ones (Facial-R1 stage 2, on top of the SFT checkpoint).

The recipe names the rewards (:data:`emoreason.train.rewards.REWARDS`) and TRL's ``reward_weights`` weighs them,
so each is logged on its own. Generation runs through the model's own ``generate`` (on CPU, TRL's vLLM modes do not
work: see DESIGN.md). Media are preprocessed once through the :class:`MediaCache`; rows with unusable media are
skipped and counted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from emoreason.au import LABEL_SPACES
from emoreason.data.jsonl import read_samples
from emoreason.data.schema import Sample
from emoreason.model.processor import MEDIA_KEYS
from emoreason.train.recipe import (
    RecipeError,
    TrainRecipe,
    check_reward_names,
    last_checkpoint,
    load_model,
    load_processor_and_cache,
    parse_recipe,
    save_final,
)
from emoreason.train.rewards import REWARDS

logger = logging.getLogger(__name__)


@dataclass
class GRPORecipe(TrainRecipe):
    """What a GRPO run trains on and how completions are scored (the trainer arguments are TRL's GRPOConfig,
    whose ``reward_weights`` weigh ``reward_funcs`` in order)."""

    reward_funcs: list[str] = field(default_factory=lambda: ["format", "emotion", "au_f1"],
                                    metadata={"help": f"reward names, from {sorted(REWARDS)}"})  # fmt: skip
    label_space: str = field(default="basic", metadata={"help": "label space of every training row"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reward_names(self.reward_funcs)
        if self.label_space not in LABEL_SPACES:
            raise RecipeError(f"label_space: unknown {self.label_space!r}; use one of {sorted(LABEL_SPACES)}")


def check_args(recipe: GRPORecipe, args) -> None:
    """The GRPOConfig arguments this model can run with; RecipeError naming the argument otherwise."""
    weights = args.reward_weights
    if weights is not None:
        if len(weights) != len(recipe.reward_funcs):
            raise RecipeError(f"reward_weights: {len(weights)} weights for {len(recipe.reward_funcs)} reward_funcs "
                              f"{recipe.reward_funcs}; give one weight per reward, in the same order")  # fmt: skip
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise RecipeError(f"reward_weights must be finite and >= 0, got {weights}")
    if args.beta != 0.0:
        raise RecipeError("beta: the KL term needs a reference model, which TRL cannot build for an emoreason "
                          "checkpoint; set beta: 0.0 (GRPO without KL, as in DAPO)")  # fmt: skip
    if args.use_vllm:
        raise RecipeError("use_vllm: TRL's vLLM rollouts do not carry face/audio tensors; set use_vllm: false")


def load_rows(recipe: GRPORecipe, cache) -> tuple[list[dict], dict]:
    """Labelled rows of the split whose media are usable; counts of what was skipped.

    A row in another label space than the recipe's fails at start: its labels would be scored in the wrong space.
    """
    rows, skipped = [], {"split": 0, "no label": 0, "unusable media": 0}
    for sample in read_samples(recipe.train_data):
        if recipe.split is not None and sample.split != recipe.split:
            skipped["split"] += 1
            continue
        if sample.label_space != recipe.label_space:
            raise RecipeError(f"label_space: the recipe says {recipe.label_space!r} but row {sample.id} of "
                              f"{recipe.train_data} is in {sample.label_space!r}")  # fmt: skip
        if not sample.labels:
            skipped["no label"] += 1
        elif cache.get(sample) is None:
            skipped["unusable media"] += 1
        else:
            rows.append(sample.to_dict())
        if recipe.max_samples and len(rows) >= recipe.max_samples:
            break
    if not rows:
        raise RecipeError(f"train_data: {recipe.train_data} has no usable labelled rows ({skipped})")
    return rows, skipped


def make_dataset(rows: list[dict], processor):
    """TRL's prompt column (the rendered prompt, for its logs) plus the columns the rewards read."""
    from datasets import Dataset

    prompt = processor.tokenizer.apply_chat_template(processor.build_messages(), tokenize=False,
                                                     add_generation_prompt=True)  # fmt: skip
    return Dataset.from_dict({
        "prompt": [prompt] * len(rows),
        "row": [json.dumps(r) for r in rows],  # the sample, as JSON text: Arrow would pad its nested fields
        "labels": [r["labels"] for r in rows],
        "label_space": [r["label_space"] for r in rows],
        "aus": [[{"code": a["code"], "intensity": a["intensity"]} for a in r["aus"]] for r in rows],
    })  # fmt: skip


def _grpo_trainer_class():
    from trl import GRPOTrainer
    from trl.models.utils import unwrap_model_for_generation
    from trl.trainer.utils import pad

    class EmoReasonGRPOTrainer(GRPOTrainer):
        """TRL's GRPOTrainer, carrying the face and audio tensors to ``generate`` and to the log-prob forward.

        A subclass is unavoidable: TRL 1.16 builds prompts with the tokenizer's chat template (our placeholders
        must expand to the compressed face/audio tokens) and forwards only image tensors of its known VLM layouts,
        silently dropping ``frame_mask``, ``input_features`` and ``audio_mask``. The overrides only supply those:
        prompt ids and media per row (``_generate_and_score_completions``, ``_tokenize_prompts``), generation with
        media (``_generate_single_turn``; our ``generate`` returns only the new tokens) and the media for each
        log-prob forward (``_compute_loss``, ``_get_per_token_logps_and_entropies``). Scoring, advantages and the
        loss are TRL's.
        """

        def __init__(self, *args, processor, cache, **kwargs):
            self.emo_processor, self.media_cache = processor, cache
            self._prompt_ids: list[list[int]] = []
            self._media: dict[str, torch.Tensor] = {}
            super().__init__(*args, **kwargs)

        def _prompt_features(self, row: str):
            prepared = self.media_cache.get(Sample.from_dict(json.loads(row)))  # cached; usable (checked upfront)
            messages = self.emo_processor.build_messages(prepared.evidence, has_audio=prepared.waveform is not None)
            return self.emo_processor(messages, faces=prepared.crops, audio=prepared.waveform)

        def _generate_and_score_completions(self, inputs):
            features = [self._prompt_features(x["row"]) for x in inputs]
            self._prompt_ids = [f["input_ids"][0].tolist() for f in features]
            device = self.accelerator.device
            self._media = {k: torch.cat([f[k] for f in features]).to(device) for k in MEDIA_KEYS}  # [B*G, ...]
            output = super()._generate_and_score_completions(inputs)
            return output | self._media  # split and shuffled with the completions, for _compute_loss

        def _tokenize_prompts(self, prompts):
            return self._prompt_ids, None, {}

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
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
            self._media = {k: inputs[k] for k in MEDIA_KEYS}
            return super()._compute_loss(model, inputs)

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **image_inputs):  # fmt: skip
            batch_size = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                ids, mask = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
                media = {k: v[start : start + batch_size] for k, v in self._media.items()}
                labels = ids.masked_fill(mask == 0, -100)
                labels[:, :-logits_to_keep] = -100  # only the completion is scored
                with self.accelerator.autocast():
                    out = model(input_ids=ids, attention_mask=mask, **media, labels=labels, fused_lm_head=True)
                logps.append(out.log_probs[:, -logits_to_keep:])
                if compute_entropy:
                    entropies.append(out.entropy[:, -logits_to_keep:])
            return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None

    return EmoReasonGRPOTrainer


def build_trainer(recipe: GRPORecipe, args):
    """(GRPOTrainer, processor, skipped counts) for ``recipe`` and a ``GRPOConfig`` ``args``."""
    from transformers import GenerationConfig

    from emoreason.model.tokenizer import IM_END
    from emoreason.train.rewards import get_rewards

    check_args(recipe, args)
    model = load_model(recipe)
    processor, cache = load_processor_and_cache(recipe)
    rows, skipped = load_rows(recipe, cache)
    logger.info("GRPO on %d rows (skipped: %s)", len(rows), skipped)
    tokenizer = processor.tokenizer
    # TRL reads the stop tokens from the model's generation config (the composed model has none of its own)
    model.generation_config = GenerationConfig(eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(
        IM_END)], pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    args.remove_unused_columns = False
    # a sampled <face>/<audio> placeholder in a completion would not match the media tensors (as TRL does for images)
    suppress = {"suppress_tokens": [processor.face_token_id, processor.audio_token_id]}
    args.generation_kwargs = {**suppress, **(args.generation_kwargs or {})}
    if args.ddp_find_unused_parameters is None:
        args.ddp_find_unused_parameters = True  # the audio path has no gradient in a batch without audio
    trainer = _grpo_trainer_class()(model=model, reward_funcs=get_rewards(recipe.reward_funcs), args=args,
                                    train_dataset=make_dataset(rows, processor), processing_class=tokenizer,
                                    processor=processor, cache=cache)  # fmt: skip
    return trainer, processor, skipped


def run_grpo(argv: list[str]) -> Path:
    """``emoreason train grpo --config recipe.yaml [--field value ...]``: train, resume if interrupted, save.

    The YAML holds the :class:`GRPORecipe` fields and TRL's ``GRPOConfig`` arguments side by side (TrlParser:
    file first, then command-line overrides). A run killed mid-way resumes from its last ``checkpoint-*``.
    Returns the final emoreason checkpoint directory (``<output_dir>/final``).
    """
    from trl import GRPOConfig

    recipe, args = parse_recipe(GRPORecipe, GRPOConfig, argv)
    trainer, processor, skipped = build_trainer(recipe, args)
    trainer.train(resume_from_checkpoint=last_checkpoint(args.output_dir))
    final = save_final(trainer, processor, Path(args.output_dir) / "final")
    if not trainer.accelerator.is_main_process:
        return final
    rewards = dict(zip(recipe.reward_funcs, args.reward_weights or [1.0] * len(recipe.reward_funcs)))
    (final / "training_data.json").write_text(
        json.dumps(
            {
                "stage": "grpo",
                "train_data": recipe.train_data,
                "split": recipe.split,
                "rows_used": len(trainer.train_dataset),
                "skipped": skipped,
                "rewards": rewards,
                "recipe": dict(recipe.__dict__),
            },
            indent=2,
        )
    )  # fmt: skip  (read by `emoreason model-card`)
    return final
