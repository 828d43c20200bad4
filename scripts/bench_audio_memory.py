"""Peak memory of `emoreason explain` on long videos with an audio track, against decord's whole-track decode.

Writes videos of the given lengths (a small moving picture at 2 fps and a voice-like mono track), then runs, each in
a fresh process, `emoreason explain --format json` with and without audio, and, as the baseline, decord's
`AudioReader` on the same file (what emoreason used before it decoded audio as a stream). Prints peak RSS (MiB).

    .venv/bin/python scripts/bench_audio_memory.py --minutes 60 120 --out /tmp/bench-audio
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BASELINE = ("import sys, decord; r = decord.AudioReader(sys.argv[1], sample_rate=16000, mono=True); "
            "print(r.shape)")  # fmt: skip


def write_long_video(path: Path, minutes: float) -> Path:
    """A ``minutes``-long 64x64 H.264 video at 2 fps with a 16 kHz AAC track, written in chunks."""
    import av

    seconds = int(minutes * 60)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=2)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=16000, layout="mono")
        rng = np.random.default_rng(0)
        for second in range(seconds):
            t = second + np.arange(16000) / 16000
            voice = 0.2 * np.sin(2 * np.pi * (180 + 40 * np.sin(t)) * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
            frame = av.AudioFrame.from_ndarray(voice.astype(np.float32)[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, second * 16000
            for packet in audio.encode(frame):
                out.mux(packet)
            for k in range(2):
                image = np.full((64, 64, 3), (second * 2 + k) % 255, np.uint8) + rng.integers(0, 20, (64, 64, 3),
                                                                                              dtype=np.uint8)
                for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    out.mux(packet)
        for stream in (audio, video):
            for packet in stream.encode():
                out.mux(packet)
    return path


_WRAPPER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # the one child's peak, in KiB


def peak_mib(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``command``, run in a fresh wrapper process so no other child counts."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[60.0, 120.0])
    parser.add_argument("--out", type=Path, default=Path("bench-audio"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    emoreason = [sys.executable, "-m", "emoreason.cli", "explain", "--format", "json"]
    rows = []
    for minutes in args.minutes:
        path = args.out / f"long-{minutes:g}min.mp4"
        if not path.is_file():
            write_long_video(path, minutes)
        row = {"minutes": minutes}
        for name, command in (("decord_audio_reader", [sys.executable, "-c", BASELINE, str(path)]),
                              ("explain_with_audio", emoreason + [str(path)]),
                              ("explain_no_audio", emoreason + [str(path), "--no-audio"])):  # fmt: skip
            row[name] = dict(zip(("peak_mib", "seconds"), (round(v, 1) for v in peak_mib(command))))
        rows.append(row)
        print(json.dumps(row))
    (args.out / "audio_memory.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
