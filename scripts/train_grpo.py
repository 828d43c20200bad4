"""GRPO training entry script, for `accelerate launch` (multi-process) and plain `python` alike.

    accelerate launch --config_file scripts/recipes/accelerate/ddp.yaml scripts/train_grpo.py \
        --config scripts/recipes/toyfaces/grpo.yaml [--field value ...]

Same recipe and overrides as `emoreason train grpo`; every process runs this script, rank 0 writes the final
checkpoint. A run killed mid-way resumes from its last checkpoint.
"""

import sys

from emoreason.train.grpo import run_grpo
from emoreason.train.stage import script_main

if __name__ == "__main__":
    sys.exit(script_main(run_grpo, "train_grpo"))
