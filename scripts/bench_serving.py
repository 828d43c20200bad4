"""Serving throughput and latency: vLLM (``emoreason serve``) vs in-process transformers ``generate``, same run.

    python scripts/bench_serving.py --preset smol --tokens 256 --json OUT [--concurrency 1 8 32] [--requests N]

The requests are what a plain ``openai`` client sends: one video and nothing else. The videos are the demo clip (a
real face photograph animated into a smile, with a voice-like audio track), one per request, each differing from
the others in one pixel, so every request's media is analysed (no cache hit hides the face work). Both sides do
the same work per request: the full face analysis, the FACS reasoner's evidence, the audio track and the model's
crops (the server's analysis pool; :func:`emoreason.serving.analysis.analyse_file` in-process), then exactly
``--tokens`` generated tokens, greedy (vLLM: ``ignore_eos``; transformers: ``min_new_tokens``).

- vLLM: ``concurrency`` clients in a closed loop (each sends its next request when the last one is answered),
  through the real ``openai`` client; continuous batching on the server, face analysis in its worker pool.
- transformers: the best in-process equivalent without a server: requests in batches of ``concurrency`` (media
  analysed for the batch, then one padded ``generate``); every request's latency is its batch's time.

Then, on vLLM alone at the middle concurrency: the media path with 1 generated token, for new videos and for one
video already analysed sent by every request (the cache hit), and a fresh server with ``--api-server-count 2``. No server runs while the transformers side runs.
Prints requests/s, generated tokens/s, p50 and p99 latency per side and the ratios; ``--json OUT`` writes
``{"levels": [{"concurrency", "vllm", "transformers", "ratio"}], "cache_hit", "api_server_count_2", "where"}``
with ``rps``, ``tps``, ``p50``, ``p99`` (seconds) per side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def demo_videos(folder: Path, count: int) -> list[Path]:
    """``count`` copies of the 3 s demo clip, each with one pixel changed: the same work, different hashes."""
    from emoreason.synthetic import expression_clip, voice_like, write_video

    frames, _ = expression_clip(size=320, fps=12.0, duration_s=3.0)
    audio = voice_like(3.0, pause=(1.2, 1.8))
    paths = []
    for i in range(count):
        changed = frames.copy()
        changed[:, 0, 0] = (7 * i) % 256, (11 * i) % 256, (i // 256) % 256
        paths.append(write_video(folder / f"clip{i:03d}.mp4", changed, 12.0, audio))
    return paths


def summary(latencies: list[float], wall_s: float, tokens: int) -> dict:
    return {
        "requests": len(latencies),
        "wall_s": round(wall_s, 3),
        "rps": round(len(latencies) / wall_s, 3),
        "tps": round(tokens / wall_s, 1),
        "p50": round(float(np.percentile(latencies, 50)), 3),
        "p99": round(float(np.percentile(latencies, 99)), 3),
    }


def run_transformers(checkpoint: Path, videos: list[Path], concurrency: int, tokens: int, where: dict) -> dict:
    from emoreason.model.checkpoint import load_checkpoint
    from emoreason.model.processor import EmoReasonProcessor
    from emoreason.serving.analysis import analyse_file

    model = load_checkpoint(checkpoint, with_lora=(checkpoint / "lora").is_dir()).eval()
    processor = EmoReasonProcessor.from_pretrained(checkpoint)
    pad = processor.tokenizer.pad_token_id
    latencies, generated = [], 0
    started = time.perf_counter()
    for first in range(0, len(videos), concurrency):
        batch_start = time.perf_counter()
        features = []
        for video in videos[first : first + concurrency]:
            media = analyse_file(video, "evidence", processor.max_frames, float("inf"))
            messages = processor.build_messages(media.evidence or None, has_audio=media.waveform is not None)
            features.append(processor(messages, faces=media.crops, audio=media.waveform))
            where["analysis_s"].append(media.seconds)
        tick = time.perf_counter()
        where["prepare_s"].append((tick - batch_start) / len(features))
        batch = processor.collate(features, padding_side="left")
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "frame_mask",
                                        "input_features", "audio_mask") if k in batch}  # fmt: skip
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                 pad_token_id=pad)  # fmt: skip
        where["prompt_tokens"] = int(batch["input_ids"].shape[1])
        where["generate_s"].append(time.perf_counter() - tick)
        prompt = batch["input_ids"].shape[1]  # (generate returns the new tokens alone when the prompt is embeds)
        generated += int(out.shape[0] * (out.shape[1] - prompt if out.shape[1] > tokens else out.shape[1]))
        latencies += [time.perf_counter() - batch_start] * len(features)
    return summary(latencies, time.perf_counter() - started, generated)


def run_vllm(url: str, model: str, videos: list[Path], concurrency: int, tokens: int) -> dict:
    """Plain requests (the video alone, as a data: URL) from ``concurrency`` clients in a closed loop."""
    import openai

    from emoreason.backends.vllm import video_part

    parts = [video_part(video) for video in videos]

    async def closed_loop() -> tuple[list[float], int, float]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=1800)
        queue = list(reversed(parts))
        latencies: list[float] = []
        generated = 0

        async def worker() -> None:
            nonlocal generated
            while queue:
                part = queue.pop()
                start = time.perf_counter()
                response = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": [part]}], max_tokens=tokens,
                    temperature=0.0, extra_body={"ignore_eos": True},
                )  # fmt: skip
                latencies.append(time.perf_counter() - start)
                generated += response.usage.completion_tokens

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        await client.close()
        return latencies, generated, wall

    latencies, generated, wall = asyncio.run(closed_loop())
    return summary(latencies, wall, generated)


def start_server(checkpoint: Path, folder: Path, extra: list[str] = ()) -> tuple[subprocess.Popen, str]:
    import openai

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = folder / f"server-{port}.log"
    command = [sys.executable, "-m", "emoreason.cli", "serve", str(checkpoint), "--port", str(port),
               "--dtype", "float32", "--", "--max-num-seqs", "64", *extra]  # fmt: skip
    # room in the KV cache for every request of the largest level (the launcher's CPU default is 1 GiB)
    env = {"VLLM_CPU_KVCACHE_SPACE": "4"} | dict(os.environ)
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    deadline = time.monotonic() + 600
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-2000:]}")
        try:
            client.models.list()
            return process, url
        except openai.APIConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit("the server did not start in 600 s") from None
            time.sleep(1.0)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def served_model(url: str) -> str:
    """The checkpoint's LoRA adapter when it has one (what ``explain --server`` asks for), else its model."""
    import openai

    models = openai.OpenAI(base_url=url + "/v1", api_key="none").models.list().data
    adapters = [m.id for m in models if getattr(m, "parent", None)]
    return (adapters or [m.id for m in models])[0]


def row(concurrency: int, side: str, figures: dict) -> str:
    return (f"{concurrency:>4} {side:<16} {figures['rps']:>7.2f} {figures['tps']:>8.1f} {figures['p50']:>7.2f} "
            f"{figures['p99']:>7.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("tiny", "smol"), default="smol", help="checkpoint to build and serve")
    parser.add_argument("--checkpoint", type=Path, help="an emoreason checkpoint (default: build --preset)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=4, help="requests per level and side (at least --rounds "
                        "x the concurrency)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="requests per client at each level (default 2)")
    parser.add_argument("--tokens", type=int, default=256, help="generated tokens per request")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--skip-extras", action="store_true", help="no cache-hit and --api-server-count 2 runs")
    args = parser.parse_args()
    if args.requests < 1 or args.tokens < 1 or args.rounds < 1 or min(args.concurrency) < 1:
        parser.error("--requests, --rounds, --tokens and --concurrency must be positive")
    from emoreason.model.presets import build_preset

    folder = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    checkpoint = (args.checkpoint or build_preset(args.preset, folder / f"emoreason-{args.preset}")).resolve()
    counts = {c: max(args.requests, args.rounds * c) for c in args.concurrency}
    top = sorted(args.concurrency)[len(args.concurrency) // 2]  # the extras run at the middle level
    videos = demo_videos(folder, sum(counts.values()) + 2 + counts[top])
    warm, fresh, videos = videos[:2], videos[2 : 2 + counts[top]], videos[2 + counts[top] :]
    levels, used = {}, 0
    for c in args.concurrency:
        levels[c], used = videos[used : used + counts[c]], used + counts[c]
    served, extras = {}, {}
    process, url = start_server(checkpoint, folder)
    try:
        model = served_model(url)
        run_vllm(url, model, warm, 2, 4)  # warm-up: the pool's workers start, the model's first batches
        print(f"{checkpoint.name} ({model}), {args.tokens} tokens per request, {os.cpu_count()} CPUs, torch threads "
              f"{torch.get_num_threads()}; plain requests (one video each), every video different")  # fmt: skip
        print(f"{'conc':>4} {'side':<16} {'req/s':>7} {'tok/s':>8} {'p50 s':>7} {'p99 s':>7}")
        for c in args.concurrency:
            served[c] = run_vllm(url, model, levels[c], c, args.tokens)
            print(row(c, "vllm", served[c]), flush=True)
        if not args.skip_extras:  # the media path alone (1 token): new videos, then one analysed video again
            extras["media_fresh"] = dict(run_vllm(url, model, fresh, top, 1), concurrency=top, tokens=1)
            print(row(top, "vllm new, 1 tok", extras["media_fresh"]), flush=True)
            extras["cache_hit"] = dict(run_vllm(url, model, fresh[:1] * counts[top], top, 1), concurrency=top,
                                       tokens=1)  # fmt: skip
            print(row(top, "vllm hit, 1 tok", extras["cache_hit"]), flush=True)
    finally:
        stop(process)
    if not args.skip_extras:  # a fresh server (empty cache) with two API server processes, the top level's videos
        process, url = start_server(checkpoint, folder, ["--api-server-count", "2"])
        try:
            run_vllm(url, model, warm * 2, 4, 4)
            extras["api_server_count_2"] = dict(run_vllm(url, model, levels[top], top, args.tokens), concurrency=top)
            print(row(top, "vllm 2 api procs", extras["api_server_count_2"]), flush=True)
        finally:
            stop(process)
    where = {"analysis_s": [], "prepare_s": [], "generate_s": []}
    run_transformers(checkpoint, warm[:1], 1, 4, dict(where, analysis_s=[], prepare_s=[], generate_s=[]))
    results = []
    for c in args.concurrency:
        local = run_transformers(checkpoint, levels[c], c, args.tokens, where)
        ratio = {k: round(served[c][k] / local[k], 2) for k in ("rps", "tps", "p50", "p99")}
        print(row(c, "transformers", local))
        print(f"{c:>4} {'vllm/transformers':<16} {ratio['rps']:>6.2f}x {ratio['tps']:>7.2f}x {ratio['p50']:>6.2f}x "
              f"{ratio['p99']:>6.2f}x", flush=True)  # fmt: skip
        results.append({"concurrency": c, "vllm": served[c], "transformers": local, "ratio": ratio})
    breakdown = {
        "analysis_s_per_request": round(float(np.mean(where["analysis_s"])), 3),
        "media_and_prompt_s_per_request": round(float(np.mean(where["prepare_s"])), 3),
        "prompt_tokens": where.get("prompt_tokens"),
    }
    print(f"per request: face analysis, evidence and audio {breakdown['analysis_s_per_request']:.2f} s "
          f"(with the processor {breakdown['media_and_prompt_s_per_request']:.2f} s); prompt "
          f"{breakdown['prompt_tokens']} tokens")  # fmt: skip
    if args.json:
        report = {"checkpoint": checkpoint.name, "model": model, "tokens": args.tokens, "cpus": os.cpu_count(),
                  "levels": results, **extras, "where": breakdown}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
