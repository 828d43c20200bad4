"""vLLM video loader ``emoreason``: video bytes in, aligned crops of the main face out.

It runs the same code as the ``hf`` backend and training (:func:`emoreason.face.evidence.collect`, keeping only the
main face's crops), so the server sees exactly the crops transformers would.
Checkpoints name it in ``video_preprocessor_config.json`` (``video_processor_type``), which makes vLLM pick it
for every ``video_url`` of that model without any flag.

Limits come from ``--media-io-kwargs '{"video": {"max_video_s": 120, "max_video_mb": 64}}'``; a video over them,
a corrupt file or a video with no detectable face raises ``ValueError``, which vLLM answers with HTTP 400.
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from vllm.multimodal.video import VIDEO_LOADER_REGISTRY, VideoLoader

from emoreason.constants import VIDEO_PROCESSOR_TYPE

DEFAULT_MAX_VIDEO_S = 120.0
DEFAULT_MAX_VIDEO_MB = 64.0
DEFAULT_NUM_FRAMES = 16
# vLLM loads media in a thread pool; dlib's detector and landmark model are not safe to run from several threads
# at once (the API server died with 4 concurrent videos). One analysis at a time per server process: it is CPU
# bound, so little is lost.
_ANALYSIS_LOCK = threading.Lock()


def face_crops_from_bytes(
    data: bytes,
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_video_s: float = DEFAULT_MAX_VIDEO_S,
    max_video_mb: float = DEFAULT_MAX_VIDEO_MB,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Aligned crops ``[T, 224, 224, 3]`` uint8 of the main face at up to ``num_frames`` frames, and metadata.

    Raises:
        ValueError: empty, too large, too long or unreadable video, or no face in it (the message says which).
    """
    from emoreason.face.evidence import Sampling, collect
    from emoreason.io.errors import MediaError
    from emoreason.io.video import VideoInfo, probe_video

    size_mb = len(data) / 2**20
    if not data:
        raise ValueError("the video is empty (0 bytes)")
    if size_mb > max_video_mb:
        raise ValueError(f"the video is {size_mb:.1f} MB; this server accepts at most {max_video_mb:g} MB")
    still = _is_image(data)
    sampling = Sampling(model_crops=max(1, int(num_frames)), audio=False)  # the model's crops, nothing more
    with tempfile.TemporaryDirectory(prefix="emoreason-video-") as folder:
        # a still image is analysed as one (one crop); a video's container is sniffed from its bytes
        path = Path(folder) / ("image.png" if still else "video.mp4")
        path.write_bytes(data)
        try:
            info = VideoInfo(str(path), 1, 0.0, 0.0, 0, 0) if still else probe_video(path)
            if info.duration_s > max_video_s:
                raise ValueError(
                    f"the video lasts {info.duration_s:.1f} s; this server accepts at most {max_video_s:g} s"
                )
            with _ANALYSIS_LOCK:
                evidence = collect(path, sampling=sampling)
        except MediaError as exc:
            raise ValueError(f"the video cannot be read: {str(exc).replace(str(path), 'video')}") from None
    crops = evidence.crops
    if crops is None:
        raise ValueError(f"no face was found in the video ({evidence.analysis.frames_analyzed} frames analysed)")
    metadata = {
        "total_num_frames": info.num_frames,
        "fps": info.fps,
        "duration": info.duration_s,
        "video_backend": "emoreason",
        "frames_indices": list(range(len(crops))),
        "do_sample_frames": False,
    }
    return crops, metadata


def _is_image(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format in {"JPEG", "PNG", "BMP", "WEBP", "TIFF"}
    except (UnidentifiedImageError, OSError, ValueError):
        return False


@VIDEO_LOADER_REGISTRY.register("emoreason", video_processor=VIDEO_PROCESSOR_TYPE)
class FaceCropVideoLoader(VideoLoader):
    @classmethod
    def load_bytes(cls, data: bytes, num_frames: int = -1, **kwargs) -> tuple[np.ndarray, dict[str, Any]]:
        options = {k: float(kwargs[k]) for k in ("max_video_s", "max_video_mb") if k in kwargs}
        return face_crops_from_bytes(data, num_frames if num_frames > 0 else DEFAULT_NUM_FRAMES, **options)


# the "emoreason" media connector (what a video URL may point at) and the file:// error fix for a plain vllm serve
from emoreason.serving import media  # noqa: E402, F401
