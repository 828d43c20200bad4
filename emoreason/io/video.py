"""Video frames sampled by time, and still images, as RGB arrays with timestamps.

Frames are decoded with decord at a reduced size and handed out one small batch at a time, so a long
or high-resolution video never sits in memory whole: peak memory is about 32 frames at
``max_side`` plus decord's own decoder buffers (see ``scripts/bench_perception.py``).
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
    IMAGE_MAX_SIDE,
)
from emoreason.io.errors import MediaError, check_file, native_stderr_silenced

logger = logging.getLogger(__name__)

_BATCH = 32  # frames decoded per decord call (each call costs a seek, see below)


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


def _decord():
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's own messages would bypass ours
    return decord


def _decode_errors() -> tuple[type[BaseException], ...]:
    # decord raises DECORDError (not a RuntimeError) from its C++ checks, and RuntimeError on open.
    return (RuntimeError, _decord().DECORDError)


def _target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    # even sizes keep the decoder's scaler happy
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _open(path: Path, max_side: int):
    decord = _decord()
    try:
        with native_stderr_silenced():
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            if len(reader) == 0:
                raise MediaError(f"{path}: video has no frames")
            height, width = reader[0].shape[:2]
            target = _target_size(width, height, max_side)
            if target != (width, height):
                reader = decord.VideoReader(
                    str(path), ctx=decord.cpu(0), width=target[0], height=target[1], num_threads=1
                )
    except _decode_errors() as exc:
        raise MediaError(f"{path}: not a readable video (corrupt, truncated or not a video file)") from exc
    return reader, width, height


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("[", "Stack trace", "File"))]
    return (useful or lines or [type(exc).__name__])[0][:200]


class VideoFile:
    """An open video: its stream facts and frames decoded by time, from one decoder (open it once per job).

    Args:
        path: the video file.
        max_side: frames are decoded with their long side at most this many pixels.
    Raises:
        MediaError: the file is missing, empty, not a video, or its frame times cannot be read.
    """

    def __init__(self, path: str | Path, max_side: int = DEFAULT_MAX_SIDE):
        self.path = check_file(path)
        self._reader, width, height = _open(self.path, max_side)
        try:
            self.stamps = self._reader.get_frame_timestamp(range(len(self._reader)))[:, 0]  # [N] start times, s
            duration = float(self._reader.get_frame_timestamp(len(self._reader) - 1)[1])
        except _decode_errors() as exc:
            raise MediaError(f"{self.path}: cannot read frame times ({_first_line(exc)})") from exc
        fps = float(self._reader.get_avg_fps()) or 25.0
        self.info = VideoInfo(str(self.path), len(self._reader), fps, duration, width, height)

    def indices_at(self, times: np.ndarray) -> np.ndarray:
        """Numbers of the frames shown at ``times`` (seconds), each once, sorted: what :meth:`frames_at` yields."""
        indices = np.clip(np.searchsorted(self.stamps, times, side="right") - 1, 0, len(self._reader) - 1)
        return np.unique(indices)  # a low-fps video may map two sample times to one frame

    def frames_at(self, times: np.ndarray) -> Iterator[Frame]:
        """The frames shown at ``times`` (seconds), each once, in time order, decoded in small batches.

        Raises:
            MediaError: decoding fails part-way (a truncated or corrupt file).
        """
        reader, stamps = self._reader, self.stamps
        indices = self.indices_at(times)
        for offset in range(0, len(indices), _BATCH):
            chunk = indices[offset : offset + _BATCH]
            try:
                with native_stderr_silenced():
                    batch = reader.get_batch(chunk.tolist()).asnumpy()  # [b, H, W, 3] uint8
                    # decord's reader thread keeps decoding ahead into an unbounded queue while the caller
                    # is busy (dmlc/decord#157), ~one frame of memory per source frame. Seeking resets it;
                    # seek(0) (not to the last index, which decodes later frames without their references)
                    # keeps frames exact and memory flat, for ~1.7x the decode time.
                    reader.seek(0)
            except _decode_errors() as exc:
                raise MediaError(
                    f"{self.path}: video is truncated or corrupt: decoding failed near {stamps[chunk[0]]:.2f} s "
                    f"({_first_line(exc)})"
                ) from exc
            for idx, image in zip(chunk, batch):
                yield Frame(int(idx), float(stamps[idx]), image)
            del batch


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


def load_image(path: str | Path, max_side: int = IMAGE_MAX_SIDE) -> Frame:
    """Read a still image as one RGB frame at time 0 (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = check_file(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            if max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise MediaError(f"{path}: cannot read as an image ({exc})") from exc
    return Frame(0, 0.0, array)
