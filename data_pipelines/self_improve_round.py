"""Merge a round of verified model samples into the training data (Facial-R1 self-improvement, data side).

    python data_pipelines/self_improve_round.py --train data/train.jsonl --candidates round1_samples.jsonl \
        --out data/train_round1.jsonl --round 1 --threshold 2.0

Candidates are sample rows with `completion`, `reward` and `model`; kept rows carry provenance (model, round,
reward) and a manifest (input hashes, counts) is written next to the output.
"""

import argparse
import json
import sys
from pathlib import Path

from emoreason.data.rounds import merge_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--candidates", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--threshold", type=float, required=True, help="minimum total reward to keep a sample")
    args = parser.parse_args()
    manifest = merge_round(args.train, args.candidates, args.out, args.round, args.threshold)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
