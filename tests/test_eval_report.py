"""Evaluation reports and model cards, built from fake run folders and a fake checkpoint in tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from emoreason.evaluation.model_card import write_model_card
from emoreason.evaluation.published import PUBLISHED, published_for
from emoreason.evaluation.report import load_runs, reliability, write_report
from emoreason.metrics import emotion_metrics

LABELS = ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
GOLD = ["happiness"] * 6 + ["sadness"] * 4 + ["anger"] * 3 + ["neutral"] * 5 + ["fear"] * 2
PRED = ["happiness"] * 5 + [None] + ["sadness", "sadness", "neutral", "sadness"] + ["anger", "disgust", "anger"]
PRED += ["neutral"] * 4 + ["sadness"] + ["surprise", "fear"]


def _predictions(seed_conf: float) -> list[dict]:
    rows = []
    for i, (gold, pred) in enumerate(zip(GOLD, PRED)):
        confidence = None if pred is None else round(min(1.0, seed_conf + 0.03 * (i % 7)), 3)
        rows.append({"id": f"clip{i:03d}", "subject": f"s{i % 3}", "gold_labels": [gold], "gold_emotion": gold,
                     "pred_emotion": pred, "confidence": confidence, "pred_aus": {"AU12": 3.1} if pred else {},
                     "gold_aus": {"AU12": 3.0, "AU4": None}, "valid": pred is not None, "format_ok": pred is not None,
                     "error": None if pred else "unparseable answer"})  # fmt: skip
    return rows


def _emotion_block() -> dict:
    raw = emotion_metrics(GOLD, PRED, LABELS)
    kept = {k: v for k, v in raw.items() if k not in ("confusion", "confusion_columns")}
    return kept | {"war": raw["accuracy"],
                   "confusion": {"labels": LABELS, "columns": raw["confusion_columns"], "matrix": raw["confusion"]}}  # fmt: skip


def _run(folder: Path, backend: str, model: str | None, au: bool, subjects: bool, conf: float) -> Path:
    au_block = None
    if au:
        au_block = {"per_au_f1": {"AU1": 0.41, "AU4": None, "AU6": 0.55, "AU12": 0.82}, "macro_au_f1": 0.593,
                    "icc": {"AU12": 0.71, "AU6": None}, "mean_icc": 0.71, "mae": {"AU12": 0.6}, "mean_mae": 0.6}  # fmt: skip
    results = {
        "emoreason_version": "0.1.0", "created": "2025-01-01T00:00:00+00:00", "benchmark": "dfew", "backend": backend,
        "model": {"path": model, "sha256": "ab" * 32} if model else None, "label_space": "basic", "labels": LABELS,
        "data": {"path": "data/dfew.jsonl", "sha256": "cd" * 32, "rows": 40, "evaluated": len(GOLD), "split": "test"},
        "config": {"benchmark": "dfew", "backend": backend}, "timings": {"total_s": 12.5, "per_sample_s": 0.62},
        "metrics": {"emotion": _emotion_block(), "au": au_block,
                    "rates": {"format_validity": 0.95, "facs_consistency": 0.8 if au else None,
                              "hallucinated_au_rate": None if not au else 0.05, "faithfulness": None,
                              "cue_overlap_f1": None}},
        "by_subject": {"s0": {"n": 7, "accuracy": 0.71}, "s1": {"n": 7, "accuracy": 0.57}} if subjects else {},
        "subject_independent": {"checked": subjects, "train_subjects_in_test": []},
    }  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    lines = [json.dumps(r) for r in _predictions(conf)]
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    ckpt = tmp_path / "ckpt-sft"
    (ckpt / "lora").mkdir(parents=True)
    config = {
        "model_type": "emoreason", "face_temporal_slots": 2, "face_queries_per_region": 1, "num_audio_tokens": 4,
        "max_frames": 8, "au_codes": ["AU1", "AU2", "AU4", "AU6", "AU12"], "freeze_towers": True,
        "face_config": {"model_type": "siglip_vision_model", "hidden_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 1, "image_size": 64, "patch_size": 16},
        "audio_config": {"model_type": "whisper", "d_model": 64, "encoder_layers": 1, "encoder_attention_heads": 1,
                         "num_mel_bins": 80},
        "text_config": {"model_type": "qwen2", "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "num_key_value_heads": 1, "vocab_size": 512},
    }  # fmt: skip
    (ckpt / "config.json").write_text(json.dumps(config))
    adapter = {
        "peft_type": "LORA",
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "target_modules": ["v_proj", "q_proj"],
    }
    (ckpt / "lora" / "adapter_config.json").write_text(json.dumps(adapter))
    return ckpt


@pytest.fixture
def results(tmp_path, checkpoint) -> Path:
    root = tmp_path / "results"
    _run(root / "dfew-rules-aaaa1111", "rules", None, au=False, subjects=False, conf=0.55)
    _run(root / "dfew-hf-bbbb2222", "hf", str(checkpoint), au=True, subjects=True, conf=0.7)
    return root


@pytest.fixture
def report(results, tmp_path) -> tuple[Path, str]:
    out = write_report(results, tmp_path / "out" / "report.md")
    return out, out.read_text()


def _row(text: str, run: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| `{run}`"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_load_runs_reads_every_results_json(results):
    runs = load_runs(results)
    assert [r["run"] for r in runs] == ["dfew-hf-bbbb2222", "dfew-rules-aaaa1111"]
    assert all(Path(r["folder"]).is_dir() for r in runs)


def test_summary_table_has_one_row_per_run(report):
    _, text = report
    assert "| Run | Benchmark | Backend | Model | n | Accuracy (WAR) | UAR | Macro F1 | Macro AU F1 |" in text
    hf = _row(text, "dfew-hf-bbbb2222")
    war = emotion_metrics(GOLD, PRED, LABELS)["accuracy"]
    assert hf[1:6] == ["dfew", "hf", "ckpt-sft", str(len(GOLD)), f"{100 * war:.2f}"]
    assert hf[8] == "59.30"  # macro AU F1, as a percentage


def test_null_metrics_render_as_dash(report):
    _, text = report
    rules = _row(text, "dfew-rules-aaaa1111")
    assert rules[3] == "–"  # no model
    assert rules[8] == "–" and rules[10] == "–" and rules[11] == "–"  # AU F1, FACS consistency, hallucination: null
    assert "Macro AU F1: – (no AU annotations" in text


def test_published_rows_carry_their_sources(report):
    _, text = report
    lines = text.splitlines()
    for published in PUBLISHED["dfew"]:
        row = next(line for line in lines if line.startswith(f"| {published.system} |"))
        assert published.source in row and published.protocol in row
        assert f"{published.metric_values['uar']:.2f}" in row
    assert "| **emoreason hf** (`dfew-hf-bbbb2222`) |" in text


def test_plots_exist_as_valid_pngs_and_are_linked(report):
    out, text = report
    files = out.parent / "report_files"
    for run in ("dfew-rules-aaaa1111", "dfew-hf-bbbb2222"):
        for kind in ("confusion", "au_f1", "reliability"):
            png = files / f"{run}_{kind}.png"
            with Image.open(png) as image:
                image.verify()
                assert image.format == "PNG"
            assert f"](report_files/{png.name})" in text


def test_reliability_bins_and_ece():
    rows = [{"gold_emotion": "happiness", "gold_labels": ["happiness"], "pred_emotion": p, "confidence": c}
            for p, c in [("happiness", 0.95), ("anger", 0.95), ("anger", 0.15), ("fear", 0.15)]]  # fmt: skip
    rows.append({"gold_emotion": "anger", "gold_labels": ["anger"], "pred_emotion": None, "confidence": None})
    rel = reliability(rows, "basic")
    # bin 9: confidence 0.95, accuracy 0.5; bin 1: confidence 0.15, accuracy 0 -> ECE = 0.5 * 0.45 + 0.5 * 0.15
    assert rel["n"] == 4 and rel["ece"] == pytest.approx(0.30)
    assert rel["bins"][9]["accuracy"] == 0.5 and rel["bins"][1]["n"] == 2
    assert reliability([], "basic")["ece"] is None


def test_report_prints_ece_per_run(report):
    _, text = report
    assert len(re.findall(r"^ECE \d\.\d{3} over \d+ predictions with a confidence", text, flags=re.M)) == 2


def test_subject_breakdown_only_when_present(report):
    _, text = report
    assert text.count("#### By subject") == 1
    assert "| `s0` | 7 | 71.00 |" in text


def test_malformed_results_json_names_the_file(results, tmp_path):
    bad = results / "broken-run" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_runs(results)
    bad.write_text(json.dumps({"benchmark": "dfew"}))  # valid JSON, not a run record
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        write_report(results, tmp_path / "report.md")


def test_empty_results_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no results.json"):
        write_report(tmp_path, tmp_path / "report.md")
    with pytest.raises(FileNotFoundError):
        load_runs(tmp_path / "missing")


def test_published_numbers_are_well_formed():
    for benchmark, entries in PUBLISHED.items():
        assert entries, benchmark
        for entry in entries:
            assert entry.source and entry.protocol and entry.system
            assert set(entry.metric_values) <= {"uar", "war", "accuracy"}
            assert all(0 < v < 100 for v in entry.metric_values.values())
    assert published_for("RAF-DB") == PUBLISHED["rafdb"]
    assert published_for("affectnet") == []


def test_model_card_from_checkpoint_and_results(checkpoint, results):
    card = write_model_card(checkpoint, results)
    assert card == checkpoint / "README.md"
    text = card.read_text()
    assert text.startswith("---\nlibrary_name: emoreason\ntags: [")
    assert "lora" in text.split("---")[1]
    for model_type in ("siglip_vision_model", "whisper", "qwen2"):
        assert f"`{model_type}`" in text
    assert "12 face tokens (6 AU regions x" in text and "4 audio tokens" in text
    assert "r = 8, alpha = 16" in text and "`q_proj`, `v_proj`" in text
    assert "Article 5(1)(f)" in text and "workplace and education institutions" in text
    assert "medical or safety reasons" in text and "Barrett" in text
    assert "Not recorded in this checkpoint" in text
    # only the run whose model is this checkpoint, with its per-class breakdown
    assert "| `dfew-hf-bbbb2222` | dfew | hf | ckpt-sft |" in text
    assert "dfew-rules-aaaa1111" not in text
    assert "### Per-class results: `dfew-hf-bbbb2222`" in text and "| happiness | 83.33 |" in text
    assert "95% Wilson interval" in text


def test_model_card_shows_all_runs_when_none_match(checkpoint, results, tmp_path):
    other = tmp_path / "other-ckpt"
    other.mkdir()
    (other / "config.json").write_text((checkpoint / "config.json").read_text())
    (other / "training_data.json").write_text(json.dumps({"datasets": ["dfew", "rafdb"], "samples": 1200}))
    text = write_model_card(other, results).read_text()
    assert "names this checkpoint as its model, so all 2 runs" in text
    assert "dfew-rules-aaaa1111" in text and "dfew-hf-bbbb2222" in text
    assert '- datasets: ["dfew", "rafdb"]' in text and "- samples: 1200" in text
    assert "No LoRA adapter" in text and "\ntags: [" in text and "lora" not in text.split("---")[1]


def test_model_card_without_results(checkpoint):
    text = write_model_card(checkpoint, None).read_text()
    assert "No evaluation results were given" in text


def test_model_card_needs_config_json(tmp_path):
    folder = tmp_path / "not-a-checkpoint"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder / "config.json"))):
        write_model_card(folder, None)


def test_bad_prediction_rows_name_their_file(results, tmp_path):
    predictions = results / "dfew-rules-aaaa1111" / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    rows[0]["confidence"] = 1.7
    predictions.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=re.escape(str(predictions)) + ".*outside 0..1"):
        write_report(results, tmp_path / "report.md")
    predictions.write_text('{"id": "clip000"\n')
    with pytest.raises(ValueError, match=re.escape(str(predictions)) + ":1"):
        write_report(results, tmp_path / "report.md")
