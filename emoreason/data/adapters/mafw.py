"""MAFW adapter: the 5-fold split lists of the MAFW corpus, with its bilingual descriptions.

Corpus: Liu et al., "MAFW: A Large-scale, Multi-modal, Compound Affective Database for Dynamic Facial Expression
Recognition in the Wild", ACM Multimedia 2022 (github.com/MAFW-database/MAFW). 10,045 clips; 11 single classes
(label space ``"mafw"``), 32 compound classes, and a Chinese and English description per non-neutral clip.

Format (the release's ``Train & Test Set`` folder, as read by MAE-DFER and DFER-CLIP and inventoried in public
analyses of the release)::

    Train & Test Set/single/no_caption/set_{1..5}/test.txt     "00025.mp4 anger"
    Train & Test Set/single/with_caption/set_{1..5}/test.txt   "00025.mp4<TAB>anger<TAB><Chinese><TAB><English>"
    Train & Test Set/compound/no_caption/set_{1..5}/test.txt   "00025.mp4 anger_disgust" (or one label)
    Train & Test Set/compound/with_caption/set_{1..5}/test.txt as single/with_caption
    data/clips/<clip>.mp4

``read`` yields the single-expression benchmark (9,172 clips), ``read(root, subset="compound")`` (or
``read_compound``) the compound one (8,996 clips, one label per emotion of the combination). The five test lists of a benchmark partition its clips, so each clip is read
once and gets ``split="fold<k>"``; the ``train.txt`` lists are the complements and are not read. The description is
the English caption of the matching ``with_caption`` test list.

Uncertain: the caption lists are not UTF-8 in every copy (GBK Chinese), so a line that is not UTF-8 is decoded as
GB18030; the caption lists are optional (neutral clips have none in the release anyway). ``Labels/*.xlsx`` is not
read: the split lists carry the same labels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from emoreason.au import MAFW
from emoreason.data import DataError
from emoreason.data.adapters import DatasetFormatError
from emoreason.data.schema import Sample

logger = logging.getLogger(__name__)

FOLDS = 5
SPLIT_DIR = "Train & Test Set"
SUBSET_NAMES = ("single", "compound")  # the release's two benchmarks; `read` defaults to the single one


def read(root: Path, subset: str = "single") -> Iterator[Sample]:
    """Yield one benchmark of :data:`SUBSET_NAMES`: one sample per clip, labels in the ``"mafw"`` space.

    Raises:
        DataError: ``subset`` is not one of :data:`SUBSET_NAMES`.
        DatasetFormatError: a test list is missing or malformed (the message names the file and line).
    """
    if subset not in SUBSET_NAMES:
        raise DataError(f"unknown MAFW subset {subset!r}; choose one of {', '.join(SUBSET_NAMES)}")
    return _read(Path(root), subset)


def read_compound(root: Path) -> Iterator[Sample]:
    """Yield the compound benchmark: one sample per clip, one or more labels in the ``"mafw"`` space."""
    return _read(Path(root), "compound")


def _read(root: Path, subset: str) -> Iterator[Sample]:
    seen: dict[str, str] = {}  # clip -> test list it was read from
    for fold in range(1, FOLDS + 1):
        path = root / SPLIT_DIR / subset / "no_caption" / f"set_{fold}" / "test.txt"
        if not path.is_file():
            raise DatasetFormatError(path, None, f"missing MAFW {subset} test list; point the adapter at the MAFW root")
        rel = path.relative_to(root).as_posix()
        descriptions = _descriptions(root / SPLIT_DIR / subset / "with_caption" / f"set_{fold}" / "test.txt")
        for line, fields in _rows(path, None):
            if len(fields) != 2:
                raise DatasetFormatError(path, line, f"expected 2 fields (clip label), got {len(fields)}")
            clip, label = fields
            labels = _labels(path, line, label, compound=subset == "compound")
            if clip in seen:
                raise DatasetFormatError(path, line, f"clip {clip} is also in the test list {seen[clip]}")
            seen[clip] = rel
            yield Sample(
                dataset="mafw",
                media=f"data/clips/{clip}",
                media_type="video",
                labels=labels,
                label_space="mafw",
                description=descriptions.get(clip),
                split=f"fold{fold}",
                provenance={"adapter": "mafw", "file": rel, "line": line},
            )


def _labels(path: Path, line: int, text: str, compound: bool) -> list[str]:
    parts = text.lower().split("_") if compound else [text.lower()]
    unknown = [p for p in parts if p not in MAFW.labels]
    if unknown or len(set(parts)) != len(parts):
        raise DatasetFormatError(path, line, f"unknown MAFW label {text!r}; labels are {', '.join(MAFW.labels)}")
    return parts


def _descriptions(path: Path) -> dict[str, str]:
    """English caption per clip of one fold's caption list (about 1,600 rows), empty when the list is absent."""
    if not path.is_file():
        logger.info("mafw: no caption list %s; descriptions stay empty", path)
        return {}
    captions = {}
    for line, fields in _rows(path, "\t"):
        if len(fields) != 4:
            raise DatasetFormatError(path, line, f"expected 4 tab-separated fields, got {len(fields)}")
        if fields[3]:
            captions[fields[0]] = fields[3]
    return captions


def _rows(path: Path, sep: str | None) -> Iterator[tuple[int, list[str]]]:
    """Non-blank lines of a list file as (1-based line number, stripped fields)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = raw.decode("gb18030", errors="replace")
            text = text.strip("\r\n")
            if text.strip():
                yield number, [field.strip() for field in text.split(sep)]
