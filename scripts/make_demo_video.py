"""Write a demo clip: a real face (scikit-image's astronaut photograph) going from neutral into a smile.

    python scripts/make_demo_video.py demo/smile.mp4 [--fps 12] [--duration 3.0] [--no-audio]

The smile is a piecewise-affine warp of the photograph's own landmarks (see emoreason.synthetic), with
onset 0.8 s, apex 1.3-2.0 s and offset 2.5 s, over a voice-like audio track with a pause.
"""

import argparse
import sys
from pathlib import Path

from emoreason.synthetic import expression_clip, voice_like, write_video


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output video path (.mp4)")
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds (the smile spans 0.8-2.5 s)")
    parser.add_argument("--size", type=int, default=320, help="frame side in pixels (even)")
    parser.add_argument("--no-audio", action="store_true")
    args = parser.parse_args()
    if args.duration < 2.6 or args.fps <= 0 or args.size < 128 or args.size % 2:
        parser.error("need --duration >= 2.6, --fps > 0 and an even --size >= 128")
    frames, _ = expression_clip(size=args.size, fps=args.fps, duration_s=args.duration)
    audio = None if args.no_audio else voice_like(args.duration, pause=(1.2, 1.8))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_video(args.out, frames, args.fps, audio)
    print(f"wrote {args.out} ({len(frames)} frames at {args.fps:g} fps, {'no ' if audio is None else ''}audio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
