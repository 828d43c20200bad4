"""Corpus scale on Ray: items/s of `explain` over the same clips, sequential against 1 and 2 Ray workers, Ray's
start-up and per-item overhead, and a two-node cluster simulated on this machine.

    .venv/bin/python scripts/bench_scale.py --json benchmarks/scale.json [--clips 24]

Every configuration runs the same 24 clips (a 10 s 640x640 25 fps clip of a real photo's face smiling, with a
voice-like audio track; one pixel changed per copy, so each is its own input) through :func:`emoreason.batch.run_batch` with the rules backend into a fresh output file:

- ``sequential``: this process, one after another (the baseline; the face models load once);
- ``ray_1`` / ``ray_2``: 1 and 2 Ray workers on this machine (actors load the face models once each);
- ``two_nodes``: ``ray start --head`` and ``ray start --address`` on this machine, one CPU each; ``emoreason explain
  folder --ray-address`` joins them (a whole process, Ray's start-up included).

``items_per_s`` is clips over the whole map (worker start-up included, Ray's own start-up not); ``steady_items_per_s``
is over the clips after each worker's first (the rate a long corpus runs at). Ray's start-up (``ray.init``) and
its per-item overhead (a task that does nothing, 200 items through the same dispatch) are measured apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emoreason.batch import ExplainWork, expand_inputs, run_batch, settings_of
from emoreason.face.evidence import Sampling
from emoreason.scale import RayEngine, SequentialEngine, local_cluster


class Nothing:
    """A task that does nothing: what is left of an item's time is the engine's own."""

    def __call__(self, item):
        return item


def timed_run(folder: Path, out: Path, engine) -> dict:
    """The clips of ``folder`` through ``engine``; times each row's arrival."""
    items = expand_inputs([folder])
    work = ExplainWork("rules", Sampling(audio=True), servers=())
    arrivals: list[float] = []
    started = time.perf_counter()

    class Timed:  # wraps the engine: the time each row arrives
        name, workers = engine.name, engine.workers

        def map(self, task, todo):
            for pair in engine.map(task, todo):
                arrivals.append(time.perf_counter() - started)
                yield pair

    result = run_batch(items, work, out, settings_of(command="bench"), progress=False, engine_for=lambda n: Timed())
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    first = engine.workers  # each worker's first clip carries its start-up (the face models loading)
    steady = (len(arrivals) - first) / (arrivals[-1] - arrivals[first - 1]) if len(arrivals) > first else None
    return {"clips": len(rows), "ok": sum(r["ok"] for r in rows), "errors": result.errors, "wall_s": round(wall, 2),
            "items_per_s": round(len(rows) / wall, 4), "steady_items_per_s": round(steady, 4) if steady else None,
            "per_node": dict(getattr(engine, "per_node", {})), "arrivals_s": [round(a, 2) for a in arrivals]}  # fmt: skip


def overhead(engine, count: int = 200) -> float:
    started = time.perf_counter()
    for _ in engine.map(Nothing(), list(range(count))):
        pass
    return (time.perf_counter() - started) / count


def two_nodes(folder: Path, out: Path) -> dict:
    """``emoreason explain folder --ray-address`` (a whole process, as a user runs it) on two `ray start` nodes."""
    with local_cluster(nodes=2, cpus=1) as (address, env):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(folder), "--out", str(out),
                                 "--ray-address", address], capture_output=True, text=True, env=env,
                                timeout=1800)  # fmt: skip
        wall = time.perf_counter() - started
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else result.stderr[-500:]
    match = re.search(r"inputs per node: ([^)]*)\)", line)
    per_node = dict((n, int(c)) for n, c in (p.split() for p in match.group(1).split(", "))) if match else {}
    rows = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return {"returncode": result.returncode, "summary": line, "clips": len(rows), "ok": sum(r["ok"] for r in rows),
            "wall_s": round(wall, 2), "items_per_s_whole_process": round(len(rows) / wall, 4), "per_node": per_node,
            "nodes_that_worked": sum(1 for c in per_node.values() if c > 0)}  # fmt: skip


def clips(folder: Path, count: int, seconds: float, fps: float, size: int) -> None:
    """``count`` copies of a ``seconds`` talking-and-smiling clip (a real photo's face, moved), each with one pixel
    changed: the same work, different content hashes."""
    from emoreason.synthetic import expression_clip, voice_like, write_video

    frames, _ = expression_clip(size=size, fps=fps, duration_s=seconds)
    audio = voice_like(seconds, pause=(seconds * 0.4, seconds * 0.6))
    for i in range(count):
        changed = frames.copy()
        changed[:, 0, 0] = (7 * i) % 256, (11 * i) % 256, (i // 256) % 256
        write_video(folder / f"clip{i:03d}.mp4", changed, fps, audio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=10.0, help="each clip's length")
    parser.add_argument("--fps", type=float, default=25.0, help="each clip's frame rate")
    parser.add_argument("--size", type=int, default=640, help="each clip's side in pixels")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--no-cluster", action="store_true", help="skip the two-node run")
    args = parser.parse_args()
    import ray

    figures: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "ray": ray.__version__},
               "clips": {"count": args.clips, "seconds": args.seconds, "fps": args.fps, "size": args.size}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "clips"
        folder.mkdir()
        clips(folder, args.clips, args.seconds, args.fps, args.size)
        figures["sequential"] = timed_run(folder, tmp / "sequential.jsonl", SequentialEngine())
        print("sequential", figures["sequential"], flush=True)
        started = time.perf_counter()
        probe = RayEngine(workers=2)
        figures["ray_startup_s"] = round(time.perf_counter() - started, 2)
        figures["ray_overhead_ms_per_item"] = {"ray_2": round(1000 * overhead(probe), 2),
                                               "sequential": round(1000 * overhead(SequentialEngine()), 4)}  # fmt: skip
        for workers in (1, 2):
            engine = RayEngine(workers=workers)  # the running Ray instance; `workers` actors
            figures[f"ray_{workers}"] = timed_run(folder, tmp / f"ray{workers}.jsonl", engine)
            print(f"ray_{workers}", figures[f"ray_{workers}"], flush=True)
        probe.close()
        one, two, seq = figures["ray_1"], figures["ray_2"], figures["sequential"]
        figures["ratios"] = {
            "ray_2_vs_ray_1": round(two["items_per_s"] / one["items_per_s"], 3),
            "ray_2_vs_sequential": round(two["items_per_s"] / seq["items_per_s"], 3),
            "ray_1_vs_sequential": round(one["items_per_s"] / seq["items_per_s"], 3),
            "steady_ray_2_vs_ray_1": round(two["steady_items_per_s"] / one["steady_items_per_s"], 3),
        }
        if not args.no_cluster:
            figures["two_nodes"] = two_nodes(folder, tmp / "two_nodes.jsonl")
            print("two_nodes", figures["two_nodes"], flush=True)
        shutil.rmtree(folder)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
