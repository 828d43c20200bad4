"""The media connector ``emoreason``: where a served request's video may come from, checked before it is read.

vLLM's own connector (``http``) fetches any http(s) URL unless ``--allowed-media-domains`` lists some hosts, so a
caller can make the server GET ``http://127.0.0.1:PORT/...`` on its own network (SSRF); it lets a connection error
escape as HTTP 500 after three retries; it answers ``file://`` with a ``RuntimeError`` (500) when no folder is
allowed; and it reads an allowed file whole before any size check, and blocks forever on a FIFO. This connector,
which ``emoreason serve`` selects (``VLLM_MEDIA_CONNECTOR=emoreason``; set it yourself for a plain ``vllm serve``),
keeps vLLM's behaviour for ``data:`` URLs and changes the rest:

- http(s) URLs are refused unless the operator listed the host (``emoreason serve --allowed-media-domain HOST``);
  a listed host is fetched with the video size limit as the download limit, and a failed fetch (closed port,
  timeout, HTTP error) is a ``ValueError``, which vLLM answers with HTTP 400.
- ``file://`` URLs need ``--allowed-media-dir``; the file is opened without blocking and without following a
  final symlink, refused unless it is a regular file, and its size is checked with ``fstat`` before it is read.

The opt-in download cache of vLLM's connector (``VLLM_MEDIA_CACHE``) is not used for http media here.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any
from urllib.request import url2pathname

import aiohttp
import requests
from urllib3.util import Url, parse_url
from vllm import envs
from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY, MediaConnector
from vllm.multimodal.media.connector import global_thread_pool

CONNECTOR_NAME = "emoreason"
MiB = 2**20
# what a failed download raises (aiohttp on the server's async path, requests on the sync one)
FETCH_ERRORS = (aiohttp.ClientError, requests.RequestException, asyncio.TimeoutError, TimeoutError, OSError)


def refuse_http(url: str) -> ValueError:
    host = parse_url(url).host or "?"
    return ValueError(
        f"this server does not fetch http(s) media ({host}): send the video as a data: URL, or ask the operator to "
        f"start the server with --allowed-media-domain {host}"
    )


def max_bytes(media_io: Any) -> int | None:
    """The most bytes a medium may have: the video loader's ``max_video_mb``, else the media IO's own limit."""
    limit_mb = getattr(media_io, "kwargs", {}).get("max_video_mb")
    if limit_mb is not None:
        return int(float(limit_mb) * MiB)
    return media_io.get_max_bytes()


def read_media_file(path: Path, limit: int | None) -> bytes:
    """The bytes of the regular file ``path``, refused (``ValueError``) before reading when over ``limit`` bytes.

    ``O_NONBLOCK`` makes opening a FIFO return at once (instead of waiting for a writer), ``O_NOFOLLOW`` refuses a
    final symlink swapped in after the caller resolved the path, and ``fstat`` on the open descriptor checks the
    very file that is then read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ValueError(f"the video file cannot be opened: {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"the video file cannot be opened: {path.name} is not a regular file")
        if limit is not None and info.st_size > limit:
            raise ValueError(_too_large(info.st_size, limit))
        data = file.read() if limit is None else file.read(limit + 1)  # a file that grows stays bounded
    if limit is not None and len(data) > limit:
        raise ValueError(_too_large(len(data), limit))
    return data


def _too_large(size: int, limit: int) -> str:
    return f"the video is {size / MiB:.1f} MB; this server accepts at most {limit / MiB:g} MB"


def _fetch_error(url_spec: Url, exc: BaseException) -> ValueError:
    status = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status_code", None)
    reason = f"HTTP {status}" if status else (str(exc) or type(exc).__name__)
    return ValueError(f"the video could not be fetched from {url_spec.host}: {reason}")


@MEDIA_CONNECTOR_REGISTRY.register(CONNECTOR_NAME)
class GuardedMediaConnector(MediaConnector):
    """vLLM's media connector with http(s) off unless allowed, and ``file://`` checked before reading."""

    def _check_http(self, url_spec: Url, url: str) -> None:
        if not self.allowed_media_domains:
            raise refuse_http(url)
        self._assert_url_in_allowed_media_domains(url_spec)

    def _load_file_url(self, url_spec: Url, media_io: Any) -> Any:
        folder = self.allowed_local_media_path
        if folder is None:
            raise ValueError(
                "this server reads no local files: send the video as a data: URL, or ask the operator to start "
                "the server with --allowed-media-dir FOLDER (vLLM's --allowed-local-media-path)"
            )
        path = Path(url2pathname((url_spec.netloc or "") + (url_spec.path or "")))
        resolved = path.resolve()
        if folder not in resolved.parents:
            # (vLLM's message names the folder; a caller need not learn the server's file system)
            raise ValueError(f"the file path {path} is outside this server's media folder (--allowed-local-media-path)")
        return media_io.load_bytes(read_media_file(resolved, max_bytes(media_io)))

    def load_from_url(self, url: str, media_io: Any, *, fetch_timeout: int | None = None) -> Any:
        url_spec = parse_url(url)
        if url[:5].lower() == "data:" or not (url_spec.scheme or "").startswith("http"):
            return super().load_from_url(url, media_io, fetch_timeout=fetch_timeout)
        self._check_http(url_spec, url)
        try:
            data = self.connection.get_bytes(url_spec.url, timeout=fetch_timeout, max_bytes=max_bytes(media_io),
                                             allow_redirects=envs.VLLM_MEDIA_URL_ALLOW_REDIRECTS)  # fmt: skip
        except ValueError:  # over the download limit (vLLM's size errors are ValueErrors): a 400 already
            raise
        except FETCH_ERRORS as exc:
            raise _fetch_error(url_spec, exc) from None
        return media_io.load_bytes(data)

    async def load_from_url_async(self, url: str, media_io: Any, *, fetch_timeout: int | None = None) -> Any:
        url_spec = parse_url(url)
        if url[:5].lower() == "data:" or not (url_spec.scheme or "").startswith("http"):
            return await super().load_from_url_async(url, media_io, fetch_timeout=fetch_timeout)
        self._check_http(url_spec, url)
        try:
            data = await self.connection.async_get_bytes(url_spec.url, timeout=fetch_timeout,
                                                         max_bytes=max_bytes(media_io),
                                                         allow_redirects=envs.VLLM_MEDIA_URL_ALLOW_REDIRECTS)  # fmt: skip
        except ValueError:
            raise
        except FETCH_ERRORS as exc:
            raise _fetch_error(url_spec, exc) from None
        return await asyncio.get_running_loop().run_in_executor(global_thread_pool, media_io.load_bytes, data)


def file_errors_are_bad_requests() -> None:
    """For a plain ``vllm serve`` with vLLM's own connector: vLLM 0.32 opens ``file://`` videos itself and lets a
    missing file escape as ``FileNotFoundError`` (HTTP 500, a dropped connection). Turn that into the
    ``ValueError`` vLLM answers with 400. (The ``emoreason`` connector never calls ``load_file``.)"""
    from vllm.multimodal.media.video import VideoMediaIO

    load_file = VideoMediaIO.load_file
    if getattr(load_file, "_emoreason", False):
        return

    def checked_load_file(self, filepath: Path):
        try:
            return load_file(self, filepath)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise ValueError(f"the video file cannot be opened: {Path(filepath).name}: {exc.strerror}") from None

    checked_load_file._emoreason = True
    VideoMediaIO.load_file = checked_load_file


file_errors_are_bad_requests()
