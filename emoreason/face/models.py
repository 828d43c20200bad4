"""Locate and load the pretrained face models that ship inside registry wheels.

dlib (``dlib-bin``) provides the HOG + linear SVM frontal face detector in its binary; the 68-point
iBUG 300-W landmark model comes in ``face-recognition-models``. That package's ``__init__`` imports
``pkg_resources`` (absent from modern setuptools), so its folder is found with ``find_spec`` rather
than by importing it. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

LANDMARK_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"


class FaceModelError(RuntimeError):
    """A pretrained face model is missing or unreadable."""


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceModelError("the face landmark model is not installed: pip install face-recognition-models==0.3.0")
    return Path(spec.origin).parent / "models"


def landmark_model_path() -> Path:
    path = models_dir() / LANDMARK_MODEL_FILE
    if not path.is_file():
        raise FaceModelError(f"landmark model file missing: {path}; reinstall face-recognition-models")
    return path


@functools.lru_cache(maxsize=1)
def load_dlib():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a core dependency
        raise FaceModelError("dlib is not installed: pip install dlib-bin") from exc
    return dlib


@functools.lru_cache(maxsize=1)
def face_detector():
    """dlib's frontal face detector (HOG features + linear SVM, trained on iBUG/LFW faces)."""
    return load_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def landmark_predictor():
    """dlib's 68-point landmark model (ensemble of regression trees, Kazemi & Sullivan 2014)."""
    return load_dlib().shape_predictor(str(landmark_model_path()))


def _read_packed_int(buf: bytes, pos: int) -> tuple[int, int]:
    # dlib's compact integer encoding: a control byte (low nibble = byte count, bit 7 = sign)
    # followed by that many little-endian bytes.
    control = buf[pos]
    size = control & 0x0F
    value = int.from_bytes(buf[pos + 1 : pos + 1 + size], "little")
    return (-value if control & 0x80 else value), pos + 1 + size


@functools.lru_cache(maxsize=1)
def mean_shape() -> np.ndarray:
    """The landmark model's own mean shape, ``[68, 2]`` in units of the detection box.

    ``shape_predictor`` files start with the ``initial_shape`` the regression trees refine: the mean
    of the 300-W training shapes. It is our neutral reference for still images.
    """
    with open(landmark_model_path(), "rb") as handle:
        buf = handle.read(4096)
    pos = 0
    version, pos = _read_packed_int(buf, pos)
    rows, pos = _read_packed_int(buf, pos)
    cols, pos = _read_packed_int(buf, pos)
    rows, cols = abs(rows), abs(cols)  # newer dlib writes negative sizes to mark its matrix format
    if version != 1 or rows * cols != 136:
        raise FaceModelError(f"unexpected landmark model header (version {version}, {rows}x{cols})")
    values = []
    for _ in range(rows * cols):  # floats: mantissa and exponent, each a packed int
        mantissa, pos = _read_packed_int(buf, pos)
        exponent, pos = _read_packed_int(buf, pos)
        values.append(mantissa * 2.0**exponent)
    return np.asarray(values, dtype=np.float64).reshape(68, 2)
