"""CASME II adapter: the micro-expression coding sheet (onset, apex, offset, AUs, estimated emotion).

Corpus: Yan et al., "CASME II: An Improved Spontaneous Micro-Expression Database and the Baseline Evaluation",
PLoS ONE 9(1), 2014. 255 micro-expressions of 26 subjects filmed at 200 fps.

Format: the release's ``CASME2-coding-20140508.xlsx`` saved as CSV (as read by the MEGC baselines). Columns are
found by name: Subject (1-26), Filename (EP02_01f), OnsetFrame, ApexFrame ("/" where the coders gave none),
OffsetFrame, Action Units ("4+L10", "R12", "AU4"), Estimated Emotion; the sheet's unnamed blank columns are ignored.
The media is the frame folder ``CASME2_RAW_selected/sub01/EP02_01f``, which holds the onset-to-offset frames, so
times are measured from the onset frame: onset_s = 0, apex_s = (apex - onset) / 200, offset_s = (offset - onset) /
200, and the span covers every frame up to the offset. Frame numbers are kept in provenance. Lateral prefixes (L/R)
are dropped; AU numbers emoreason does not define (38 nostril dilator, ...) are listed in ``unmapped_aus``.
Subjects are split leave-one-subject-out, so ``split`` is None.

Confidence: high for the columns and labels; medium for the frames folder layout.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from emoreason.au import AU_BY_CODE, LABEL_SPACES, normalize_au
from emoreason.data.adapters import DatasetFormatError
from emoreason.data.schema import AULabel, Sample

logger = logging.getLogger(__name__)

NAME = "casme2"
FPS = 200.0
CODING_FILE = "CASME2-coding-20140508.csv"
FRAMES_DIR = "CASME2_RAW_selected"
COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion")
NO_APEX = ("", "/", "-")
# Repression and "others" have no basic-emotion counterpart, so they are scored only within this space.
CASME2 = LABEL_SPACES[NAME]  # defined once, in emoreason.au


def read(root: Path) -> Iterator[Sample]:
    """Yield one :class:`Sample` per coded CASME II micro-expression, in sheet order.

    Args:
        root: the CASME II folder holding the coding sheet exported as ``CASME2-coding-*.csv``.

    Raises:
        DatasetFormatError: the sheet is missing or malformed (the message names the file and line).
    """
    root = Path(root)
    path = root / CODING_FILE
    if not path.is_file():
        found = sorted(root.glob("CASME2-coding*.csv"))
        if not found:
            raise DatasetFormatError(path, None, "missing coding sheet; export the release's .xlsx to CSV here")
        path = found[-1]
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        keys = ["".join(name.lower().split()) for name in header]
        missing = [name for name in COLUMNS if "".join(name.lower().split()) not in keys]
        if missing:
            raise DatasetFormatError(path, 1, f"missing column(s) {missing}; the header is {header}")
        index = {name: keys.index("".join(name.lower().split())) for name in COLUMNS}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DatasetFormatError(path, reader.line_num, f"{len(row)} columns, but the header has {len(header)}")
            yield _sample(root, path, reader.line_num, {name: row[i].strip() for name, i in index.items()})


def parse_action_units(text: str, path: Path, line: int) -> tuple[list[AULabel], list[str]]:
    """AUs of a FACS code string like ``"4+L10+R12A"``, and the AU codes emoreason does not define."""
    aus: dict[str, int | None] = {}
    unmapped: list[str] = []
    for token in filter(None, (part.strip() for part in text.split("+"))):
        code = normalize_au(token)
        if code is None:
            raise DatasetFormatError(path, line, f"cannot read AU {token!r} in {text!r}")
        letter = token[-1].upper()
        intensity = "ABCDE".index(letter) + 1 if letter in "ABCDE" else None
        if code in AU_BY_CODE:
            aus[code] = max(aus.get(code) or 0, intensity or 0) or None  # L10+R10 is one AU10
        elif code not in unmapped:
            unmapped.append(code)
    return [AULabel(code, intensity) for code, intensity in aus.items()], unmapped


def _sample(root: Path, path: Path, line: int, cells: dict[str, str]) -> Sample:
    subject = _number(path, line, cells["Subject"].lower().removeprefix("sub"), "Subject")
    onset = _number(path, line, cells["OnsetFrame"], "OnsetFrame")
    offset = _number(path, line, cells["OffsetFrame"], "OffsetFrame")
    apex = None if cells["ApexFrame"] in NO_APEX else _number(path, line, cells["ApexFrame"], "ApexFrame")
    if not cells["Filename"]:
        raise DatasetFormatError(path, line, "empty Filename")
    label = CASME2.normalize(cells["Estimated Emotion"])
    if label is None:
        raise DatasetFormatError(path, line, f"unknown emotion {cells['Estimated Emotion']!r}; known: {CASME2.labels}")
    aus, unmapped = parse_action_units(cells["Action Units"], path, line)
    provenance = {
        "adapter": NAME,
        "file": path.relative_to(root).as_posix(),
        "line": line,
        "frames": {"onset": onset, "apex": apex, "offset": offset},
        "action_units": cells["Action Units"],
    }
    if unmapped:
        provenance["unmapped_aus"] = unmapped
    if offset < onset:
        logger.warning("%s:%d: offset frame %d precedes onset %d; offset left unset", path, line, offset, onset)
    if apex is not None and not onset <= apex <= max(onset, offset):
        logger.warning("%s:%d: apex frame %d lies outside onset-offset; apex left unset", path, line, apex)
        apex = None
    valid_offset = offset >= onset
    return Sample(
        dataset=NAME,
        media=f"{FRAMES_DIR}/sub{subject:02d}/{cells['Filename']}",
        media_type="frames",
        start_s=0.0,
        end_s=(offset - onset + 1) / FPS if valid_offset else None,
        onset_s=0.0,
        apex_s=None if apex is None else (apex - onset) / FPS,
        offset_s=(offset - onset) / FPS if valid_offset else None,
        labels=[label],
        label_space=NAME,
        emotion=CASME2.to_canonical.get(label, (None,))[0],
        aus=aus,
        subject=f"sub{subject:02d}",
        provenance=provenance,
    )


def _number(path: Path, line: int, text: str, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetFormatError(path, line, f"{column} {text!r} is not an integer") from None
