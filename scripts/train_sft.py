"""SFT training entry script, for `accelerate launch` (multi-process) and plain `python` alike.

    accelerate launch --config_file scripts/recipes/accelerate/ddp.yaml scripts/train_sft.py \
        --config scripts/recipes/toyfaces/sft.yaml [--field value ...]

Same recipe and overrides as `emoreason train sft`; rank 0 writes the final checkpoint.
"""

import sys

from emoreason.data import DataError
from emoreason.train.sft import run_sft


def main() -> int:
    try:
        final = run_sft(sys.argv[1:])
    except (DataError, OSError) as exc:  # a recipe mistake: one line, no traceback
        print(f"train_sft: error: {exc}", file=sys.stderr)
        return 2
    print(f"trained checkpoint written to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
