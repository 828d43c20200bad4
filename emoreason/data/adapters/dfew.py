"""DFEW adapter: the 5-fold single-label split lists of the Dynamic Facial Expressions in the Wild corpus.

Corpus: Jiang et al., "DFEW: A Large-Scale Database for Recognizing Dynamic Facial Expressions in the Wild",
ACM Multimedia 2020. 16,372 movie clips; the 12,059 clips with a single majority label come with a 5-fold split.

Format (the release layout, as read by the DFEW baselines, DFER-CLIP and MAE-DFER; the release README itself is
only handed out with the data)::

    EmoLabel_DataSplit/test(single-labeled)/set_{1..5}.csv   header "video_name,label", rows like "27,4"
    EmoLabel_DataSplit/train(single-labeled)/set_{1..5}.csv  the complement of each test list (not read)
    Clip/original/<video_name>.mp4                            the clips

Labels: 1 happy, 2 sad, 3 neutral, 4 angry, 5 surprise, 6 disgust, 7 fear. The five test lists partition the
clips, so each clip is read once from the test list of its fold and gets ``split="fold<k>"``; fold k's training set
is every other fold. A clip listed in two test lists is a format error.

Uncertain: some copies rename the folders ``train``/``test`` (accepted), and some keep the clips in
``Clip/original/part_<n>/`` or zero-pad their names; ``media`` is always written as ``Clip/original/<n>.mp4``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from emoreason.data.adapters import DatasetFormatError, csv_rows
from emoreason.data.schema import Sample

FOLDS = 5
LABELS = {1: "happiness", 2: "sadness", 3: "neutral", 4: "anger", 5: "surprise", 6: "disgust", 7: "fear"}
_TEST_DIRS = ("test(single-labeled)", "test")


def read(root: Path) -> Iterator[Sample]:
    """Yield one :class:`Sample` per single-labelled DFEW clip, in fold order.

    Args:
        root: the DFEW folder holding ``EmoLabel_DataSplit``.

    Raises:
        DatasetFormatError: a split list is missing or malformed (the message names the file and line).
    """
    root = Path(root)
    seen: dict[int, str] = {}  # clip number -> test list it was read from
    for fold in range(1, FOLDS + 1):
        yield from _read_fold(root, fold, seen)


def _fold_file(root: Path, fold: int) -> Path:
    candidates = [root / "EmoLabel_DataSplit" / folder / f"set_{fold}.csv" for folder in _TEST_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetFormatError(
        candidates[0], None, "missing DFEW test split list; point the adapter at the folder holding EmoLabel_DataSplit"
    )


def _read_fold(root: Path, fold: int, seen: dict[int, str]) -> Iterator[Sample]:
    path = _fold_file(root, fold)
    rel = path.relative_to(root).as_posix()
    for line, row in csv_rows(path, header="video_name"):
        if len(row) != 2:
            raise DatasetFormatError(path, line, f"expected 2 columns (video_name,label), got {len(row)}")
        name, label = (cell.strip() for cell in row)
        if not name.isdigit():
            raise DatasetFormatError(path, line, f"video_name must be a clip number, got {name!r}")
        if not label.isdigit() or int(label) not in LABELS:
            raise DatasetFormatError(path, line, f"unknown label {label!r}; DFEW labels are 1-7")
        clip = int(name)
        if clip in seen:
            raise DatasetFormatError(path, line, f"clip {clip} is also in the test list {seen[clip]}")
        seen[clip] = rel
        yield Sample(
            dataset="dfew",
            media=f"Clip/original/{clip}.mp4",
            media_type="video",
            labels=[LABELS[int(label)]],
            label_space="basic",
            split=f"fold{fold}",
            provenance={"adapter": "dfew", "file": rel, "line": line},
        )
