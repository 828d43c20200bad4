"""The parallel engine (emoreason.scale) on real Ray: a crash, a hang or a killed worker fails or retries its own
item only; evaluation through Ray predicts what the sequential run predicts; a two-node cluster (two `ray start`
nodes on this machine) shares the work of `emoreason explain folder/`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emoreason.scale import EngineError, Failure, RayEngine, SequentialEngine, local_cluster, make_engine

from .scale_work import Probe

ray = pytest.importorskip("ray", reason="the [scale] extra (Ray) is not installed")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine, 2 CPUs; its workers import this tests package (PYTHONPATH)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _run(engine, task, items) -> dict:
    results = {}
    for index, value in engine.map(task, items):
        assert index not in results  # one value per item
        results[index] = value
    return results


def test_a_crash_a_hang_and_an_exception_fail_their_own_items_only(local_ray):
    engine = RayEngine(workers=2, timeout_s=8.0)
    items = ["a", "abort", "b", "hang", "c", "raise", "d"]
    results = _run(engine, Probe(), items)
    assert sorted(results) == list(range(len(items)))
    ok = {items[i]: v for i, v in results.items() if not isinstance(v, Failure)}
    assert sorted(ok) == ["a", "b", "c", "d"]
    assert "died on this input 2 times" in results[1].error  # retried once on a new worker, then failed
    assert "timed out after 8 s" in results[3].error
    assert results[5].error == "ValueError: a bad item"
    assert engine.replaced == 3  # two crashes and the hang; the exception leaves its worker alive
    assert len({v["pid"] for v in ok.values()}) >= 2


def test_a_worker_killed_mid_item_is_replaced_and_the_item_retried(local_ray, tmp_path):
    engine = RayEngine(workers=2, timeout_s=60.0)
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for mark in tmp_path.glob("victim-*.pid"):
                killed.append(int(mark.read_text()))
                os.kill(killed[0], signal.SIGKILL)
                break
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    results = _run(engine, Probe(marks=str(tmp_path), slow_s=2.0), ["a", "victim", "b", "c"])
    thread.join()
    assert len(killed) == 1 and engine.replaced == 1
    assert not any(isinstance(v, Failure) for v in results.values())
    assert results[1]["item"] == "victim" and results[1]["pid"] != killed[0]  # the retry, on the new worker
    assert len(list(tmp_path.glob("victim-*.pid"))) == 2


def test_the_sequential_engine_and_the_choice_of_engine(local_ray, monkeypatch, capsys):
    results = _run(SequentialEngine(), Probe(), ["a", "raise", "b"])
    assert results[1] == Failure("ValueError: a bad item") and results[2]["item"] == "b"
    assert make_engine(workers=1, items=10).name == "sequential"  # --workers 1: no Ray
    assert make_engine(workers=None, items=1).name == "sequential"  # one input: no start-up to pay
    monkeypatch.setattr("emoreason.scale.ray_available", lambda: False)
    messages: list[str] = []
    assert make_engine(items=5, say=messages.append).name == "sequential"
    assert "emoreason[scale]" in messages[0]
    with pytest.raises(EngineError, match="--ray-address needs Ray"):
        make_engine(address="auto", items=5)
    with pytest.raises(ValueError, match="workers"):
        RayEngine(workers=0)


def test_a_task_that_cannot_start_is_one_clear_error(local_ray):
    class Broken:
        def setup(self, index):
            raise FileNotFoundError("no checkpoint at /nope")

        def __call__(self, item):
            return item

    with pytest.raises(EngineError, match="no worker could start: .*no checkpoint at /nope"):
        _run(RayEngine(workers=2), Broken(), ["a", "b"])


def test_eval_through_ray_predicts_what_the_sequential_run_predicts(local_ray, tmp_path, smile_video,
                                                                      smiling_photo, no_face_video):  # fmt: skip
    from emoreason.data.build import build_dataset
    from emoreason.data.jsonl import read_jsonl
    from emoreason.data.schema import Sample
    from emoreason.evaluation.runner import EvalConfig, evaluate, run_dir

    rows = [Sample("toy", str(smile_video), labels=["happiness"], split="test", subject="a"),
            Sample("toy", str(smiling_photo), "image", labels=["happiness"], split="test", subject="b",
                   aus=[{"code": "AU12", "intensity": 4}]),
            Sample("toy", str(no_face_video), labels=["neutral"], split="test", subject="c"),
            Sample("toy", str(tmp_path / "missing.mp4"), labels=["sadness"], split="test", subject="c"),
            Sample("toy", str(smile_video), labels=["happiness"], split="test", subject="d", start_s=0.5, end_s=2.0)]  # fmt: skip
    toy = tmp_path / "toy.jsonl"
    toy.write_text("".join(r.to_json() + "\n" for r in rows))
    dfew = tmp_path / "dfew.jsonl"  # the adapter's fixture: annotation rows whose clips are not here
    build_dataset("dfew", ROOT / "tests" / "fixtures" / "datasets" / "dfew", dfew)
    for name, data in (("toy", toy), ("dfew", dfew)):
        runs = {}
        for engine in ("sequential", "ray"):
            config = EvalConfig(name, str(data), split="all", out=str(tmp_path / engine))
            make = None if engine == "sequential" else (lambda n: RayEngine(workers=2))
            results = evaluate(config, engine_for=make)
            predictions = {p["id"]: {k: v for k, v in p.items() if k != "seconds"}
                           for p in read_jsonl(run_dir(config) / "predictions.jsonl")}  # fmt: skip
            runs[engine] = (results, predictions)
        (seq, seq_pred), (par, par_pred) = runs["sequential"], runs["ray"]
        assert par_pred == seq_pred and len(seq_pred) == sum(1 for _ in read_jsonl(data))
        assert par["metrics"] == seq["metrics"] and par["by_subject"] == seq["by_subject"]
    assert seq_pred and all(p["error"] for p in seq_pred.values())  # dfew: every clip missing, every row says so


@pytest.mark.ray_cluster
def test_two_nodes_share_a_folder(tmp_path, smile_video, no_face_video):
    """Two Ray nodes on this machine (`ray start --head`, `ray start --address`, one CPU each): `emoreason explain
    folder/ --ray-address` runs inputs on both."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        shutil.copy(smile_video, clips / f"smile{i}.mp4")
        with open(clips / f"smile{i}.mp4", "ab") as handle:  # other content, so each is its own row
            handle.write(bytes([i]))
    shutil.copy(no_face_video, clips / "no_face.mp4")
    with local_cluster(nodes=2, cpus=1) as (address, env):
        out = tmp_path / "reports.jsonl"
        result = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(clips), "--out", str(out),
                                 "--ray-address", address], capture_output=True, text=True, env=env,
                                timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "on 2 Ray workers on 2 nodes" in result.stdout, result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(row["ok"] for row in rows)


def test_a_cluster_address_that_does_not_answer_is_one_line_at_once(tmp_path, smile_video):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(smile_video), str(smile_video),
                             "--out", str(tmp_path / "r.jsonl"), "--ray-address", f"127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and "nothing answers at 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr and time.monotonic() - started < 60  # Ray alone would retry for ever


def test_synth_measure_media_through_ray_writes_what_the_sequential_run_writes(local_ray, tmp_path, smile_video,
                                                                                 no_face_video):  # fmt: skip
    from emoreason.data.jsonl import read_jsonl
    from emoreason.data.schema import Sample
    from emoreason.data.synth import synthesize

    samples = [Sample("toy", str(smile_video), labels=["happiness"], split="train", subject="a"),
               Sample("toy", str(smile_video), labels=["happiness"], split="train", subject="a", start_s=0.5),
               Sample("toy", str(no_face_video), labels=["neutral"], split="train", subject="b"),
               Sample("toy", str(tmp_path / "missing.mp4"), labels=["sadness"], split="train", subject="c")]  # fmt: skip
    written = {}
    for name, make in (("sequential", None), ("ray", lambda n: RayEngine(workers=2))):
        stats = synthesize(samples, tmp_path / f"{name}.jsonl", measure_media=True, engine_for=make)
        written[name] = (stats.to_dict(), list(read_jsonl(tmp_path / f"{name}.jsonl")))
    assert written["ray"] == written["sequential"]
    assert written["ray"][0]["written"] == 2  # the two smiles: measured AU12 supports happiness


def test_train_prepare_only_fills_the_media_cache_on_ray_workers(local_ray, toy, tmp_path, capsys):
    from emoreason.cli import main

    data, checkpoint, _root = toy
    recipe = tmp_path / "sft.yaml"
    cache = tmp_path / "cache"
    recipe.write_text(f"model_path: {checkpoint}\ntrain_data: {data}\ncrops: frames\nevidence: false\n"
                      f"use_audio: false\ncache_dir: {cache}\noutput_dir: {tmp_path / 'run'}\nmax_steps: 1\n"
                      "use_cpu: true\nreport_to: none\nprepare_workers: 2\n")  # fmt: skip
    assert main(["train", "sft", "--config", str(recipe), "--prepare-only"]) == 0
    assert f"media cache prepared in {cache}" in capsys.readouterr().out
    entries = list(cache.rglob("*.pt"))
    assert len(entries) == sum(1 for line in data.read_text().splitlines() if '"train"' in line)
    assert not (tmp_path / "run").exists()  # nothing trained


def test_the_hf_backend_loads_its_checkpoint_once_per_worker(toy, tmp_path, smile_video):
    """`explain folder/ --model CKPT` on 2 Ray workers: every row answered by the checkpoint (the tiny one)."""
    _data, checkpoint, _root = toy
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        (clips / f"c{i}.mp4").write_bytes(smile_video.read_bytes() + bytes([i]))
    out = tmp_path / "reports.jsonl"
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(clips), "--out", str(out),
                             "--model", str(checkpoint), "--workers", "2"], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "on 2 Ray workers" in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(row["ok"] and row["report"]["backend"] == "hf" for row in rows), rows
    missing = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(clips), "--out",
                              str(tmp_path / "x.jsonl"), "--model", str(tmp_path / "nope"), "--workers", "2"],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
