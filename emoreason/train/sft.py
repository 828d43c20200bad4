"""Supervised fine-tuning with TRL's SFTTrainer on chain-of-thought targets, plus the AU head's loss.

The trainer is TRL's, unmodified: emoreason supplies the dataset (sample rows), a collator that turns
rows into model inputs (cached media, the prompt, the target with everything but the answer masked,
AU labels) and ``compute_loss_func`` (token cross-entropy + ``au_loss_weight`` x the AU head's BCE).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from emoreason.data.jsonl import read_samples
from emoreason.data.schema import Sample
from emoreason.train.data import MediaCache, au_targets, target_text
from emoreason.train.recipe import (
    RecipeError,
    TrainRecipe,
    last_checkpoint,
    load_model,
    load_processor_and_cache,
    parse_recipe,
    save_final,
)

logger = logging.getLogger(__name__)


@dataclass
class SFTRecipe(TrainRecipe):
    """What a run trains on and which parts learn (the trainer arguments are TRL's SFTConfig)."""

    au_loss_weight: float = field(default=0.5, metadata={"help": "weight of the AU head's auxiliary loss"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.au_loss_weight < 0:
            raise RecipeError(f"au_loss_weight must be >= 0, got {self.au_loss_weight}")


class Collator:
    """Rows -> a padded batch: cached media, prompt + target (only the assistant turn is a label), AU labels."""

    def __init__(self, processor, cache: MediaCache, target: str = "facs"):
        self.processor, self.cache, self.target = processor, cache, target

    def __call__(self, rows: list[dict]) -> dict:
        features, au_rows = [], []
        for row in rows:
            sample = Sample.from_dict(json.loads(row["row"]))
            prepared = self.cache.get(sample)  # filtered upfront, so never None here
            messages = self.processor.build_messages(prepared.evidence, has_audio=prepared.waveform is not None,
                                                     answer=target_text(sample, self.target))  # fmt: skip
            features.append(self.processor(messages, faces=prepared.crops, audio=prepared.waveform,
                                           add_generation_prompt=False))  # fmt: skip
            au_rows.append(au_targets(sample))
        batch = dict(self.processor.collate(features, padding_side="right"))
        batch["au_labels"] = torch.stack(au_rows)
        return batch


def lm_and_au_loss(au_loss_weight: float):
    """``compute_loss_func`` for the trainer: shifted token cross-entropy + weighted AU head loss."""

    def loss_fn(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits[:, :-1].float()
        targets = labels[:, 1:].to(logits.device)
        total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                  ignore_index=-100, reduction="sum")  # fmt: skip
        count = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum().clamp(min=1)
        loss = total / count
        if outputs.au_loss is not None and au_loss_weight:
            loss = loss + au_loss_weight * outputs.au_loss
        return loss

    return loss_fn


def load_rows(recipe: SFTRecipe, cache: MediaCache) -> tuple[list[dict], dict]:
    """Training rows whose media are usable and that have a target; counts of what was skipped."""
    rows, skipped = [], {"split": 0, "no target": 0, "unusable media": 0}
    for sample in read_samples(recipe.train_data):
        if recipe.split is not None and sample.split != recipe.split:
            skipped["split"] += 1
        elif target_text(sample, recipe.target) is None:
            skipped["no target"] += 1
        elif cache.get(sample) is None:
            skipped["unusable media"] += 1
        else:
            rows.append(sample.to_dict())
        if recipe.max_samples and len(rows) >= recipe.max_samples:
            break
    if not rows:
        raise RecipeError(f"train_data: {recipe.train_data} has no usable training rows ({skipped})")
    return rows, skipped


def build_trainer(recipe: SFTRecipe, args):
    """TRL SFTTrainer for ``recipe`` and an ``SFTConfig`` ``args`` (CPU/GPU settings are TRL's)."""
    from datasets import Dataset
    from trl import SFTTrainer

    model = load_model(recipe)
    model.config.au_loss_weight = recipe.au_loss_weight
    processor, cache = load_processor_and_cache(recipe)
    rows, skipped = load_rows(recipe, cache)
    logger.info("training on %d rows (skipped: %s)", len(rows), skipped)
    args.dataset_kwargs = {"skip_prepare_dataset": True}
    args.remove_unused_columns = False
    # rows travel as JSON text: Arrow would pad nested fields (provenance, aus) across rows
    dataset = Dataset.from_dict({"row": [json.dumps(r) for r in rows]})
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=Collator(
        processor, cache, recipe.target), processing_class=processor.tokenizer, compute_loss_func=lm_and_au_loss(
        recipe.au_loss_weight))  # fmt: skip
    return trainer, processor, skipped


def run_sft(argv: list[str]) -> Path:
    """``emoreason train sft --config recipe.yaml [--field value ...]``: train, resume if interrupted, save.

    The YAML holds the :class:`SFTRecipe` fields and TRL's ``SFTConfig`` arguments side by side (TrlParser:
    file first, then command-line overrides). A run killed mid-way resumes from its last ``checkpoint-*``.
    Returns the final emoreason checkpoint directory (``<output_dir>/final``).
    """
    from trl import SFTConfig

    recipe, args = parse_recipe(SFTRecipe, SFTConfig, argv)
    return run_sft_with(recipe, args)


def run_sft_with(recipe: SFTRecipe, args) -> Path:
    """Train ``recipe`` with the ``SFTConfig`` ``args``, resuming from the last checkpoint; save ``final``."""
    trainer, processor, skipped = build_trainer(recipe, args)
    trainer.train(resume_from_checkpoint=last_checkpoint(args.output_dir))
    final = save_final(trainer, processor, Path(args.output_dir) / "final")
    if not trainer.accelerator.is_main_process:
        return final
    (final / "training_data.json").write_text(
        json.dumps(
            {
                "stage": "sft",
                "train_data": recipe.train_data,
                "split": recipe.split,
                "rows_used": len(trainer.train_dataset),
                "skipped": skipped,
                "recipe": {k: v for k, v in recipe.__dict__.items()},
            },
            indent=2,
        )
    )  # fmt: skip  (read by `emoreason model-card`)
    return final
