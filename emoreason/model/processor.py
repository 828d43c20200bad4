"""EmoReasonProcessor: turns a prompt, face crops and a waveform into one model-ready sample, and batches samples.

Text: the chat template renders the messages; each ``<face>`` placeholder becomes ``num_face_tokens`` copies of the
face token and each ``<audio>`` ``num_audio_tokens`` copies of the audio token (the model writes the compressed face
and audio embeddings into those positions). Faces: aligned uint8 crops resized to the tower's ``image_size`` and
normalised as that tower expects (``face_configs.image_norm``: [-1, 1] for SigLIP and the mini-Xception, which
turns them grey itself; ImageNet mean/std for MobileNetV2), sampled evenly down to ``max_frames``. Audio: Whisper log-mel features of a fixed length (the encoder's
``2 * max_source_positions`` frames of 10 ms). Every sample carries all media keys, with masks saying what is
present, so samples with and without audio batch together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, PreTrainedTokenizerFast, WhisperFeatureExtractor

from emoreason.constants import (
    AUDIO_SAMPLE_RATE,
    AUDIO_TOKEN,
    FACE_TOKEN,
)
from emoreason.model.tokenizer import TAG_TOKENS
from emoreason.prompt import SYSTEM_PROMPT, explain_messages, textualize

CONFIG_NAME = "processor_config.json"
IGNORE_INDEX = -100  # label of positions the loss skips (prompt, padding)
MEDIA_KEYS = ("pixel_values", "frame_mask", "input_features", "audio_mask")
_HOP_LENGTH = 160  # Whisper: 10 ms mel hop at 16 kHz; one encoder position covers 2 hops (stride-2 conv)


class EmoReasonProcessor:
    """Tokenizer, face-crop and audio preprocessing for :class:`EmoReasonConfig` models."""

    def __init__(
        self,
        tokenizer,
        num_face_tokens: int,
        num_audio_tokens: int,
        image_size: int,
        max_frames: int,
        num_mel_bins: int = 80,
        max_audio_s: float = 30.0,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
    ) -> None:
        sizes = dict(num_face_tokens=num_face_tokens, num_audio_tokens=num_audio_tokens, image_size=image_size,
                     max_frames=max_frames, num_mel_bins=num_mel_bins)  # fmt: skip
        for name, value in sizes.items():
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
            setattr(self, name, int(value))
        if max_audio_s <= 0 or len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(f"need max_audio_s > 0 and 3-value image_mean/std (std > 0): {max_audio_s}, {image_std}")
        self.tokenizer, self.max_audio_s = tokenizer, float(max_audio_s)
        self.image_mean, self.image_std = tuple(map(float, image_mean)), tuple(map(float, image_std))
        self.num_audio_samples = round(self.max_audio_s * AUDIO_SAMPLE_RATE)
        self.num_audio_frames = self.num_audio_samples // _HOP_LENGTH
        self.feature_extractor = WhisperFeatureExtractor(  # configured here: nothing to download
            feature_size=self.num_mel_bins, hop_length=_HOP_LENGTH, chunk_length=self.max_audio_s, n_fft=400
        )
        self._ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (FACE_TOKEN, AUDIO_TOKEN, *TAG_TOKENS)}
        for token, token_id in self._ids.items():
            if token_id is None or token_id == tokenizer.unk_token_id or tokenizer.tokenize(token) != [token]:
                raise ValueError(f"the tokenizer has no single id for {token!r}; add it as an added token")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token")

    @classmethod
    def from_config(cls, tokenizer, config) -> EmoReasonProcessor:
        """A processor sized for ``config`` (an :class:`EmoReasonConfig`); its token ids must match the config's."""
        from emoreason.model.face_configs import image_norm

        audio = config.audio_config
        image_mean, image_std = image_norm(config.face_config)  # the tower's pixel normalisation
        processor = cls(
            tokenizer,
            num_face_tokens=config.num_face_tokens,
            num_audio_tokens=config.num_audio_tokens,
            image_size=config.face_config.image_size,
            max_frames=config.max_frames,
            num_mel_bins=audio.num_mel_bins,
            max_audio_s=audio.max_source_positions * 2 * _HOP_LENGTH / AUDIO_SAMPLE_RATE,
            image_mean=image_mean,
            image_std=image_std,
        )
        for field, token in (("face_token_id", FACE_TOKEN), ("audio_token_id", AUDIO_TOKEN)):
            if getattr(config, field) != processor._ids[token]:
                raise ValueError(f"config.{field}={getattr(config, field)} but the tokenizer's {token} id is "
                                 f"{processor._ids[token]}; set config.{field} from the tokenizer")  # fmt: skip
        return processor

    @property
    def face_token_id(self) -> int:
        return self._ids[FACE_TOKEN]

    @property
    def audio_token_id(self) -> int:
        return self._ids[AUDIO_TOKEN]

    def to_dict(self) -> dict:
        keys = ("num_face_tokens", "num_audio_tokens", "image_size", "max_frames", "num_mel_bins", "max_audio_s")
        return {k: getattr(self, k) for k in keys} | {"image_mean": self.image_mean, "image_std": self.image_std}

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write the tokenizer files and ``processor_config.json`` into ``save_directory``."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        (path / CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> EmoReasonProcessor:
        """Load a processor written by :meth:`save_pretrained` (a local directory; nothing is downloaded)."""
        path = Path(directory)
        for name in (CONFIG_NAME, "tokenizer_config.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} not found: is {path} a directory saved by save_pretrained?")
        kwargs = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        # not AutoTokenizer: it would read config.json, whose model_type transformers does not know
        return cls(PreTrainedTokenizerFast.from_pretrained(str(path)), **kwargs)

    textualize = staticmethod(textualize)

    def build_messages(
        self, evidence: str | None = None, has_audio: bool = False, answer: str | None = None
    ) -> list[dict]:
        """System and user messages of an explain request, plus the assistant ``answer`` when given (SFT)."""
        return explain_messages(evidence, has_audio, answer)

    def preprocess_faces(self, crops) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned face crops, uint8 [T, H, W, 3] (or None), to ([max_frames, 3, S, S] float32, [max_frames] bool).

        More than ``max_frames`` crops are sampled evenly (first and last kept); fewer are zero-padded."""
        size, pixels = self.image_size, torch.zeros(self.max_frames, 3, self.image_size, self.image_size)
        mask = torch.zeros(self.max_frames, dtype=torch.bool)
        if crops is None:
            return pixels, mask
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[0] == 0:
            raise ValueError(f"crops must be uint8 [T, H, W, 3] with T >= 1, got {crops.dtype} {list(crops.shape)}")
        count = len(crops)
        index = np.linspace(0, count - 1, self.max_frames).round().astype(int) if count > self.max_frames else None
        crops = crops if index is None else crops[index]
        frames = np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR)) for c in crops])
        mean, std = np.asarray(self.image_mean, np.float32), np.asarray(self.image_std, np.float32)
        frames = (frames.astype(np.float32) / 255.0 - mean) / std  # [T, S, S, 3]
        pixels[: len(frames)] = torch.from_numpy(frames).permute(0, 3, 1, 2)  # [T, 3, S, S]
        mask[: len(frames)] = True
        return pixels, mask

    def preprocess_audio(self, waveform, sample_rate: int = AUDIO_SAMPLE_RATE) -> tuple[torch.Tensor, bool]:
        """Mono waveform [N] (or None) to (log-mel [num_mel_bins, frames] float32, audio present).

        Resampled to 16 kHz, then zero-padded or cut to ``max_audio_s``. A silent clip is audio; None or an empty
        waveform is not (its features are zeros)."""
        empty = torch.zeros(self.num_mel_bins, self.num_audio_frames)
        if waveform is None:
            return empty, False
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"waveform must be mono [N], got shape {list(waveform.shape)}; average the channels")
        if waveform.size == 0:
            return empty, False
        if not np.isfinite(waveform).all():
            raise ValueError("waveform has NaN or infinite samples")
        if sample_rate != AUDIO_SAMPLE_RATE:
            import librosa  # a core dependency, but slow to import: only when resampling

            waveform = librosa.resample(waveform, orig_sr=sample_rate, target_sr=AUDIO_SAMPLE_RATE)
        features = self.feature_extractor(
            waveform[: self.num_audio_samples], sampling_rate=AUDIO_SAMPLE_RATE, max_length=self.num_audio_samples,
            padding="max_length", truncation=True, return_tensors="np",
        )["input_features"][0]  # fmt: skip
        if features.shape != tuple(empty.shape):
            raise ValueError(f"log-mel features {list(features.shape)}, expected {list(empty.shape)}")
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)), True

    def __call__(
        self, messages_or_text, faces=None, audio=None, sample_rate: int = AUDIO_SAMPLE_RATE,
        add_generation_prompt: bool = True,
    ) -> BatchFeature:  # fmt: skip
        """One sample: input_ids/attention_mask [1, L], pixel_values [1, F, 3, S, S], frame_mask [1, F],
        input_features [1, mels, frames], audio_mask [1]; plus labels [1, L] (prompt masked with -100) when the
        last message is the assistant's answer. ``messages_or_text`` is a list of chat messages or a rendered text.
        """
        if isinstance(messages_or_text, str):
            text, prompt = messages_or_text, None
        else:
            messages = list(messages_or_text)
            answered = bool(messages) and messages[-1]["role"] == "assistant"
            if answered and add_generation_prompt:
                raise ValueError("the last message is the assistant's answer: pass add_generation_prompt=False")
            text = self._render(messages, add_generation_prompt)
            prompt = self._render(messages[:-1], True) if answered else None
        pixel_values, frame_mask = self.preprocess_faces(faces)
        input_features, has_audio = self.preprocess_audio(audio, sample_rate)
        input_ids = self._tokenize(text, faces is not None, has_audio)
        data = {
            "input_ids": torch.tensor([input_ids]),  # [1, L]
            "attention_mask": torch.ones(1, len(input_ids), dtype=torch.long),
            "pixel_values": pixel_values[None],  # [1, F, 3, S, S]
            "frame_mask": frame_mask[None],  # [1, F]
            "input_features": input_features[None],  # [1, mels, frames]
            "audio_mask": torch.tensor([has_audio]),  # [1]
        }
        if prompt is not None:  # train on the answer only
            prefix = self._tokenize(prompt, faces is not None, has_audio)
            if input_ids[: len(prefix)] != prefix:
                raise ValueError("the prompt's tokens are not a prefix of the conversation's; cannot mask the prompt")
            data["labels"] = torch.tensor([[IGNORE_INDEX] * len(prefix) + input_ids[len(prefix) :]])
        return BatchFeature(data)

    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def _tokenize(self, text: str, has_faces: bool, has_audio: bool) -> list[int]:
        """Check the placeholders against the media, expand them, tokenize."""
        for token, repeat, given, kind in (
            (FACE_TOKEN, self.num_face_tokens, has_faces, "face clip"),
            (AUDIO_TOKEN, self.num_audio_tokens, has_audio, "audio clip"),
        ):
            found = text.count(token)
            if found != int(given):
                plural, clips = ("" if found == 1 else "s"), ("1" if given else "no")
                raise ValueError(f"text has {found} {token} placeholder{plural} but {clips} {kind} was given; "
                                 f"expected {int(given)}: one per {kind}")  # fmt: skip
            text = text.replace(token, token * repeat)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def collate(
        self, features: list[BatchFeature], labels: list[list[int]] | None = None, padding_side: str = "right"
    ) -> BatchFeature:
        """Batch samples from :meth:`__call__`: pad input_ids with the pad id (attention_mask 0, labels -100) on
        ``padding_side`` ("right" to train, "left" to generate) and concatenate the media tensors.

        ``labels`` (one list per sample, as long as its input_ids) default to the samples' own ``labels``."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if not features:
            raise ValueError("collate needs at least one sample")
        rows = [f["input_ids"].reshape(-1) for f in features]
        if labels is None and any("labels" in f for f in features):
            if not all("labels" in f for f in features):
                raise ValueError("some samples have labels and some do not")
            labels = [f["labels"].reshape(-1).tolist() for f in features]
        pad_id = self.tokenizer.pad_token_id
        batch = {
            "input_ids": _pad(rows, pad_id, padding_side),  # [B, L]
            "attention_mask": _pad([torch.ones_like(r) for r in rows], 0, padding_side),
        }
        if labels is not None:
            if [len(x) for x in labels] != [len(r) for r in rows]:
                raise ValueError(f"label lengths {[len(x) for x in labels]} != input lengths {[len(r) for r in rows]}")
            batch["labels"] = _pad([torch.as_tensor(x, dtype=torch.long) for x in labels], IGNORE_INDEX, padding_side)
        for key in MEDIA_KEYS:
            batch[key] = torch.cat([f[key] for f in features])  # [B, ...]
        return BatchFeature(batch)

    def decode(self, ids) -> str | list[str]:
        """Text of generated ids, keeping the think/answer tags; pad, eos, turn markers and placeholders are dropped.
        A [B, L] input gives a list."""
        ids = torch.as_tensor(ids)
        if ids.ndim == 2:
            return [self.decode(row) for row in ids]
        skip = set(self.tokenizer.all_special_ids) - {self._ids[t] for t in TAG_TOKENS}
        return self.tokenizer.decode([i for i in ids.tolist() if i not in skip], skip_special_tokens=False)


def _pad(rows: list[torch.Tensor], value: int, side: str) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if side == "right":
            out[i, : len(row)] = row
        else:
            out[i, out.shape[1] - len(row) :] = row
    return out


__all__ = ["EmoReasonProcessor", "IGNORE_INDEX", "MEDIA_KEYS", "SYSTEM_PROMPT"]
