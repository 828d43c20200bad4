"""RAF-DB adapter: the basic (7-class) and compound (11-class) label lists of the Real-world Affective Faces Database.

Corpus: Li, Deng & Du, "Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression Recognition in the
Wild", CVPR 2017 (whdeng.cn/RAF/model1.html). About 30,000 web images; a basic subset (15,339 images, 7 classes) and a
compound subset (3,954 images, 11 classes), each split into train and test.

Format (the release's README, as read by most RAF-DB loaders)::

    basic/EmoLabel/list_patition_label.txt      "train_00001.jpg 5"   (sic: "patition")
    basic/Image/original/train_00001.jpg
    compound/EmoLabel/list_patition_label.txt   "train_0001.jpg 1"
    compound/Image/original/train_0001.jpg

Basic labels: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral (label space ``"basic"``).
Compound labels 1-11: Happily Surprised, Happily Disgusted, Sadly Fearful, Sadly Angry, Sadly Surprised, Sadly
Disgusted, Fearfully Angry, Fearfully Surprised, Angrily Surprised, Angrily Disgusted, Disgustedly Surprised, which
is the order of :data:`emoreason.au.COMPOUND` (label space ``"compound"``). The split is the file name's prefix.

Either subset may be missing, not both; ``subset="basic"`` or ``"compound"`` reads one only (the published
RAF-DB results are on the basic test set, and the two subsets have different label spaces). A root that is itself the ``basic`` folder (``EmoLabel/`` directly under it,
a common re-packaging) is read as the basic subset. Uncertain: the compound list's exact file name is taken from
loaders, not from the release README.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from emoreason.au import COMPOUND
from emoreason.data import DataError
from emoreason.data.adapters import DatasetFormatError
from emoreason.data.schema import Sample

BASIC_LABELS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
COMPOUND_LABELS = dict(enumerate(COMPOUND.labels, start=1))
LIST_FILE = "EmoLabel/list_patition_label.txt"
SUBSETS = (("basic/", "basic", BASIC_LABELS), ("compound/", "compound", COMPOUND_LABELS))
SUBSET_NAMES = tuple(space for _, space, _ in SUBSETS)


def read(root: Path, subset: str | None = None) -> Iterator[Sample]:
    """Yield one :class:`Sample` per image of the basic subset, then of the compound subset.

    Args:
        root: the RAF-DB folder holding ``basic/`` and/or ``compound/``.
        subset: ``"basic"`` or ``"compound"`` to read that subset only; None reads every subset found.

    Raises:
        DatasetFormatError: no label list was found (for ``subset``: its list), or one is malformed (the message
            names the file and line).
        DataError: ``subset`` is not one of :data:`SUBSET_NAMES`.
    """
    root = Path(root)
    if subset is not None and subset not in SUBSET_NAMES:
        raise DataError(f"unknown RAF-DB subset {subset!r}; choose one of {', '.join(SUBSET_NAMES)}")
    subsets = [s for s in SUBSETS if (root / s[0] / LIST_FILE).is_file()]
    if not subsets and (root / LIST_FILE).is_file():
        subsets = [("", "basic", BASIC_LABELS)]
    if subset is not None:
        subsets = [s for s in subsets if s[1] == subset]
    if not subsets:
        raise DatasetFormatError(
            root / (subset or "basic") / LIST_FILE, None,
            f"missing RAF-DB {subset or 'basic'} label list; point the adapter at the folder with {subset or 'basic'}/",
        )  # fmt: skip
    for prefix, space, labels in subsets:
        yield from _read_list(root, prefix, space, labels)


def _read_list(root: Path, prefix: str, space: str, labels: dict[int, str]) -> Iterator[Sample]:
    rel = prefix + LIST_FILE
    path = root / rel
    with path.open(encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DatasetFormatError(path, line, f"expected 2 fields (image label), got {len(fields)}")
            name, label = fields
            split = name.split("_", 1)[0]
            if split not in ("train", "test"):
                raise DatasetFormatError(path, line, f"image name {name!r} does not start with train_ or test_")
            if not label.isdigit() or int(label) not in labels:
                raise DatasetFormatError(
                    path, line, f"unknown label {label!r}; RAF-DB {space} labels are 1-{len(labels)}"
                )
            yield Sample(
                dataset="rafdb",
                media=f"{prefix}Image/original/{name}",
                media_type="image",
                labels=[labels[int(label)]],
                label_space=space,
                split=split,
                provenance={"adapter": "rafdb", "file": rel, "line": line},
            )
