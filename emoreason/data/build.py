"""``emoreason data build``: run a corpus adapter and write its samples as JSON lines (atomically)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from emoreason.data.adapters import get_adapter
from emoreason.data.jsonl import ResumableWriter


def build_dataset(name: str, root: str | Path, out: str | Path) -> dict:
    """Samples of corpus ``name`` under ``root`` -> ``out``; returns counts per split."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root is not a directory")
    read = get_adapter(name)
    splits: Counter = Counter()
    with ResumableWriter(out, overwrite=True) as writer:
        for sample in read(root):
            if writer.write(sample.to_dict()):
                splits[str(sample.split)] += 1
    return {"dataset": name, "rows": sum(splits.values()), "splits": dict(splits), "out": str(out)}
