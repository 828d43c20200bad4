"""SFT training entry script, for `accelerate launch` (multi-process) and plain `python` alike.

    accelerate launch --config_file scripts/recipes/accelerate/ddp.yaml scripts/train_sft.py \
        --config scripts/recipes/toyfaces/sft.yaml [--field value ...]

Same recipe and overrides as `emoreason train sft`; rank 0 writes the final checkpoint.
"""

import sys

from emoreason.train.sft import run_sft
from emoreason.train.stage import script_main

if __name__ == "__main__":
    sys.exit(script_main(run_sft, "train_sft"))
