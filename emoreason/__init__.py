"""emoreason: explainable facial emotion reasoning.

>>> import emoreason
>>> report = emoreason.explain("clip.mp4")           # doctest: +SKIP
>>> print(report.reasoning)                           # doctest: +SKIP
>>> table = emoreason.FaceAnalyzer().detect_video("clip.mp4")  # doctest: +SKIP
"""

from emoreason.explain import explain
from emoreason.face.analyzer import FaceAnalysis, FaceAnalyzer
from emoreason.io.errors import MediaError
from emoreason.report import AUReport, EmotionReport, EmotionScore, Segment

__version__ = "0.1.0"

_MODEL_EXPORTS = ("EmoReasonConfig", "EmoReasonForConditionalGeneration", "EmoReasonProcessor")


def __getattr__(name: str):
    # The model classes need torch (the `model` extra); import them on first use so that
    # `import emoreason` works on a machine without it.
    if name in _MODEL_EXPORTS:
        try:
            import emoreason.model as model
        except ImportError as exc:
            raise ImportError(
                f"emoreason.{name} needs the model extra: pip install 'emoreason[model]' ({exc})"
            ) from exc
        return getattr(model, name)
    raise AttributeError(f"module 'emoreason' has no attribute {name!r}")


__all__ = [
    "AUReport",
    "EmotionReport",
    "EmotionScore",
    "FaceAnalysis",
    "FaceAnalyzer",
    "MediaError",
    "Segment",
    "explain",
    "__version__",
    *_MODEL_EXPORTS,
]
