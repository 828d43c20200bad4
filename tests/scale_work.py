"""Tasks for the engine's tests (imported by Ray's worker processes, so they live in a module of their own)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


class Probe:
    """``item`` -> ``{"item", "pid", "worker"}``; some items misbehave as a real input could:

    - ``"abort"``: the worker dies (SIGABRT, as a decoder crash on a bad file);
    - ``"hang"``: never finishes;
    - ``"raise"``: an exception the task does not handle;
    - ``"victim"``: writes its worker's pid to ``marks/victim.pid`` and takes ``slow_s`` (so a test can kill the
      worker mid-item); ``"slow"`` just takes ``slow_s``.
    """

    def __init__(self, marks: str | None = None, slow_s: float = 3.0):
        self.marks, self.slow_s = marks, slow_s

    def setup(self, index: int) -> None:
        self.worker = index

    def __call__(self, item):
        if item == "abort":
            os.kill(os.getpid(), signal.SIGABRT)
        if item == "hang":
            time.sleep(3600)
        if item == "raise":
            raise ValueError("a bad item")
        if item == "victim":
            (Path(self.marks) / f"victim-{os.getpid()}.pid").write_text(str(os.getpid()))
            time.sleep(self.slow_s)
        if item == "slow":
            time.sleep(self.slow_s)
        return {"item": item, "pid": os.getpid(), "worker": self.worker}
