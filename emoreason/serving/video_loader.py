"""vLLM video loader ``emoreason``: video bytes in, aligned crops of the main face out.

It runs the same code as the ``hf`` backend and training (:func:`emoreason.face.evidence.collect`, keeping only the
main face's crops), so the server sees exactly the crops transformers would; in the server it runs in the
:mod:`~emoreason.serving.analysis` pool of worker processes, cached by the video's content hash.
Checkpoints name it in ``video_preprocessor_config.json`` (``video_processor_type``), which makes vLLM pick it
for every ``video_url`` of that model without any flag.

Limits come from ``--media-io-kwargs '{"video": {"max_video_s": 120, "max_video_mb": 64}}'``; a video over them,
a corrupt file or a video with no detectable face raises ``ValueError``, which vLLM answers with HTTP 400.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from vllm.multimodal.video import VIDEO_LOADER_REGISTRY, VideoLoader

from emoreason.constants import VIDEO_PROCESSOR_TYPE
from emoreason.serving.analysis import AnalysisError, analyse_file, is_image_bytes, server_pool

DEFAULT_MAX_VIDEO_S = 120.0
DEFAULT_MAX_VIDEO_MB = 64.0
DEFAULT_NUM_FRAMES = 16


def check_size(data: bytes, max_video_mb: float) -> None:
    """AnalysisError (HTTP 400) for an empty video or one over ``max_video_mb``."""
    if not data:
        raise AnalysisError("the video is empty (0 bytes)")
    size_mb = len(data) / 2**20
    if size_mb > max_video_mb:
        raise AnalysisError(f"the video is {size_mb:.1f} MB; this server accepts at most {max_video_mb:g} MB")


def face_crops_from_bytes(
    data: bytes,
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_video_s: float = DEFAULT_MAX_VIDEO_S,
    max_video_mb: float = DEFAULT_MAX_VIDEO_MB,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Aligned crops ``[T, 224, 224, 3]`` uint8 of the main face at up to ``num_frames`` frames, and metadata,
    computed in this process (the server's loader runs the same function in its analysis pool).

    Raises:
        ValueError: empty, too large, too long or unreadable video, or no face in it (the message says which).
    """
    check_size(data, max_video_mb)
    with tempfile.TemporaryDirectory(prefix="emoreason-video-") as folder:
        path = Path(folder) / ("image.png" if is_image_bytes(data) else "video.mp4")
        path.write_bytes(data)
        result = analyse_file(path, "crops", num_frames, max_video_s)
    return result.crops, result.metadata


@VIDEO_LOADER_REGISTRY.register("emoreason", video_processor=VIDEO_PROCESSOR_TYPE)
class FaceCropVideoLoader(VideoLoader):
    @classmethod
    def load_bytes(cls, data: bytes, num_frames: int = -1, **kwargs) -> tuple[np.ndarray, dict[str, Any]]:
        check_size(data, float(kwargs.get("max_video_mb", DEFAULT_MAX_VIDEO_MB)))
        frames = num_frames if num_frames > 0 else DEFAULT_NUM_FRAMES
        result = server_pool().run("crops", data, frames, float(kwargs.get("max_video_s", DEFAULT_MAX_VIDEO_S)))
        return result.crops, result.metadata


# the "emoreason" media connector (what a video URL may point at) and the file:// error fix for a plain vllm serve
from emoreason.serving import media  # noqa: E402, F401
