"""Instruction-data synthesis, resumable writes, self-improvement rounds, dataset statistics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from emoreason.answer import parse_answer
from emoreason.data.jsonl import JsonlError, ResumableWriter, read_jsonl
from emoreason.data.rounds import merge_round
from emoreason.data.schema import Sample
from emoreason.data.stats import dataset_stats
from emoreason.data.synth import synthesize


def _sample(i: int, label: str = "happiness", aus=(("AU6", 3), ("AU12", 4)), split="train", **kw) -> Sample:
    return Sample("toy", f"/data/clip{i}.mp4", labels=[label], aus=[{"code": c, "intensity": v} for c, v in aus],
                  split=split, subject=f"s{i % 3}", onset_s=0.5, apex_s=1.0, offset_s=1.8, **kw)  # fmt: skip


def _write(path, samples):
    path.write_text("".join(s.to_json() + "\n" for s in samples))
    return path


def test_rules_targets_are_verified_varied_and_counted(tmp_path):
    samples = [
        _sample(0),  # AU6+12 labelled happiness: kept
        _sample(1, "surprise", (("AU1", 3), ("AU2", 3), ("AU5", 2), ("AU26", 3))),  # kept
        _sample(2, "happiness", (("AU4", 3), ("AU15", 3), ("AU1", 2))),  # the AUs say sadness: dropped
        _sample(3, "happiness", ()),  # no AU labels and no media measured: dropped
        _sample(4, split="test"),  # evaluation split: never written
        _sample(5, "helplessness"),  # no canonical emotion: dropped
        _sample(6, aus=(("AU6", None), ("AU12", None), ("AU15", 0))),  # occurrence-only labels: kept
    ]
    stats = synthesize(samples, tmp_path / "cot.jsonl", variants=4, seed=1)
    rows = list(read_jsonl(tmp_path / "cot.jsonl"))
    sources = {r["provenance"]["source_id"] for r in rows}
    assert sources == {samples[0].id, samples[1].id, samples[6].id}
    assert stats.dropped["evidence does not support the label"] == 4
    assert stats.dropped["no AU evidence"] == 4 and stats.dropped["evaluation sample"] == 1
    assert stats.dropped["no canonical emotion"] == 4
    for row in rows:
        pred = parse_answer(row["rationale"])
        assert pred.format_ok and pred.emotion == row["emotion"]
    happy = [r["rationale"] for r in rows if r["provenance"]["source_id"] == samples[0].id]
    assert len(set(happy)) == len(happy) >= 2  # phrasing varies; duplicates are dropped, not written twice


def test_evaluation_ids_never_leak(tmp_path):
    train, held_out = _sample(0), _sample(1)
    stats = synthesize([train, held_out], tmp_path / "out.jsonl", exclude_ids={held_out.id})
    assert {r["provenance"]["source_id"] for r in read_jsonl(tmp_path / "out.jsonl")} == {train.id}
    assert stats.dropped["evaluation sample"] == 1


def test_output_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    synthesize([_sample(i) for i in range(4)], tmp_path / "out.jsonl", variants=2)
    table = datasets.load_dataset("json", data_files=str(tmp_path / "out.jsonl"), split="train")
    assert len(table) == 8 and {"rationale", "aus", "labels", "provenance"} <= set(table.column_names)


def test_writer_recovers_a_torn_line_and_skips_done_ids(tmp_path):
    out = tmp_path / "rows.jsonl"
    writer = ResumableWriter(out, sync_every=1)
    for i in range(3):
        writer.write({"id": str(i)})
    writer.close(complete=False)  # killed: only the .partial exists
    with open(str(out) + ".partial", "a") as handle:
        handle.write('{"id": "3", "torn')  # the write the kill interrupted
    assert not out.exists()
    with ResumableWriter(out) as writer:
        assert writer.done == {"0", "1", "2"}
        assert [writer.write({"id": str(i)}) for i in range(5)] == [False, False, False, True, True]
    assert [r["id"] for r in read_jsonl(out)] == ["0", "1", "2", "3", "4"]


def test_killed_synthesis_resumes_without_loss_or_duplicates(tmp_path):
    inp = _write(tmp_path / "in.jsonl", [_sample(i) for i in range(1500)])
    command = [sys.executable, "-m", "emoreason.cli", "synth", "--in", str(inp), "--variants", "2"]
    subprocess.run(command + ["--out", str(tmp_path / "reference.jsonl")], check=True, capture_output=True)
    out, partial = tmp_path / "out.jsonl", tmp_path / "out.jsonl.partial"
    process = subprocess.Popen(command + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not partial.exists() or partial.stat().st_size < 20_000):
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists() and partial.exists()  # nothing published half-done
    subprocess.run(command + ["--out", str(out)], check=True, capture_output=True)
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids))  # no duplicates
    assert sorted(ids) == sorted(r["id"] for r in read_jsonl(tmp_path / "reference.jsonl"))  # nothing lost


def test_self_improvement_round_keeps_verified_rewarded_samples(tmp_path):
    train = _write(tmp_path / "train.jsonl", [_sample(0)])
    good = '<think>AU6 and AU12: a Duchenne smile.</think><answer>{"emotion": "happiness", "confidence": 0.9, "aus": []}</answer>'
    wrong = '<think>AU6+AU12</think><answer>{"emotion": "anger", "confidence": 0.9, "aus": []}</answer>'
    candidates = [
        _sample(1).to_dict() | {"completion": good, "reward": 2.5, "model": "ckpt-1"},  # kept
        _sample(2).to_dict() | {"completion": good, "reward": 0.5, "model": "ckpt-1"},  # below threshold
        _sample(3).to_dict() | {"completion": wrong, "reward": 2.5, "model": "ckpt-1"},  # label disagreement
        _sample(4, split="test").to_dict() | {"completion": good, "reward": 3.0, "model": "ckpt-1"},  # eval split
        _sample(1).to_dict() | {"completion": good, "reward": 2.6, "model": "ckpt-1"},  # duplicate
    ]
    (tmp_path / "cand.jsonl").write_text("".join(json.dumps(c) + "\n" for c in candidates))
    manifest = merge_round(train, tmp_path / "cand.jsonl", tmp_path / "round1.jsonl", 1, threshold=2.0)
    rows = list(read_jsonl(tmp_path / "round1.jsonl"))
    assert len(rows) == 2 and rows[1]["provenance"] == {"source_id": _sample(1).id, "generator": "model:ckpt-1",
                                                         "round": 1, "reward": 2.5}  # fmt: skip
    assert manifest["dropped"] == {"below threshold": 1, "label disagreement": 1, "evaluation sample": 1,
                                   "duplicate": 1}  # fmt: skip
    again = merge_round(train, tmp_path / "cand.jsonl", tmp_path / "round1b.jsonl", 1, threshold=2.0)
    assert again["out"]["sha256"] == manifest["out"]["sha256"]  # a round is reproducible


def test_stats_and_cli(tmp_path):
    path = _write(tmp_path / "s.jsonl", [_sample(i, "sadness" if i % 2 else "happiness") for i in range(6)])
    stats = dataset_stats(path)
    assert stats["rows"] == 6 and stats["emotion"] == {"happiness": 3, "sadness": 3}
    assert stats["aus"]["AU12"]["present"] == 6 and stats["subjects"] == 3
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "data", "stats", str(path)], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0 and "AU histogram" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(JsonlError, match="bad.jsonl:2"):
        list(read_jsonl(bad))
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "data", "stats", str(bad)], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 2 and "bad.jsonl:2" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "data", "build", "--dataset", "nope", "--root",
                             str(tmp_path), "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "unknown dataset" in result.stderr


def test_teacher_endpoint_down_is_a_clear_error(tmp_path):
    pytest.importorskip("openai")
    inp = _write(tmp_path / "in.jsonl", [_sample(0)])
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "synth", "--in", str(inp), "--out",
                             str(tmp_path / "o.jsonl"), "--teacher", "http://127.0.0.1:9/v1", "--model", "m"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "not reachable" in result.stderr and "Traceback" not in result.stderr
