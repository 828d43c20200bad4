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
]
