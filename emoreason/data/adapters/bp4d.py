"""BP4D-Spontaneous adapter: per-frame FACS codes of each subject and task, merged into AU segments.

Corpus: Zhang et al., "BP4D-Spontaneous: a high-resolution spontaneous 3D dynamic facial expression database",
Image and Vision Computing 32(10), 2014. 41 subjects (F001-F023, M001-M018), 8 tasks T1-T8, 25 fps.

Format (the release layout, as read by the FERA 2015 baseline and ME-GraphAU's tool/BP4D_image_label_process.py)::

    AUCoding/AU_OCC/F001_T1.csv             a header of AU numbers ("0" heads the frame column), then rows
                                            "frame,occ,occ,..." with 0 absent, 1 present, 9 not coded
    AUCoding/AU_INT/AU06/F001_T1_AU06.csv   optional, no header: "frame,intensity" with 0-5, 9 not coded
    Sequences(2D+3D)/F001/T1/               the task's frames (the media; need not exist)

Consecutive frames with the same AU vector become one Sample. Frame numbers are 1-based, so frame f spans
[(f-1)/25, f/25) s. An AU coded 1 is present with intensity None, unless its intensity file gives 1-5; columns
for AUs emoreason does not define are ignored, and a segment with no coded AU is skipped. ``split`` is the
subject's test fold in the subject-exclusive 3-fold partition of JAA-Net / ME-GraphAU.

Confidence: high for AU_OCC and its 0/1/9 codes; medium for AU_INT names, the frames folder, 1-based frames.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from emoreason.au import known_au
from emoreason.data.adapters import DatasetFormatError
from emoreason.data.schema import AULabel, Sample

NAME = "bp4d"
FPS = 25.0
OCC_DIR = "AUCoding/AU_OCC"
INT_DIR = "AUCoding/AU_INT"
FRAMES_DIR = "Sequences(2D+3D)"
NOT_CODED = 9
# ME-GraphAU (CVI-SZU/ME-GraphAU, tool/BP4D_image_label_process.py): fold k is tested on one part, trained on two.
FOLDS = {  # test fold -> its subjects
    "fold3": "F001 M007 F018 F008 F002 M004 F010 F009 M012 M001 F016 M014 F023 M008",
    "fold2": "M011 F003 M010 M002 F005 F022 M018 M017 F013 M016 F020 F011 M013 M005",
    "fold1": "F007 F015 F006 F019 M006 M009 F012 M003 F004 F021 F017 M015 F014",
}
SUBJECT_FOLD = {subject: fold for fold, subjects in FOLDS.items() for subject in subjects.split()}

Labels = tuple[tuple[str, int | None], ...]  # (AU code, intensity) in AU order; unknown AUs left out


def read(root: Path) -> Iterator[Sample]:
    """Yield one :class:`Sample` per AU segment of every BP4D task, in file order.

    Args:
        root: the BP4D folder holding ``AUCoding``.

    Raises:
        DatasetFormatError: an annotation file is missing or malformed (the message names the file and line).
    """
    root = Path(root)
    occ_files = sorted((root / OCC_DIR).glob("*.csv"))
    if not occ_files:
        raise DatasetFormatError(root / OCC_DIR, None, "no AU occurrence files; point the adapter at the BP4D folder")
    for path in occ_files:
        yield from _read_sequence(root, path)


def merge_runs(rows: Iterable[tuple[int, int, Labels]]) -> Iterator[tuple[int, int, int, int, Labels]]:
    """Merge ``(line, frame, labels)`` rows into runs of consecutive frames with equal labels.

    Yields ``(first_frame, last_frame, first_line, last_line, labels)``; a gap in the frame numbers ends a run.
    """
    run: list = []
    for line, frame, labels in rows:
        if run and frame == run[1] + 1 and labels == run[4]:
            run[1], run[3] = frame, line
            continue
        if run:
            yield tuple(run)
        run = [frame, frame, line, line, labels]
    if run:
        yield tuple(run)


def intensity_lines(path: Path, handle: TextIO) -> Iterator[tuple[int, int, int | None]]:
    """``(line, frame, intensity)`` from headerless "frame,intensity" lines; intensity 0-5, or None where coded 9."""
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        fields = text.split(",")
        if len(fields) != 2:
            raise DatasetFormatError(path, line, f"{len(fields)} columns, expected 2 (frame,intensity)")
        frame = parse_int(path, line, fields[0].strip(), "frame number")
        intensity = parse_int(path, line, fields[1].strip(), "intensity")
        if not (0 <= intensity <= 5 or intensity == NOT_CODED):
            raise DatasetFormatError(path, line, f"intensity {intensity} is outside 0-5 (9 = not coded)")
        yield line, frame, None if intensity == NOT_CODED else intensity


def parse_int(path: Path, line: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetFormatError(path, line, f"{what} {text!r} is not an integer") from None


def _read_sequence(root: Path, path: Path) -> Iterator[Sample]:
    subject, _, task = path.stem.partition("_")
    if not task:
        raise DatasetFormatError(path, None, "file name must be <subject>_<task>.csv, e.g. F001_T1.csv")
    intensities, intensity_files = _read_intensities(root, path.stem)
    provenance = {"adapter": NAME, "file": path.relative_to(root).as_posix(), "task": task}
    if intensity_files:
        provenance["intensity_files"] = intensity_files
    for first, last, line_a, line_b, labels in merge_runs(_occurrence_rows(path, intensities)):
        if not labels:
            continue  # no AU coded in these frames
        yield Sample(
            dataset=NAME,
            media=f"{FRAMES_DIR}/{subject}/{task}",
            media_type="frames",
            start_s=(first - 1) / FPS,
            end_s=last / FPS,
            aus=[AULabel(code, intensity) for code, intensity in labels],
            subject=subject,
            split=SUBJECT_FOLD.get(subject),
            provenance={**provenance, "lines": [line_a, line_b], "frames": [first, last]},
        )


def _occurrence_rows(path: Path, intensities: dict[str, dict[int, int]]) -> Iterator[tuple[int, int, Labels]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DatasetFormatError(path, 1, "empty file; expected a header row of AU numbers")
        columns = [(i, code) for i, code in ((i, known_au(name)) for i, name in enumerate(header) if i) if code]
        only_intensity = set(intensities) - {code for _, code in columns}
        previous = None
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetFormatError(path, line, f"{len(row)} columns, but the header has {len(header)}")
            frame = parse_int(path, line, row[0], "frame number")
            if previous is not None and frame <= previous:
                raise DatasetFormatError(path, line, f"frame {frame} after frame {previous}: frames must increase")
            previous = frame
            labels: dict[str, int | None] = {}
            for i, code in columns:
                occurrence = parse_int(path, line, row[i], f"{code} occurrence")
                if occurrence not in (0, 1, NOT_CODED):
                    raise DatasetFormatError(path, line, f"{code} occurrence {occurrence} is not 0, 1 or 9")
                intensity = intensities.get(code, {}).get(frame)
                if occurrence == 0:
                    labels[code] = 0
                elif occurrence == 1:
                    labels[code] = intensity or None  # an intensity of 0 cannot overrule "present"
                elif intensity is not None:
                    labels[code] = intensity
            for code in only_intensity:
                if (intensity := intensities[code].get(frame)) is not None:
                    labels[code] = intensity
            yield line, frame, tuple(sorted(labels.items(), key=lambda item: int(item[0][2:])))


def _read_intensities(root: Path, stem: str) -> tuple[dict[str, dict[int, int]], list[str]]:
    """AU code -> {frame: intensity 0-5} from the optional ``AU_INT/AUxx/<stem>_AUxx.csv`` files."""
    found: dict[str, dict[int, int]] = {}
    files: list[str] = []
    int_dir = root / INT_DIR
    for au_dir in sorted(int_dir.iterdir()) if int_dir.is_dir() else ():
        path = au_dir / f"{stem}_{au_dir.name}.csv"
        code = known_au(au_dir.name)
        if code is None or not path.is_file():
            continue
        with path.open(encoding="utf-8-sig") as handle:
            found[code] = {frame: value for _, frame, value in intensity_lines(path, handle) if value is not None}
        files.append(path.relative_to(root).as_posix())
    return found, files
