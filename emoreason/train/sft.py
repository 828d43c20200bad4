"""Supervised fine-tuning with TRL's SFTTrainer on chain-of-thought targets, plus the AU head's loss.

The trainer is TRL's with the model's own loss (:class:`~emoreason.train.sft_trainer.EmoReasonSFTTrainer`: token
cross-entropy at the answer positions only + ``au_loss_weight`` x the AU head's BCE); emoreason supplies the dataset
(sample rows) and a collator that turns rows into model inputs (cached media, the prompt, the target with everything
but the answer masked, AU labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from emoreason.data.schema import Sample
from emoreason.train.data import MediaCache, au_targets, target_text
from emoreason.train.recipe import RecipeError, TrainRecipe
from emoreason.train.stage import load_parts, parse_recipe, run_stage
from emoreason.train.tower_cache import TowerCache


@dataclass
class SFTRecipe(TrainRecipe):
    """What a run trains on and which parts learn (the trainer arguments are TRL's SFTConfig)."""

    lacks: ClassVar[str] = "no target"

    au_loss_weight: float = field(default=0.5, metadata={"help": "weight of the AU head's auxiliary loss"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.au_loss_weight < 0:
            raise RecipeError(f"au_loss_weight must be >= 0, got {self.au_loss_weight}")

    def trainable(self, sample: Sample) -> bool:
        """A row is trained on when it has a target: its rationale, or one written from its labels."""
        return target_text(sample, self.target) is not None


class Collator:
    """Rows -> a padded batch: cached media, prompt + target (only the assistant turn is a label), AU labels."""

    def __init__(self, processor, cache: MediaCache, target: str = "facs", towers: TowerCache | None = None):
        """``towers``: the frozen face tower's outputs per clip; the batch then carries ``face_features`` instead
        of ``pixel_values`` (the tower runs once per clip, not once per step)."""
        self.processor, self.cache, self.target, self.towers = processor, cache, target, towers

    def __call__(self, rows: list[dict]) -> dict:
        features, au_rows, keys = [], [], []
        for row in rows:
            sample = Sample.from_dict(json.loads(row["row"]))
            keys.append(str(self.cache.path(sample)))
            prepared = self.cache.get(sample)  # filtered upfront, so never None here
            messages = self.processor.build_messages(prepared.evidence, has_audio=prepared.waveform is not None,
                                                     answer=target_text(sample, self.target))  # fmt: skip
            features.append(self.processor(messages, faces=prepared.crops, audio=prepared.waveform,
                                           add_generation_prompt=False))  # fmt: skip
            au_rows.append(au_targets(sample))
        batch = dict(self.processor.collate(features, padding_side="right"))
        batch["au_labels"] = torch.stack(au_rows)
        if self.towers is not None:
            batch["face_features"] = self.towers.features(keys, batch.pop("pixel_values"))  # [B, T, P, D]
        return batch


def build_trainer(recipe: SFTRecipe, args):
    """TRL SFTTrainer for ``recipe`` and an ``SFTConfig`` ``args`` (CPU/GPU settings are TRL's)."""
    from datasets import Dataset

    from emoreason.train.sft_trainer import EmoReasonSFTTrainer

    parts = load_parts(recipe, args)
    parts.model.config.au_loss_weight = recipe.au_loss_weight
    args.dataset_kwargs = {"skip_prepare_dataset": True}
    args.remove_unused_columns = False
    # rows travel as JSON text: Arrow would pad nested fields (provenance, aus) across rows
    dataset = Dataset.from_dict({"row": [json.dumps(r) for r in parts.rows]})
    towers = TowerCache(parts.model, recipe.cache_dir) if TowerCache.is_frozen(parts.model) else None
    trainer = EmoReasonSFTTrainer(model=parts.model, args=args, train_dataset=dataset, data_collator=Collator(
        parts.processor, parts.cache, recipe.target, towers), processing_class=parts.processor.tokenizer)  # fmt: skip
    return trainer, parts.processor, parts.skipped


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
    return run_stage(recipe, args, "sft", build_trainer)
