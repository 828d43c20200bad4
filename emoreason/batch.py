"""Many inputs in one call: files, folders walked for media, or a dataset JSONL with spans.

``emoreason explain PATH... --out reports.jsonl`` writes one JSON line per input: the report, or an error row that
names the file and the one-line reason (a corrupt file does not stop the run). Each row is keyed by the input's
content hash, its span and the settings that shape the report, so a rerun skips what is done (a renamed file is
not analysed again; another backend or ``--fps`` is a new row), and a killed run loses nothing it had written
(:class:`~emoreason.data.jsonl.ResumableWriter`: rows go to ``OUT.partial``, synced one by one; the torn last line
of a killed write is dropped; the file gets its final name when the run completes).

The inputs run one after another in this process; the work per input is a function of the input alone, so a
parallel engine can map it over the same items.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoreason.constants import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)

MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Item:
    """One input: a media file, the span of it to read (None: all of it) and the id a dataset row gave it."""

    path: Path
    span: tuple[float | None, float | None] | None = None
    id: str | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.span is None else f"{self.path} [{_span_text(self.span)}]"


def _span_text(span) -> str:
    start, end = span
    return f"{'' if start is None else f'{start:g}'}-{'' if end is None else f'{end:g}'} s"


def is_batch(paths: list[str], out) -> bool:
    """Whether a command's inputs need the batch mode: several, a folder, a dataset JSONL, or ``--out`` given."""
    return out is not None or len(paths) != 1 or Path(paths[0]).is_dir() or paths[0].endswith(".jsonl")


def expand_inputs(paths: Iterable[str | Path], span=None) -> list[Item]:
    """The items behind command-line ``paths``: a file as it is (a missing one becomes an item whose row is an
    error), a folder's media files (recursively, sorted; other files ignored), a ``.jsonl`` dataset's rows
    (``media`` relative to the file, ``start_s``/``end_s`` as the span, ``id``). ``span`` applies to plain files.
    Raises DataError for a dataset line that is not valid JSON or has no ``media``."""
    from emoreason.data import DataError
    from emoreason.data.jsonl import read_jsonl

    items: list[Item] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
            if not found:
                logger.warning("%s: no media files (%s)", path, ", ".join(MEDIA_EXTENSIONS))
            items += [Item(p, span) for p in found]
        elif path.suffix.lower() == ".jsonl" and path.is_file():
            base = path.resolve().parent
            for number, row in enumerate(read_jsonl(path), 1):
                media = row.get("media")
                if not isinstance(media, str) or not media:
                    raise DataError(f"{path}:{number}: a dataset row needs a 'media' path")
                start, end = row.get("start_s"), row.get("end_s")
                media_path = Path(media) if Path(media).is_absolute() else base / media
                items.append(Item(media_path, None if start is None and end is None else (start, end), row.get("id")))
        else:
            items.append(Item(path, span))
    return items


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-1 of a file's bytes (streamed)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def item_key(item: Item, settings: dict[str, Any]) -> str:
    """The row key: the content, the span and the settings; a file that cannot be read keys on its path (its error
    row then does not stop a fixed file, whose content is new, from being analysed on the next run)."""
    try:
        content = content_hash(item.path)
    except OSError:
        content = f"unreadable:{item.path}"
    blob = json.dumps({"content": content, "span": item.span, "settings": settings}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


@dataclass
class BatchResult:
    done: int = 0
    errors: int = 0
    skipped: int = 0  # already in the output from an earlier run
    seconds: float = 0.0

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.errors} error{'s' if self.errors != 1 else ''}"]
        if self.skipped:
            parts.append(f"{self.skipped} already done (skipped)")
        return ", ".join(parts) + f" in {self.seconds:.1f} s"


def run_batch(
    items: list[Item],
    work: Callable[[Item, str], dict[str, Any]],
    out: str | Path,
    settings: dict[str, Any],
    progress: bool | None = None,
    expected_errors: tuple[type[BaseException], ...] = (),
) -> BatchResult:
    """Run ``work`` on each item not yet in ``out`` and append its row.

    ``work(item, key)`` returns the row's payload (``{"report": ...}``); an exception becomes an error row
    (``{"ok": false, "error": "..."}``): ``expected_errors`` (unusable media, a span that does not fit) with their
    message, anything else with its type too, and logged with its traceback. Every row carries ``id`` (the key),
    ``input`` (the path as given or resolved from the dataset), ``span``, ``ok`` and, for a dataset row,
    ``sample_id``.
    """
    from tqdm import tqdm

    from emoreason.data.jsonl import ResumableWriter

    started, result = time.perf_counter(), BatchResult()
    keyed = [(item_key(item, settings), item) for item in items]
    with ResumableWriter(out, sync_every=1) as writer:
        todo = [(key, item) for key, item in keyed if key not in writer.done]
        result.skipped = len(keyed) - len(todo)
        show = sys.stderr.isatty() if progress is None else progress
        bar = tqdm(total=len(todo), desc="inputs", unit="input", file=sys.stderr, disable=not show, leave=False)
        for key, item in todo:
            row: dict[str, Any] = {"id": key, "input": str(item.path), "span": item.span}
            if item.id is not None:
                row["sample_id"] = item.id
            try:
                row |= {"ok": True, **work(item, key)}
                result.done += 1
            except expected_errors as exc:
                row |= {"ok": False, "error": _one_line(str(exc))}
                result.errors += 1
            except Exception as exc:  # noqa: BLE001 - one bad input must not stop a corpus run
                logger.warning("%s: unexpected %s", item.name, type(exc).__name__, exc_info=True)
                row |= {"ok": False, "error": _one_line(f"{type(exc).__name__}: {exc}")}
                result.errors += 1
            writer.write(row)
            bar.update(1)
        bar.close()
    result.seconds = time.perf_counter() - started
    return result


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500] or "failed"


def html_name(item: Item, key: str) -> str:
    """File name of an input's HTML report: its stem and the row key's start (unique per input and settings)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.path.stem)[:60]
    return f"{stem}-{key[:8]}.html"


def settings_of(**values: Any) -> dict[str, Any]:
    """The settings that shape a row; ``Path`` values are made absolute."""
    return {k: (os.path.abspath(v) if isinstance(v, Path) else v) for k, v in values.items()}


__all__ = ["BatchResult", "Item", "expand_inputs", "html_name", "is_batch", "item_key", "run_batch", "settings_of"]
