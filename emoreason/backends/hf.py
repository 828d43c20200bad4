"""The ``hf`` backend: an emoreason checkpoint run in-process with transformers.

The evidence carries the main face's aligned crops and the span's audio; the processor turns them into pixel
values and log-mel features, and the measured AU and prosody evidence into text in the prompt. The model writes
``<think>...</think><answer>{json}</answer>``; the shared answer parser turns that into the same
:class:`~emoreason.report.EmotionReport` as the rules backend.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from emoreason.backends.base import ModelBackend
from emoreason.face.evidence import Evidence, Sampling
from emoreason.model.tokenizer import IM_END


@functools.lru_cache(maxsize=2)
def load_hf_backend(path: str, device: str = "cpu") -> HFBackend:
    """One :class:`HFBackend` per checkpoint and device: the checkpoint is loaded once per process."""
    return HFBackend(path, device=device)


class HFBackend(ModelBackend):
    """Load a checkpoint once; explain many clips with it in-process (transformers)."""

    name = "hf"

    def __init__(self, path: str | Path, device: str = "cpu", max_new_tokens: int = 384):
        from emoreason.model.checkpoint import load_checkpoint
        from emoreason.model.processor import EmoReasonProcessor

        self.model_path = self.model = str(path)
        self.network = load_checkpoint(path).to(device)
        self.processor = EmoReasonProcessor.from_pretrained(path)
        self.device = device
        self.max_new_tokens = max_new_tokens

    def sampling(self, base: Sampling) -> Sampling:
        return replace(base, model_crops=self.processor.max_frames)

    def generate(self, crops: np.ndarray, waveform: np.ndarray | None, evidence: str | None) -> str:
        """Greedy completion for ``crops`` ``[T, S, S, 3]`` uint8, a 16 kHz waveform ``[N]`` and evidence text."""
        messages = self.processor.build_messages(evidence=evidence, has_audio=waveform is not None)
        batch = self.processor(messages, faces=crops, audio=waveform)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        tokenizer = self.processor.tokenizer
        stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]  # a turn ends with <|im_end|>
        with torch.inference_mode():
            ids = self.network.generate(
                **batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                eos_token_id=stop, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
        return self.processor.decode(ids[0])

    def complete(self, evidence: Evidence, prompt_evidence: str | None) -> str:
        return self.generate(evidence.crops, evidence.waveform, prompt_evidence)


__all__ = ["HFBackend", "load_hf_backend"]
