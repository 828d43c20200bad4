"""Many inputs in one call: files, folders walked for media, or a dataset JSONL with spans.

``emoreason explain PATH... --out reports.jsonl`` writes one JSON line per input: the report, or an error row that
names the file and the one-line reason (a corrupt file does not stop the run). Each row is keyed by the input's
content hash, its span and the settings that shape the report, so a rerun skips what is done (a renamed file is
not analysed again; another backend or ``--fps`` is a new row), and a killed run loses nothing it had written
(:class:`~emoreason.data.jsonl.ResumableWriter`: rows go to ``OUT.partial``, synced one by one; the torn last line
of a killed write is dropped; the file gets its final name when the run completes).

The inputs run on :mod:`emoreason.scale`'s engine: Ray workers that load the face models (and the backend) once
each, locally or on a cluster, or one after another in this process. :class:`ExplainWork` and
:class:`AnalyzeWork` are the per-input work of ``explain`` and ``analyze``.
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
    duplicates: int = 0  # the same content, span and settings as another input of this call: one row for both
    seconds: float = 0.0
    engine: Any = None  # the engine that ran them (its workers, the workers it replaced)

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.errors} error{'s' if self.errors != 1 else ''}"]
        if self.skipped:
            parts.append(f"{self.skipped} already done (skipped)")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate{'s' if self.duplicates != 1 else ''} of another input")
        return ", ".join(parts) + f" in {self.seconds:.1f} s"


@dataclass
class RowTask:
    """An engine's task: ``work(item, key)`` made into the item's row; its expected errors become error rows (with
    their message), anything else too (with its type, and logged with its traceback)."""

    work: Any
    expected_errors: tuple[type[BaseException], ...] = ()

    def setup(self, index: int) -> None:
        setup = getattr(self.work, "setup", None)
        if setup is not None:
            setup(index)

    def __call__(self, pair: tuple[str, Item]) -> dict[str, Any]:
        key, item = pair
        row = _row_head(key, item)
        try:
            return row | {"ok": True, **self.work(item, key)}
        except self.expected_errors as exc:
            return row | {"ok": False, "error": _one_line(str(exc))}
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop a corpus run
            logger.warning("%s: unexpected %s", item.name, type(exc).__name__, exc_info=True)
            return row | {"ok": False, "error": _one_line(f"{type(exc).__name__}: {exc}")}


def _row_head(key: str, item: Item) -> dict[str, Any]:
    row: dict[str, Any] = {"id": key, "input": str(item.path), "span": item.span}
    if item.id is not None:
        row["sample_id"] = item.id
    return row


def run_batch(
    items: list[Item],
    work: Callable[[Item, str], dict[str, Any]],
    out: str | Path,
    settings: dict[str, Any],
    progress: bool | None = None,
    expected_errors: tuple[type[BaseException], ...] = (),
    engine_for: Callable[[int], Any] | None = None,
) -> BatchResult:
    """Run ``work`` on each item not yet in ``out`` and append its row as it finishes.

    ``work(item, key)`` returns the row's payload (``{"report": ...}``). ``engine_for(n)`` gives the engine for the
    ``n`` inputs left to do (:mod:`emoreason.scale`; default: this process); with a parallel one ``work`` must pickle, and its ``setup(worker_index)``, if it has one, loads its models once
    per worker. An exception becomes an error row (``{"ok": false, "error": "..."}``): ``expected_errors``
    (unusable media, a span that does not fit) with their message, anything else with its type too; a worker that
    crashed or hung on an input fails that input's row alone. Every row carries ``id`` (the key), ``input`` (the
    path as given or resolved from the dataset), ``span``, ``ok`` and, for a dataset row, ``sample_id``. Rows are
    written in the order inputs finish.
    """
    from tqdm import tqdm

    from emoreason.data.jsonl import ResumableWriter
    from emoreason.scale import Failure, SequentialEngine

    started, result = time.perf_counter(), BatchResult()
    keyed = [(item_key(item, settings), item) for item in items]
    with ResumableWriter(out, sync_every=1) as writer:
        todo, seen = [], set()
        for key, item in keyed:  # the same file twice in one call is one row
            if key in writer.done:
                result.skipped += 1
            elif key in seen:
                result.duplicates += 1
            else:
                seen.add(key)
                todo.append((key, item))
        engine = engine_for(len(todo)) if engine_for is not None else SequentialEngine()
        result.engine = engine
        show = sys.stderr.isatty() if progress is None else progress
        bar = tqdm(total=len(todo), desc="inputs", unit="input", file=sys.stderr, disable=not show, leave=False)
        for index, value in engine.map(RowTask(work, expected_errors), todo):
            if isinstance(value, Failure):
                value = _row_head(*todo[index]) | {"ok": False, "error": value.error}
            result.done += value["ok"]
            result.errors += not value["ok"]
            writer.write(value)
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


@dataclass
class ExplainWork:
    """``explain``'s work per input: collect the evidence, explain it, optionally spot micro-expressions and write
    the HTML report. ``setup`` builds the backend (a checkpoint loads once per worker) and the face models; with
    several vLLM servers each worker starts at another one and turns through them input by input."""

    backend: str
    sampling: Any  # emoreason.face.evidence.Sampling
    detector: str = "blazeface"
    model: str | None = None
    servers: tuple[str, ...] = ()
    api_key: str | None = None
    micro: bool = False
    html_dir: Path | None = None

    def setup(self, index: int = 0) -> None:
        from emoreason.backends import get_backend
        from emoreason.face.analyzer import FaceAnalyzer

        servers = self.servers[index % len(self.servers):] + self.servers[: index % len(self.servers)] \
            if self.servers else (None,)  # fmt: skip
        self._backends = [get_backend(self.backend, model=self.model, server=s, api_key=self.api_key) for s in servers]
        self._calls = 0
        self._analyzer = FaceAnalyzer(fps=self.sampling.fps, max_frames=self.sampling.max_frames,
                                      max_side=self.sampling.max_side, detector=self.detector)  # fmt: skip

    def __call__(self, item: Item, key: str) -> dict[str, Any]:
        from emoreason.face.evidence import collect

        if not hasattr(self, "_backends"):
            self.setup()
        backend = self._backends[self._calls % len(self._backends)]
        self._calls += 1
        evidence = collect(item.path, span=item.span, sampling=backend.sampling(self.sampling), analyzer=self._analyzer)
        report = backend.explain(evidence)
        if self.micro:
            from emoreason.explain import with_micro

            report = with_micro(report, max_side=self.sampling.max_side)
        row: dict[str, Any] = {"report": report.to_dict()}
        if self.html_dir is not None:
            from emoreason.viz.html import save_html

            row["html"] = str(save_html(report, self.html_dir / html_name(item, key)))
        return row

    def __getstate__(self) -> dict:  # the loaded models stay with the worker that built them
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class AnalyzeWork:
    """``analyze``'s work per input: the per-frame table, written as a CSV into ``out``."""

    sampling: Any
    out: Path
    detector: str = "blazeface"

    def setup(self, index: int = 0) -> None:
        from emoreason.face.analyzer import FaceAnalyzer

        self._analyzer = FaceAnalyzer(fps=self.sampling.fps, max_frames=self.sampling.max_frames,
                                      max_side=self.sampling.max_side, detector=self.detector)  # fmt: skip

    def __call__(self, item: Item, key: str) -> dict[str, Any]:
        from emoreason.face.evidence import collect

        if not hasattr(self, "_analyzer"):
            self.setup()
        analysis = collect(item.path, span=item.span, sampling=self.sampling, analyzer=self._analyzer).analysis
        table = self.out / html_name(item, key).replace(".html", ".csv")
        analysis.table.to_csv(table, index=False)
        return {"table": table.name, "frames_analyzed": analysis.frames_analyzed,
                "faces_found": analysis.faces_found}  # fmt: skip

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


__all__ = [
    "AnalyzeWork",
    "BatchResult",
    "ExplainWork",
    "Item",
    "RowTask",
    "expand_inputs",
    "html_name",
    "is_batch",
    "item_key",
    "run_batch",
    "settings_of",
]
