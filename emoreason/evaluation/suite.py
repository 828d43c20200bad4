"""Evaluation suites: several benchmarks from one YAML file, one summary file.

Each run takes its corpus's published protocol unless it (or the suite's top level) sets ``split``; the summary
records which protocol every run used, since a 5-fold mean and one fold's score are not the same number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from emoreason.evaluation.protocols import EvaluationError
from emoreason.evaluation.runner import EvalConfig, evaluate, run_dir


def load_suite(path: str | Path) -> list[EvalConfig]:
    """``runs:`` (a list of EvalConfig fields) plus shared defaults at the top level (``out``, ``backend``, ...).

    Raises:
        FileNotFoundError: no such suite file.
        EvaluationError: the file has no ``runs:`` list, or a run's fields do not make an EvalConfig.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such suite file")
    suite = yaml.safe_load(path.read_text()) or {}
    runs = suite.pop("runs", None) if isinstance(suite, dict) else None
    if not isinstance(runs, list) or not runs:
        raise EvaluationError(f"{path}: expected a non-empty 'runs:' list")
    configs = []
    for i, run in enumerate(runs):
        try:
            configs.append(EvalConfig(**{**suite, **run}))
        except (TypeError, ValueError, FileNotFoundError) as exc:
            raise EvaluationError(f"{path}: runs[{i}]: {exc}") from exc
    return configs


def run_suite(path: str | Path, progress: Callable[[str], Callable] | None = None) -> Path:
    """Run every benchmark of a suite; write ``<out>/suite.json`` with each run's folder, protocol and metrics."""
    configs = load_suite(path)
    summary = {"suite": str(path), "runs": []}
    for config in configs:
        results = evaluate(config, progress(config.benchmark) if progress else None)
        summary["runs"].append({"benchmark": config.benchmark, "backend": config.backend, "folder": str(run_dir(config)),
                                "protocol": results["protocol"], "metrics": results["metrics"]})  # fmt: skip
    out = Path(configs[0].out) / "suite.json"
    out.write_text(json.dumps(summary, indent=2))
    return out
