"""What every training recipe shares: the checkpoint to start from, the data, media preprocessing, LoRA.

:class:`TrainRecipe` is the dataclass half of a recipe; TRL's config (``SFTConfig``, ``GRPOConfig``) is the other
half, and ``TrlParser`` reads both from one YAML file plus command-line overrides. Problems a user can fix (a
missing file, an unknown option) fail at start with a :class:`RecipeError` that names the field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from emoreason.data import DataError
from emoreason.train.data import CROP_MODES, TARGET_STYLES, MediaCache, MediaConfig

logger = logging.getLogger(__name__)


class RecipeError(DataError):
    """A recipe field (or a TRL argument) that cannot work; the message names the field and says what to do."""


def parse_recipe(recipe_class, config_class, argv: list[str]):
    """``(recipe, trl_config)`` from ``--config FILE`` and overrides (TrlParser); TRL's own checks -> RecipeError."""
    from trl import TrlParser

    try:
        return TrlParser((recipe_class, config_class)).parse_args_and_config(args=argv)
    except ValueError as exc:  # TRL's own argument checks (batch sizes, num_generations, ...)
        raise RecipeError(str(exc)) from exc


def check_reward_names(names: list[str]) -> None:
    """RecipeError naming ``reward_funcs`` unless every name is a known reward (and there is one)."""
    from emoreason.train.rewards import REWARDS

    unknown = [name for name in names if name not in REWARDS]
    if unknown or not names:
        raise RecipeError(f"reward_funcs: unknown reward(s) {unknown or '(none given)'}; "
                          f"known rewards: {sorted(REWARDS)}")  # fmt: skip


def script_main(run, prog: str) -> int:
    """Body of the ``scripts/train_*.py`` entry points: run on ``sys.argv``, recipe mistakes as one line."""
    import sys

    try:
        final = run(sys.argv[1:])
    except (DataError, OSError) as exc:  # a recipe mistake: one line, no traceback
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"trained checkpoint written to {final}")
    return 0


@dataclass
class TrainRecipe:
    """Model, data and media fields shared by the SFT and GRPO recipes."""

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
    target: str = field(default="facs", metadata={"help": "facs: the FACS reasoner's chain of thought; compact: "
                                                          "one line of AUs and the conclusion"})  # fmt: skip
    max_samples: int | None = None

    def __post_init__(self) -> None:
        for name in ("model_path", "train_data"):
            if not Path(getattr(self, name)).exists():
                raise RecipeError(f"{name}: {getattr(self, name)} does not exist")
        if self.crops not in CROP_MODES:
            raise RecipeError(f"crops: expected one of {CROP_MODES}, got {self.crops!r}")
        if self.target not in TARGET_STYLES:
            raise RecipeError(f"target: expected one of {TARGET_STYLES}, got {self.target!r}")
        if self.fps <= 0 or self.lora_r < 1 or (self.max_samples is not None and self.max_samples < 1):
            raise RecipeError(f"fps, lora_r and max_samples must be positive: {self.fps}, {self.lora_r}, "
                              f"{self.max_samples}")  # fmt: skip

    def media_config(self) -> MediaConfig:
        return MediaConfig(self.crops, self.fps, self.evidence, self.use_audio)


def load_model(recipe: TrainRecipe):
    """The recipe's checkpoint ready to train: LoRA attached (or the whole LM unfrozen), in train mode."""
    from emoreason.model.checkpoint import apply_lora, has_lora, load_checkpoint

    model = load_checkpoint(recipe.model_path, trainable=True)
    if recipe.lora and not has_lora(model):
        apply_lora(model, r=recipe.lora_r, alpha=recipe.lora_alpha)
    elif not recipe.lora:
        if has_lora(model):
            raise RecipeError(f"lora: false, but {recipe.model_path} has a LoRA adapter; set lora: true to train it")
        model.language_model.requires_grad_(True)
    model.train()
    return model


def load_processor_and_cache(recipe: TrainRecipe):
    """(processor, media cache) of the recipe's checkpoint and media settings."""
    from emoreason.model.processor import EmoReasonProcessor

    processor = EmoReasonProcessor.from_pretrained(recipe.model_path)
    return processor, MediaCache(recipe.cache_dir, processor, recipe.media_config())


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-*`` under ``output_dir`` (a killed run resumes from it), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
    if last:
        logger.info("resuming from %s", last)
    return last


def save_final(trainer, processor, path: str | Path) -> Path:
    """Write the trained model as an emoreason checkpoint from rank 0 (every rank must call this).

    Under FSDP or DeepSpeed ZeRO-3 the weights are sharded: they are gathered into a full state dict first and
    loaded into an unsharded copy of the model, which is what gets written.
    """
    from emoreason.model.checkpoint import apply_lora, has_lora, save_checkpoint

    accelerator, path = trainer.accelerator, Path(path)
    model = accelerator.unwrap_model(trainer.model_wrapped)
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        state = accelerator.get_state_dict(trainer.model_wrapped)  # full weights on rank 0
        if accelerator.is_main_process:
            full = type(model)(model.config)
            if has_lora(model):
                config = model.language_model.peft_config["default"]
                apply_lora(full, r=config.r, alpha=config.lora_alpha, target_modules=tuple(config.target_modules))
            full.load_state_dict(state)
            model = full
    if accelerator.is_main_process:
        save_checkpoint(model, path, processor=processor)
    accelerator.wait_for_everyone()
    return path
