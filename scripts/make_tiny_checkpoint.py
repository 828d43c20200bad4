"""Build a complete tiny emoreason checkpoint (random weights, a small trained tokenizer) in seconds.

    python scripts/make_tiny_checkpoint.py checkpoints/tiny [--seed 0] [--no-lora]

For tests, demos and CI: nothing is downloaded. Attention heads are 64 wide (vLLM's CPU backend needs it).
"""

import argparse
import sys
import time
from pathlib import Path

from emoreason.model.tiny import make_tiny_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-lora", action="store_true", help="no LoRA adapter on the language model")
    args = parser.parse_args()
    start = time.perf_counter()
    path = make_tiny_checkpoint(args.out, seed=args.seed, lora=not args.no_lora)
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
