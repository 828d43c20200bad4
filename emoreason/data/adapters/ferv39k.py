"""FERV39k adapter: the all-scenes train/test lists of the FERV39k video corpus.

Corpus: Wang et al., "FERV39k: A Large-Scale Multi-Scene Dataset for Facial Expression Recognition in Videos",
CVPR 2022 (github.com/wangyanckxx/FERV39k). 38,935 clips from 22 scenes, 7 basic classes, a fixed train/test split.

Format (the release's ``4_setups`` folder, as read by MAE-DFER, DFER-CLIP and others)::

    4_setups/All_scenes/train_All.csv   no header, space-separated: "Action/Sad/0010 Sad"
    4_setups/All_scenes/test_All.csv
    0_7_LabelClips/<Scene>/<Emotion>/<clip>.mp4      the labelled clips
    2_ClipsforFaceCrop/<Scene>/<Emotion>/<clip>/     face-cropped frames of the same clips

Labels: Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear (basic space). The release has no validation split.

Uncertain: the per-scene lists (``4_setups/22_scenes/{train,test}_<Scene>.csv``) are subsets of the all-scenes
lists and are not read; ``media`` points at the original clip in ``0_7_LabelClips``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from emoreason.data.adapters import DatasetFormatError
from emoreason.data.schema import Sample

LABELS = {
    "happy": "happiness",
    "sad": "sadness",
    "neutral": "neutral",
    "angry": "anger",
    "surprise": "surprise",
    "disgust": "disgust",
    "fear": "fear",
}
LISTS = (("train", "4_setups/All_scenes/train_All.csv"), ("test", "4_setups/All_scenes/test_All.csv"))


def read(root: Path) -> Iterator[Sample]:
    """Yield one :class:`Sample` per FERV39k clip, training list first.

    Args:
        root: the FERV39k folder holding ``4_setups``.

    Raises:
        DatasetFormatError: a split list is missing or malformed (the message names the file and line).
    """
    root = Path(root)
    for _, rel in LISTS:  # both lists must be there before any row is yielded
        path = root / rel
        if not path.is_file():
            raise DatasetFormatError(
                path, None, "missing FERV39k split list; point the adapter at the folder with 4_setups"
            )
    for split, rel in LISTS:
        yield from _read_list(root / rel, rel, split)


def _read_list(path: Path, rel: str, split: str) -> Iterator[Sample]:
    with path.open(encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            text = text.strip()
            if not text:
                continue
            clip, _, label = text.rpartition(" ")
            clip = clip.strip()
            if not clip or len(clip.split("/")) != 3:
                raise DatasetFormatError(path, line, f"expected '<Scene>/<Emotion>/<clip> <Label>', got {text!r}")
            if label.lower() not in LABELS:
                raise DatasetFormatError(path, line, f"unknown label {label!r}; FERV39k labels are {', '.join(LABELS)}")
            yield Sample(
                dataset="ferv39k",
                media=f"0_7_LabelClips/{clip}.mp4",
                media_type="video",
                labels=[LABELS[label.lower()]],
                label_space="basic",
                split=split,
                provenance={"adapter": "ferv39k", "file": rel, "line": line},
            )
