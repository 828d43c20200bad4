"""Checkpoints: one Hugging Face style directory that loads back exactly.

Layout::

    config.json              EmoReasonConfig (towers, compressor, connectors, language model)
    model.safetensors        all base weights (towers, compressor, connectors, language model)
    lora/                    the language model's LoRA adapter (peft), when one is attached
    tokenizer.json, ...      tokenizer with its chat template, processor_config.json
    video_preprocessor_config.json   names the face-crop video loader vLLM uses for this model
    README.md                model card
    parts.json               parts manifest (presets built from shipped weights): where each pretrained part came
                             from (package, version, file, sha256, licence) and the sha256 of every checkpoint file,
                             checked by ``load_checkpoint``

The LoRA adapter touches only the language model, and the trained compressor and connectors live in
the base weights, because vLLM refuses adapters that carry ``modules_to_save``. ``merge_lora`` folds
the adapter into the language model for serving without one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from emoreason.constants import ARCHITECTURE, VIDEO_PREPROCESSOR_FILE, VIDEO_PROCESSOR_TYPE
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.modeling import EmoReasonForConditionalGeneration

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LORA_DIR = "lora"
MANIFEST_FILE = "parts.json"
_UNHASHED = {MANIFEST_FILE, "README.md"}  # the card may be rewritten after evaluation without touching the weights
LM_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@contextlib.contextmanager
def _quiet_peft():
    # peft 0.21 calls a transformers 5 property that warns of its own deprecation on every wrap/load
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


class CheckpointError(FileNotFoundError):
    """A checkpoint directory is missing a file or holds weights that do not fit its config."""


def apply_lora(
    model: EmoReasonForConditionalGeneration,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: tuple[str, ...] = LM_TARGET_MODULES,
) -> EmoReasonForConditionalGeneration:
    """Attach a LoRA adapter to the language model only; its base weights are frozen, the compressor
    and connectors stay fully trainable and the towers stay as they are (frozen by default)."""
    from peft import LoraConfig, get_peft_model

    if has_lora(model):
        raise ValueError("the language model already has a LoRA adapter")
    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      task_type="CAUSAL_LM")  # fmt: skip
    with _quiet_peft():
        model.language_model = get_peft_model(model.language_model, lora)
    return model


def has_lora(model: EmoReasonForConditionalGeneration) -> bool:
    return hasattr(model.language_model, "peft_config")


def merge_lora(model: EmoReasonForConditionalGeneration) -> EmoReasonForConditionalGeneration:
    """Fold the LoRA adapter into the language model's weights (for serving without an adapter)."""
    if has_lora(model):
        model.language_model = model.language_model.merge_and_unload()
    return model


def base_state_dict(model: EmoReasonForConditionalGeneration) -> dict[str, torch.Tensor]:
    """All weights under the names of a model without LoRA (peft's wrapper names removed)."""
    clean = {}
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            continue
        name = name.replace("language_model.base_model.model.", "language_model.").replace(".base_layer.", ".")
        clean[name] = tensor.detach().contiguous()
    return clean


def write_manifest(path: str | Path, parts: list[dict]) -> Path:
    """Write ``parts.json``: the ``parts`` records (see ``importers.wheels.part_record``) and the sha256 of every
    file now in the checkpoint (except the manifest and the model card)."""
    from emoreason.model.importers.wheels import sha256

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.relative_to(path).as_posix() not in _UNHASHED)
    manifest = {"parts": parts, "files": {p.relative_to(path).as_posix(): sha256(p) for p in files}}
    target = path / MANIFEST_FILE
    target.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def verify_manifest(path: str | Path) -> dict | None:
    """Check the files ``parts.json`` lists against their sha256; the manifest, or None when there is none.

    Raises:
        CheckpointError: a listed file is missing or differs (the message names it), or the manifest is unreadable.
    """
    from emoreason.model.importers.wheels import sha256

    path = Path(path)
    target = path / MANIFEST_FILE
    if not target.is_file():
        return None
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{target}: unreadable parts manifest ({exc}); rebuild the checkpoint") from exc
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: listed in {MANIFEST_FILE} but missing from the checkpoint")
        actual = sha256(file)
        if actual != expected:
            raise CheckpointError(
                f"{file}: sha256 {actual[:16]}... does not match {MANIFEST_FILE} ({str(expected)[:16]}...); the file "
                "changed after the checkpoint was built: rebuild it, or re-save it with save_checkpoint"
            )
    return manifest


def save_checkpoint(
    model: EmoReasonForConditionalGeneration, path: str | Path, processor=None, parts: list[dict] | None = None
) -> Path:
    """Write config, base weights, the LoRA adapter (if any) and the processor to ``path``.

    ``parts`` (or the parts of a ``parts.json`` already in ``path``) are written to a fresh manifest whose file
    hashes match what was just saved."""
    path = Path(path)
    if parts is None and (path / MANIFEST_FILE).is_file():
        parts = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")).get("parts")
    path.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [ARCHITECTURE]
    model.config.save_pretrained(path)
    # tells vLLM to load this model's videos with emoreason's face-crop loader (emoreason.serving)
    (path / VIDEO_PREPROCESSOR_FILE).write_text(json.dumps({"video_processor_type": VIDEO_PROCESSOR_TYPE}) + "\n")
    tensors = base_state_dict(model)
    # tied embeddings share storage; safetensors wants each tensor once
    seen: dict[int, str] = {}
    for name in list(tensors):
        key = tensors[name].data_ptr()
        if key in seen and tensors[name].shape == tensors[seen[key]].shape:
            tensors[name] = tensors[name].clone()
        seen.setdefault(key, name)
    save_file(tensors, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
    if has_lora(model):
        model.language_model.save_pretrained(str(path / LORA_DIR))
    if processor is not None:
        processor.save_pretrained(path)
    if parts is not None:
        write_manifest(path, parts)
    return path


def load_checkpoint(
    path: str | Path, with_lora: bool = True, trainable: bool = False
) -> EmoReasonForConditionalGeneration:
    """Load a directory written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: a file is missing, a file differs from its ``parts.json`` hash, or the weights do not match
            the config (names listed).
    """
    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"{path}: checkpoint is missing {name}")
    verify_manifest(path)
    config = EmoReasonConfig.from_pretrained(str(path))
    model = EmoReasonForConditionalGeneration(config)
    weights = load_file(str(path / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {"language_model.lm_head.weight"} if config.text_config.tie_word_embeddings else set()
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE} does not fit {CONFIG_FILE}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    lora_dir = path / LORA_DIR
    if with_lora and lora_dir.is_dir():
        from peft import PeftModel

        if not (lora_dir / "adapter_config.json").is_file():
            raise CheckpointError(f"{lora_dir}: LoRA adapter is missing adapter_config.json")
        with _quiet_peft():
            model.language_model = PeftModel.from_pretrained(
                model.language_model, str(lora_dir), is_trainable=trainable
            )
    model.eval()
    return model
