"""Perception benchmark: the default face pipeline against the previous one, in the same run, and peak memory.

``new``: ``FaceAnalyzer()`` (BlazeFace, the 468-point mesh as 68 points, faces followed by their mesh between
whole-frame scans, the expression CNN, decoding in a thread). ``old``: the previous pipeline,
``FaceAnalyzer(detector="dlib", expressions=False, prefetch=False)`` (HOG + dlib's 68 points). Each is timed as
a whole process, imports included (``emoreason analyze VIDEO`` for new; the same collect call for old), against
a process that decodes every frame of the video with PyAV (issue 13's goal: analyze within 1.5x of that), and
in-process (analysis only, with its breakdown). Peak RSS is each process's own VmHWM.

Without ``--video`` it builds 640x360 30 fps clips of the demo face drifting over a gradient: 20 s (the speed
goal) and 120 s (memory must not grow with the length), and the 3 s 320 px demo clip.

    python scripts/bench_perception.py                      # demo 3 s, 640x360 20 s and 120 s
    python scripts/bench_perception.py --video clip.mp4     # one video of your own
"""

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIP_SIZE, CLIP_FPS, CLIP_FACE = (640, 360), 30, 200
PIPELINES = {"new": {}, "old": {"detector": "dlib", "expressions": False, "prefetch": False}}
# a process's own peak RSS (VmHWM: ru_maxrss carries the parent's peak across fork + exec), printed at exit
PEAK = ("import atexit, sys\natexit.register(lambda: print('peak_mib', next(int(l.split()[1]) for l in "
        "open('/proc/self/status') if l.startswith('VmHWM:')) / 1024, file=sys.stderr))\n")  # fmt: skip
DECODE_ALL = "import av, sys\nwith av.open(sys.argv[1]) as c:\n    n = sum(1 for f in c.decode(video=0) if f.to_ndarray(format='rgb24') is not None)\n"  # noqa: E501
ANALYZE = "import sys\nsys.argv = ['emoreason', 'analyze', sys.argv[1]]\nimport runpy\nrunpy.run_module('emoreason', run_name='__main__')\n"  # noqa: E501
OLD = ("import sys\nfrom emoreason.cli import main  # the same imports as the CLI\nfrom emoreason.face.analyzer import FaceAnalyzer\n"
       "from emoreason.face.evidence import Sampling, collect\nanalyzer = FaceAnalyzer(**{kwargs})\n"
       "a = collect(sys.argv[1], sampling=Sampling(audio=False), analyzer=analyzer).analysis\n"
       "print(a.frames_analyzed, 'frames analysed', a.faces_found, 'faces; peak AUs', a.main_face()['AU12'].max())\n")  # fmt: skip  # noqa: E501


def process(code: str, video: Path) -> tuple[float, float]:
    """(wall seconds, peak MiB) of a fresh Python process running ``code`` on ``video``."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK + code, str(video)], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, float(done.stderr.rsplit("peak_mib", 1)[1].split()[0])


def in_process(pipeline: str, video: Path) -> dict:
    code = ("import json, time\nfrom emoreason.face.analyzer import FaceAnalyzer\n"
            f"analyzer = FaceAnalyzer(**{PIPELINES[pipeline]!r})\nstart = time.perf_counter()\n"
            f"a = analyzer.analyze({str(video)!r})\n"
            "print(json.dumps({'seconds': time.perf_counter() - start, 'frames': a.frames_analyzed, **a.timings}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(name: str, video: Path, repeats: int) -> dict:
    runs = {"decode": [], "new": [], "old": []}
    for _ in range(repeats):  # interleaved, so a busy moment on a shared machine hits all three alike
        runs["decode"].append(process(DECODE_ALL, video))
        runs["new"].append(process(ANALYZE, video))
        runs["old"].append(process(OLD.replace("{kwargs}", repr(PIPELINES["old"])), video))
    row = {"video": name}
    for key, values in runs.items():
        row[f"{key}_s"] = statistics.median(v[0] for v in values)
        row[f"{key}_mib"] = max(v[1] for v in values)
    for key in PIPELINES:
        inside = in_process(key, video)
        row["frames"] = inside["frames"]
        row[f"{key}_analysis_s"] = inside["seconds"]
        row[f"{key}_breakdown"] = {
            k: inside[k] for k in ("decode_s", "detect_s", "expression_s", "measure_s") if k in inside
        }
    print(f"{name}: {json.dumps(row)}", flush=True)
    return row


def build_inputs(folder: Path, seconds: list[float]) -> dict[str, Path]:
    import av
    import numpy as np
    from PIL import Image

    from emoreason.synthetic import expression_clip, write_video

    faces, _ = expression_clip(size=320, fps=12.0, duration_s=3.0)
    out = {"demo 320x320 3 s": write_video(folder / "demo.mp4", faces, 12.0)}
    tiles = [Image.fromarray(f).resize((CLIP_FACE, CLIP_FACE), Image.Resampling.BILINEAR) for f in faces]
    width, height = CLIP_SIZE
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None] * np.array([0.6, 0.8, 1.0], np.float32)
    background = Image.fromarray(np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8))
    for length in seconds:
        path = folder / f"clip_{length:g}s.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=CLIP_FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(int(length * CLIP_FPS)):  # one frame at a time: the clip never sits in memory whole
                canvas = background.copy()
                x = int((width - CLIP_FACE) * (0.5 + 0.3 * math.sin(i / (4 * CLIP_FPS))))  # slow drift
                canvas.paste(tiles[int(i * 12 / CLIP_FPS) % len(tiles)], (x, (height - CLIP_FACE) // 2))
                for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        out[f"{width}x{height} {length:g} s"] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", help="benchmark this video instead of the generated ones")
    parser.add_argument("--seconds", type=float, nargs="+", default=[20.0, 120.0], help="lengths of the built clips")
    parser.add_argument("--repeats", type=int, default=3, help="whole-process runs of each (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        videos = {Path(args.video).name: Path(args.video)} if args.video else build_inputs(Path(tmp), args.seconds)
        rows = [bench(name, path, args.repeats) for name, path in videos.items()]
    print("\n| video | frames | decode all (PyAV) s | analyze new s | analyze old s | new / decode | old / decode "
          "| speed-up | analysis new s | analysis old s | peak MiB decode | peak MiB new | peak MiB old |")  # fmt: skip
    print("|" + "---|" * 13)
    for r in rows:
        print(f"| {r['video']} | {r['frames']} | {r['decode_s']:.2f} | {r['new_s']:.2f} | {r['old_s']:.2f} "
              f"| {r['new_s'] / r['decode_s']:.2f}x | {r['old_s'] / r['decode_s']:.2f}x | {r['old_s'] / r['new_s']:.1f}x "
              f"| {r['new_analysis_s']:.2f} | {r['old_analysis_s']:.2f} "
              f"| {r['decode_mib']:.0f} | {r['new_mib']:.0f} | {r['old_mib']:.0f} |")  # fmt: skip
    print("\nin-process breakdown (s): " + "; ".join(f"{r['video']} new {r['new_breakdown']} old {r['old_breakdown']}"
                                                    for r in rows))  # fmt: skip
    print(f"\ncommand: {shlex.join(['python', *sys.argv])}")


if __name__ == "__main__":
    main()
