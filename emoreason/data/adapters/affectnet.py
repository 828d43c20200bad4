"""AffectNet adapter: the manually annotated training and validation lists of AffectNet.

Corpus: Mollahosseini, Hasani & Mahoor, "AffectNet: A Database for Facial Expression, Valence, and Arousal Computing
in the Wild", IEEE Transactions on Affective Computing 2017 (mohammadmahoor.com/affectnet). About 420,000 manually
annotated web images; the test set was never released, so the validation list serves as test in most papers.

Format (the release's ``Manually_Annotated_file_lists``, as read by most AffectNet loaders)::

    Manually_Annotated_file_lists/training.csv     header row, then one image per row
    Manually_Annotated_file_lists/validation.csv   same columns; the release ships it without the header row
    Manually_Annotated_Images/<subDirectory_filePath>

Columns: subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks (68 ``x;y`` pairs joined
by ``;``), expression, valence, arousal. Expression: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust,
6 Anger, 7 Contempt (label space ``"basic"``); 8 None, 9 Uncertain and 10 No-Face carry no emotion and are skipped
and counted (logged once per list). The face box, landmarks, valence and arousal are checked but not kept: the
sample schema has no field for them. The automatically annotated lists and the 2020+ ``.npy`` release are not read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from emoreason.data.adapters import DatasetFormatError, csv_rows
from emoreason.data.schema import Sample

logger = logging.getLogger(__name__)

COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
EXPRESSIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
SKIPPED = {8: "none", 9: "uncertain", 10: "no-face"}
LISTS = (
    ("train", "Manually_Annotated_file_lists/training.csv"),
    ("validation", "Manually_Annotated_file_lists/validation.csv"),
)
_NUMERIC = (1, 2, 3, 4, 7, 8)  # column indices that must parse as numbers


def read(root: Path) -> Iterator[Sample]:
    """Yield one :class:`Sample` per emotion-labelled image, training list first.

    Args:
        root: the AffectNet folder holding ``Manually_Annotated_file_lists``.

    Raises:
        DatasetFormatError: a list is missing or malformed (the message names the file and line).
    """
    root = Path(root)
    for _, rel in LISTS:  # both lists must be there before any row is yielded
        if not (root / rel).is_file():
            raise DatasetFormatError(
                root / rel, None, "missing AffectNet list; point the adapter at the AffectNet root"
            )
    for split, rel in LISTS:
        yield from _read_list(root / rel, rel, split)


def _read_list(path: Path, rel: str, split: str) -> Iterator[Sample]:
    skipped: Counter[str] = Counter()
    for line, row in csv_rows(path, header=COLUMNS[0]):
        expression = _check(path, line, row)
        if expression in SKIPPED:
            skipped[SKIPPED[expression]] += 1
            continue
        yield Sample(
            dataset="affectnet",
            media=f"Manually_Annotated_Images/{row[0].strip()}",
            media_type="image",
            labels=[EXPRESSIONS[expression]],
            label_space="basic",
            split=split,
            provenance={"adapter": "affectnet", "file": rel, "line": line},
        )
    if skipped:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(skipped.items()))
        logger.info("affectnet: skipped %d rows of %s without an emotion (%s)", sum(skipped.values()), rel, counts)


def _check(path: Path, line: int, row: list[str]) -> int:
    """Validate one row and return its expression id."""
    if len(row) != len(COLUMNS):
        raise DatasetFormatError(path, line, f"expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), got {len(row)}")
    for index in _NUMERIC:
        try:
            float(row[index])
        except ValueError:
            raise DatasetFormatError(path, line, f"{COLUMNS[index]} must be a number, got {row[index]!r}") from None
    expression = row[6].strip()
    if not expression.isdigit() or not 0 <= int(expression) <= 10:
        raise DatasetFormatError(path, line, f"unknown expression {expression!r}; AffectNet expressions are 0-10")
    return int(expression)
