"""Errors raised for unusable media, and the checks that raise them."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from pathlib import Path


class MediaError(ValueError):
    """A media file is missing, empty, unreadable or not a video/image; the message says which and why."""


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise MediaError if it is a URL, missing, not a regular file, empty or
    unreadable (the message says which)."""
    if isinstance(path, str) and _URL.match(path):
        raise MediaError(f"{path}: URLs are not supported; download the file and give its local path")
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except PermissionError:
        raise MediaError(f"{path}: permission denied") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a pipe, socket or device"
        raise MediaError(f"{path}: not a file ({kind})")
    if info.st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: permission denied (the file is not readable by this user)")
    return path


@contextlib.contextmanager
def native_stderr_silenced():
    """Silence decord's C++ log lines (written straight to fd 2) so errors reach users once, as ours."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): leave it alone
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
