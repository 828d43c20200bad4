"""Read a corpus's published annotation files into emoreason's sample schema (JSON lines).

    python data_pipelines/build_dataset.py --dataset dfew --root /data/DFEW --out data/dfew.jsonl

Same as `emoreason data build`; the adapters live in emoreason/data/adapters/.
"""

import argparse
import sys
from pathlib import Path

from emoreason.data.adapters import ADAPTERS
from emoreason.data.build import build_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(ADAPTERS))
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = build_dataset(args.dataset, args.root, args.out)
    print(f"{result['rows']} samples written to {result['out']} (splits: {result['splits']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
