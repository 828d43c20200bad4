"""Serving throughput and latency: vLLM (``emoreason serve``) vs in-process transformers ``generate``, same run.

    python scripts/bench_serving.py [--lm tiny|small] [--concurrency 1 8 32] [--requests 32] [--tokens 64]

Both sides answer the same requests: the demo video (a real face photograph animated into a smile, with a
voice-like audio track) with the explain prompt, and exactly ``--tokens`` generated tokens each (vLLM:
``ignore_eos``; transformers: ``min_new_tokens``), greedy. Both sides do the same media work per request (face
detection, landmarks, alignment, crops: the server's video loader, the same function in-process).

- vLLM: ``concurrency`` clients in a closed loop (each sends its next request when the last one is answered),
  through the real ``openai`` client; continuous batching on the server.
- transformers: the best in-process equivalent without a server: requests in batches of ``concurrency``
  (media prepared for the batch, then one padded ``generate``); every request's latency is its batch's time.

The server runs in a subprocess and idles while the transformers side runs. Prints requests/s, generated
tokens/s, p50 and p99 latency per side and the vLLM / transformers ratios; ``--json FILE`` keeps them.
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

SMALL_LM = {
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
}  # fmt: skip  (a ~40M-parameter Qwen2-shaped LM, random weights)


def make_checkpoint(path: Path, lm: str) -> Path:
    from emoreason.model.checkpoint import save_checkpoint
    from emoreason.model.modeling import EmoReasonForConditionalGeneration
    from emoreason.model.processor import EmoReasonProcessor
    from emoreason.model.tiny import TINY_TEXT, tiny_config
    from emoreason.model.tokenizer import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer()
    text = dict(TINY_TEXT, **(SMALL_LM if lm == "small" else {}), vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)  # fmt: skip
    config = tiny_config(tokenizer, text_config=text)
    torch.manual_seed(0)
    model = EmoReasonForConditionalGeneration(config)
    return save_checkpoint(model, path, processor=EmoReasonProcessor.from_config(tokenizer, config))


def demo_video(folder: Path) -> Path:
    from emoreason.synthetic import expression_clip, voice_like, write_video

    frames, _ = expression_clip(size=320, fps=12.0, duration_s=3.0)
    return write_video(folder / "smile.mp4", frames, 12.0, voice_like(3.0, pause=(1.2, 1.8)))


def summary(latencies: list[float], wall_s: float, tokens: int) -> dict:
    return {
        "requests": len(latencies),
        "wall_s": round(wall_s, 3),
        "requests_per_s": round(len(latencies) / wall_s, 3),
        "tokens_per_s": round(tokens / wall_s, 1),
        "p50_s": round(float(np.percentile(latencies, 50)), 3),
        "p99_s": round(float(np.percentile(latencies, 99)), 3),
    }


def run_transformers(checkpoint: Path, video: Path, concurrency: int, requests: int, tokens: int) -> dict:
    from emoreason.io.audio import load_audio
    from emoreason.model.checkpoint import load_checkpoint
    from emoreason.model.processor import EmoReasonProcessor
    from emoreason.serving.video_loader import face_crops_from_bytes

    model = load_checkpoint(checkpoint).eval()
    processor = EmoReasonProcessor.from_pretrained(checkpoint)
    pad = processor.tokenizer.pad_token_id
    latencies, generated = [], 0
    started = time.perf_counter()
    for first in range(0, requests, concurrency):
        batch_start = time.perf_counter()
        features = []
        for _ in range(min(concurrency, requests - first)):
            crops, _ = face_crops_from_bytes(video.read_bytes(), processor.max_frames)
            waveform = load_audio(video).waveform
            features.append(processor(processor.build_messages(has_audio=True), faces=crops, audio=waveform))
        batch = processor.collate(features, padding_side="left")
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "frame_mask",
                                        "input_features", "audio_mask")}  # fmt: skip
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                 pad_token_id=pad)  # fmt: skip
        generated += int(out.shape[0] * out.shape[1])
        latencies += [time.perf_counter() - batch_start] * len(features)
    return summary(latencies, time.perf_counter() - started, generated)


def run_vllm(url: str, model: str, video: Path, concurrency: int, requests: int, tokens: int) -> dict:
    import openai

    from emoreason.backends.vllm import explain_request
    from emoreason.io.audio import load_audio

    messages = explain_request(video, None, load_audio(video).waveform)  # video + audio + the explain prompt

    async def main() -> tuple[list[float], int, float]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=1200)
        queue = list(range(requests))
        latencies: list[float] = []
        generated = 0

        async def worker() -> None:
            nonlocal generated
            while queue:
                queue.pop()
                start = time.perf_counter()
                response = await client.chat.completions.create(
                    model=model, messages=messages, max_tokens=tokens, temperature=0.0,
                    extra_body={"ignore_eos": True},
                )  # fmt: skip
                latencies.append(time.perf_counter() - start)
                generated += response.usage.completion_tokens

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        await client.close()
        return latencies, generated, wall

    latencies, generated, wall = asyncio.run(main())
    return summary(latencies, wall, generated)


def start_server(checkpoint: Path, folder: Path) -> tuple[subprocess.Popen, str, Path]:
    import openai

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = folder / "server.log"
    command = [sys.executable, "-m", "emoreason.cli", "serve", str(checkpoint), "--port", str(port),
               "--dtype", "float32", "--", "--max-num-seqs", "64"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    deadline = time.monotonic() + 600
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-2000:]}")
        try:
            client.models.list()
            return process, url, log
        except openai.APIConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit("the server did not start in 600 s") from None
            time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", choices=("tiny", "small"), default="tiny", help="language model shape")
    parser.add_argument("--checkpoint", type=Path, help="an emoreason checkpoint (default: make one per --lm)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level and side")
    parser.add_argument("--tokens", type=int, default=64, help="generated tokens per request")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.requests < 1 or args.tokens < 1 or min(args.concurrency) < 1:
        parser.error("--requests, --tokens and --concurrency must be positive")
    folder = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    checkpoint = args.checkpoint or make_checkpoint(folder / f"emoreason-{args.lm}", args.lm)
    video = demo_video(folder)
    process, url, log = start_server(checkpoint, folder)
    results = []
    try:
        model = checkpoint.resolve().name
        run_vllm(url, model, video, 2, 2, 4)  # warm-up
        run_transformers(checkpoint, video, 1, 1, 4)
        print(f"{args.lm} LM, {args.tokens} tokens per request, {args.requests} requests per level, "
              f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")  # fmt: skip
        header = f"{'conc':>4} {'side':<12} {'req/s':>7} {'tok/s':>8} {'p50 s':>7} {'p99 s':>7}"
        print(header)
        for concurrency in args.concurrency:
            served = run_vllm(url, model, video, concurrency, max(args.requests, concurrency), args.tokens)
            local = run_transformers(checkpoint, video, concurrency, max(args.requests, concurrency), args.tokens)
            for side, row in (("vllm", served), ("transformers", local)):
                print(f"{concurrency:>4} {side:<12} {row['requests_per_s']:>7.2f} {row['tokens_per_s']:>8.1f} "
                      f"{row['p50_s']:>7.2f} {row['p99_s']:>7.2f}")  # fmt: skip
            ratio = {k: round(served[k] / local[k], 2) for k in ("requests_per_s", "tokens_per_s", "p50_s", "p99_s")}
            print(f"{concurrency:>4} {'vllm/hf':<12} {ratio['requests_per_s']:>6.2f}x {ratio['tokens_per_s']:>7.2f}x "
                  f"{ratio['p50_s']:>6.2f}x {ratio['p99_s']:>6.2f}x")  # fmt: skip
            results.append({"concurrency": concurrency, "vllm": served, "transformers": local, "ratio": ratio})
    finally:
        process.terminate()
        process.wait(timeout=60)
    if args.json:
        args.json.write_text(json.dumps({"lm": args.lm, "tokens": args.tokens, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
