"""The evaluation runner on real-face media: metrics, invalid predictions, resume, results file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from emoreason.data.jsonl import read_jsonl
from emoreason.data.schema import Sample
from emoreason.evaluation.runner import EvalConfig, evaluate, run_dir


@pytest.fixture()
def benchmark(tmp_path, smile_video, smiling_photo, no_face_video):
    rows = [
        Sample("toy", str(smile_video), labels=["happy"], split="test", subject="a"),
        Sample(
            "toy",
            str(smiling_photo),
            "image",
            labels=["happiness"],
            split="test",
            subject="b",
            aus=[{"code": "AU12", "intensity": 4}, {"code": "AU15", "intensity": 0}],
        ),  # fmt: skip
        Sample("toy", str(no_face_video), labels=["neutral"], split="test", subject="c"),  # no face: invalid
        Sample("toy", str(tmp_path / "missing.mp4"), labels=["sadness"], split="test", subject="c"),  # unreadable
        Sample("toy", str(smile_video), labels=["happiness"], split="train", subject="a", start_s=0.0, end_s=1.0),
    ]
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in rows))
    train = tmp_path / "train.jsonl"
    train.write_text(rows[4].to_json() + "\n")
    return path, train


def test_rules_backend_run(benchmark, tmp_path):
    data, train = benchmark
    config = EvalConfig("toy", str(data), out=str(tmp_path / "results"), train_data=str(train))
    results = evaluate(config)
    emotion = results["metrics"]["emotion"]
    assert emotion["n"] == 4 and emotion["accuracy"] == pytest.approx(0.5)  # 2 smiles right; no face, missing wrong
    assert emotion["confusion"]["columns"][-1] == "invalid"
    assert results["metrics"]["rates"]["invalid_rate"] == pytest.approx(0.5)
    assert results["metrics"]["au"]["per_au_f1"]["AU12"] == 1.0  # the photo's AU12 is found, AU15 is not claimed
    assert results["data"]["evaluated"] == 4 and len(results["data"]["sha256"]) == 64
    assert results["subject_independent"] == {"checked": True, "train_subjects_in_test": ["a"]}
    rows = {r["id"]: r for r in read_jsonl(run_dir(config) / "predictions.jsonl")}
    assert sum(1 for r in rows.values() if r["error"]) == 2
    saved = json.loads((run_dir(config) / "results.json").read_text())
    assert saved["config"]["backend"] == "rules" and saved["metrics"] == results["metrics"]


def test_killed_run_resumes_without_rescoring(benchmark, tmp_path):
    data, _ = benchmark
    config = EvalConfig("toy", str(data), out=str(tmp_path / "results"))
    evaluate(config)
    predictions = run_dir(config) / "predictions.jsonl"
    lines = predictions.read_text().splitlines()
    kept = [json.loads(line) for line in lines[:2]]
    (run_dir(config) / "predictions.jsonl.partial").write_text("\n".join(lines[:2]) + "\n")  # as a kill leaves it
    predictions.unlink()
    evaluate(config)
    again = list(read_jsonl(predictions))
    assert len(again) == 4 and again[:2] == kept  # the first two were not scored again


def test_bad_config_and_cli(benchmark, tmp_path):
    data, _ = benchmark
    with pytest.raises(ValueError, match="backend"):
        EvalConfig("toy", str(data), backend="gpt")
    with pytest.raises(ValueError, match="needs model"):
        EvalConfig("toy", str(data), backend="hf")
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "eval", "--benchmark", "toy", "--data", str(data),
                             "--out", str(tmp_path / "r"), "--limit", "2"], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["n"] == 2
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "eval", "--benchmark", "toy", "--data",
                             str(tmp_path / "nope.jsonl")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "nope.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_report_and_model_card_from_a_real_run(benchmark, tmp_path):
    from emoreason.model.tiny import make_tiny_checkpoint

    data, _ = benchmark
    rafdb = tmp_path / "rafdb.jsonl"  # a benchmark named after a corpus must hold that corpus's rows
    rafdb.write_text("".join(json.dumps(r | {"dataset": "rafdb"}) + "\n" for r in read_jsonl(data)))
    evaluate(EvalConfig("rafdb", str(rafdb), out=str(tmp_path / "results")))
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "eval", "report", str(tmp_path / "results"),
                             "--out", str(tmp_path / "report.md")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "report.md").read_text()
    assert "rafdb" in report and "POSTER" in report  # our run next to published numbers, with sources
    assert (tmp_path / "report_files").is_dir() and any((tmp_path / "report_files").glob("*_confusion.png"))
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny")
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "model-card", str(checkpoint), "--results",
                             str(tmp_path / "results")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    card = (checkpoint / "README.md").read_text()
    assert card.startswith("---") and "Article 5(1)(f)" in card and "lora" in card.lower()
