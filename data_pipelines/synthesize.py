"""Synthesise verified chain-of-thought targets for labelled samples (FACS reasoner or a teacher LLM).

    python data_pipelines/synthesize.py --in data/dfew.jsonl --out data/dfew_cot.jsonl [--variants 3]
    python data_pipelines/synthesize.py --in data/dfew.jsonl --out data/dfew_cot.jsonl \
        --teacher http://localhost:8000/v1 --model NAME

Same as `emoreason synth`. A killed run resumes where it stopped. Targets failing the training checks
(format, label agreement, FACS consistency) are dropped and counted; evaluation splits are never written.
"""

import sys

from emoreason.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
