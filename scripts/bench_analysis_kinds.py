"""The server's two kinds of face work per clip: ``crops`` (what the model consumes) vs ``evidence`` (the full
analysis, the FACS reasoner's text and the audio), same process, models loaded, best of ``--repeats``.

    python scripts/bench_analysis_kinds.py [--repeats 3]

Clips: the 3 s demo clip (a real face photograph animated into a smile, with a voice-like track) and the same
clip repeated to 21 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from emoreason.serving.analysis import analyse_file
from emoreason.synthetic import expression_clip, voice_like, write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    frames, _ = expression_clip(size=320, fps=12.0, duration_s=3.0)
    clips = {
        "3 s": write_video(folder / "short.mp4", frames, 12.0, voice_like(3.0)),
        "21 s": write_video(folder / "long.mp4", np.concatenate([frames] * 7), 12.0, voice_like(21.0)),
    }
    analyzers: dict = {}
    for kind in ("crops", "evidence"):
        analyse_file(clips["3 s"], kind, 16, float("inf"), analyzers)  # load the models
    for name, path in clips.items():
        best = {}
        for kind in ("crops", "evidence"):
            times = []
            for _ in range(max(1, args.repeats)):
                started = time.perf_counter()
                analyse_file(path, kind, 16, float("inf"), analyzers)
                times.append(time.perf_counter() - started)
            best[kind] = min(times)
        print(f"{name} clip: crops {best['crops']:.3f} s, evidence {best['evidence']:.3f} s, "
              f"crops / evidence {best['crops'] / best['evidence']:.2f}")


if __name__ == "__main__":
    main()
