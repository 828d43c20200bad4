"""The ``emoreason`` command line: ``explain`` and ``analyze``.

Exit codes: 0 success (including "no face found"), 2 unusable input or arguments (one line on
stderr, no traceback), 1 anything unexpected (which is a bug and prints its traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from emoreason.constants import DEFAULT_ANALYSIS_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from emoreason.io.errors import MediaError


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="video or image file")
    parser.add_argument("--fps", type=float, default=DEFAULT_ANALYSIS_FPS, help="frames analysed per second")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="most frames analysed")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="decode frames at most this size")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoreason", description="Explainable facial emotion reasoning.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    explain = sub.add_parser("explain", help="explain the emotion in a video or image")
    _add_sampling(explain)
    explain.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    explain.add_argument("--no-audio", action="store_true", help="ignore the audio track")
    explain.add_argument("--model", help="an emoreason checkpoint directory (hf backend); default: FACS reasoner")
    explain.add_argument("--html", type=Path, help="also write a self-contained visual report to this HTML file")
    analyze = sub.add_parser("analyze", help="per-frame table: time, face box, landmarks, AU intensities")
    _add_sampling(analyze)
    analyze.add_argument("--csv", type=Path, help="write the table to this CSV file ('-' for stdout)")
    analyze.add_argument("--plot", type=Path, help="write a static AU timeline figure (PNG) to this file")
    return parser


def _progress(enabled: bool | None, label: str):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="frame", file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _check_sampling(args: argparse.Namespace) -> None:
    if args.fps <= 0 or args.max_frames <= 0 or args.max_side < 64:
        raise MediaError("--fps and --max-frames must be positive and --max-side at least 64")


def run_explain(args: argparse.Namespace) -> int:
    from emoreason.explain import explain

    _check_sampling(args)
    update, close = _progress(args.progress, "analysing")
    try:
        report = explain(
            args.path,
            fps=args.fps,
            max_frames=args.max_frames,
            max_side=args.max_side,
            use_audio=not args.no_audio,
            model=args.model,
            progress=update,
        )
    finally:
        close()
    if args.html is not None:
        from emoreason.viz.html import save_html

        save_html(report, args.html)
    if args.format == "json":
        print(report.to_json())
        return 0
    print(report.summary())
    print()
    print(report.reasoning)
    for warning in report.warnings:
        print(f"warning: {warning}")
    if args.html is not None:
        print(f"\nvisual report written to {args.html}")
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from emoreason.face.analyzer import AU_COLUMNS, FaceAnalyzer

    _check_sampling(args)
    update, close = _progress(args.progress, "analysing")
    try:
        analysis = FaceAnalyzer(args.fps, args.max_frames, args.max_side).analyze(args.path, progress=update)
    finally:
        close()
    table = analysis.table
    to_stdout = args.csv is not None and str(args.csv) == "-"
    say = (lambda text: print(text, file=sys.stderr)) if to_stdout else print  # stdout holds the CSV
    if args.csv is not None:
        table.to_csv(sys.stdout if to_stdout else args.csv, index=False)
    main = analysis.main_face()
    say(f"{args.path}: {analysis.frames_analyzed} frames analysed, {analysis.faces_found} face(s) found")
    if not main.empty:
        peaks = main[AU_COLUMNS].max()
        active = ", ".join(f"{code} {value:.1f}" for code, value in peaks.items() if value >= 1.0) or "none"
        say(f"main face: {len(main)} frames; peak AU intensities (>= 1): {active}")
    if args.csv is not None and not to_stdout:
        say(f"table ({len(table)} rows x {len(table.columns)} columns) written to {args.csv}")
    if args.plot is not None:
        from emoreason.explain import explain_analysis
        from emoreason.viz.timeline import save_timeline_png

        save_timeline_png(explain_analysis(analysis, use_audio=False), args.plot)
        say(f"AU timeline written to {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    runners = {"explain": run_explain, "analyze": run_analyze}
    try:
        return runners[args.command](args)
    except MediaError as exc:
        print(f"emoreason: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable --csv path, an incomplete checkpoint directory
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"emoreason: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional extra is not installed; the message names it
        print(f"emoreason: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("emoreason: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
