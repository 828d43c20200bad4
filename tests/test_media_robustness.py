"""Media that ffmpeg reads must be read (decord's gaps filled by PyAV), and bad media must fail in one line.

Each case was reproduced on the code before this file (issue 16): the containers are written here with PyAV from
the session's real-face smile clip frames.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import emoreason
from emoreason.cli import main
from emoreason.io.errors import MediaError
from emoreason.io.video import VideoFile

av = pytest.importorskip("av")


def _write(path: Path, frames: np.ndarray, fps: int, codec: str, fmt: str | None = None, **options) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        stream.options = options
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def frames(smile_frames):
    return smile_frames[0]  # [36, 320, 320, 3]: 3 s at 12 fps, neutral -> smile -> neutral


@pytest.mark.parametrize(
    ("name", "codec", "fmt", "options"),
    [("clip.gif", "gif", None, {}), ("clip.ts", "libx264", "mpegts", {}), ("clip_av1.mp4", "libsvtav1", None,
     {"preset": "12"}), ("clip.mpg", "mpeg2video", "mpeg", {})],
)  # fmt: skip
def test_containers_decord_cannot_read_are_read_in_full(tmp_path, frames, name, codec, fmt, options):
    path = _write(tmp_path / name, frames, 12, codec, fmt, **options)
    video = VideoFile(path)
    assert video.info.duration_s == pytest.approx(3.0, abs=0.1)  # MPEG-2 PS: decord said 2.5 s
    assert video.info.num_frames == pytest.approx(36, abs=1)  # ... and 12 frames
    assert video.stamps[0] == pytest.approx(0.0, abs=0.05)
    report = emoreason.explain(path)
    assert report.faces_found == 1 and report.emotion.label == "happiness", report.summary()


def test_a_truncated_mkv_says_so(tmp_path, smile_frames):
    from emoreason.synthetic import write_video

    long = np.concatenate([smile_frames[0]] * 3)  # 9 s
    path = write_video(tmp_path / "long.mkv", long, 12.0)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.85)])  # mid-file, past the first cluster
    report = emoreason.explain(cut, use_audio=False)
    assert any(w.startswith("truncated: decoded") and "of 9.0 s" in w for w in report.warnings), report.warnings


def test_a_non_utf8_file_name_is_a_valid_video(tmp_path, smile_video):
    name = os.fsdecode(b"clip-\xff\xfe.mp4")  # not UTF-8: decord's c_str raised UnicodeEncodeError
    path = tmp_path / name
    path.write_bytes(smile_video.read_bytes())
    report = emoreason.explain(path)
    assert report.faces_found == 1 and report.audio["has_audio"]


def test_a_16_bit_greyscale_photo_is_scaled_not_clipped(tmp_path, smiling_photo):
    grey = np.asarray(Image.open(smiling_photo).convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I")
    report = emoreason.explain(path)
    assert report.faces_found == 1


def test_an_rgba_photo_is_read(tmp_path, smiling_photo):
    rgba = Image.open(smiling_photo).convert("RGBA")
    path = tmp_path / "face.png"
    rgba.save(path)
    assert emoreason.explain(path).faces_found == 1


@pytest.mark.parametrize("command", ["explain", "analyze"])
def test_a_huge_png_is_one_line(tmp_path, capsys, command):
    path = tmp_path / "huge.png"
    Image.new("L", (14000, 14000)).save(path, optimize=False, compress_level=1)
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MP" in err, err


def test_a_url_argument_says_urls_are_not_supported(capsys):
    assert main(["explain", "http://example.com/clip.mp4"]) == 2
    err = capsys.readouterr().err
    assert "http://example.com/clip.mp4" in err and "URLs are not supported" in err


def test_a_corrupt_file_message_has_no_decoder_build_path(tmp_path, smile_video, capsys):
    data = bytearray(smile_video.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 4000] = os.urandom(4000)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    try:
        emoreason.explain(path)
    except MediaError as exc:
        assert ".cc:" not in str(exc) and "/github/workspace" not in str(exc)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a file"):
        emoreason.explain(fifo)


def test_csv_into_a_closed_pipe_exits_quietly(smile_video):
    command = f"{sys.executable} -m emoreason.cli analyze {smile_video} --csv - | head -c 100"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Broken pipe" not in out.stderr and "Traceback" not in out.stderr
    assert len(out.stdout) == 100


def test_a_looped_clip_does_not_list_its_emotion_as_an_alternative(tmp_path, smile_frames):
    from emoreason.synthetic import write_video

    path = write_video(tmp_path / "loop.mp4", np.concatenate([smile_frames[0]] * 3), 12.0)
    report = emoreason.explain(path, use_audio=False)
    assert report.emotion.label == "happiness"
    assert "happiness" not in [a["label"] for a in report.emotion.alternatives]
    assert all(au.offset_s <= report.duration_s for au in report.aus)


def test_pyav_seeks_over_gaps_and_gives_decord_s_frames(tmp_path, smile_frames):
    """Sparse frames of a longer clip: PyAV seeks past each gap (SEEK_GAP_S) and returns the very frames decord does."""
    from emoreason.io.decoders import DecordDecoder, PyAVDecoder
    from emoreason.synthetic import write_video

    path = write_video(tmp_path / "long.mp4", np.concatenate([smile_frames[0]] * 8), 12.0)  # 24 s
    pyav, decord = PyAVDecoder(path, (320, 320)), DecordDecoder(path, (320, 320))
    wanted = np.array([3, 10, 100, 101, 200, 287])  # gaps of 7.5 s and 8.3 s
    got, expected = list(pyav.frames(wanted)), list(decord.frames(wanted))
    assert [i for i, _ in got] == wanted.tolist() == [i for i, _ in expected]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, expected))
