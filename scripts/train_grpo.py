"""GRPO training entry script, for `accelerate launch` (multi-process) and plain `python` alike.

    accelerate launch --config_file scripts/recipes/accelerate/ddp.yaml scripts/train_grpo.py \
        --config scripts/recipes/toyfaces/grpo.yaml [--field value ...]

Same recipe and overrides as `emoreason train grpo`; every process runs this script, rank 0 writes the final
checkpoint. A run killed mid-way resumes from its last checkpoint.
"""

import sys

from emoreason.data import DataError
from emoreason.train.grpo import run_grpo


def main() -> int:
    try:
        final = run_grpo(sys.argv[1:])
    except (DataError, OSError) as exc:  # a recipe mistake: one line, no traceback
        print(f"train_grpo: error: {exc}", file=sys.stderr)
        return 2
    print(f"trained checkpoint written to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
