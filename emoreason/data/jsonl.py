"""JSON-lines files that survive being killed: atomic on completion, resumable before it.

A writer appends complete lines to ``<out>.partial`` (flushed and fsynced every ``sync_every`` rows) and
renames it to ``<out>`` only when the run finishes, so ``<out>`` is never half-written. A run that was
killed leaves ``<out>.partial``; the next run drops its torn last line, skips every id already in it and
continues: no sample is lost or written twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emoreason.data import DataError


class JsonlError(DataError):
    """A JSON-lines file has a bad line; the message names the file and the 1-based line."""


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file; blank lines are skipped; a bad line raises JsonlError (file:line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise JsonlError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield row


def read_samples(path: str | Path):
    """:class:`Sample` rows of a JSON-lines file; relative media paths are taken relative to the file's folder."""
    from emoreason.data.schema import Sample

    base = Path(path).resolve().parent
    for row in read_jsonl(path):
        sample = Sample.from_dict(row)
        if not Path(sample.media).is_absolute():
            sample.media = str(base / sample.media)  # the id stays that of the row as written
        yield sample


class ResumableWriter:
    """Append rows keyed by ``id``; ``done`` holds the ids already written (from an earlier, killed run).

    >>> with ResumableWriter("out.jsonl") as out:       # doctest: +SKIP
    ...     for row in rows:
    ...         if row["id"] not in out.done:
    ...             out.write(row)
    """

    def __init__(self, path: str | Path, sync_every: int = 32, overwrite: bool = False):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.sync_every = sync_every
        self.done: set[str] = set()
        self.written = 0
        if overwrite:
            self.partial.unlink(missing_ok=True)
        elif self.path.exists() and not self.partial.exists():
            # a finished run: continue from its rows (for example to add a round)
            os.replace(self.path, self.partial)
        self._recover()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.partial, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _recover(self) -> None:
        if not self.partial.exists():
            return
        data = self.partial.read_bytes()
        cut = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if cut < len(data):
            with open(self.partial, "r+b") as handle:
                handle.truncate(cut)
        for line in data[:cut].decode("utf-8").splitlines():
            if line.strip():
                self.done.add(json.loads(line)["id"])

    def write(self, row: dict[str, Any]) -> bool:
        """Write ``row`` unless its id is already there; returns whether it was written."""
        if row["id"] in self.done:
            return False
        self._handle.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        self.done.add(row["id"])
        self.written += 1
        if self.written % self.sync_every == 0:
            self._sync()
        return True

    def _sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self, complete: bool = True) -> None:
        """Flush; when ``complete``, publish the file under its final name (atomic rename)."""
        if self._handle.closed:
            return
        self._sync()
        self._handle.close()
        if complete:
            os.replace(self.partial, self.path)

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)
