"""Errors raised for unusable media, and the checks that raise them."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


class MediaError(ValueError):
    """A media file is missing, empty, unreadable or not a video/image; the message says which and why."""


def check_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise MediaError if it is missing, a folder or empty."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
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
