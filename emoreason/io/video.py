"""Video frames sampled by time, and still images, as RGB arrays with timestamps.

Frames are decoded (decord, or PyAV where decord fails: :mod:`emoreason.io.decoders`) at a reduced size and
handed out one small batch at a time, so a long or high-resolution video never sits in memory whole: peak
memory is about 32 frames at ``max_side`` plus the decoder's own buffers (see ``scripts/bench_perception.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoreason.constants import (
    DEFAULT_ANALYSIS_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SIDE,
    IMAGE_EXTENSIONS,
)
from emoreason.io.decoders import DecordDecoder, PyAVDecoder, clean_message, read_header
from emoreason.io.errors import MediaError, check_file
from emoreason.io.image import load_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    index: int  # frame number in the file (0 for an image)
    time_s: float  # presentation time of the frame's start
    image: np.ndarray  # [H, W, 3] uint8 RGB, long side <= max_side


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float
    duration_s: float
    width: int  # original size, before any downscaling
    height: int


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    # even sizes keep the decoder's scaler happy
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


class VideoFile:
    """An open video: its stream facts and frames decoded by time, from one decoder (open it once per job).

    The header is read with PyAV; frames with decord, or with PyAV where decord cannot open the file or gives
    implausible frame times (see :mod:`emoreason.io.decoders`). ``warnings`` says when the frames end well before
    the duration the container states (a truncated file).

    Args:
        path: the video file.
        max_side: frames are decoded with their long side at most this many pixels.
    Raises:
        MediaError: the file is missing, empty, unreadable, not a video, or has no readable frames.
    """

    def __init__(self, path: str | Path, max_side: int = DEFAULT_MAX_SIDE):
        self.path = check_file(path)
        header = read_header(self.path)
        self.size = _target_size(header.width, header.height, max_side)
        self.decoder = self._decoder()
        self.stamps = self.decoder.stamps  # [N] start time of each frame, seconds
        duration = self.decoder.duration_s
        self.info = VideoInfo(str(self.path), len(self.stamps), header.fps, duration, header.width, header.height)
        self.warnings: list[str] = []
        stated = header.stated_duration_s
        if stated is not None and stated - duration > max(0.5, 0.05 * stated):
            self.warnings.append(f"truncated: decoded {duration:.1f} s of {stated:.1f} s")

    def _decoder(self):
        import decord

        try:
            decoder = DecordDecoder(self.path, self.size)
            if decoder.plausible():
                return decoder
            logger.info("%s: decord's frame times are implausible; decoding with PyAV", self.path)
        except (MediaError, RuntimeError, UnicodeError, decord.DECORDError) as exc:
            logger.info("%s: decord cannot open it (%s); decoding with PyAV", self.path, clean_message(exc))
        return PyAVDecoder(self.path, self.size)

    def indices_at(self, times: np.ndarray) -> np.ndarray:
        """Numbers of the frames shown at ``times`` (seconds), each once, sorted: what :meth:`frames_at` yields."""
        indices = np.clip(np.searchsorted(self.stamps, times, side="right") - 1, 0, len(self.stamps) - 1)
        return np.unique(indices)  # a low-fps video may map two sample times to one frame

    def frames_at(self, times: np.ndarray) -> Iterator[Frame]:
        """The frames shown at ``times`` (seconds), each once, in time order, decoded in small batches.

        Raises:
            MediaError: decoding fails part-way (a truncated or corrupt file).
        """
        indices = self.indices_at(times)
        done = -1
        try:
            for index, image in self.decoder.frames(indices):
                done = index
                yield Frame(int(index), float(self.stamps[index]), image)
        except self.decoder.errors as exc:
            after = indices[indices > done]
            near = float(self.stamps[after[0]]) if len(after) else float(self.stamps[-1])
            raise MediaError(f"{self.path}: video is truncated or corrupt: decoding failed near {near:.2f} s "
                             f"({clean_message(exc)})") from exc  # fmt: skip


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, frame rate, duration and size of a video, without decoding it all."""
    return VideoFile(path, max_side=10**6).info


def sample_times(duration_s: float, fps: float, max_frames: int, start_s: float = 0.0) -> np.ndarray:
    """Evenly spaced sample times between ``start_s`` and ``duration_s`` (the end): ``fps`` per second, thinned so
    that at most ``max_frames`` remain."""
    if not (math.isfinite(fps) and fps > 0) or max_frames <= 0:
        raise ValueError(f"fps and max_frames must be positive, got fps={fps}, max_frames={max_frames}")
    span = max(duration_s - start_s, 0.0)
    count = max(1, min(max_frames, int(math.floor(span * fps)) or 1))
    step = span / count if count else 0.0
    return start_s + step * (np.arange(count) + 0.5) if span > 0 else np.array([start_s])


def iter_video_frames(
    path: str | Path,
    fps: float = DEFAULT_ANALYSIS_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
    start_s: float = 0.0,
    end_s: float | None = None,
    times: np.ndarray | None = None,
) -> Iterator[Frame]:
    """Yield frames sampled at ``fps`` between ``start_s`` and ``end_s``, decoded at most ``max_side``.

    ``times`` (seconds) replaces that sampling with the frames shown at exactly those times.

    Raises:
        MediaError: the file is missing, empty, not a video, or fails to decode (truncated).
    """
    video = VideoFile(path, max_side)
    end = video.info.duration_s if end_s is None else min(end_s, video.info.duration_s)
    if times is None:
        times = sample_times(end, fps, max_frames, start_s=start_s)
    yield from video.frames_at(times)


__all__ = ["Frame", "VideoFile", "VideoInfo", "is_image", "iter_video_frames", "load_image", "probe_video",
           "sample_times"]
