"""One evidence pass per file (emoreason.face.evidence.collect), time spans, and the backends behind get_backend."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import emoreason
from emoreason.backends import get_backend
from emoreason.cli import main
from emoreason.face import evidence as evidence_module
from emoreason.face.evidence import Sampling, SpanError, collect
from emoreason.io import audio as audio_module

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
NO_TORCH = (  # a Python with torch unimportable (a meta-path finder: sys.modules stays clean for scipy's checks)
    "import sys\n"
    "class NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is not installed here')\n"
    "sys.meta_path.insert(0, NoTorch())\n"
)


@pytest.fixture
def opens(monkeypatch):
    """Counts how often the video and the audio decoders are opened during a test."""
    counts = {"video": 0, "audio": 0}
    video_init, audio_init = evidence_module.VideoFile.__init__, audio_module.AudioStream.__init__

    def counting_video(self, *args, **kwargs):
        counts["video"] += 1
        video_init(self, *args, **kwargs)

    def counting_audio(self, *args, **kwargs):
        counts["audio"] += 1
        audio_init(self, *args, **kwargs)

    monkeypatch.setattr(evidence_module.VideoFile, "__init__", counting_video)
    monkeypatch.setattr(audio_module.AudioStream, "__init__", counting_audio)
    return counts


def test_one_pass_gives_analysis_crops_key_frames_and_audio(smile_video, opens):
    evidence = collect(smile_video, sampling=Sampling(model_crops=8, key_frames=True))
    assert opens == {"video": 1, "audio": 1}
    assert evidence.crops.shape == (8, 224, 224, 3) and evidence.crops.dtype == np.uint8
    assert np.all(np.diff(evidence.crop_times) > 0)  # evenly spread over the clip, in order
    assert evidence.crop_times[0] < 0.5 and evidence.crop_times[-1] > 2.5
    assert len(evidence.key_frames) == evidence.analysis.frames_analyzed  # one JPEG per analysed frame
    assert all(jpeg[:2] == b"\xff\xd8" for jpeg in evidence.key_frames.values())
    assert evidence.waveform is not None and evidence.waveform.size == pytest.approx(3.0 * 16_000, rel=0.05)
    assert evidence.prosody is not None and evidence.prosody.duration_s == pytest.approx(3.0, abs=0.07)


def test_a_model_hears_the_first_30_s_and_prosody_reads_it_all(tmp_path, smile_frames):
    from emoreason.synthetic import voice_like, write_video

    frames = np.concatenate([smile_frames[0][::4]] * 12)  # 36 s at 3 fps
    path = write_video(tmp_path / "long.mp4", frames, 3.0, voice_like(36.0))
    evidence = collect(path, sampling=Sampling(fps=1.0, model_crops=2))
    assert evidence.audio.duration_s == pytest.approx(30.0, abs=0.01)  # the audio tower's window
    assert evidence.prosody.duration_s == pytest.approx(36.0, abs=0.1)


def test_explain_html_and_model_decode_once(smile_video, tiny_checkpoint, tmp_path, opens, capsys):
    assert main(["explain", str(smile_video), "--html", str(tmp_path / "r.html")]) == 0
    assert opens == {"video": 1, "audio": 1}
    assert "data:image/jpeg;base64," in (tmp_path / "r.html").read_text()  # key frames from the same pass
    assert main(["explain", str(smile_video), "--model", str(tiny_checkpoint)]) == 0
    assert opens == {"video": 2, "audio": 2}


def test_a_span_is_analysed_alone_on_the_source_timeline(smile_video):
    report = emoreason.explain(smile_video, span=(1.0, 2.5))
    assert report.span == [1.0, 2.5]
    times = report.frames["time_s"]
    assert times.min() >= 1.0 and times.max() <= 2.5
    for au in report.aus:
        assert 1.0 <= au.onset_s <= au.apex_s <= au.offset_s <= 2.5, au
    assert all(1.0 <= s.start_s <= s.end_s <= 2.5 for s in report.segments)
    assert report.emotion.label == "happiness"  # the smile fills this span
    assert emoreason.explain(smile_video).span is None


def test_the_whole_clip_ends_where_the_clip_ends(smile_video):
    report = emoreason.explain(smile_video)
    assert all(au.offset_s <= report.duration_s for au in report.aus)
    assert all(s.end_s <= report.duration_s for s in report.segments)


def test_span_audio_and_crops_come_from_the_span(smile_video):
    evidence = collect(smile_video, span=(2.0, None), sampling=Sampling(model_crops=4))
    assert evidence.span == (2.0, 3.0)
    assert evidence.audio.start_s == 2.0 and evidence.audio.duration_s == pytest.approx(1.0, abs=0.07)
    assert np.all(evidence.crop_times >= 2.0)


@pytest.mark.parametrize(
    ("span", "which"),
    [((5.0, None), "start"), ((2.0, 1.0), "end"), ((-1.0, 2.0), "start"), ((float("nan"), None), "start")],
)
def test_spans_that_do_not_fit_name_their_end(smile_video, span, which):
    with pytest.raises(SpanError) as raised:
        collect(smile_video, span=span)
    assert raised.value.which == which


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--start", "9"], "--start"), (["--start", "2", "--end", "1"], "--end"), (["--start", "-1"], "--start"),
     (["--end", "nan"], "--end"), (["--fps", "nan"], "--fps"), (["--fps", "inf"], "--fps")],
)  # fmt: skip
def test_cli_span_errors_are_one_line_naming_the_option(smile_video, capsys, args, option):
    assert main(["explain", str(smile_video), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err, err


def test_a_photo_has_no_span(smiling_photo):
    with pytest.raises(SpanError):
        collect(smiling_photo, span=(0.5, None))


def test_sampling_checks_name_the_field():
    for bad, field in ((dict(fps=float("nan")), "fps"), (dict(fps=float("inf")), "fps"), (dict(max_frames=0), "max_frames"),
                       (dict(model_crops=-1), "model_crops"), (dict(crop_mode="x"), "crop_mode")):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            Sampling(**bad)


def test_disfa_segments_are_trained_on_their_span_only(tmp_path, smile_video):
    """DISFA samples are spans of one long video: the training cache's crops, evidence and audio stay inside."""
    pytest.importorskip("torch")
    from emoreason.data.adapters import get_adapter
    from emoreason.model.tiny import build_tiny
    from emoreason.train.data import MediaConfig, prepare_media

    root = tmp_path / "disfa"
    shutil.copytree(FIXTURES / "disfa", root)
    samples = list(get_adapter("disfa")(root))
    video = root / samples[0].media
    video.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(smile_video, video)
    _, processor = build_tiny(lora=False)
    spans = []
    for sample in samples[1:3]:  # 0.1-0.2 s and 0.2-0.25 s of the video
        sample.media = str(video)
        evidence = collect(sample.media, span=sample.span, sampling=MediaConfig().sampling(processor.max_frames))
        # a frame's time is when it starts showing: the frame on screen at the span's start may start before it
        on_screen = sample.start_s - 1 / 12  # the video runs at 12 fps
        times = evidence.analysis.table["time_s"]
        assert times.min() > on_screen and times.max() <= sample.end_s
        assert np.all((evidence.crop_times > on_screen) & (evidence.crop_times <= sample.end_s))
        assert evidence.audio.start_s == sample.start_s
        assert evidence.audio.duration_s == pytest.approx(sample.end_s - sample.start_s, abs=0.02)
        prepared = prepare_media(sample, processor, MediaConfig())
        assert prepared.waveform.size == evidence.waveform.size  # the span's audio, not the whole track
        assert np.array_equal(prepared.crops, evidence.crops)
        spans.append(prepared.crops)
    assert not np.array_equal(spans[0], spans[1])


def test_get_backend_knows_the_backends_and_their_options(tiny_checkpoint):
    assert get_backend("rules").name == "rules"
    assert get_backend("hf", model=str(tiny_checkpoint)).name == "hf"
    with pytest.raises(ValueError, match="expected one of"):
        get_backend("onnx")
    with pytest.raises(ValueError, match="needs model"):
        get_backend("hf")
    with pytest.raises(ValueError, match="needs server"):
        get_backend("vllm")


def test_the_vllm_backend_imports_without_torch():
    """The client side needs only openai: importing it (and explaining through it) never imports torch."""
    code = NO_TORCH + (
        "import emoreason, emoreason.backends.vllm, emoreason.cli\n"
        "from emoreason.backends import get_backend\n"
        "try:\n    get_backend('vllm', server='http://127.0.0.1:9')\n"
        "except Exception as exc:\n    print(type(exc).__name__)\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ServerError"  # it got as far as trying to reach the (absent) server


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    from emoreason.model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny")
