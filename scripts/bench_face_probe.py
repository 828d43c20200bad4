"""Where does the face information stop? Probes of the smol preset's face path on the toy faces, without the LM.

    python scripts/bench_face_probe.py --data results/bench_smol/data/toy.jsonl --json benchmarks/face_probe_smol.json
        [--checkpoint DIR] [--cache-dir DIR] [--steps 150 300 1000]

On the held-out split (people never trained on) it reports how well the emotion and the AUs can be read:
1. from every patch of the frozen tower (mean and max over frames and patches, a logistic regression);
2. from the compressor's tokens, the compressor trained from scratch with its AU head's loss alone for N steps
   (batch 8, AdamW 5e-4, as the SFT recipe's face warm-up): the AU head's micro F1 and each AU's F1, and a logistic
   regression on the tokens for the emotion.
If both read the clip but the LM's answers do not, the LM's reading of the tokens is what stops the learning proof.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from emoreason.data.jsonl import read_samples
from emoreason.model.checkpoint import load_checkpoint
from emoreason.model.compressor import FaceTokenCompressor
from emoreason.model.modeling import au_head_loss
from emoreason.model.presets import build_preset
from emoreason.model.processor import EmoReasonProcessor
from emoreason.train.data import MediaCache, MediaConfig, au_targets


def tower_features(checkpoint: Path, data: Path, cache_dir: Path) -> dict:
    """The frozen face tower's ``[N, T, P, D]`` per split, with emotion indices and AU targets."""
    model = load_checkpoint(checkpoint).eval()
    processor = EmoReasonProcessor.from_pretrained(checkpoint)
    cache = MediaCache(cache_dir, processor, MediaConfig(crops="frames", evidence=False, use_audio=False))
    samples = list(read_samples(data))
    emotions = sorted({s.emotion for s in samples})
    out = {"emotions": emotions, "compressor": model.config}
    for split in ("train", "test"):
        rows = [s for s in samples if s.split == split]
        features = []
        for i in range(0, len(rows), 16):
            crops = [processor(processor.build_messages(None, has_audio=False), faces=cache.get(s).crops, audio=None)
                     ["pixel_values"] for s in rows[i : i + 16]]  # fmt: skip
            with torch.no_grad():
                features.append(model.encode_face_crops(torch.cat(crops)).float())
        out[split] = {"x": torch.cat(features), "y": torch.tensor([emotions.index(s.emotion) for s in rows]),
                      "au": torch.stack([au_targets(s) for s in rows])}  # fmt: skip
    return out


def pooled(x: torch.Tensor) -> np.ndarray:
    return torch.cat([x.mean((1, 2)), x.amax((1, 2))], -1).numpy()


def au_f1(logits: torch.Tensor, targets: torch.Tensor) -> float:
    known = ~torch.isnan(targets)
    predicted, gold = (logits > 0)[known], (targets > 0)[known]
    hits = float((predicted & gold).sum())
    return 2 * hits / max(float(predicted.sum() + gold.sum()), 1.0)


def per_au_f1(logits: torch.Tensor, targets: torch.Tensor, codes: list[str]) -> dict[str, float | None]:
    """The AU head's F1 of each AU on the held-out clips (an emotion that rests on one AU needs that AU read);
    ``None`` for an AU no held-out clip shows (its F1 would read 0 and pass for the weakest)."""
    return {code: round(au_f1(logits[:, [i]], targets[:, [i]]), 3) if (targets[:, i] > 0).any() else None
            for i, code in enumerate(codes)}  # fmt: skip


def compressor_probe(data: dict, steps: int, seed: int = 0) -> dict:
    config, train, test = data["compressor"], data["train"], data["test"]
    torch.manual_seed(seed)
    compressor = FaceTokenCompressor(config.face_config.hidden_size, queries_per_region=config.face_queries_per_region,
                                     temporal_slots=config.face_temporal_slots, num_heads=config.compressor_heads,
                                     max_frames=config.max_frames, au_codes=config.au_codes)  # fmt: skip
    optimizer = torch.optim.AdamW(compressor.parameters(), lr=5e-4)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, len(train["y"]), (8,), generator=generator)
        loss = au_head_loss(compressor(train["x"][index]).au_logits, train["au"][index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        fit, held = compressor(train["x"]), compressor(test["x"])
    probe = LogisticRegression(max_iter=3000).fit(fit.tokens.flatten(1).numpy(), train["y"].numpy())
    return {"steps": steps, "train_s": round(seconds, 1), "au_f1": round(au_f1(held.au_logits, test["au"]), 3),
            "emotion_accuracy": round(probe.score(held.tokens.flatten(1).numpy(), test["y"].numpy()), 3),
            "per_au_f1": per_au_f1(held.au_logits, test["au"], list(config.au_codes))}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="toy dataset JSONL (make_toy_dataset)")
    parser.add_argument("--checkpoint", type=Path, help="emoreason checkpoint (default: build the smol preset)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/emoreason"))
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300, 1000])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = args.checkpoint or build_preset("smol", args.cache_dir / "probe-smol")
    data = tower_features(checkpoint, args.data, args.cache_dir)
    train, test = data["train"], data["test"]
    logistic = LogisticRegression(max_iter=3000).fit(pooled(train["x"]), train["y"].numpy())
    result = {
        "data": str(args.data), "train_clips": len(train["y"]), "test_clips": len(test["y"]),
        "chance": 1 / len(data["emotions"]),
        "all_patches_pooled": {"emotion_accuracy": round(logistic.score(pooled(test["x"]), test["y"].numpy()), 3)},
        "compressor": [compressor_probe(data, n) for n in args.steps],
    }  # fmt: skip
    print(f"held-out clips: {len(test['y'])} (chance {result['chance']:.3f})")
    print(f"all patches, pooled, logistic regression: emotion {result['all_patches_pooled']['emotion_accuracy']:.3f}")
    for row in result["compressor"]:
        print(f"compressor, AU loss alone, {row['steps']:>5} steps ({row['train_s']:.0f} s): AU F1 {row['au_f1']:.3f}, "
              f"emotion from its tokens {row['emotion_accuracy']:.3f}; weakest AUs: "
              + ", ".join(f"{code} {f1:.2f}" for code, f1 in sorted(((c, f) for c, f in row["per_au_f1"].items() if f is not None), key=lambda kv: kv[1])[:3]))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
