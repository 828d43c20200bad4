"""Face tokens the LLM sees, compressed vs every patch of every frame, and the prefill time of both.

    python scripts/bench_tokens.py [--frames 16] [--repeats 5] [--shape tiny|base]

``tiny``: the tiny checkpoint (64 px crops, 16 patches per frame, K = 12, a 2-layer LM). ``base``: the
default model's shapes with random weights: 224 px crops in 16 px patches (196 per frame, as SigLIP-base),
K = 24, and a language model shaped like Qwen2-0.5B (24 layers, hidden 896).

Baseline: feed every patch token of every frame through the face connector into the LLM (LLaVA-style,
no compression): frames x (image_size / patch_size)^2 tokens. emoreason: the face-token compressor's K
tokens per clip. Both prompts share the same text; the script times the language model's prefill on
each, in the same run, and the whole multimodal forward (towers + compressor + LLM).
"""

import argparse
import statistics
import sys
import time

import torch

from emoreason.model.modeling import EmoReasonForConditionalGeneration
from emoreason.model.tiny import TINY_FACE, TINY_TEXT, build_tiny, tiny_config

SIGLIP_BASE = {"image_size": 224, "patch_size": 16}  # google/siglip-base-patch16-224
QWEN2_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "head_dim": 64,
}  # fmt: skip  (Qwen2-0.5B's shape, random weights)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--text-tokens", type=int, default=200, help="prompt text around the media")
    parser.add_argument("--shape", choices=["tiny", "base"], default="tiny")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, processor = build_tiny(lora=False, max_frames=args.frames)
    if args.shape == "base":
        tokenizer = processor.tokenizer
        config = tiny_config(
            tokenizer, max_frames=args.frames, face_temporal_slots=4, face_config=dict(TINY_FACE, **SIGLIP_BASE),
            text_config=dict(TINY_TEXT, **QWEN2_05B, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
        )  # fmt: skip
        model = EmoReasonForConditionalGeneration(config)
    model.eval()
    cfg = model.config
    patches = (cfg.face_config.image_size // cfg.face_config.patch_size) ** 2
    ours, baseline = cfg.num_face_tokens, args.frames * patches
    real_baseline = args.frames * (SIGLIP_BASE["image_size"] // SIGLIP_BASE["patch_size"]) ** 2
    print(f"face tokens per {args.frames}-frame clip: emoreason K = {ours}; baseline = frames x patches = "
          f"{args.frames} x {patches} = {baseline} on the tiny tower ({args.frames} x 196 = {real_baseline} with "
          f"SigLIP-base 224/16): {baseline / ours:.0f}x ({real_baseline / ours:.0f}x) fewer")  # fmt: skip
    dim = cfg.text_config.hidden_size
    pixel_values = torch.randn(1, args.frames, 3, cfg.face_config.image_size, cfg.face_config.image_size)
    frame_mask = torch.ones(1, args.frames, dtype=torch.bool)
    text_embeds = torch.randn(1, args.text_tokens, dim)
    lm = model.language_model

    def prefill(face_tokens):
        embeds = torch.cat([text_embeds[:, :10], face_tokens, text_embeds[:, 10:]], dim=1)
        with torch.inference_mode():
            lm(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long))

    with torch.inference_mode():
        compressed, _ = model.encode_faces(pixel_values, frame_mask)  # [1, K, Dt]
        all_patches = model.face_connector(model.face_tower(pixel_values).flatten(1, 2))  # [1, T*P, Dt]
    t_ours, t_base = timed(lambda: prefill(compressed), args.repeats), timed(lambda: prefill(all_patches), args.repeats)

    def full(compress: bool):
        with torch.inference_mode():
            tokens = (
                model.encode_faces(pixel_values, frame_mask)[0]
                if compress
                else model.face_connector(model.face_tower(pixel_values).flatten(1, 2))
            )
        prefill(tokens)

    f_ours, f_base = timed(lambda: full(True), args.repeats), timed(lambda: full(False), args.repeats)
    print(f"shape: {args.shape}, LM hidden {dim}, {cfg.text_config.num_hidden_layers} layers, {args.text_tokens} text tokens, "
          f"median of {args.repeats}")  # fmt: skip
    print("| path | sequence length | LM prefill s | towers + compressor + LM prefill s |")
    print("|---|---|---|---|")
    print(f"| every patch (baseline) | {args.text_tokens + baseline} | {t_base:.4f} | {f_base:.4f} |")
    print(f"| emoreason compressor | {args.text_tokens + ours} | {t_ours:.4f} | {f_ours:.4f} |")
    print(f"| ratio baseline / emoreason | {(args.text_tokens + baseline) / (args.text_tokens + ours):.1f}x | "
          f"{t_base / t_ours:.1f}x | {f_base / f_ours:.1f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
