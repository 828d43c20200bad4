"""Merge a round of verified model samples into the training data (Facial-R1 self-improvement, data side).

    python data_pipelines/self_improve_round.py --train data/train.jsonl --candidates round1_samples.jsonl \
        --out data/train_round1.jsonl --round 1 --threshold 0.9 [--model checkpoints/grpo/final]

Candidates are sample rows with `completion`, `reward` (the weighted mean of the training rewards, in [0, 1]) and
`model`; with --model they are first sampled from that checkpoint into --candidates (resumable). Kept rows carry
provenance (model, round, reward) and a manifest (input hashes, counts) is written next to the output.
`emoreason train self-improve` runs the same round and then retrains.
"""

import argparse
import json
import sys
from pathlib import Path

from emoreason.data.rounds import merge_round


def sample(args: argparse.Namespace) -> dict:
    from emoreason.train.self_improve import SelfImproveRecipe, sample_candidates

    recipe = SelfImproveRecipe(model_path=str(args.model), train_data=str(args.train), crops=args.crops,
                               evidence=args.crops == "detect", use_audio=args.crops == "detect",
                               num_samples=args.num_samples, max_new_tokens=args.max_new_tokens,
                               round_index=args.round, cache_dir=str(args.cache_dir))  # fmt: skip
    return sample_candidates(recipe, args.candidates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--candidates", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--threshold", type=float, required=True, help="minimum total reward to keep a sample")
    parser.add_argument("--model", type=Path, help="sample the candidates from this checkpoint first")
    parser.add_argument("--crops", choices=("detect", "frames"), default="detect", help="frames: clips are crops")
    parser.add_argument("--num-samples", type=int, default=4, help="completions per training clip")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/emoreason"))
    args = parser.parse_args()
    if args.model is None:  # candidates from elsewhere, one row per (source sample id, completion)
        manifest = merge_round(args.train, args.candidates, args.out, args.round, args.threshold)
    else:
        from emoreason.train.self_improve import merge_candidates

        print(json.dumps({"sampling": sample(args)}))
        manifest = merge_candidates(args.train, args.candidates, args.out, args.round, args.threshold)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
