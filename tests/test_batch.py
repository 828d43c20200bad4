"""Many inputs in one call (`explain PATH... --out reports.jsonl`, `analyze PATH... --out DIR`): real subprocesses,
real files: a row per input, error rows for bad files, resumable after a rerun or a SIGKILL."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from emoreason.batch import Item, expand_inputs, item_key


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "emoreason.cli", *map(str, args)]


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=600)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def folder(tmp_path, smile_video, no_face_video, bad_files):
    clips = tmp_path / "clips"
    (clips / "sub").mkdir(parents=True)
    shutil.copy(smile_video, clips / "a_smile.mp4")
    shutil.copy(no_face_video, clips / "sub" / "b_no_face.mp4")
    shutil.copy(bad_files["text"], clips / "c_corrupt.mp4")
    (clips / "notes.txt").write_text("not media: ignored by the walk")
    return clips


def test_a_folder_gives_one_row_per_input_and_a_rerun_analyses_nothing(folder, tmp_path):
    out = tmp_path / "reports.jsonl"
    result = run("explain", folder, "--out", out, "--html-dir", tmp_path / "html")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = {row["input"].rsplit("/", 1)[-1]: row for row in _rows(out)}
    assert sorted(rows) == ["a_smile.mp4", "b_no_face.mp4", "c_corrupt.mp4"]
    assert rows["a_smile.mp4"]["ok"] and rows["a_smile.mp4"]["report"]["emotion"]["label"] == "happiness"
    assert rows["b_no_face.mp4"]["ok"] and rows["b_no_face.mp4"]["report"]["faces_found"] == 0
    bad = rows["c_corrupt.mp4"]
    assert not bad["ok"] and "c_corrupt.mp4" in bad["error"] and "\n" not in bad["error"]
    assert "2 done, 1 error" in result.stdout and "warning: 1 input failed" in result.stdout
    assert sorted(p.suffix for p in (tmp_path / "html").iterdir()) == [".html", ".html"]
    again = run("explain", folder, "--out", out)
    assert again.returncode == 0 and "0 done, 0 errors, 3 already done (skipped)" in again.stdout
    assert len(_rows(out)) == 3


def test_a_killed_run_loses_nothing_and_resumes_without_duplicates(folder, tmp_path, smile_video):
    for i in range(3):  # more work, so the kill lands mid-run
        shutil.copy(smile_video, folder / f"d_copy{i}.mp4")
        with open(folder / f"d_copy{i}.mp4", "ab") as handle:
            handle.write(bytes([i]))  # another file's bytes: its own row
    out = tmp_path / "reports.jsonl"
    partial = tmp_path / "reports.jsonl.partial"
    process = subprocess.Popen(_cli("explain", folder, "--out", out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (partial.is_file() and partial.read_text().count("\n") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = _rows(partial)
    assert 2 <= len(written) < 6 and not out.exists()
    with open(partial, "a") as handle:
        handle.write('{"id": "torn')  # a write the kill cut off
    result = run("explain", folder, "--out", out)
    assert result.returncode == 0, result.stderr
    rows = _rows(out)
    assert len(rows) == 6 and len({row["id"] for row in rows}) == 6
    assert f"{len(written)} already done (skipped)" in result.stdout
    assert rows[: len(written)] == written  # what the killed run wrote is kept as it was


def test_a_dataset_jsonl_gives_a_row_per_span(tmp_path, smile_video):
    shutil.copy(smile_video, tmp_path / "clip.mp4")
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"id": "s1", "media": "clip.mp4", "start_s": 0.0, "end_s": 1.0}) + "\n"
                    + json.dumps({"id": "s2", "media": "clip.mp4", "start_s": 0.5, "end_s": 2.5}) + "\n"
                    + json.dumps({"id": "s3", "media": "clip.mp4", "start_s": 5.0, "end_s": 9.0}) + "\n")  # fmt: skip
    out = tmp_path / "out.jsonl"
    result = run("explain", data, "--out", out)
    assert result.returncode == 0, result.stderr
    rows = {row["sample_id"]: row for row in _rows(out)}
    assert rows["s1"]["span"] == [0.0, 1.0] and rows["s1"]["report"]["span"] == [0.0, 1.0]
    assert rows["s2"]["ok"] and rows["s2"]["report"]["emotion"]["label"] == "happiness"
    assert not rows["s3"]["ok"] and "3.0" in rows["s3"]["error"]  # past the 3 s clip: the span's own message


def test_analyze_writes_a_table_per_input(folder, tmp_path):
    out = tmp_path / "tables"  # --workers 1: the in-process path, in input order, no Ray
    result = run("analyze", folder / "a_smile.mp4", folder / "c_corrupt.mp4", "--out", out, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "one after another in this process" in result.stderr and "Ray" not in result.stdout
    rows = _rows(out / "index.jsonl")
    assert [row["ok"] for row in rows] == [True, False]
    assert (out / rows[0]["table"]).read_text().startswith("frame,")


def test_usage_errors_name_the_option(folder, smile_video, tmp_path):
    result = run("explain", folder)
    assert result.returncode == 2 and "--out FILE.jsonl" in result.stderr
    result = run("explain", smile_video, "--out", tmp_path / "x.txt")
    assert result.returncode == 2 and "--out FILE.jsonl" in result.stderr
    result = run("explain", folder, "--out", tmp_path / "r.jsonl", "--html", tmp_path / "r.html")
    assert result.returncode == 2 and "--html-dir" in result.stderr


def test_keys_follow_content_span_and_settings(tmp_path, smile_video):
    moved = tmp_path / "renamed.mp4"
    shutil.copy(smile_video, moved)
    settings = {"backend": "rules", "fps": 8.0}
    assert item_key(Item(moved), settings) == item_key(Item(smile_video), settings)  # a renamed file: same row
    assert item_key(Item(moved, (0.0, 1.0)), settings) != item_key(Item(moved), settings)
    assert item_key(Item(moved), settings | {"fps": 4.0}) != item_key(Item(moved), settings)
    assert expand_inputs([tmp_path / "missing.mp4"]) == [Item(tmp_path / "missing.mp4")]  # its row says why
