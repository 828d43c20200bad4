"""Perception benchmark: decode-only time against full face analysis time, and peak memory.

The analysis is timed twice in the same run: with the default track-guided face search, and with the
baseline that scans every whole frame (``full_scan_every=1``), so the speed-up is a same-run ratio.

Each measurement (import baseline, decode only, full analysis) runs in a fresh child process so its peak RSS
is its own. Without ``--video`` it builds two inputs in a temp dir: the 320 px demo clip, and a long 1080p
clip (the demo face pasted onto a 1920x1080 canvas) that shows memory stays bounded on long, large videos.

    python scripts/bench_perception.py                    # demo clip + 1080p 60 s clip
    python scripts/bench_perception.py --video clip.mp4   # one video of your own
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

DEMO_FPS, DEMO_SECONDS = 12, 3.0
LONG_SIZE, LONG_FPS, LONG_FACE = (1920, 1080), 25, 540


def peak_rss_mib() -> float:
    """Peak RSS of this process since it started, in MiB.

    VmHWM rather than ``ru_maxrss``: Linux carries ``ru_maxrss`` across fork + exec, so a child's figure
    is at least its parent's peak (the parent here holds the generated frames) and would not be its own.
    """
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (FileNotFoundError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints one JSON line."""
    import decord  # noqa: F401  (part of the import baseline)

    from emoreason.face.analyzer import FULL_SCAN_EVERY, FaceAnalyzer
    from emoreason.io.video import iter_video_frames

    seconds, frames, timings = [], 0, {}
    for _ in range(0 if args.child == "baseline" else args.repeats):
        start = time.perf_counter()
        if args.child == "decode":
            frames = touched = 0
            for frame in iter_video_frames(args.video, args.fps, args.max_frames, args.max_side):
                frames, touched = frames + 1, touched + int(frame.image[-1, -1, 0])
        else:  # "analyze": tracked search (default); "fullscan": the baseline that scans every frame
            scan = 1 if args.child == "fullscan" else FULL_SCAN_EVERY
            analysis = FaceAnalyzer(args.fps, args.max_frames, args.max_side, full_scan_every=scan).analyze(args.video)
            frames, timings = analysis.frames_analyzed, analysis.timings
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds) if seconds else 0.0
    print(json.dumps({"frames": frames, "seconds": median, "timings": timings, "rss_mib": peak_rss_mib()}))


def measure(mode: str, video: Path, args: argparse.Namespace, repeats: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--video", str(video),
               "--fps", str(args.fps), "--max-frames", str(args.max_frames), "--max-side", str(args.max_side),
               "--repeats", str(repeats)]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_inputs(folder: Path, long_seconds: float) -> dict[str, Path]:
    import av
    import numpy as np
    from PIL import Image

    from emoreason.synthetic import expression_clip, voice_like, write_video

    faces, _ = expression_clip(size=320, fps=DEMO_FPS, duration_s=DEMO_SECONDS)
    demo = write_video(folder / "demo.mp4", faces, DEMO_FPS, voice_like(DEMO_SECONDS))
    tiles = [Image.fromarray(f).resize((LONG_FACE, LONG_FACE), Image.Resampling.BILINEAR) for f in faces]
    width, height = LONG_SIZE
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None] * np.array([0.6, 0.8, 1.0], np.float32)
    background = Image.fromarray(np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8))
    long_path, count, start = folder / "long_1080p.mp4", int(long_seconds * LONG_FPS), time.perf_counter()
    with av.open(str(long_path), "w") as container:
        stream = container.add_stream("libx264", rate=LONG_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(count):  # one frame at a time: the clip never sits in memory whole
            canvas = background.copy()
            x = int((width - LONG_FACE) * (0.5 + 0.4 * math.sin(i / (4 * LONG_FPS))))  # slow drift
            canvas.paste(tiles[int(i * DEMO_FPS / LONG_FPS) % len(tiles)], (x, (height - LONG_FACE) // 2))
            for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    print(f"wrote {count} frames {width}x{height} in {time.perf_counter() - start:.1f} s")
    return {"demo 320p 3 s": demo, f"1080p {long_seconds:g} s": long_path}


def bench(name: str, video: Path, args: argparse.Namespace, repeats: int) -> dict:
    base = measure("baseline", video, args, 0)
    decode = measure("decode", video, args, repeats)
    full = measure("analyze", video, args, repeats)
    scan = measure("fullscan", video, args, repeats)
    row = {
        "video": name,
        "frames": full["frames"],
        "decode_s": decode["seconds"],
        "analysis_s": full["seconds"],
        "analysis_fps": full["frames"] / full["seconds"],
        "decode_fps": decode["frames"] / decode["seconds"],
        "ratio": full["seconds"] / decode["seconds"],
        "fullscan_s": scan["seconds"],
        "speedup": scan["seconds"] / full["seconds"],
        "detect_share": full["timings"]["detect_s"] / full["timings"]["total_s"],
        "base_mib": base["rss_mib"],
        "decode_mib": decode["rss_mib"],
        "analysis_mib": full["rss_mib"],
    }
    print(f"\n{name}: {video.name} ({repeats} repeat(s), median)")
    print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    print(f"  analysis adds {row['analysis_mib'] - row['base_mib']:.0f} MiB (decode alone "
          f"{row['decode_mib'] - row['base_mib']:.0f} MiB) over the import baseline on {name}")  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", help="benchmark this video instead of the generated ones")
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--max-frames", type=int, default=480)
    parser.add_argument("--max-side", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="length of the generated 1080p clip")
    parser.add_argument("--long-repeats", type=int, default=1, help="timed runs on the long clip")
    parser.add_argument("--child", choices=["baseline", "decode", "analyze", "fullscan"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.video:
            rows = [bench(Path(args.video).name, Path(args.video), args, args.repeats)]
        else:
            videos = list(build_inputs(Path(tmp), args.long_seconds).items())
            rows = [bench(*videos[0], args, args.repeats), bench(*videos[1], args, args.long_repeats)]
    print("\n| video | frames | decode s | analysis s | analysis fps | decode fps | analysis/decode "
          "| scan-every-frame s | speedup | detect share | RSS base MiB | RSS decode MiB | RSS analysis MiB "
          "| analysis adds MiB |")  # fmt: skip
    print("|" + "---|" * 14)
    for r in rows:
        print(f"| {r['video']} | {r['frames']} | {r['decode_s']:.2f} | {r['analysis_s']:.2f} "
              f"| {r['analysis_fps']:.1f} | {r['decode_fps']:.1f} | {r['ratio']:.1f} | {r['fullscan_s']:.2f} "
              f"| {r['speedup']:.1f}x | {r['detect_share']:.0%} "
              f"| {r['base_mib']:.0f} | {r['decode_mib']:.0f} | {r['analysis_mib']:.0f} "
              f"| {r['analysis_mib'] - r['base_mib']:.0f} |")  # fmt: skip
    print(f"\ncommand: {shlex.join(['python', *sys.argv])}")


if __name__ == "__main__":
    main()
