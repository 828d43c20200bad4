"""The server's media work: face analysis in a pool of worker processes, cached by the video's content hash.

vLLM loads a request's media in a thread of the API server process. Face analysis there ran one video at a time
under a lock and was repeated for a video sent twice. Here it runs in ``workers`` separate processes (each with
its own face models: nothing is shared between threads), and its results are kept in a bounded LRU cache keyed
by the SHA-256 of the video's bytes, so the same video is analysed once however often it is sent, and concurrent
requests for one video wait for the one analysis. Two kinds of work:

- ``crops``: what the model consumes, the main face's aligned crops (the video loader). Only what the crops depend
  on runs: detection, the mesh that follows the face between scans, alignment; no expression CNN, no key frames,
  no audio. The crops are the ones :func:`emoreason.face.evidence.collect` cuts for training and the ``hf``
  backend (same frames, same landmarks), so served and in-process answers stay token for token the same.
- ``evidence``: what ``emoreason explain --server`` measures on the client, for a request that sends only a video
  (:mod:`~emoreason.serving.guard`): the full analysis, the FACS reasoner's AUs and the prosody of the video's
  own audio track as prompt text, and the audio the model hears; its crops are kept for the loader too.

A worker that dies (a decoder crash on a poisoned file, the memory killer) or runs past ``timeout_s`` fails only
its own request, with :class:`AnalysisError` (a ``ValueError``: vLLM answers it with HTTP 400); it is replaced
for the next request. ``emoreason serve --analysis-workers N --analysis-cache N --analysis-timeout-s S`` set the
pool through the environment (:data:`WORKERS_ENV`, ...), which vLLM's API server processes inherit.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WORKERS_ENV = "EMOREASON_ANALYSIS_WORKERS"
CACHE_ENV = "EMOREASON_ANALYSIS_CACHE"
TIMEOUT_ENV = "EMOREASON_ANALYSIS_TIMEOUT_S"
WORK_ENV = "EMOREASON_ANALYSIS_WORK"  # module:function to run in the workers instead of analyse_file
DEFAULT_CACHE = 64  # results; one holds ~2.4 MB of crops (16 x 224 x 224 x 3) and up to 1.9 MB of audio
DEFAULT_TIMEOUT_S = 300.0
KINDS = ("crops", "evidence")


def default_workers() -> int:
    """Half the CPUs (the other half runs vLLM's engine), at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class AnalysisError(ValueError):
    """A video the server could not analyse; the message says why (vLLM answers a ValueError with HTTP 400)."""


@dataclass
class MediaResult:
    """What one analysis gives the server.

    Attributes:
        crops: ``[T, 224, 224, 3]`` uint8 aligned crops of the main face (the model's video input).
        metadata: vLLM's video metadata (frame count, fps, duration, ...).
        evidence: the measured AUs and prosody cues as prompt text ('' when nothing was measured; None for crops).
        aus: the FACS reasoner's AUs (:class:`~emoreason.report.AUReport`) behind that text.
        waveform: the first MODEL_AUDIO_S seconds of the audio track at 16 kHz (None without audio or for crops).
        seconds: how long the analysis took in its worker.
    """

    crops: np.ndarray
    metadata: dict[str, Any]
    evidence: str | None = None
    aus: list | None = None
    waveform: np.ndarray | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


# --- the work (runs in a worker process; callable in-process too) ---------------------------------------------------


def analyse_file(path: Path, kind: str, num_frames: int, max_video_s: float, analyzers: dict | None = None,
                 ) -> MediaResult:  # fmt: skip
    """Analyse the image or video at ``path`` for the server (``kind`` is ``crops`` or ``evidence``).

    Raises:
        AnalysisError: unreadable, too long, or no face (the message says which, without the server's path).
    """
    from emoreason.face.analyzer import FaceAnalyzer
    from emoreason.face.evidence import Sampling, collect
    from emoreason.io.errors import MediaError
    from emoreason.io.video import VideoInfo, is_image, probe_video

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    started = time.perf_counter()
    analyzers = {} if analyzers is None else analyzers
    if kind not in analyzers:  # the face models load once per worker
        analyzers[kind] = FaceAnalyzer(expressions=kind == "evidence")
    # the Sampling that `explain(path, server=...)` uses on the client, so the measured text is the same
    sampling = Sampling(model_crops=max(1, int(num_frames)), audio=kind == "evidence")
    try:
        still = is_image(path)
        info = VideoInfo(str(path), 1, 0.0, 0.0, 0, 0) if still else probe_video(path)
        if info.duration_s > max_video_s:
            raise AnalysisError(
                f"the video lasts {info.duration_s:.1f} s; this server accepts at most {max_video_s:g} s"
            )
        evidence = collect(path, sampling=sampling, analyzer=analyzers[kind])
    except MediaError as exc:
        raise AnalysisError(f"the video cannot be read: {str(exc).replace(str(path), 'video')}") from None
    if evidence.crops is None:
        raise AnalysisError(f"no face was found in the video ({evidence.analysis.frames_analyzed} frames analysed)")
    metadata = {
        "total_num_frames": info.num_frames,
        "fps": info.fps,
        "duration": info.duration_s,
        "video_backend": "emoreason",
        "frames_indices": list(range(len(evidence.crops))),
        "do_sample_frames": False,
    }
    result = MediaResult(evidence.crops, metadata, warnings=list(evidence.warnings))
    if kind == "evidence":
        from emoreason.backends.rules import RulesBackend
        from emoreason.prompt import textualize

        report = RulesBackend().explain(evidence)  # what ModelBackend.explain writes into the prompt
        result.aus = list(report.aus)
        result.evidence = textualize(aus=report.aus, prosody_cues=(report.audio or {}).get("cues"))
        result.waveform = evidence.waveform
    result.seconds = time.perf_counter() - started
    return result


def _worker_main(conn, work: Callable | None = None) -> None:
    """A worker's loop: ``(path, kind, num_frames, max_video_s)`` in, ``("ok", MediaResult)`` or
    ``("error", message)`` out, until the pipe closes."""
    work = work or analyse_file
    analyzers: dict = {}
    while True:
        try:
            path, kind, num_frames, max_video_s = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", work(Path(path), kind, num_frames, max_video_s, analyzers))
        except ValueError as exc:
            reply = ("error", str(exc))
        except Exception as exc:  # noqa: BLE001  (any failure of one video is that request's 400, not the pool's)
            reply = ("error", f"the video could not be analysed ({type(exc).__name__}: {exc})")
        conn.send(reply)


class _Worker:
    """One worker process and its pipe; started on first use and again after it dies."""

    def __init__(self, context, work: Callable | None):
        self.context, self.work = context, work
        self.process = None
        self.conn = None

    def start(self) -> None:
        parent, child = self.context.Pipe()
        self.process = self.context.Process(target=_worker_main, args=(child, self.work), daemon=True,
                                            name="emoreason-analysis")  # fmt: skip
        self.process.start()
        child.close()
        self.conn = parent

    def call(self, task: tuple, timeout_s: float) -> MediaResult:
        if self.process is None or not self.process.is_alive():
            self.start()
        try:
            self.conn.send(task)
            if not self.conn.poll(timeout_s):
                self.stop()
                raise AnalysisError(f"the video's analysis took longer than {timeout_s:g} s and was stopped")
            status, value = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self.stop()
            raise AnalysisError(f"the video could not be analysed: the analysis worker stopped (exit code {code}) "
                                f"on this file; it has been replaced") from None  # fmt: skip
        if status != "ok":
            raise AnalysisError(value)
        return value

    def stop(self) -> int | None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        process, self.process = self.process, None
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join(10)
        return process.exitcode


class AnalysisPool:
    """Face analysis in ``workers`` processes with a content-hash cache of ``cache_size`` results.

    Thread-safe: :meth:`run` blocks its caller (a vLLM media thread, or a waiting thread of the middleware) until a worker is
    free and has answered. ``work`` replaces :func:`analyse_file` in the workers (a module-level function).

    >>> pool = AnalysisPool(workers=2)                      # doctest: +SKIP
    >>> pool.run("crops", open("clip.mp4", "rb").read(), 16).crops.shape  # doctest: +SKIP
    (16, 224, 224, 3)
    """

    def __init__(self, workers: int | None = None, cache_size: int = DEFAULT_CACHE,
                 timeout_s: float = DEFAULT_TIMEOUT_S, work: Callable | None = None):  # fmt: skip
        workers = default_workers() if workers is None else int(workers)
        if workers < 1 or cache_size < 0 or not timeout_s > 0:
            raise ValueError(f"need workers >= 1, cache_size >= 0, timeout_s > 0; got {workers}, {cache_size}, "
                             f"{timeout_s}")  # fmt: skip
        self.workers, self.cache_size, self.timeout_s = workers, cache_size, float(timeout_s)
        context = multiprocessing.get_context("spawn")  # no fork of a threaded server process
        self._all = [_Worker(context, work) for _ in range(workers)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in self._all:
            self._idle.put(worker)
        self._cache: OrderedDict[tuple, MediaResult] = OrderedDict()
        self._pending: dict[tuple, Future] = {}
        self._lock = threading.Lock()
        self._folder = tempfile.mkdtemp(prefix="emoreason-analysis-")
        self.stats = {"hits": 0, "analyses": 0, "failures": 0, "replaced": 0}

    def run(self, kind: str, data: bytes, num_frames: int, max_video_s: float = float("inf")) -> MediaResult:
        """The ``kind`` analysis of the image or video ``data``, from the cache when this content was analysed.

        Raises:
            AnalysisError: empty, unreadable, too long, no face, or the worker failed (the message says which).
        """
        if not data:
            raise AnalysisError("the video is empty (0 bytes)")
        digest = hashlib.sha256(data).hexdigest()
        own = (digest, kind, int(num_frames))
        # an evidence result holds the crops too: the loader's question after the middleware's is a hit
        keys = [own, (digest, "evidence", int(num_frames))] if kind == "crops" else [own]
        with self._lock:
            for key in keys:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    self.stats["hits"] += 1
                    return _within(self._cache[key], max_video_s)
            future = next((self._pending[key] for key in keys if key in self._pending), None)
            owner = future is None
            if owner:
                future = self._pending[own] = Future()
        if not owner:  # the same video is being analysed for another request: share its result
            return _within(future.result(), max_video_s)
        try:
            result = self._analyse(digest, data, kind, num_frames, max_video_s)
        except BaseException as exc:
            with self._lock:
                self._pending.pop(own, None)
                self.stats["failures"] += 1
            future.set_exception(exc)
            raise
        with self._lock:
            self._pending.pop(own, None)
            self.stats["analyses"] += 1
            self._remember(own, result)
        future.set_result(result)
        return result

    def _analyse(self, digest: str, data: bytes, kind: str, num_frames: int, max_video_s: float) -> MediaResult:
        # a still image is analysed as one (its decoder sniffs the content; the name only says image or video)
        path = Path(self._folder) / f"{digest[:16]}-{threading.get_ident()}{'.png' if is_image_bytes(data) else '.mp4'}"
        path.write_bytes(data)
        worker = self._idle.get()
        try:
            return worker.call((str(path), kind, int(num_frames), float(max_video_s)), self.timeout_s)
        except AnalysisError:
            if worker.process is None:
                self.stats["replaced"] += 1
            raise
        finally:
            self._idle.put(worker)
            path.unlink(missing_ok=True)

    def _remember(self, key: tuple, result: MediaResult) -> None:
        if self.cache_size == 0:
            return
        self._cache[key] = result
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def close(self) -> None:
        for worker in self._all:
            worker.stop()
        shutil.rmtree(self._folder, ignore_errors=True)


def _within(result: MediaResult, max_video_s: float) -> MediaResult:
    """A cached result, refused as the analysis would refuse it when the video is over this request's limit."""
    duration = float(result.metadata.get("duration") or 0.0)
    if duration > max_video_s:
        raise AnalysisError(f"the video lasts {duration:.1f} s; this server accepts at most {max_video_s:g} s")
    return result


def is_image_bytes(data: bytes) -> bool:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format in {"JPEG", "PNG", "BMP", "WEBP", "TIFF"}
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def _import_work(spec: str) -> Callable:
    import importlib

    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{WORK_ENV}={spec!r} is not an importable module:function ({exc})") from None


_POOL: AnalysisPool | None = None
_POOL_LOCK = threading.Lock()


def server_pool() -> AnalysisPool:
    """This server process's pool, made on first use from :data:`WORKERS_ENV`, :data:`CACHE_ENV` and
    :data:`TIMEOUT_ENV` (``emoreason serve`` sets them from its options); :data:`WORK_ENV` names another worker
    function (``module:function``, called as :func:`analyse_file` is) for a server that replaces the face work."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = os.environ.get(WORKERS_ENV)
            work = os.environ.get(WORK_ENV)
            _POOL = AnalysisPool(
                work=_import_work(work) if work else None,
                workers=int(workers) if workers else None,
                cache_size=int(os.environ.get(CACHE_ENV, DEFAULT_CACHE)),
                timeout_s=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)),
            )
        return _POOL


__all__ = [
    "AnalysisError",
    "AnalysisPool",
    "MediaResult",
    "analyse_file",
    "default_workers",
    "is_image_bytes",
    "server_pool",
]
