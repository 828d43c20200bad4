"""How fast a training step and a held-out answer are: the recipe of record before issue 20 against the new default.

    python scripts/bench_train_speed.py --preset smol --json OUT [--ablate] [--steps 3] [--batch 8] [--clips 32]

On the same toy clips (``make_toy_dataset(DIR, 200, size=64)``, the same seed, so both sides train on the same
batches), each side in its own process (its own peak RSS):

- SFT steps, batch ``--batch``, after one warm-up step, timed from one step's end to the next (collation, the
  forward, the backward and the optimizer: the whole trainer loop). Baseline, the recipe of record: float32,
  gradient checkpointing, LoRA dropout 0.05, TRL's stock ``SFTTrainer`` with the old ``compute_loss_func`` (the
  full-vocabulary logits at every position) and its second no-grad forward for the metrics. New: the library's
  defaults (``emoreason.train.sft.build_trainer``: bf16 where the hardware has it, no checkpointing, no dropout,
  the loss at the answer positions only).
- Greedy answers to ``--clips`` held-out clips (``max_new_tokens`` 224): generated tokens per second, old
  (float32, batch 8) against new (``emoreason.train.rollout.generate``'s defaults).

``--ablate`` also times the new default with one change undone at a time (bf16, LoRA dropout, checkpointing, the
shared prefix, the tower cache, the answer-only loss), so each change is measured on its own.

Writes ``{"sft": {"baseline_s", "new_s", "ratio"}, "generate": {"baseline_tokens_per_s", "new_tokens_per_s",
"ratio"}, "tokens_per_step", "answer_tokens_per_step", "peak_rss_mb": {side: MB}, "precision", "where",
"ablations": {name: {"step_s", "vs_new", "peak_rss_mb"}}}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from emoreason.data.jsonl import read_samples
from emoreason.model.presets import PRESETS, build_preset
from emoreason.toyfaces import make_toy_dataset

CLIPS = 200  # toy clips; the held-out answers come from the test split (people never trained on)
# --ablate: the new default with one change undone, each timed on its own (arguments appended to the new side's)
ABLATIONS = {
    "fp32": ["--bf16", "false"],
    "lora_dropout": ["--lora_dropout", "0.05"],
    "checkpointing": ["--gradient_checkpointing", "true"],  # also turns the prefix sharing off (no KV cache)
    "no_prefix_sharing": [],
    "no_tower_cache": [],
    "full_logits": [],  # TRL's stock SFTTrainer with the old compute_loss_func (and its metrics forward)
}


def old_loss(outputs, labels, num_items_in_batch=None):
    """The SFT loss of record before issue 20: shifted cross-entropy over the logits of every position."""
    import torch

    logits, targets = outputs.logits[:, :-1].float(), labels[:, 1:].to(outputs.logits.device)
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                              ignore_index=-100, reduction="sum")  # fmt: skip
    loss = total / (num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum().clamp(min=1))
    return loss + outputs.au_loss * 3.0 if outputs.au_loss is not None else loss


def sft_child(side: str, model: Path, data: Path, work: Path, steps: int, batch: int) -> dict:
    import trl
    from transformers import TrainerCallback

    from emoreason.model import modeling
    from emoreason.train import sft
    from emoreason.train.stage import load_parts, parse_recipe
    from emoreason.train.tower_cache import TowerCache

    if side == "no_prefix_sharing":
        modeling.MIN_SHARED_PREFIX = 1 << 30  # no prompt is that long: every row runs in full
    if side == "no_tower_cache":
        TowerCache.is_frozen = staticmethod(lambda model: False)  # the collator then sends the crops

    base = ["--model_path", str(model), "--train_data", str(data), "--cache_dir", str(work / "cache"),
            "--crops", "frames", "--evidence", "false", "--use_audio", "false", "--target", "compact",
            "--au_loss_weight", "3.0", "--output_dir", str(work / side), "--max_steps", str(steps + 1),
            "--per_device_train_batch_size", str(batch), "--save_strategy", "no", "--report_to", "none",
            "--learning_rate", "5e-4", "--logging_steps", "1", "--disable_tqdm", "true"]  # fmt: skip
    if side in ABLATIONS:  # the new default with one change undone
        base += ABLATIONS[side]
        side = "full_logits" if side == "full_logits" else "new"
    if side in ("baseline", "full_logits"):
        old = ["--bf16", "false", "--gradient_checkpointing", "true", "--lora_dropout", "0.05"]
        extra = old if side == "baseline" else ["--gradient_checkpointing", "false"]
        recipe, args = parse_recipe(sft.SFTRecipe, trl.SFTConfig, base + extra)
        parts = load_parts(recipe, args)
        if side == "baseline":  # the answer tags' embedding rows were not trained before
            parts.model.get_input_embeddings().weight.requires_grad_(False)
        parts.model.config.au_loss_weight = recipe.au_loss_weight
        args.dataset_kwargs, args.remove_unused_columns = {"skip_prepare_dataset": True}, False
        from datasets import Dataset

        trainer = trl.SFTTrainer(model=parts.model, args=args, train_dataset=Dataset.from_dict(
            {"row": [json.dumps(r) for r in parts.rows]}), data_collator=sft.Collator(parts.processor, parts.cache,
            "compact", TowerCache(parts.model, recipe.cache_dir) if side == "full_logits" else None),
            processing_class=parts.processor.tokenizer, compute_loss_func=old_loss)  # fmt: skip
    else:
        recipe, args = parse_recipe(sft.SFTRecipe, trl.SFTConfig, ["--gradient_checkpointing", "false"] + base)
        trainer = sft.build_trainer(recipe, args)[0]
    ends, tokens = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    collate = trainer.data_collator

    def counting(rows):
        out = collate(rows)
        tokens.append((int(out["attention_mask"].sum()), int((out["labels"][:, 1:] != -100).sum())))
        return out

    trainer.data_collator = counting
    trainer.train()
    times = [b - a for a, b in zip(ends, ends[1:])]  # the first step (warm-up) is not counted
    return {"step_s": times, "median_s": sorted(times)[len(times) // 2], "tokens": tokens[1:],
            "precision": "bf16" if args.bf16 else "fp32", "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def generate_child(side: str, model: Path, data: Path, work: Path, clips: int) -> dict:
    from emoreason.model.checkpoint import load_checkpoint
    from emoreason.model.processor import EmoReasonProcessor
    from emoreason.train.data import MediaCache, MediaConfig
    from emoreason.train.hardware import for_inference
    from emoreason.train.rollout import generate

    test = [s for s in read_samples(data) if s.split == "test"][:clips]
    processor = EmoReasonProcessor.from_pretrained(model)
    cache = MediaCache(work / "cache", processor, MediaConfig(crops="frames", evidence=False, use_audio=False))
    net, options = load_checkpoint(model), {"batch_size": 8}  # the baseline: float32 weights, batch 8
    if side == "new":
        net, options = for_inference(net), {}
    started = time.perf_counter()
    # every answer 224 tokens long (min_new_tokens): an untrained model stops early, a trained one does not
    rollouts = generate(net, processor, cache, test, max_new_tokens=224, min_new_tokens=224, **options)
    seconds = time.perf_counter() - started
    tokens = sum(len(processor.tokenizer(r.completion, add_special_tokens=False)["input_ids"]) + 1 for r in rollouts)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, side: str, args) -> dict:
    """Run one side in a fresh process: its own memory, no warm caches from the other side."""
    command = [sys.executable, __file__, "--child", kind, side, "--preset", args.preset, "--work", str(args.work),
               "--steps", str(args.steps), "--batch", str(args.batch), "--clips", str(args.clips)]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="smol")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work", type=Path, default=Path("results/bench_train_speed"))
    parser.add_argument("--steps", type=int, default=3, help="timed SFT steps per side (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clips", type=int, default=32, help="held-out clips answered per side")
    parser.add_argument("--ablate", action="store_true", help="also time the new default with each change undone")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model, data = args.work / args.preset, args.work / "toy" / "toy.jsonl"
    if args.child:
        kind, side = args.child
        run = sft_child(side, model, data, args.work, args.steps, args.batch) if kind == "sft" else \
            generate_child(side, model, data, args.work, args.clips)  # fmt: skip
        print(json.dumps(run))
        return 0
    if not (model / "model.safetensors").is_file():
        build_preset(args.preset, model)
    if not data.is_file():
        make_toy_dataset(data.parent, CLIPS, seed=0, size=64)
    runs = {(kind, side): child(kind, side, args) for kind in ("sft", "generate") for side in ("baseline", "new")}
    sft_old, sft_new = runs["sft", "baseline"], runs["sft", "new"]
    gen_old, gen_new = runs["generate", "baseline"], runs["generate", "new"]
    steps = sft_new["tokens"]
    result = {
        "sft": {"baseline_s": sft_old["median_s"], "new_s": sft_new["median_s"],
                "ratio": sft_old["median_s"] / sft_new["median_s"], "baseline_steps_s": sft_old["step_s"],
                "new_steps_s": sft_new["step_s"]},
        "generate": {"baseline_tokens_per_s": gen_old["tokens_per_s"], "new_tokens_per_s": gen_new["tokens_per_s"],
                     "ratio": gen_new["tokens_per_s"] / gen_old["tokens_per_s"], "clips": args.clips},
        "tokens_per_step": sum(t for t, _ in steps) / len(steps),
        "answer_tokens_per_step": sum(a for _, a in steps) / len(steps),
        "peak_rss_mb": {f"{k}_{s}": r["peak_rss_mb"] for (k, s), r in runs.items()},
        "precision": {"baseline": sft_old["precision"], "new": sft_new["precision"]},
        "where": f"{platform.processor() or platform.machine()}, {args.preset}, batch {args.batch}",
    }  # fmt: skip
    print(f"| {'':22} | {'baseline':>10} | {'new':>10} | {'ratio':>6} |\n|{'-' * 24}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
    print(f"| {'SFT step (s)':22} | {sft_old['median_s']:10.1f} | {sft_new['median_s']:10.1f} | "
          f"{result['sft']['ratio']:5.2f}x |")  # fmt: skip
    print(f"| {'greedy tokens/s':22} | {gen_old['tokens_per_s']:10.1f} | {gen_new['tokens_per_s']:10.1f} | "
          f"{result['generate']['ratio']:5.2f}x |")  # fmt: skip
    print(f"| {'SFT peak RSS (MB)':22} | {sft_old['peak_rss_mb']:10.0f} | {sft_new['peak_rss_mb']:10.0f} |        |")
    print(f"tokens per step {result['tokens_per_step']:.0f} ({result['answer_tokens_per_step']:.0f} answer)")
    if args.ablate:
        result["ablations"] = {}
        for name in ABLATIONS:
            run = child("sft", name, args)
            result["ablations"][name] = {"step_s": run["median_s"], "vs_new": run["median_s"] / sft_new["median_s"],
                                         "peak_rss_mb": run["peak_rss_mb"]}  # fmt: skip
            print(f"| new, {name.replace('_', ' ') + ' (undone)':30} | {run['median_s']:6.1f} s | "
                  f"{run['median_s'] / sft_new['median_s']:5.2f}x new | {run['peak_rss_mb']:6.0f} MB |")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
