"""Supervised fine-tuning with TRL's SFTTrainer on chain-of-thought targets, plus the AU head's loss.

The trainer is TRL's with the model's own loss (:class:`~emoreason.train.sft_trainer.EmoReasonSFTTrainer`: token
cross-entropy at the answer positions only + ``au_loss_weight`` x the AU head's BCE); emoreason supplies the dataset
(sample rows) and a collator that turns rows into model inputs (cached media, the prompt, the target with everything
but the answer masked, AU labels).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from emoreason.data.schema import Sample
from emoreason.train.data import MediaCache, au_intensity_targets, au_targets, target_text
from emoreason.train.recipe import RecipeError, TrainRecipe
from emoreason.train.stage import last_checkpoint, load_parts, parse_recipe, run_stage
from emoreason.train.tower_cache import TowerCache

logger = logging.getLogger(__name__)


@dataclass
class SFTRecipe(TrainRecipe):
    """What a run trains on and which parts learn (the trainer arguments are TRL's SFTConfig)."""

    lacks: ClassVar[str] = "no target"

    au_loss_weight: float = field(default=0.5, metadata={"help": "weight of the AU head's auxiliary loss"})
    face_warmup_steps: int = field(default=0, metadata={"help": "steps of the AU head's loss alone on the face "
                                   "compressor before SFT (the frozen tower's cached features; 0: none)"})  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.au_loss_weight < 0:
            raise RecipeError(f"au_loss_weight must be >= 0, got {self.au_loss_weight}")
        if self.face_warmup_steps < 0:
            raise RecipeError(f"face_warmup_steps must be >= 0, got {self.face_warmup_steps}")

    def trainable(self, sample: Sample) -> bool:
        """A row is trained on when it has a target: its rationale, or one written from its labels."""
        return target_text(sample, self.target) is not None


class Collator:
    """Rows -> a padded batch: cached media, prompt + target (only the assistant turn is a label), AU labels and
    intensities."""

    def __init__(self, processor, cache: MediaCache, target: str = "facs", towers: TowerCache | None = None):
        """``towers``: the frozen face tower's outputs per clip; the batch then carries ``face_features`` instead
        of ``pixel_values`` (the tower runs once per clip, not once per step)."""
        self.processor, self.cache, self.target, self.towers = processor, cache, target, towers

    def __call__(self, rows: list[dict]) -> dict:
        features, au_rows, levels, keys = [], [], [], []
        for row in rows:
            sample = Sample.from_dict(json.loads(row["row"]))
            keys.append(str(self.cache.path(sample)))
            prepared = self.cache.get(sample)  # filtered upfront, so never None here
            messages = self.processor.build_messages(prepared.evidence, has_audio=prepared.waveform is not None,
                                                     answer=target_text(sample, self.target))  # fmt: skip
            features.append(self.processor(messages, faces=prepared.crops, audio=prepared.waveform,
                                           add_generation_prompt=False))  # fmt: skip
            au_rows.append(au_targets(sample))
            levels.append(au_intensity_targets(sample))
        batch = dict(self.processor.collate(features, padding_side="right"))
        batch["au_labels"], batch["au_intensities"] = torch.stack(au_rows), torch.stack(levels)
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
    collator = Collator(parts.processor, parts.cache, recipe.target, towers)
    if recipe.face_warmup_steps and not last_checkpoint(args.output_dir):  # a resumed run has its warmed weights
        warm_up_face_tokens(parts.model, collator, dataset["row"], recipe.face_warmup_steps, args.learning_rate,
                            args.per_device_train_batch_size, args.seed)  # fmt: skip
    trainer = EmoReasonSFTTrainer(model=parts.model, args=args, train_dataset=dataset, data_collator=collator,
                                  processing_class=parts.processor.tokenizer)  # fmt: skip
    return trainer, parts.processor, parts.skipped


def warm_up_face_tokens(
    model, collator: Collator, rows: list[str], steps: int, lr: float, batch_size: int, seed: int = 0
) -> tuple[float, float]:
    """Train the face compressor (and its AU head, and intensity head where it has one) on the AU labels alone
    for ``steps`` before SFT.

    Measured on the smol preset's toy faces (BENCHMARKS.md): the compressor alone learns the AUs in a few hundred
    steps (held-out AU F1 0.96 after 300), but inside SFT, sharing the gradient clip with the LM, its AU loss was
    still 0.21 after 150 steps. Warmed up first, the AU tokens the LM reads (``face_au_tokens``) are right from its
    first step. The frozen tower runs once per clip (the collator's tower cache), so a step costs milliseconds.
    Returns the AU loss over all rows before and after.
    """
    from emoreason.model.modeling import au_head_loss, au_intensity_loss

    batches = [collator([{"row": row} for row in rows[i : i + 64]]) for i in range(0, len(rows), 64)]
    with torch.no_grad():  # batches pad to their own longest clip: pad every one to the longest overall
        parts = [b["face_features"] if "face_features" in b else model.encode_face_crops(b["pixel_values"])
                 for b in batches]  # fmt: skip
    frames = max(part.shape[1] for part in parts)
    features = torch.cat([nn.functional.pad(part.float(), (0, 0, 0, 0, 0, frames - part.shape[1])) for part in parts])
    frame_mask = torch.cat([nn.functional.pad(b["frame_mask"].bool(), (0, frames - b["frame_mask"].shape[1]))
                            for b in batches])  # fmt: skip
    labels = torch.cat([b["au_labels"] for b in batches])
    compressor = model.face_compressor
    levels = torch.cat([b["au_intensities"] for b in batches]) if compressor.has_au_intensity else None
    device = next(compressor.parameters()).device

    def loss_of(index: torch.Tensor) -> torch.Tensor:
        out = compressor(features[index].to(device), frame_mask=frame_mask[index].to(device))
        loss = au_head_loss(out.au_logits.float(), labels[index].to(device))
        if levels is not None:
            loss = loss + au_intensity_loss(out.au_intensity, levels[index].to(device))
        return loss

    def full_loss() -> float:
        with torch.no_grad():
            return float(sum(loss_of(torch.arange(i, min(i + 64, len(labels)))) * min(64, len(labels) - i)
                             for i in range(0, len(labels), 64)) / len(labels))  # fmt: skip

    before = full_loss()
    optimizer = torch.optim.AdamW([p for p in compressor.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    compressor.train()
    for _ in range(steps):
        loss = loss_of(torch.randint(0, len(labels), (batch_size,), generator=generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    after = full_loss()
    logger.info("face warm-up: %d steps, AU loss %.3f -> %.3f on %d clips", steps, before, after, len(labels))
    return before, after


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
