"""Worker functions for the analysis pool's tests (imported by the pool's spawned worker processes)."""

from __future__ import annotations

import os
from pathlib import Path

from emoreason.serving.analysis import analyse_file

POISON = b"POISON"


def crash_on_poison(path: Path, kind: str, num_frames: int, max_video_s: float, analyzers: dict):
    """The real analysis, except that a file starting with :data:`POISON` kills the worker (SIGABRT), as a decoder
    crash on a bad file would."""
    if Path(path).read_bytes().startswith(POISON):
        os.abort()
    return analyse_file(path, kind, num_frames, max_video_s, analyzers)


def hang_on_poison(path: Path, kind: str, num_frames: int, max_video_s: float, analyzers: dict):
    """The real analysis, except that a file starting with :data:`POISON` never finishes."""
    if Path(path).read_bytes().startswith(POISON):
        import time

        time.sleep(3600)
    return analyse_file(path, kind, num_frames, max_video_s, analyzers)
