"""The emotion-corpus adapters (DFEW, MAFW, FERV39k, RAF-DB, AffectNet) on small fixtures in each published format."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from emoreason.au import COMPOUND, LABEL_SPACES
from emoreason.data.adapters import DatasetFormatError, affectnet, dfew, ferv39k, get_adapter, mafw, rafdb
from emoreason.data.schema import Sample

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
READERS = {
    "dfew": dfew.read,
    "mafw": mafw.read,
    "mafw_compound": mafw.read_compound,
    "ferv39k": ferv39k.read,
    "rafdb": rafdb.read,
    "affectnet": affectnet.read,
}

DFEW_TEST = "EmoLabel_DataSplit/test(single-labeled)"
MAFW_SINGLE = "Train & Test Set/single/no_caption"
MAFW_COMPOUND = "Train & Test Set/compound/no_caption"
RAF_BASIC = "basic/EmoLabel/list_patition_label.txt"
RAF_COMPOUND = "compound/EmoLabel/list_patition_label.txt"
FV_TRAIN = "4_setups/All_scenes/train_All.csv"
FV_TEST = "4_setups/All_scenes/test_All.csv"
FV = "0_7_LabelClips/"
AN = "Manually_Annotated_Images/"
AN_TRAIN = "Manually_Annotated_file_lists/training.csv"
AN_VAL = "Manually_Annotated_file_lists/validation.csv"

# (media, labels, label_space, emotion, split, annotation file, line) for every sample, in reading order
EXPECTED = {
    "dfew": [
        ("Clip/original/1.mp4", ["happiness"], "basic", "happiness", "fold1", f"{DFEW_TEST}/set_1.csv", 2),
        ("Clip/original/27.mp4", ["anger"], "basic", "anger", "fold1", f"{DFEW_TEST}/set_1.csv", 3),
        ("Clip/original/2.mp4", ["sadness"], "basic", "sadness", "fold2", f"{DFEW_TEST}/set_2.csv", 2),
        ("Clip/original/15.mp4", ["neutral"], "basic", "neutral", "fold3", f"{DFEW_TEST}/set_3.csv", 2),
        ("Clip/original/16000.mp4", ["surprise"], "basic", "surprise", "fold4", f"{DFEW_TEST}/set_4.csv", 2),
        ("Clip/original/16372.mp4", ["disgust"], "basic", "disgust", "fold5", f"{DFEW_TEST}/set_5.csv", 2),
        ("Clip/original/3.mp4", ["fear"], "basic", "fear", "fold5", f"{DFEW_TEST}/set_5.csv", 3),
    ],
    "mafw": [
        ("data/clips/00025.mp4", ["anger"], "mafw", "anger", "fold1", f"{MAFW_SINGLE}/set_1/test.txt", 1),
        ("data/clips/00031.mp4", ["neutral"], "mafw", "neutral", "fold1", f"{MAFW_SINGLE}/set_1/test.txt", 2),
        ("data/clips/00102.mp4", ["helplessness"], "mafw", None, "fold2", f"{MAFW_SINGLE}/set_2/test.txt", 1),
        ("data/clips/00200.mp4", ["happiness"], "mafw", "happiness", "fold3", f"{MAFW_SINGLE}/set_3/test.txt", 1),
        ("data/clips/00310.mp4", ["contempt"], "mafw", "contempt", "fold4", f"{MAFW_SINGLE}/set_4/test.txt", 1),
        ("data/clips/00420.mp4", ["disappointment"], "mafw", None, "fold5", f"{MAFW_SINGLE}/set_5/test.txt", 1),
    ],
    "mafw_compound": [
        ("data/clips/00025.mp4", ["anger", "disgust"], "mafw", None, "fold1", f"{MAFW_COMPOUND}/set_1/test.txt", 1),
        ("data/clips/00031.mp4", ["neutral"], "mafw", "neutral", "fold1", f"{MAFW_COMPOUND}/set_1/test.txt", 2),
        (
            "data/clips/00102.mp4",
            ["sadness", "helplessness"],
            "mafw",
            None,
            "fold2",
            f"{MAFW_COMPOUND}/set_2/test.txt",
            1,
        ),
        ("data/clips/00200.mp4", ["happiness"], "mafw", "happiness", "fold3", f"{MAFW_COMPOUND}/set_3/test.txt", 1),
        ("data/clips/00310.mp4", ["disgust", "contempt"], "mafw", None, "fold4", f"{MAFW_COMPOUND}/set_4/test.txt", 1),
        (
            "data/clips/00420.mp4",
            ["sadness", "disappointment"],
            "mafw",
            None,
            "fold5",
            f"{MAFW_COMPOUND}/set_5/test.txt",
            1,
        ),
    ],
    "ferv39k": [
        (f"{FV}Action/Sad/0010.mp4", ["sadness"], "basic", "sadness", "train", FV_TRAIN, 1),
        (f"{FV}Interview/Happy/0227.mp4", ["happiness"], "basic", "happiness", "train", FV_TRAIN, 2),
        (f"{FV}Action/Angry/0042.mp4", ["anger"], "basic", "anger", "train", FV_TRAIN, 3),
        (f"{FV}Action/Surprise/0005.mp4", ["surprise"], "basic", "surprise", "test", FV_TEST, 1),
        (f"{FV}Interview/Fear/0100.mp4", ["fear"], "basic", "fear", "test", FV_TEST, 2),
        (f"{FV}Interview/Neutral/0003.mp4", ["neutral"], "basic", "neutral", "test", FV_TEST, 3),
        (f"{FV}Action/Disgust/0012.mp4", ["disgust"], "basic", "disgust", "test", FV_TEST, 4),
    ],
    "rafdb": [
        ("basic/Image/original/train_00001.jpg", ["sadness"], "basic", "sadness", "train", RAF_BASIC, 1),
        ("basic/Image/original/train_00002.jpg", ["happiness"], "basic", "happiness", "train", RAF_BASIC, 2),
        ("basic/Image/original/test_0001.jpg", ["neutral"], "basic", "neutral", "test", RAF_BASIC, 3),
        ("basic/Image/original/test_0002.jpg", ["surprise"], "basic", "surprise", "test", RAF_BASIC, 4),
        ("compound/Image/original/train_0001.jpg", ["happily surprised"], "compound", None, "train", RAF_COMPOUND, 1),
        (
            "compound/Image/original/train_0002.jpg",
            ["disgustedly surprised"],
            "compound",
            None,
            "train",
            RAF_COMPOUND,
            2,
        ),
        ("compound/Image/original/test_0001.jpg", ["angrily disgusted"], "compound", None, "test", RAF_COMPOUND, 3),
    ],
    "affectnet": [
        (
            f"{AN}689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg",
            ["happiness"],
            "basic",
            "happiness",
            "train",
            AN_TRAIN,
            2,
        ),
        (
            f"{AN}392/c4db2f9b7e4b422d14b6e038f0cdc3ecee239b55326e9181ee4520f9.jpg",
            ["anger"],
            "basic",
            "anger",
            "train",
            AN_TRAIN,
            3,
        ),
        (
            f"{AN}1/a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c.jpg",
            ["neutral"],
            "basic",
            "neutral",
            "validation",
            AN_VAL,
            1,
        ),
        (
            f"{AN}17/0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b.jpg",
            ["contempt"],
            "basic",
            "contempt",
            "validation",
            AN_VAL,
            2,
        ),
    ],
}
CORPUS_DIR = {name: name.split("_")[0] for name in READERS}
MEDIA_TYPE = {"dfew": "video", "mafw": "video", "ferv39k": "video", "rafdb": "image", "affectnet": "image"}


def read_all(name: str, root: Path | None = None) -> list[Sample]:
    return list(READERS[name](root or FIXTURES / CORPUS_DIR[name]))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_adapter_yields_expected_samples(name):
    samples = read_all(name)
    corpus = CORPUS_DIR[name]
    got = [
        (s.media, s.labels, s.label_space, s.emotion, s.split, s.provenance["file"], s.provenance["line"])
        for s in samples
    ]
    assert got == EXPECTED[name]
    for s in samples:
        assert s.dataset == corpus
        assert s.media_type == MEDIA_TYPE[corpus]
        assert s.provenance["adapter"] == corpus
        assert s.subject is None  # none of these corpora names its subjects
        assert (FIXTURES / corpus / s.provenance["file"]).is_file()
        assert all(label in LABEL_SPACES[s.label_space].labels for label in s.labels)


@pytest.mark.parametrize("name", sorted(READERS))
def test_ids_are_stable_and_unique(name):
    first, second = read_all(name), read_all(name)
    assert [s.id for s in first] == [s.id for s in second]
    assert len({s.id for s in first}) == len(first)
    assert all(s.id.startswith(f"{CORPUS_DIR[name]}-") for s in first)


@pytest.mark.parametrize("name", sorted(READERS))
def test_json_round_trip(name):
    for sample in read_all(name):
        assert Sample.from_dict(json.loads(sample.to_json())) == sample


def test_registry_points_at_these_adapters():
    for corpus in ("dfew", "mafw", "ferv39k", "rafdb", "affectnet"):
        assert get_adapter(corpus) is READERS[corpus]


def test_rafdb_compound_ids_follow_the_release_numbering():
    # RAF-DB's README numbers the compound classes 1-11 in exactly the order of au.COMPOUND.
    assert rafdb.COMPOUND_LABELS[1] == "happily surprised"
    assert rafdb.COMPOUND_LABELS[11] == "disgustedly surprised"
    assert tuple(rafdb.COMPOUND_LABELS.values()) == COMPOUND.labels


def test_rafdb_reads_a_root_that_is_the_basic_folder(tmp_path):
    shutil.copytree(FIXTURES / "rafdb" / "basic", tmp_path / "basic_only")
    samples = read_all("rafdb", tmp_path / "basic_only")
    assert [s.media for s in samples][:1] == ["Image/original/train_00001.jpg"]
    assert {s.label_space for s in samples} == {"basic"}


def test_mafw_descriptions_come_from_the_caption_lists():
    by_media = {s.media: s.description for s in read_all("mafw")}
    # fold 1's caption list is GBK-encoded, fold 2's UTF-8; neutral clips and folds 3-5 have no caption
    assert by_media["data/clips/00025.mp4"] == "A girl with tears in her eyes shouts at the person opposite her."
    assert by_media["data/clips/00102.mp4"] == "He lowers his head, sighs and spreads his hands."
    assert by_media["data/clips/00031.mp4"] is None
    assert by_media["data/clips/00200.mp4"] is None
    assert all(s.description is None for s in read_all("mafw_compound"))  # no compound caption lists in the fixture


def test_dfew_and_mafw_clips_are_in_exactly_one_test_fold():
    for name in ("dfew", "mafw", "mafw_compound"):
        samples = read_all(name)
        assert len({s.media for s in samples}) == len(samples)
        assert {s.split for s in samples} == {f"fold{k}" for k in range(1, 6)}


def test_affectnet_skips_and_counts_rows_without_an_emotion(caplog):
    with caplog.at_level(logging.INFO, logger="emoreason.data.adapters.affectnet"):
        samples = read_all("affectnet")
    assert len(samples) == 4  # 7 rows: None, No-Face and Uncertain are skipped
    messages = [r.getMessage() for r in caplog.records]
    assert any("skipped 2 rows" in m and "training.csv" in m and "no-face 1" in m and "none 1" in m for m in messages)
    assert any("skipped 1 rows" in m and "validation.csv" in m and "uncertain 1" in m for m in messages)


# (corpus dir, reader, annotation file, 1-based line to replace, replacement, message fragment)
MALFORMED = [
    ("dfew", "dfew", f"{DFEW_TEST}/set_1.csv", 2, "1,4,extra", "expected 2 columns"),
    ("dfew", "dfew", f"{DFEW_TEST}/set_1.csv", 3, "27,8", "unknown label '8'"),
    ("dfew", "dfew", f"{DFEW_TEST}/set_2.csv", 2, "clip_two,2", "clip number"),
    ("dfew", "dfew", f"{DFEW_TEST}/set_3.csv", 2, "27,3", "also in the test list"),
    ("mafw", "mafw", f"{MAFW_SINGLE}/set_2/test.txt", 1, "00102.mp4", "expected 2 fields"),
    ("mafw", "mafw", f"{MAFW_SINGLE}/set_1/test.txt", 2, "00031.mp4 boredom", "unknown MAFW label"),
    ("mafw", "mafw", f"{MAFW_SINGLE}/set_3/test.txt", 1, "00200.mp4 anger_disgust", "unknown MAFW label"),
    ("mafw", "mafw", "Train & Test Set/single/with_caption/set_2/test.txt", 1, "00102.mp4\tsad", "4 tab-separated"),
    ("mafw", "mafw_compound", f"{MAFW_COMPOUND}/set_4/test.txt", 1, "00310.mp4 disgust_scorn", "unknown MAFW label"),
    ("ferv39k", "ferv39k", FV_TRAIN, 2, "Interview/Happy/0227", "expected '<Scene>"),
    ("ferv39k", "ferv39k", FV_TEST, 3, "Interview/Neutral/0003 Calm", "unknown label"),
    ("rafdb", "rafdb", RAF_BASIC, 2, "train_00002.jpg 8", "labels are 1-7"),
    ("rafdb", "rafdb", RAF_BASIC, 3, "test_0001.jpg 7 extra", "expected 2 fields"),
    ("rafdb", "rafdb", RAF_BASIC, 4, "val_0002.jpg 1", "train_ or test_"),
    ("rafdb", "rafdb", RAF_COMPOUND, 2, "train_0002.jpg 12", "labels are 1-11"),
    ("affectnet", "affectnet", AN_TRAIN, 3, "a.jpg,1,2,3,4,5;6,6", "expected 9 columns"),
    ("affectnet", "affectnet", AN_TRAIN, 2, "a.jpg,x,2,3,4,5;6,1,0.1,0.2", "face_x must be a number"),
    ("affectnet", "affectnet", AN_VAL, 2, "a.jpg,1,2,3,4,5;6,11,0.1,0.2", "unknown expression '11'"),
    ("affectnet", "affectnet", AN_VAL, 3, "a.jpg,1,2,3,4,5;6,1,high,0.2", "valence must be a number"),
]


@pytest.mark.parametrize(("corpus", "name", "rel", "line", "replacement", "problem"), MALFORMED)
def test_malformed_file_names_file_and_line(tmp_path, corpus, name, rel, line, replacement, problem):
    root = tmp_path / corpus
    shutil.copytree(FIXTURES / corpus, root)
    path = root / rel
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = replacement.encode() + b"\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(DatasetFormatError) as info:
        read_all(name, root)
    message = str(info.value)
    assert f"{path.name}:{line}:" in message
    assert problem in message
    assert info.value.line == line and Path(info.value.path) == path


@pytest.mark.parametrize(
    ("corpus", "name", "rel"),
    [
        ("dfew", "dfew", f"{DFEW_TEST}/set_4.csv"),
        ("mafw", "mafw", f"{MAFW_SINGLE}/set_5/test.txt"),
        ("mafw", "mafw_compound", f"{MAFW_COMPOUND}/set_2/test.txt"),
        ("ferv39k", "ferv39k", "4_setups/All_scenes/test_All.csv"),
        ("affectnet", "affectnet", AN_VAL),
    ],
)
def test_missing_annotation_file_raises(tmp_path, corpus, name, rel):
    root = tmp_path / corpus
    shutil.copytree(FIXTURES / corpus, root)
    (root / rel).unlink()
    with pytest.raises(DatasetFormatError, match=Path(rel).name):
        read_all(name, root)


def test_rafdb_without_any_label_list_raises(tmp_path):
    with pytest.raises(DatasetFormatError, match="list_patition_label.txt"):
        read_all("rafdb", tmp_path)
