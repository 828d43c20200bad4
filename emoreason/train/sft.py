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
from emoreason.train.data import MediaCache, MediaConfig, au_targets, target_text

logger = logging.getLogger(__name__)


@dataclass
class SFTRecipe:
    """What a run trains on and which parts learn (the trainer arguments are TRL's SFTConfig)."""

    model_path: str = field(metadata={"help": "emoreason checkpoint directory to start from"})
    train_data: str = field(metadata={"help": "sample rows (.jsonl) with labels and optional rationales"})
    split: str | None = field(default="train", metadata={"help": "use rows of this split (None: all)"})
    crops: str = field(default="detect", metadata={"help": "detect: align the main face; frames: frames are crops"})
    evidence: bool = field(default=True, metadata={"help": "textualised AU/prosody evidence in the prompt"})
    use_audio: bool = field(default=True, metadata={"help": "feed the audio track"})
    fps: float = field(default=8.0, metadata={"help": "analysis frames per second"})
    cache_dir: str = field(default=".cache/emoreason", metadata={"help": "preprocessed media cache"})
    lora: bool = field(default=True, metadata={"help": "LoRA on the LM (False: train the whole LM)"})
    lora_r: int = 16
    lora_alpha: int = 32
    au_loss_weight: float = field(default=0.5, metadata={"help": "weight of the AU head's auxiliary loss"})
    max_samples: int | None = None

    def __post_init__(self) -> None:
        for name in ("model_path", "train_data"):
            if not Path(getattr(self, name)).exists():
                raise FileNotFoundError(f"{name}: {getattr(self, name)} does not exist")
        MediaConfig(crops=self.crops)  # validates crops
        if self.au_loss_weight < 0:
            raise ValueError(f"au_loss_weight must be >= 0, got {self.au_loss_weight}")


class Collator:
    """Rows -> a padded batch: cached media, prompt + target (only the assistant turn is a label), AU labels."""

    def __init__(self, processor, cache: MediaCache):
        self.processor, self.cache = processor, cache

    def __call__(self, rows: list[dict]) -> dict:
        features, au_rows = [], []
        for row in rows:
            sample = Sample.from_dict(json.loads(row["row"]))
            prepared = self.cache.get(sample)  # filtered upfront, so never None here
            messages = self.processor.build_messages(prepared.evidence, has_audio=prepared.waveform is not None,
                                                     answer=target_text(sample))  # fmt: skip
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
        elif target_text(sample) is None:
            skipped["no target"] += 1
        elif cache.get(sample) is None:
            skipped["unusable media"] += 1
        else:
            rows.append(sample.to_dict())
        if recipe.max_samples and len(rows) >= recipe.max_samples:
            break
    if not rows:
        raise ValueError(f"{recipe.train_data}: no usable training rows ({skipped})")
    return rows, skipped


def build_trainer(recipe: SFTRecipe, args):
    """TRL SFTTrainer for ``recipe`` and an ``SFTConfig`` ``args`` (CPU/GPU settings are TRL's)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from emoreason.model.checkpoint import apply_lora, has_lora, load_checkpoint
    from emoreason.model.processor import EmoReasonProcessor

    model = load_checkpoint(recipe.model_path, trainable=True)
    model.config.au_loss_weight = recipe.au_loss_weight
    if recipe.lora and not has_lora(model):
        apply_lora(model, r=recipe.lora_r, alpha=recipe.lora_alpha)
    elif not recipe.lora:
        model.language_model.requires_grad_(True)
    model.train()
    processor = EmoReasonProcessor.from_pretrained(recipe.model_path)
    cache = MediaCache(recipe.cache_dir, processor, MediaConfig(recipe.crops, recipe.fps, recipe.evidence,
                                                                recipe.use_audio))  # fmt: skip
    rows, skipped = load_rows(recipe, cache)
    logger.info("training on %d rows (skipped: %s)", len(rows), skipped)
    args.dataset_kwargs = {"skip_prepare_dataset": True}
    args.remove_unused_columns = False
    # rows travel as JSON text: Arrow would pad nested fields (provenance, aus) across rows
    dataset = Dataset.from_dict({"row": [json.dumps(r) for r in rows]})
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=Collator(
        processor, cache), processing_class=processor.tokenizer, compute_loss_func=lm_and_au_loss(
        recipe.au_loss_weight))  # fmt: skip
    return trainer, processor, skipped


def run_sft(argv: list[str]) -> Path:
    """``emoreason train sft --config recipe.yaml [--field value ...]``: train, resume if interrupted, save.

    The YAML holds the :class:`SFTRecipe` fields and TRL's ``SFTConfig`` arguments side by side (TrlParser:
    file first, then command-line overrides). A run killed mid-way resumes from its last ``checkpoint-*``.
    Returns the final emoreason checkpoint directory (``<output_dir>/final``).
    """
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, TrlParser

    from emoreason.model.checkpoint import save_checkpoint

    recipe, args = TrlParser((SFTRecipe, SFTConfig)).parse_args_and_config(args=argv)
    trainer, processor, skipped = build_trainer(recipe, args)
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        logger.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    final = save_checkpoint(trainer.model, Path(args.output_dir) / "final", processor=processor)
    (final / "training_data.json").write_text(
        json.dumps(
            {
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
