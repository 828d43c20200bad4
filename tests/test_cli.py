"""The `emoreason` command as a user runs it: a real subprocess, real files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emoreason.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_explain_video_json(smile_video):
    result = run("explain", smile_video, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is one JSON document and nothing else
    assert report["emotion"]["label"] == "happiness"
    assert any(a["code"] == "AU12" for a in report["aus"])


def test_explain_video_text(smile_video):
    result = run("explain", smile_video)
    assert result.returncode == 0, result.stderr
    assert "happiness" in result.stdout and "Observations:" in result.stdout


def test_explain_image_json(smiling_photo):
    result = run("explain", smiling_photo, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["media_type"] == "image"


def test_explain_no_face_exits_zero(no_face_video):
    result = run("explain", no_face_video, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["faces_found"] == 0 and report["emotion"] is None


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "truncated_faststart"])
def test_bad_input_exits_2_with_one_line(bad_files, kind):
    result = run("explain", bad_files[kind])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and bad_files[kind].name in lines[0], result.stderr
    assert result.stdout == ""


def test_bad_sampling_argument_exits_2(smile_video):
    result = run("explain", smile_video, "--fps", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_analyze_writes_per_frame_csv(smile_video, tmp_path):
    out = tmp_path / "frames.csv"
    result = run("analyze", smile_video, "--csv", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    for column in ("time_s", "face_x0", "face_y1", "x_0", "y_67", "AU1", "AU12", "AU45", "yaw"):
        assert column in table.columns
    assert table["time_s"].is_monotonic_increasing
    assert len(table) >= 20  # 3 s at 8 fps
    assert table["AU12"].max() >= 2.0
