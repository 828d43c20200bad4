"""Evaluation as a user runs it on the adapters' own fixtures: published protocols, label spaces, benchmark names.

The fixtures have annotations but no media, so every prediction is invalid (with an error); what is checked is
which rows each protocol scores, how folds are combined, and that misuse is one line, not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emoreason.cli import main
from emoreason.data import DataError
from emoreason.data.build import build_dataset
from emoreason.data.jsonl import read_jsonl
from emoreason.evaluation.protocols import EvaluationError, mean_metrics
from emoreason.evaluation.runner import EvalConfig, evaluate, run_dir
from emoreason.evaluation.suite import run_suite

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every corpus fixture built with ``build_dataset``, as ``emoreason data build`` writes it."""
    folder = tmp_path_factory.mktemp("built")

    def build(name: str, subset: str | None = None) -> Path:
        out = folder / f"{name}-{subset or 'default'}.jsonl"
        if not out.exists():
            build_dataset(name, FIXTURES / name, out, **({"subset": subset} if subset else {}))
        return out

    return build


# corpus -> (protocol, rows it evaluates, folds scored on their own); the fixtures' splits are in the adapters' tests
PROTOCOL_CASES = {
    "dfew": ("5-fold", 7, ["fold1", "fold2", "fold3", "fold4", "fold5"]),
    "mafw": ("5-fold", 6, ["fold1", "fold2", "fold3", "fold4", "fold5"]),
    "affectnet": ("validation", 2, None),  # the 2 training rows are left out
    "bp4d": ("3-fold", 6, ["fold2", "fold3"]),  # the fixture's subjects are in folds 2 and 3 only
    "disfa": ("3-fold", 4, ["fold3"]),
    "casme2": ("loso", 4, None),  # split None: leave-one-subject-out takes every row
    "emer": ("all", 4, None),
    "ferv39k": ("test", 4, None),
}


@pytest.mark.parametrize("corpus", sorted(PROTOCOL_CASES))
def test_each_corpus_is_evaluated_under_its_published_protocol(corpus, built, tmp_path):
    protocol, rows, folds = PROTOCOL_CASES[corpus]
    results = evaluate(EvalConfig(corpus, str(built(corpus)), out=str(tmp_path)))
    assert results["protocol"]["name"] == protocol and results["data"]["split"] == protocol
    assert results["data"]["evaluated"] == rows and results["metrics"]["rates"]["invalid_rate"] == 1.0
    assert all(p["error"] for p in read_jsonl(next(tmp_path.glob("*/predictions.jsonl"))))  # no media: invalid
    if folds is None:
        assert "folds" not in results
        return
    assert list(results["folds"]) == folds and sum(f["n"] for f in results["folds"].values()) == rows
    assert results["protocol"]["complete"] == (len(folds) == len(results["protocol"]["splits"]))
    assert bool(results["warnings"]) != results["protocol"]["complete"]  # a missing fold is said, and recorded
    saved = json.loads(next(tmp_path.glob("*/results.json")).read_text())
    assert saved["protocol"] == results["protocol"] and saved["folds"] == results["folds"]


def test_folds_are_scored_one_by_one_and_averaged(built, tmp_path):
    # Seed the run's predictions (as a resumed run finds them): fold1's two clips answered right, the rest
    # invalid. The DFEW tables average the folds: mean accuracy 1/5, where pooling would give 2/7.
    data = built("dfew")
    config = EvalConfig("dfew", str(data), out=str(tmp_path))
    fold1 = [r for r in read_jsonl(data) if r["split"] == "fold1"]
    seeded = [{"id": r["id"], "subject": None, "label_space": "basic", "gold_labels": r["labels"], "gold_emotion":
               r["emotion"], "gold_aus": {}, "error": None, "pred_emotion": r["emotion"], "confidence": 0.9,
               "pred_aus": {}, "evidence_aus": {}, "valid": True, "format_ok": True, "completion": None,
               "seconds": 0.1} for r in fold1]  # fmt: skip
    run_dir(config).mkdir(parents=True)
    (run_dir(config) / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeded))
    results = evaluate(config)
    assert len(fold1) == 2 and results["folds"]["fold1"]["metrics"]["emotion"]["accuracy"] == 1.0
    assert [results["folds"][f]["metrics"]["emotion"]["accuracy"] for f in ("fold2", "fold5")] == [0.0, 0.0]
    emotion = results["metrics"]["emotion"]
    assert emotion["accuracy"] == pytest.approx(0.2) and emotion["war"] == pytest.approx(0.2)
    assert emotion["n"] == 7 and sum(map(sum, emotion["confusion"]["matrix"])) == 7  # counts are summed
    assert results["protocol"]["complete"] and not results["warnings"]


def test_mean_metrics_averages_scores_and_sums_counts():
    parts = [{"n": 2, "uar": 1.0, "support": {"anger": 2}, "icc": None, "confusion": {"labels": ["a"], "matrix": [[2]]}},
             {"n": 5, "uar": 0.0, "support": {"anger": 5}, "icc": 0.4, "confusion": {"labels": ["a"], "matrix": [[1]]}},
             None]  # fmt: skip
    assert mean_metrics(parts) == {"n": 7, "uar": 0.5, "support": {"anger": 7}, "icc": 0.4,
                                   "confusion": {"labels": ["a"], "matrix": [[3]]}}  # fmt: skip


def test_a_split_the_file_lacks_is_one_line_listing_its_splits(built, tmp_path, capsys):
    data = built("dfew")
    with pytest.raises(EvaluationError, match=r"no samples with split test .*fold1 \(2\), fold2 \(1\)"):
        evaluate(EvalConfig("dfew", str(data), split="test", out=str(tmp_path)))
    one = evaluate(EvalConfig("dfew", str(data), split="fold5", out=str(tmp_path)))
    assert one["protocol"]["name"] == "fold5" and one["data"]["evaluated"] == 2 and "folds" not in one
    every = evaluate(EvalConfig("casme2", str(built("casme2")), split="all", out=str(tmp_path)))
    assert every["protocol"]["kind"] == "all" and every["data"]["evaluated"] == 4
    code = main(["eval", "--benchmark", "dfew", "--data", str(data), "--split", "test", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "fold3 (1)" in err and "Traceback" not in err


def test_rafdb_label_spaces_are_scored_apart_and_build_can_choose_a_subset(built, tmp_path):
    mixed = built("rafdb")  # basic and compound samples in one file, as `data build` writes them by default
    published = evaluate(EvalConfig("rafdb", str(mixed), out=str(tmp_path)))  # the basic test set, as published
    assert published["label_space"] == "basic" and published["data"]["evaluated"] == 2
    assert "by_label_space" not in published and not published["warnings"]
    both = evaluate(EvalConfig("rafdb", str(mixed), split="test", out=str(tmp_path)))
    spaces = both["by_label_space"]
    assert {s: v["n"] for s, v in spaces.items()} == {"basic": 2, "compound": 1}
    assert spaces["compound"]["metrics"]["emotion"]["confusion"]["labels"][0] == "happily surprised"
    assert both["metrics"] == spaces["basic"]["metrics"] and "compound" in both["warnings"][0]
    compound = [json.loads(line) for line in built("rafdb", "compound").read_text().splitlines()]
    assert len(compound) == 3 and {r["label_space"] for r in compound} == {"compound"}
    mafw = [json.loads(line) for line in built("mafw", "compound").read_text().splitlines()]
    assert ["anger", "disgust"] in [r["labels"] for r in mafw]
    with pytest.raises(DataError, match="choose one of basic, compound"):
        build_dataset("rafdb", FIXTURES / "rafdb", tmp_path / "x.jsonl", subset="single")
    with pytest.raises(DataError, match="no subsets"):
        build_dataset("dfew", FIXTURES / "dfew", tmp_path / "x.jsonl", subset="basic")


def test_a_benchmark_name_that_is_not_the_datas_corpus_is_refused(built, tmp_path, capsys):
    data = built("dfew")
    with pytest.raises(EvaluationError, match="benchmark 'disfa' does not match the data.*dfew"):
        evaluate(EvalConfig("disfa", str(data), out=str(tmp_path)))
    code = main(["eval", "--benchmark", "disfa", "--data", str(data), "--split", "all", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "dfew" in err
    own = evaluate(EvalConfig("my-dfew-run", str(data), out=str(tmp_path)))  # a name of one's own: not checked
    assert own["protocol"]["name"] == "5-fold"  # and the protocol follows the data's corpus


def test_a_suite_records_each_runs_protocol(built, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"out: {tmp_path / 'r'}\nruns:\n  - benchmark: dfew\n    data: {built('dfew')}\n"
                     f"  - benchmark: affectnet\n    data: {built('affectnet')}\n")  # fmt: skip
    summary = json.loads(run_suite(suite).read_text())
    assert [run["protocol"]["name"] for run in summary["runs"]] == ["5-fold", "validation"]
    suite.write_text(f"runs:\n  - benchmark: dfew\n    data: {built('dfew')}\n    backend: gpt\n")
    assert main(["eval", "--config", str(suite)]) == 2 and "runs[0]" in capsys.readouterr().err
