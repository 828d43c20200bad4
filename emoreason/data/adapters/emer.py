"""EMER / OV-MERD adapter: free-text multimodal emotion explanations and open-vocabulary emotion labels.

Corpus: Lian et al., "Explainable Multimodal Emotion Reasoning" (EMER, arXiv:2306.15401) and its successor OV-MERD
("OV-MER: Towards Open-Vocabulary Multimodal Emotion Recognition", Lian et al., 2025), built on MER2023 clips.

Format (AffectGPT's ``EMER/README.md`` and the MER2025 loaders in zeroQiaoba/MERTools): CSV files in ``root``,
told apart by their header::

    track3_train_ovmerd.csv   name,reason                        OV-MERD descriptions
    track2_train_ovmerd.csv   name,openset                       OV-MERD labels, "['happy', 'excited']"
    gt-eng.csv                names,emotions,subtitles,reasons   EMER-V1 (emotions: the MER2023 label)
    final-EMER-reason.csv     names,chinese,english              EMER-V2 ("english" read as the description)
    video/<name>.mp4          the clips (.avi accepted where only that exists; neither needs to exist)

A file with a name column and a description column (reason, reasons, description; "english" only in a file named
``*reason*``) gives one Sample per row. A file with a name and a label column (openset, emotions) but no
description adds its labels to the rows of the same name; its other names become label-only Samples. Other CSVs
(subtitles, candidate lists) are ignored. Labels are lower-cased and deduplicated; an empty label list means
neutral, as in MERTools. ``emotion`` is set when the labels map to exactly one canonical emotion.

Confidence: high for OV-MERD's name/reason/openset columns; medium for the EMER-V1 and V2 column names.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from emoreason.au import normalize_emotion
from emoreason.data.adapters import DatasetFormatError
from emoreason.data.schema import Sample

logger = logging.getLogger(__name__)

NAME = "emer"
VIDEO_DIR = "video"
NAME_COLUMNS = ("name", "names")
TEXT_COLUMNS = ("reason", "reasons", "description")
LABEL_COLUMNS = ("openset", "emotions")
Roles = tuple[int, int | None, int | None, int]  # name, description and label column; column count
Row = tuple[int, str, str | None, list[str] | None]  # line, name, description, labels


def read(root: Path) -> Iterator[Sample]:
    """Yield one :class:`Sample` per described clip, then one per clip that only has labels.

    Args:
        root: the folder holding the annotation CSVs and ``video/``.

    Raises:
        DatasetFormatError: no annotation CSV, or a malformed one (the message names the file and line).
    """
    root = Path(root)
    described, labelled = [], []
    for path in sorted(root.glob("*.csv")):
        roles = _roles(path)
        if roles is not None:
            (labelled if roles[1] is None else described).append((path, roles))
    if not described and not labelled:
        raise DatasetFormatError(root, None, "no EMER annotation CSV (columns name + reason/description or openset)")
    labels: dict[str, tuple[list[str], str, int]] = {}
    for path, roles in labelled:
        for line, name, _, words in _rows(path, roles):
            labels.setdefault(name, (words or [], path.relative_to(root).as_posix(), line))
    seen: set[str] = set()
    for path, roles in described:
        for line, name, text, words in _rows(path, roles):
            if name in seen:
                logger.warning("%s:%d: %s is described twice; keeping the first", path, line, name)
                continue
            seen.add(name)
            provenance = {"adapter": NAME, "file": path.relative_to(root).as_posix(), "line": line}
            extra = labels.pop(name, None)
            if words is None and extra is not None:
                words, provenance["labels_file"], provenance["labels_line"] = extra
            yield _sample(root, name, text, words or [], provenance)
    for name, (words, file, line) in labels.items():
        yield _sample(root, name, None, words, {"adapter": NAME, "file": file, "line": line})


def parse_open_labels(text: str) -> list[str]:
    """``"['Happy', 'excited']"`` or ``"happy, excited"`` -> ``["happy", "excited"]``; empty -> ``["neutral"]``."""
    words = [" ".join(w.lower().split()) for w in re.split(r"[\[\]'\",;，]", text)]
    unique = list(dict.fromkeys(w for w in words if w))
    return unique or ["neutral"]


def _roles(path: Path) -> Roles | None:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = [name.strip().lower() for name in next(csv.reader(handle), [])]
    text_columns = TEXT_COLUMNS + (("english",) if "reason" in path.stem.lower() else ())
    name, text, label = (_column(header, names) for names in (NAME_COLUMNS, text_columns, LABEL_COLUMNS))
    if name is None or (text is None and label is None):
        logger.debug("%s: not an EMER annotation file (header %s); skipped", path, header)
        return None
    return name, text, label, len(header)


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((header.index(name) for name in names if name in header), None)


def _rows(path: Path, roles: Roles) -> Iterator[Row]:
    name_at, text_at, label_at, width = roles
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader)
        end = reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num  # a quoted description may span lines; report where it starts
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != width:
                raise DatasetFormatError(path, line, f"{len(row)} columns, but the header has {width}")
            name = row[name_at].strip()
            if not name:
                raise DatasetFormatError(path, line, "empty clip name")
            text = row[text_at].strip() or None if text_at is not None else None
            yield line, name, text, None if label_at is None else parse_open_labels(row[label_at])


def _sample(root: Path, name: str, text: str | None, words: list[str], provenance: dict) -> Sample:
    media = f"{VIDEO_DIR}/{name}.mp4"
    if not (root / media).exists() and (root / VIDEO_DIR / f"{name}.avi").exists():
        media = f"{VIDEO_DIR}/{name}.avi"
    canonical = {normalize_emotion(word) for word in words} - {None}
    return Sample(
        dataset=NAME,
        media=media,
        media_type="video",
        labels=words,
        label_space="open",
        emotion=canonical.pop() if len(canonical) == 1 else None,
        description=text,
        provenance=provenance,
    )
