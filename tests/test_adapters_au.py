"""Tests for the AU and description adapters (BP4D, DISFA, CASME II, EMER) on tiny fixtures in each published format.

Each malformed variant is made in ``tmp_path`` by corrupting one line (or removing one file) of a copy of the good
fixture, and must raise a DatasetFormatError that names that file and line.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from emoreason.data.adapters import DatasetFormatError, get_adapter
from emoreason.data.adapters.casme2 import parse_action_units
from emoreason.data.adapters.emer import parse_open_labels
from emoreason.data.schema import AULabel, Sample, sample_id

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
CORPORA = ("bp4d", "disfa", "casme2", "emer")
# AUs coded absent in every BP4D fixture frame, besides the ones a test looks at.
BP4D_ABSENT = {"AU1": 0, "AU2": 0, "AU7": 0, "AU10": 0, "AU14": 0, "AU15": 0, "AU17": 0, "AU23": 0, "AU24": 0}
DISFA_ABSENT = {f"AU{n}": 0 for n in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)}


def read(corpus: str, root: Path | None = None) -> list[Sample]:
    return list(get_adapter(corpus)(root or FIXTURES / corpus))


def corrupt(tmp_path: Path, corpus: str, file: str, line: int, text: str | None) -> Path:
    """Copy a fixture corpus into tmp_path and replace one line of ``file`` with ``text`` (None deletes the line)."""
    root = tmp_path / corpus
    shutil.copytree(FIXTURES / corpus, root)
    path = root / file
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1 : line] = [] if text is None else [text]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_bp4d_merges_frames_into_au_segments():
    samples = read("bp4d")
    spans = [(s.media, s.provenance["frames"], s.start_s, s.end_s, s.split) for s in samples]
    assert spans == [
        ("Sequences(2D+3D)/F001/T1", [101, 102], pytest.approx(4.0), pytest.approx(4.08), "fold3"),
        ("Sequences(2D+3D)/F001/T1", [103, 103], pytest.approx(4.08), pytest.approx(4.12), "fold3"),  # AU6 2 -> 3
        ("Sequences(2D+3D)/F001/T1", [104, 105], pytest.approx(4.12), pytest.approx(4.2), "fold3"),
        (
            "Sequences(2D+3D)/F001/T1",
            [107, 107],
            pytest.approx(4.24),
            pytest.approx(4.28),
            "fold3",
        ),  # frame 106 missing
        ("Sequences(2D+3D)/F001/T1", [108, 108], pytest.approx(4.28), pytest.approx(4.32), "fold3"),  # AU4 not coded
        (
            "Sequences(2D+3D)/M005/T8",
            [1, 2],
            pytest.approx(0.0),
            pytest.approx(0.08),
            "fold2",
        ),  # frame 3 all 9s: skipped
    ]
    # AU12 coded present while its intensity file says 9: present, intensity unknown. AU3/AU27 are not emoreason AUs
    # and AU5 is never coded (9), so none of them is listed.
    assert samples[0].au_dict() == {**BP4D_ABSENT, "AU4": 0, "AU6": 2, "AU12": None}
    assert samples[1].au_dict() == {**BP4D_ABSENT, "AU4": 0, "AU6": 3, "AU12": None}
    assert samples[2].au_dict() == {**BP4D_ABSENT, "AU4": 0, "AU6": 0, "AU12": 4}
    assert samples[4].au_dict() == {**BP4D_ABSENT, "AU6": 0, "AU12": 4}
    assert samples[5].au_dict() == {"AU1": 0, "AU2": 0, "AU4": 0}
    first = samples[0]
    assert (first.dataset, first.media_type, first.subject) == ("bp4d", "frames", "F001")
    assert first.provenance == {
        "adapter": "bp4d",
        "file": "AUCoding/AU_OCC/F001_T1.csv",
        "task": "T1",
        "intensity_files": ["AUCoding/AU_INT/AU06/F001_T1_AU06.csv", "AUCoding/AU_INT/AU12/F001_T1_AU12.csv"],
        "lines": [2, 3],
        "frames": [101, 102],
    }


def test_disfa_merges_the_twelve_au_files():
    samples = read("disfa")
    assert [(s.provenance["lines"], s.start_s, s.end_s) for s in samples] == [
        ([1, 2], pytest.approx(0.0), pytest.approx(0.1)),
        ([3, 4], pytest.approx(0.1), pytest.approx(0.2)),
        ([5, 5], pytest.approx(0.2), pytest.approx(0.25)),
        ([6, 6], pytest.approx(0.25), pytest.approx(0.3)),
    ]
    assert samples[0].au_dict() == DISFA_ABSENT
    assert samples[1].au_dict() == {**DISFA_ABSENT, "AU6": 1, "AU12": 2}
    assert samples[2].au_dict() == {**DISFA_ABSENT, "AU6": 1, "AU12": 3, "AU25": 1}
    assert all(s.media == "Videos_LeftCamera/LeftVideoSN001_comp.avi" and s.media_type == "video" for s in samples)
    assert {(s.subject, s.split) for s in samples} == {("SN001", "fold3")}
    assert samples[1].provenance == {
        "adapter": "disfa",
        "file": "ActionUnit_Labels/SN001/SN001_au*.txt",
        "lines": [3, 4],
        "frames": [3, 4],
    }


def test_casme2_reads_phases_aus_and_labels():
    samples = read("casme2")
    assert [s.media for s in samples] == [
        "CASME2_RAW_selected/sub01/EP02_01f",
        "CASME2_RAW_selected/sub01/EP03_02",
        "CASME2_RAW_selected/sub02/EP09_01",
        "CASME2_RAW_selected/sub26/EP16_03",
    ]
    first = samples[0]  # onset 46, apex 59, offset 86 at 200 fps, measured from the onset frame
    assert (first.onset_s, first.apex_s, first.offset_s) == (0.0, pytest.approx(0.065), pytest.approx(0.2))
    assert (first.start_s, first.end_s) == (0.0, pytest.approx(0.205))
    assert first.provenance == {
        "adapter": "casme2",
        "file": "CASME2-coding-20140508.csv",
        "line": 2,
        "frames": {"onset": 46, "apex": 59, "offset": 86},
        "action_units": "12",
    }
    assert [(s.labels, s.label_space, s.emotion, s.subject) for s in samples] == [
        (["happiness"], "casme2", "happiness", "sub01"),
        (["disgust"], "casme2", "disgust", "sub01"),
        (["repression"], "casme2", None, "sub02"),  # no canonical counterpart
        (["others"], "casme2", None, "sub26"),
    ]
    assert [s.au_dict() for s in samples] == [
        {"AU12": None},
        {"AU4": None, "AU10": None},  # "4+L10": the lateral prefix is dropped
        {"AU12": None},  # "R12+38": AU38 is not an emoreason AU
        {"AU4": None, "AU7": None, "AU14": None},
    ]
    assert samples[2].apex_s is None and samples[2].provenance["frames"]["apex"] is None  # apex "/" in the sheet
    assert samples[2].provenance["unmapped_aus"] == ["AU38"]
    assert all(s.split is None for s in samples)


@pytest.mark.parametrize(
    ("text", "aus", "unmapped"),
    [
        ("4+L10", [AULabel("AU4", None), AULabel("AU10", None)], []),
        ("AU4 + AU7", [AULabel("AU4", None), AULabel("AU7", None)], []),  # spaces around "+"
        ("R12A", [AULabel("AU12", 1)], []),  # FACS intensity letter A..E -> 1..5
        ("L10+R10", [AULabel("AU10", None)], []),  # both sides are one AU
        ("38+39", [], ["AU38", "AU39"]),
        ("", [], []),
    ],
)
def test_casme2_action_unit_strings(text, aus, unmapped):
    assert parse_action_units(text, Path("sheet.csv"), 2) == (aus, unmapped)


def test_casme2_out_of_order_phases_are_left_unset(tmp_path, caplog):
    root = corrupt(tmp_path, "casme2", "CASME2-coding-20140508.csv", 2, "1,EP02_01f,,46,59,40,,12,happiness")
    with caplog.at_level(logging.WARNING):
        first = read("casme2", root)[0]
    assert (first.onset_s, first.apex_s, first.offset_s, first.end_s) == (0.0, None, None, None)
    assert first.provenance["frames"] == {"onset": 46, "apex": 59, "offset": 40}
    assert "precedes onset" in caplog.text


def test_emer_joins_descriptions_and_open_labels():
    samples = read("emer")
    assert [(s.media, s.labels, s.emotion, s.provenance["line"]) for s in samples] == [
        ("video/sample_00000001.mp4", ["happy", "excited"], "happiness", 2),  # "Happy" deduplicated
        ("video/sample_00000002.avi", ["sad", "anxious"], None, 3),  # sadness + fear: no single emotion; .avi exists
        ("video/sample_00000003.mp4", ["neutral"], "neutral", 5),  # empty open set; the description above spans 2 lines
        ("video/sample_00000004.mp4", ["surprised"], "surprise", 5),  # labels only, from track2 line 5
    ]
    assert (
        samples[1].description.startswith("The woman's inner brows")
        and "\nHer voice trembles" in samples[1].description
    )
    assert samples[3].description is None
    assert all(s.label_space == "open" and s.media_type == "video" and s.split is None for s in samples)
    assert samples[0].provenance == {
        "adapter": "emer",
        "file": "track3_train_ovmerd.csv",
        "line": 2,
        "labels_file": "track2_train_ovmerd.csv",
        "labels_line": 2,
    }
    assert samples[3].provenance == {"adapter": "emer", "file": "track2_train_ovmerd.csv", "line": 5}


def test_emer_v1_layout(tmp_path):
    (tmp_path / "gt-eng.csv").write_text(
        "names,emotions,subtitles,reasons\nsample_00000007,worried,I can't find it.,He frowns and speaks fast.\n"
    )
    [sample] = read("emer", tmp_path)
    assert (sample.labels, sample.description, sample.media) == (
        ["worried"],
        "He frowns and speaks fast.",
        "video/sample_00000007.mp4",
    )


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("['happy', 'excited']", ["happy", "excited"]),  # MERTools writes Python list literals
        ("Happy, EXCITED, happy", ["happy", "excited"]),
        ('["slightly  annoyed"]', ["slightly annoyed"]),
        ("[]", ["neutral"]),  # an empty open set means neutral (MERTools' convention)
    ],
)
def test_emer_open_label_strings(text, labels):
    assert parse_open_labels(text) == labels


@pytest.mark.parametrize("corpus", CORPORA)
def test_ids_are_stable_and_unique(corpus):
    first, again = read(corpus), read(corpus)
    assert [s.id for s in first] == [s.id for s in again]
    assert len({s.id for s in first}) == len(first)
    assert all(s.id == sample_id(corpus, s.media, s.start_s, s.end_s) for s in first)


@pytest.mark.parametrize("corpus", CORPORA)
def test_json_round_trip(corpus):
    for sample in read(corpus):
        assert Sample.from_dict(json.loads(sample.to_json())) == sample


OCC, AU06 = "AUCoding/AU_OCC/F001_T1.csv", "AUCoding/AU_INT/AU06/F001_T1_AU06.csv"
LABELS = "ActionUnit_Labels/SN001/SN001_au{}.txt"
SHEET, REASONS, OPENSET = "CASME2-coding-20140508.csv", "track3_train_ovmerd.csv", "track2_train_ovmerd.csv"
MALFORMED = [
    # (corpus, file, line, replacement text; None removes the line); the error must name that file and line.
    ("bp4d", OCC, 4, "103,0,0,9,0,9,1,0,0,1,0,0,0,0,0"),  # a column short
    ("bp4d", OCC, 3, "1o2,0,0,9,0,9,1,0,0,1,0,0,0,0,0,9"),  # non-numeric frame
    ("bp4d", OCC, 5, "104,0,0,9,0,9,2,0,0,1,0,0,0,0,0,9"),  # occurrence 2
    ("bp4d", OCC, 6, "104,0,0,9,0,9,0,0,0,1,0,0,0,0,0,9"),  # frame repeated
    ("bp4d", AU06, 2, "102,7"),  # intensity outside 0-5 and not 9
    ("bp4d", AU06, 1, "101,2,0"),  # three columns
    ("disfa", LABELS.format(12), 3, "3,6"),
    ("disfa", LABELS.format(5), 2, "2"),
    ("disfa", LABELS.format(1), 4, "x,0"),
    ("disfa", LABELS.format(9), 4, "5,0"),  # frame differs from the other files
    ("disfa", LABELS.format(26), 6, None),  # ends a frame early
    ("casme2", SHEET, 3, "1,EP03_02,,13l,139,161,,4+L10,disgust"),
    ("casme2", SHEET, 4, "2,EP09_01,,71,/,98,R12+38,repression"),  # a column short
    ("casme2", SHEET, 5, "26,EP16_03,,40,57,73,,4+foo,others"),  # unparseable AU
    ("casme2", SHEET, 2, "1,EP02_01f,,46,59,86,,12,tense"),  # not a CASME II emotion
    ("casme2", SHEET, 1, "Subject,Filename,,OnsetFrame,,OffsetFrame,,Action Units,Estimated Emotion"),
    ("emer", REASONS, 2, 'sample_00000001,"smiles",extra'),
    ("emer", REASONS, 5, 'sample_00000003,"calm",extra'),  # after a 2-line description
    ("emer", OPENSET, 5, ",['surprised']"),  # empty clip name
]


@pytest.mark.parametrize(("corpus", "file", "line", "text"), MALFORMED)
def test_malformed_files_name_file_and_line(tmp_path, corpus, file, line, text):
    root = corrupt(tmp_path, corpus, file, line, text)
    with pytest.raises(DatasetFormatError) as error:
        read(corpus, root)
    name = Path(file).name
    assert f"{name}:{line}" in str(error.value)
    assert (Path(error.value.path).name, error.value.line) == (name, line)


@pytest.mark.parametrize(
    ("corpus", "remove", "named"),
    [
        ("bp4d", "AUCoding/AU_OCC", "AU_OCC"),
        ("disfa", LABELS.format(20), "SN001_au20.txt"),
        ("casme2", SHEET, SHEET),
        ("emer", "*.csv", "emer"),  # the root itself is named
    ],
)
def test_missing_annotation_files(tmp_path, corpus, remove, named):
    root = tmp_path / corpus
    shutil.copytree(FIXTURES / corpus, root)
    for path in root.glob(remove):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(DatasetFormatError) as error:
        read(corpus, root)
    assert named in str(error.value)
    assert error.value.line is None
