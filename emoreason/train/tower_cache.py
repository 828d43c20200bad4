"""Frozen face-tower outputs, computed once per clip and kept for every later step, epoch and stage.

A frozen tower gives the same patch tokens for the same crops at every step, so recomputing them is waste: on
the smol preset the FER2013 mini-Xception took 1.7-4 s for a batch of 8 clips x 16 frames (timed alone, while a
training run shared the 2-core machine; depthwise convolutions are slow on a CPU). Entries are keyed by the clip and by a fingerprint of the tower's
weights (a checkpoint with another tower never reads them), held in memory and written beside the media cache so
the next stage (GRPO, self-improvement) and a resumed run read them from disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def tower_fingerprint(tower: torch.nn.Module) -> str:
    """Short hash of a tower's weights and buffers (BatchNorm statistics included)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:10]


class TowerCache:
    """``features(keys, pixel_values)``: the frozen face tower's ``[B, T, P, D]`` for a batch of clips, each computed
    at most once (``keys`` name the clips: sample id and media).

    Only for a frozen tower (``is_frozen(model)``); the collator falls back to the crops otherwise.
    """

    def __init__(self, model, cache_dir: str | Path):
        self.model = model
        self.dir = Path(cache_dir) / f"face-tower-{tower_fingerprint(model.face_tower)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.memory: dict[str, torch.Tensor] = {}
        self.computed = 0

    @staticmethod
    def is_frozen(model) -> bool:
        return not any(p.requires_grad for p in model.face_tower.parameters())

    def features(self, keys: list[str], pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, T, 3, S, S]`` (the processor's crops of the clips named by ``keys``) ->
        ``[B, T, P, D]``."""
        missing = [i for i, key in enumerate(keys) if key not in self.memory and not self._load(key)]
        if missing:
            self.model.face_tower.eval()
            with torch.no_grad():
                fresh = self.model.encode_face_crops(pixel_values[missing].to(self.model.device)).float().cpu()
            for i, value in zip(missing, fresh):
                self._store(keys[i], value.contiguous())
        return torch.stack([self.memory[key] for key in keys])

    def _path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"

    def _load(self, key: str) -> bool:
        path = self._path(key)
        if not path.is_file():
            return False
        self.memory[key] = torch.load(path, weights_only=True)
        return True

    def _store(self, key: str, value: torch.Tensor) -> None:
        self.memory[key], self.computed = value, self.computed + 1
        path = self._path(key)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")  # atomic, as the media cache
        torch.save(value, tmp)
        tmp.replace(path)
