"""``emoreason data build``: run a corpus adapter and write its samples as JSON lines (atomically).

A release that holds several benchmarks (RAF-DB basic and compound, MAFW single and compound) can be built one
subset at a time: their label spaces differ, and so do the published protocols scored on them.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from emoreason.data import DataError
from emoreason.data.adapters import ADAPTERS, adapter_subsets, get_adapter
from emoreason.data.jsonl import ResumableWriter


def build_dataset(name: str, root: str | Path, out: str | Path, subset: str | None = None) -> dict:
    """Samples of corpus ``name`` under ``root`` -> ``out``; returns counts per split and per label space.

    Args:
        name: the corpus, e.g. ``"dfew"`` (see :data:`emoreason.data.adapters.ADAPTERS`).
        root: the corpus's root folder.
        out: the ``.jsonl`` to write (replaced when the build finishes).
        subset: one of the corpus's subsets (``adapter_subsets(name)``); None: the adapter's default.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        DataError: unknown corpus or subset, or a malformed annotation file (the message names it).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root is not a directory")
    read = get_adapter(name)
    if subset is not None:
        choices = adapter_subsets(name)
        if not choices:
            having = ", ".join(n for n in sorted(ADAPTERS) if adapter_subsets(n))
            raise DataError(f"dataset {name!r} has no subsets to choose from (only {having} have)")
        if subset not in choices:
            raise DataError(f"unknown {name} subset {subset!r}; choose one of {', '.join(choices)}")
    samples = read(root) if subset is None else read(root, subset=subset)
    splits: Counter = Counter()
    spaces: Counter = Counter()
    # adapters give media relative to the corpus root; readers resolve them relative to the .jsonl's folder
    base = Path(out).resolve().parent
    with ResumableWriter(out, overwrite=True) as writer:
        for sample in samples:
            row = sample.to_dict()
            if row.get("media") and not Path(row["media"]).is_absolute():
                row["media"] = os.path.relpath((root / row["media"]).resolve(), base)
            if writer.write(row):
                splits[str(sample.split)] += 1
                spaces[sample.label_space] += 1
    return {"dataset": name, "subset": subset, "rows": sum(splits.values()), "splits": dict(splits),
            "label_spaces": dict(spaces), "out": str(out)}  # fmt: skip
