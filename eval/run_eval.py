"""Evaluate a backend on a benchmark file, or a whole suite; results are resumable folders of JSON.

    python eval/run_eval.py --benchmark dfew --data data/dfew.jsonl [--backend hf --model ckpt]
    python eval/run_eval.py --config eval/configs/smoke.yaml
    python eval/run_eval.py report results/ --out report.md

Same as `emoreason eval`; the runner, metrics and reports live in emoreason/evaluation/ and emoreason/metrics.py.
"""

import sys

from emoreason.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
