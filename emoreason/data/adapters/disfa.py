"""DISFA adapter: per-frame intensities of 12 AUs for each subject, merged into AU segments.

Corpus: Mavadati et al., "DISFA: A Spontaneous Facial Action Intensity Database", IEEE Transactions on Affective
Computing 4(2), 2013. 27 adults watching a 4-minute video, 4,845 frames at 20 fps, 12 AUs coded 0-5.

Format (the release layout, as read by ME-GraphAU's ``tool/DISFA_image_label_process.py`` and the FERA 2015
baseline)::

    ActionUnit_Labels/SN001/SN001_au1.txt     no header, one "frame,intensity" line per frame (0-5),
    ...                                       one file for each AU in AU_NUMBERS
    Videos_LeftCamera/LeftVideoSN001_comp.avi the left-camera video (the media; need not exist)

The 12 files of a subject are read side by side, a line at a time; consecutive frames with the same 12 intensities
become one Sample. Frame numbers are 1-based, so frame f spans [(f-1)/20, f/20) s. An intensity of 9 (not used in
the release) is read as "not coded". ``split`` is the subject's test fold in ME-GraphAU's 3-fold partition.

Confidence: high for the file names and the "frame,intensity" lines; medium for 1-based frame numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from itertools import zip_longest
from pathlib import Path
from typing import TextIO

from emoreason.data.adapters import DatasetFormatError
from emoreason.data.adapters.bp4d import Labels, intensity_lines, merge_runs
from emoreason.data.schema import AULabel, Sample

NAME = "disfa"
FPS = 20.0
LABEL_DIR = "ActionUnit_Labels"
VIDEO = "Videos_LeftCamera/LeftVideo{subject}_comp.avi"
AU_NUMBERS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
# ME-GraphAU (CVI-SZU/ME-GraphAU, tool/DISFA_image_label_process.py): fold k is tested on one part, trained on two.
FOLDS = {  # test fold -> its subjects
    "fold3": "SN002 SN010 SN001 SN026 SN027 SN032 SN030 SN009 SN016",
    "fold2": "SN013 SN018 SN011 SN028 SN012 SN006 SN031 SN021 SN024",
    "fold1": "SN003 SN029 SN023 SN025 SN008 SN005 SN007 SN017 SN004",
}
SUBJECT_FOLD = {subject: fold for fold, subjects in FOLDS.items() for subject in subjects.split()}


def read(root: Path) -> Iterator[Sample]:
    """Yield one :class:`Sample` per AU segment of every DISFA subject, in subject order.

    Args:
        root: the DISFA folder holding ``ActionUnit_Labels``.

    Raises:
        DatasetFormatError: a label file is missing or malformed (the message names the file and line).
    """
    root = Path(root)
    label_dir = root / LABEL_DIR
    subjects = sorted(p for p in label_dir.iterdir() if p.is_dir()) if label_dir.is_dir() else []
    if not subjects:
        raise DatasetFormatError(label_dir, None, "no subject folders (SN001, ...); point the adapter at DISFA")
    for subject_dir in subjects:
        yield from _read_subject(root, subject_dir)


def _read_subject(root: Path, subject_dir: Path) -> Iterator[Sample]:
    subject = subject_dir.name
    paths = [subject_dir / f"{subject}_au{n}.txt" for n in AU_NUMBERS]
    for path in paths:
        if not path.is_file():
            raise DatasetFormatError(path, None, f"missing AU label file; DISFA codes {len(AU_NUMBERS)} AUs")
    pattern = (subject_dir / f"{subject}_au*.txt").relative_to(root).as_posix()
    with ExitStack() as stack:
        handles = [stack.enter_context(path.open(encoding="utf-8-sig")) for path in paths]
        for first, last, line_a, line_b, labels in merge_runs(_rows(paths, handles)):
            if not labels:
                continue
            yield Sample(
                dataset=NAME,
                media=VIDEO.format(subject=subject),
                media_type="video",
                start_s=(first - 1) / FPS,
                end_s=last / FPS,
                aus=[AULabel(code, intensity) for code, intensity in labels],
                subject=subject,
                split=SUBJECT_FOLD.get(subject),
                provenance={"adapter": NAME, "file": pattern, "lines": [line_a, line_b], "frames": [first, last]},
            )


def _rows(paths: list[Path], handles: list[TextIO]) -> Iterator[tuple[int, int, Labels]]:
    """Join the per-AU files line by line: ``(line, frame, labels)`` with the line number of the first file."""
    previous = None
    for entries in zip_longest(*(intensity_lines(path, handle) for path, handle in zip(paths, handles))):
        line = next(entry[0] for entry in entries if entry is not None)
        for path, entry in zip(paths, entries):
            if entry is None:
                raise DatasetFormatError(path, line, "file ends early: the other AU files have more frames")
        frame = entries[0][1]
        for path, (entry_line, entry_frame, _) in zip(paths, entries):
            if entry_frame != frame:
                raise DatasetFormatError(path, entry_line, f"frame {entry_frame}, but {paths[0].name} has {frame}")
        if previous is not None and frame <= previous:
            raise DatasetFormatError(paths[0], line, f"frame {frame} after frame {previous}: frames must increase")
        previous = frame
        labels = tuple((f"AU{n}", entry[2]) for n, entry in zip(AU_NUMBERS, entries) if entry[2] is not None)
        yield line, frame, labels
