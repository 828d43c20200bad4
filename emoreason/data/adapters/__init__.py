"""Dataset adapters: each reads one corpus's published annotation format into :class:`Sample` rows.

Every adapter module defines ``read(root: Path) -> Iterator[Sample]`` and raises
:class:`DatasetFormatError` (naming the file and line) on a malformed annotation file. A corpus whose release
holds several benchmarks (RAF-DB basic and compound, MAFW single and compound) lists them in ``SUBSET_NAMES``
and its ``read`` takes ``subset=`` to read one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

from emoreason.data import DataError
from emoreason.data.schema import Sample

# corpus name -> module in this package
ADAPTERS: dict[str, str] = {
    "dfew": "dfew",
    "mafw": "mafw",
    "ferv39k": "ferv39k",
    "rafdb": "rafdb",
    "affectnet": "affectnet",
    "bp4d": "bp4d",
    "disfa": "disfa",
    "casme2": "casme2",
    "emer": "emer",
}


class DatasetFormatError(DataError):
    """An annotation file does not follow its corpus's format; the message names the file and line."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line = str(path), line


def csv_rows(path: Path, header: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(1-based line, row) of a CSV file, skipping blank rows and a first row starting with ``header``."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        for row in reader:
            line = reader.line_num
            if not "".join(row).strip():
                continue
            if line == 1 and header is not None and row[0].strip().lower() == header.lower():
                continue
            yield line, row


def _module(name: str):
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ADAPTERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return importlib.import_module(f"{__name__}.{ADAPTERS[key]}")


def get_adapter(name: str) -> Callable[..., Iterator[Sample]]:
    """The ``read(root, ...)`` function of corpus ``name`` (DataError naming the known ones if unknown)."""
    return _module(name).read


def adapter_subsets(name: str) -> tuple[str, ...]:
    """The subsets ``read(root, subset=...)`` of corpus ``name`` takes; ``()`` when it reads one benchmark."""
    return tuple(getattr(_module(name), "SUBSET_NAMES", ()))
