"""The two video decoders behind :class:`emoreason.io.video.VideoFile`: decord (fast, seeks by frame) and PyAV.

decord is the fast path. PyAV (FFmpeg's own demuxers) is the fallback for what decord 0.6 gets wrong: it cannot
open animated GIF ("broken metadata"), some MPEG-TS ("rewind" errors) or AV1 files, and gives MPEG-2 program
streams first timestamps of about -1e14 s. Both decode at a reduced size and hand out frames in small batches.
The header is read with PyAV first (size, stated duration), which also tells a truncated file: its container
says 9 s, its frames end at 5 s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoreason.io.errors import MediaError, native_stderr_silenced

SEEK_GAP_S = 5.0  # PyAV: a gap this long between wanted frames is sought over, not decoded
BATCH = 32  # frames decoded per decord call (each call costs a seek, see DecordDecoder.frames)
# decord's messages start with "[12:00:00] /github/workspace/src/video/ffmpeg/threaded_decoder.cc:292: "
_BUILD_PATH = re.compile(r"\[[^\]]*\]\s*\S+\.(cc|h|cpp):\d+:\s*")


@dataclass(frozen=True)
class Header:
    """What a container says about its first video stream, before decoding any frame."""

    width: int
    height: int
    fps: float
    stated_duration_s: float | None  # from the container or stream header; None when it says nothing


def clean_message(exc: BaseException) -> str:
    """The first useful line of a decoder's error, without decord's build paths."""
    lines = [_BUILD_PATH.sub("", line).strip() for line in str(exc).splitlines()]
    useful = [line for line in lines if line and not line.startswith(("Stack trace", "File", "["))]
    return (useful or [type(exc).__name__])[0][:200]


def open_container(path: Path, what: str = "not a readable video (corrupt, truncated or not a video file)"):
    """``av.open`` of ``path``, through a Python file object when its name is not valid UTF-8 (FFmpeg takes UTF-8
    names; open() takes any). MediaError ``"{path}: {what}"`` when FFmpeg cannot open it."""
    import av

    try:
        str(path).encode("utf-8")
        return av.open(str(path))
    except UnicodeEncodeError:
        return av.open(open(path, "rb"))  # noqa: SIM115  (the container closes it)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: {what} ({clean_message(exc)})") from exc


def _open_av(path: Path):
    return open_container(path)


def read_header(path: Path) -> Header:
    """Size, frame rate and stated duration of the first video stream (MediaError: none, or unreadable)."""
    container = _open_av(path)
    try:
        if not container.streams.video:
            raise MediaError(f"{path}: not a video (no video stream)")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise MediaError(f"{path}: not a readable video (the video stream has no frame size)")
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        stated = None
        if stream.duration and stream.time_base:
            stated = float(stream.duration * stream.time_base)
        elif container.duration:
            stated = container.duration / 1_000_000  # AV_TIME_BASE
        return Header(width, height, rate, stated)
    finally:
        container.close()


class DecordDecoder:
    """decord's VideoReader at ``size``; ``stamps`` [N] frame start times (s) and ``duration_s`` from its index."""

    name = "decord"

    def __init__(self, path: Path, size: tuple[int, int]):
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's own messages would bypass ours
        self.errors = (RuntimeError, decord.DECORDError)  # DECORDError from its C++ checks, RuntimeError on open
        with native_stderr_silenced():
            self.reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=size[0], height=size[1],
                                             num_threads=1)  # fmt: skip
            if len(self.reader) == 0:
                raise MediaError(f"{path}: video has no frames")
            self.stamps = self.reader.get_frame_timestamp(range(len(self.reader)))[:, 0]
            self.duration_s = float(self.reader.get_frame_timestamp(len(self.reader) - 1)[1])
            self.reader.get_batch([0])  # some files open but fail at the first frame (MPEG-TS: "rewind" errors)
            self.reader.seek(0)

    def plausible(self) -> bool:
        """decord's timestamps can be garbage (MPEG-2 program streams start at about -1e14 s)."""
        stamps = self.stamps
        return bool(np.all(np.isfinite(stamps)) and stamps[0] > -1.0 and np.all(np.diff(stamps) >= 0)
                    and math.isfinite(self.duration_s) and self.duration_s > 0)  # fmt: skip

    def frames(self, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for offset in range(0, len(indices), BATCH):
            chunk = indices[offset : offset + BATCH]
            with native_stderr_silenced():
                batch = self.reader.get_batch(chunk.tolist()).asnumpy()  # [b, H, W, 3] uint8
                # decord's reader thread keeps decoding ahead into an unbounded queue while the caller
                # is busy (dmlc/decord#157), ~one frame of memory per source frame. Seeking resets it;
                # seek(0) (not to the last index, which decodes later frames without their references)
                # keeps frames exact and memory flat, for ~1.7x the decode time.
                self.reader.seek(0)
            yield from zip(chunk.tolist(), batch)
            del batch


class PyAVDecoder:
    """FFmpeg through PyAV: packet times from one demux pass, then frames decoded in order from a seek."""

    name = "pyav"

    def __init__(self, path: Path, size: tuple[int, int]):
        import av

        self.path, self.size, self.errors = path, size, (av.FFmpegError, ValueError)
        self.container = _open_av(path)
        stream = self.container.streams.video[0]
        times, ends = [], []
        try:
            for packet in self.container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None and packet.size:
                    times.append(float(stamp * stream.time_base))
                    ends.append(float((stamp + (packet.duration or 0)) * stream.time_base))
        except av.FFmpegError:
            pass  # a truncated file: the packets read so far are the video
        if not times:
            raise MediaError(f"{path}: not a readable video (no video frames)")
        order = np.argsort(times)
        self.origin = float(np.asarray(times)[order][0])  # the stream's start time is 0 on our timeline
        self.stamps = np.asarray(times)[order] - self.origin
        step = float(np.median(np.diff(self.stamps))) if len(self.stamps) > 1 else 1 / (float(stream.average_rate
                                                                                             or 25))  # fmt: skip
        self.duration_s = max(max(ends) - self.origin, float(self.stamps[-1]) + step)

    def plausible(self) -> bool:
        return True

    def frames(self, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Decode from a seek before each run of wanted frames: sparse sampling of a long video (480 frames over
        an hour) seeks past the gaps instead of decoding every frame between them."""
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        pending = [int(i) for i in indices]
        while pending:
            pending = yield from self._run(stream, pending)

    def _run(self, stream, pending: list[int]):
        """Seek a second before ``pending[0]`` and decode until the next wanted frame is a gap of SEEK_GAP_S away;
        returns the frames still wanted. A seek that lands past a wanted frame skips it (never loops)."""
        first = float(self.stamps[pending[0]])
        # by AV_TIME_BASE, not by stream: MPEG-TS seeks by stream time land nowhere; a second early is a keyframe
        self.container.seek(int(max(first + self.origin - 1.0, 0.0) * 1_000_000), backward=True)
        for frame in self.container.decode(stream):
            if frame.pts is None:
                continue
            index = int(np.searchsorted(self.stamps, float(frame.pts * stream.time_base) - self.origin + 1e-6) - 1)
            while pending and pending[0] < index:
                pending.pop(0)  # not decodable from here (the seek landed after it)
            if pending and pending[0] == index:
                pending.pop(0)
                yield index, frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1])
                if pending and self.stamps[pending[0]] - self.stamps[index] > SEEK_GAP_S:
                    return pending  # seek over the gap
            if not pending:
                return []
        return []
