"""What every training stage does around its TRL trainer, written once: read the recipe, load the model, the
processor and the media cache, pick the rows to train on, train (resuming a killed run from its last
checkpoint), save ``<output_dir>/final`` and record what it was trained on in ``training_data.json``.

SFT (:mod:`emoreason.train.sft`), GRPO (:mod:`emoreason.train.grpo`) and self-improvement
(:mod:`emoreason.train.self_improve`) differ only in their recipe and in how they build the trainer; they hand
that builder to :func:`run_stage`. The ``scripts/train_*.py`` entry points call :func:`script_main`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from emoreason.data import DataError
from emoreason.data.jsonl import read_samples
from emoreason.data.schema import Sample
from emoreason.train.data import MediaCache
from emoreason.train.recipe import RecipeError, TrainRecipe

logger = logging.getLogger(__name__)


def parse_recipe(recipe_class, config_class, argv: list[str]):
    """``(recipe, trl_config)`` from ``--config FILE`` and overrides (TrlParser); TRL's own checks -> RecipeError.

    ``use_cpu`` follows the machine (on when there is no CUDA device) unless the recipe or the command line sets
    it; bf16 is checked against the hardware when the trainer is built (:func:`load_parts`)."""
    from trl import TrlParser

    from emoreason.train.hardware import has_accelerator

    argv = list(argv)
    if not has_accelerator() and not _sets(argv, "use_cpu"):
        argv += ["--use_cpu", "true"]  # transformers refuses bf16 without a GPU unless told the run is on the CPU
    try:
        recipe, args = TrlParser((recipe_class, config_class)).parse_args_and_config(args=argv)
    except ValueError as exc:  # TRL's own argument checks (batch sizes, num_generations, ...)
        raise RecipeError(str(exc)) from exc
    return recipe, args


def _sets(argv: list[str], name: str) -> bool:
    """Whether ``argv`` (a command line with an optional ``--config FILE``) sets the field ``name``."""
    import yaml

    if any(a == f"--{name}" or a.startswith(f"--{name}=") for a in argv):
        return True
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        path = Path(argv[argv.index("--config") + 1])
        config = yaml.safe_load(path.read_text()) if path.is_file() else None
        return isinstance(config, dict) and name in config
    return False


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


def load_model(recipe: TrainRecipe):
    """The recipe's checkpoint ready to train: LoRA attached, or the whole LM unfrozen, or (alignment) the LM frozen
    so only the compressor and connectors learn; in train mode."""
    from emoreason.model.checkpoint import apply_lora, has_lora, load_checkpoint

    model = load_checkpoint(recipe.model_path, trainable=True)
    if recipe.lora and not has_lora(model):
        apply_lora(model, r=recipe.lora_r, alpha=recipe.lora_alpha, dropout=recipe.lora_dropout)
    elif not recipe.lora:
        if has_lora(model):
            raise RecipeError(f"lora: false, but {recipe.model_path} has a LoRA adapter; set lora: true to train it")
        model.language_model.requires_grad_(not recipe.freeze_language_model)  # frozen: the alignment stage
    if recipe.lora:  # (alignment keeps the whole LM as it is)
        from emoreason.model.processor import EmoReasonProcessor
        from emoreason.model.tokenizer import TAG_TOKENS

        tokenizer = EmoReasonProcessor.from_pretrained(recipe.model_path).tokenizer
        train_token_rows(model, tokenizer.convert_tokens_to_ids(list(TAG_TOKENS)))
    model.train()
    return model


def train_token_rows(model, token_ids: list[int]) -> None:
    """Make the LM's embedding rows of ``token_ids`` (and their rows of an untied LM head) trainable, and only those.

    The answer tags (``<think>``, ``</think>``, ``<answer>``, ``</answer>``) are tokens emoreason added to a
    pretrained vocabulary: their rows start untrained, and LoRA adapts the layers, not the vocabulary, so a LoRA
    run alone never learns to write them (measured on the smol preset: after 300 SFT steps the teacher-forced
    answer read ",,,Observations: AU6 D, AU12 D. Conclusion: happiness.,,," with a comma for every tag). The rows
    are trained in place and saved with the base weights, which vLLM serves (its LoRA adapters carry no
    embeddings). A gradient hook zeroes every other row; Adam then leaves them unchanged (no weight decay is set).
    """
    rows = torch.as_tensor(token_ids)
    weights = {id(w): w for w in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)}
    for weight in weights.values():  # one parameter when the embeddings are tied (SmolLM2)
        mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        mask[rows] = 1.0
        weight.requires_grad_(True)
        weight.register_hook(lambda grad, mask=mask: grad * mask)


def load_processor_and_cache(recipe: TrainRecipe):
    """(processor, media cache) of the recipe's checkpoint and media settings."""
    from emoreason.model.processor import EmoReasonProcessor

    processor = EmoReasonProcessor.from_pretrained(recipe.model_path)
    return processor, MediaCache(recipe.cache_dir, processor, recipe.media_config())


class PrepareTask:
    """The engine's task of the media cache's preparation (:mod:`emoreason.scale`): a sample -> whether its media
    are usable, its cache entry written by the worker (the processor and the face models load once per worker)."""

    def __init__(self, model_path: str, cache_dir: str, media):
        self.model_path, self.cache_dir, self.media = model_path, cache_dir, media

    def setup(self, index: int = 0) -> None:
        from emoreason.model.processor import EmoReasonProcessor

        self._cache = MediaCache(self.cache_dir, EmoReasonProcessor.from_pretrained(self.model_path), self.media)

    def __call__(self, sample: Sample) -> bool:
        if not hasattr(self, "_cache"):
            self.setup()
        return self._cache.get(sample) is not None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def prepare_cache(recipe: TrainRecipe) -> dict:
    """Fill the media cache of the recipe's rows that lack an entry, on ``prepare_workers`` Ray workers (or the
    cluster at ``ray_address``); returns counts. With one worker nothing happens here: the rows are prepared as
    :func:`load_rows` reads them. Skipped under a distributed launch (each process reads its rows as before)."""
    from emoreason.scale import EngineError, Failure, make_engine

    if (recipe.prepare_workers == 1 and recipe.ray_address is None) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return {}
    cache = MediaCache(recipe.cache_dir, None, recipe.media_config())  # only its paths here: no processor to load
    todo = [s for s in read_samples(recipe.train_data) if (recipe.split is None or s.split == recipe.split)
            and recipe.trainable(s) and not cache.path(s).is_file()]  # fmt: skip
    if recipe.max_samples:
        todo = todo[: recipe.max_samples * 2]  # what load_rows will read, with room for unusable media
    counts = {"prepared": 0, "unusable": 0, "failed": 0}
    if not todo:
        return counts
    try:
        engine = make_engine(recipe.prepare_workers, recipe.ray_address, items=len(todo))
    except EngineError as exc:
        raise RecipeError(f"prepare_workers/ray_address: {exc}") from None
    task = PrepareTask(recipe.model_path, recipe.cache_dir, recipe.media_config())
    started = time.perf_counter()
    try:
        for _index, usable in engine.map(task, todo):
            counts["failed" if isinstance(usable, Failure) else "prepared" if usable else "unusable"] += 1
    finally:
        engine.close()
    logger.warning("media cache: %d samples prepared on %d %s workers in %.0f s (%d unusable, %d failed)",
                   counts["prepared"], engine.workers, engine.name, time.perf_counter() - started,
                   counts["unusable"], counts["failed"])  # fmt: skip
    return counts


def load_rows(recipe: TrainRecipe, cache: MediaCache) -> tuple[list[dict], dict]:
    """Rows of the recipe's split that its stage can train on (:meth:`TrainRecipe.trainable`) and whose media
    are usable, at most ``max_samples``; counts of what was skipped."""
    rows, skipped = [], {"split": 0, recipe.lacks: 0, "unusable media": 0}
    for sample in read_samples(recipe.train_data):
        if recipe.split is not None and sample.split != recipe.split:
            skipped["split"] += 1
        elif not recipe.trainable(sample):
            skipped[recipe.lacks] += 1
        elif cache.get(sample) is None:
            skipped["unusable media"] += 1
        else:
            rows.append(sample.to_dict())
        if recipe.max_samples and len(rows) >= recipe.max_samples:
            break
    if not rows:
        raise RecipeError(f"train_data: {recipe.train_data} has no usable training rows ({skipped})")
    return rows, skipped


@dataclass
class Parts:
    """What a stage's trainer is built from: the model to train, its processor, the media cache, the rows."""

    model: object
    processor: object
    cache: MediaCache
    rows: list[dict]
    skipped: dict


def load_parts(recipe: TrainRecipe, args) -> Parts:
    """The model (ready to train), processor, media cache and training rows of ``recipe``, and the precision of its
    TRL config ``args`` checked against the hardware (:func:`~emoreason.train.hardware.resolve_precision`: a
    ``bf16: true`` on a machine without native bf16 is a warning and float32, not a crash)."""
    from emoreason.train.hardware import resolve_precision

    logger.info("training in %s", resolve_precision(args))
    model = load_model(recipe)
    processor, cache = load_processor_and_cache(recipe)
    rows, skipped = load_rows(recipe, cache)
    logger.info("training on %d rows (skipped: %s)", len(rows), skipped)
    return Parts(model, processor, cache, rows, skipped)


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
                apply_lora(full, r=config.r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                           target_modules=tuple(config.target_modules))
            full.load_state_dict(state)
            model = full
    if accelerator.is_main_process:
        save_checkpoint(model, path, processor=processor)
    accelerator.wait_for_everyone()
    return path


def run_stage(recipe: TrainRecipe, args, stage: str, build_trainer: Callable, **record) -> Path:
    """Build the stage's trainer, train (resuming from the last ``checkpoint-*``), save ``<output_dir>/final``.

    Args:
        recipe: the stage's recipe; ``args``: its TRL config (``SFTConfig``, ``GRPOConfig``).
        stage: the stage's name in ``training_data.json`` (``"sft"``, ``"grpo"``).
        build_trainer: ``(recipe, args) -> (trainer, processor, skipped counts)``, the stage's own.
        record: stage-specific entries of ``training_data.json`` (GRPO: the reward weights).

    Returns:
        The final emoreason checkpoint directory; rank 0 also writes ``training_data.json`` there (read by
        ``emoreason model-card``).
    """
    prepare_cache(recipe)
    if recipe.prepare_only:
        logger.warning("prepare_only: the media cache is ready in %s; no training", recipe.cache_dir)
        return Path(recipe.cache_dir)
    trainer, processor, skipped = build_trainer(recipe, args)
    trainer.train(resume_from_checkpoint=last_checkpoint(args.output_dir))
    final = save_final(trainer, processor, Path(args.output_dir) / "final")
    if trainer.accelerator.is_main_process:
        used = {"stage": stage, "train_data": recipe.train_data, "split": recipe.split,
                "rows_used": len(trainer.train_dataset), "skipped": skipped, **record,
                "recipe": dict(recipe.__dict__)}  # fmt: skip
        (final / "training_data.json").write_text(json.dumps(used, indent=2))
    return final
