"""Reading audio tracks with `emoreason.io.audio.load_audio` from real files written in tmp_path."""

import numpy as np
import pytest
import soundfile

from emoreason.constants import AUDIO_SAMPLE_RATE
from emoreason.io.audio import AudioClip, load_audio
from emoreason.io.errors import MediaError
from emoreason.synthetic import gray_frames, voice_like, write_video

SR = AUDIO_SAMPLE_RATE


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A 4 s voice-like video with a pause at 1.8-2.4 s, a video without audio, and one with a silent track."""
    folder = tmp_path_factory.mktemp("audio")
    voice = voice_like(4.0, SR, 150.0, 250.0, 4.0, pause=(1.8, 2.4))
    return {
        "voice": write_video(folder / "voice.mp4", gray_frames(40), 10, voice),
        "no_audio": write_video(folder / "no_audio.mp4", gray_frames(20), 10, None),
        "silence": write_video(folder / "silence.mp4", gray_frames(20), 10, np.zeros(2 * SR, np.float32)),
        "late_audio": write_video(folder / "late.mp4", gray_frames(30), 10, voice[: 2 * SR], audio_start_s=0.5),
    }


def test_reads_mono_float32_at_16k(media):
    clip = load_audio(media["voice"])
    assert clip.has_audio and clip.sample_rate == SR and clip.start_s == 0.0
    assert clip.waveform.dtype == np.float32 and clip.waveform.ndim == 1
    assert clip.duration_s == pytest.approx(4.0, abs=0.07)  # AAC may pad up to one 1024-sample frame
    assert np.abs(clip.waveform).max() == pytest.approx(0.3, abs=0.03)
    # The pause is where it was written: decoding is sample-aligned to the file's timeline.
    assert np.abs(clip.waveform[int(1.85 * SR) : int(2.35 * SR)]).max() < 1e-3


def test_span_is_the_same_samples_as_the_full_track(media):
    full = load_audio(media["voice"])
    span = load_audio(media["voice"], start_s=1.0, end_s=2.5)
    assert span.start_s == 1.0 and span.duration_s == pytest.approx(1.5)
    np.testing.assert_array_equal(span.waveform, full.waveform[SR : int(2.5 * SR)])


def test_span_past_the_end_is_empty_not_an_error(media):
    clip = load_audio(media["voice"], start_s=10.0)
    assert clip.has_audio and clip.waveform.size == 0 and clip.duration_s == 0.0


@pytest.mark.parametrize(("start_s", "end_s"), [(-1.0, None), (2.0, 1.0), (1.0, 1.0)])
def test_invalid_span_raises(media, start_s, end_s):
    with pytest.raises(ValueError, match="_s must be"):
        load_audio(media["voice"], start_s=start_s, end_s=end_s)


def test_audio_stream_starting_late_is_padded_to_the_video_timeline(media):
    clip = load_audio(media["late_audio"])
    first_sound = np.flatnonzero(np.abs(clip.waveform) > 1e-3)[0] / SR
    assert first_sound == pytest.approx(0.5, abs=0.02)


def test_no_audio_stream_gives_an_empty_clip(media):
    clip = load_audio(media["no_audio"])
    assert not clip.has_audio and clip.waveform.size == 0 and clip.duration_s == 0.0


def test_silent_track_is_read_as_zeros(media):
    clip = load_audio(media["silence"])
    assert clip.has_audio and clip.duration_s == pytest.approx(2.0, abs=0.07)
    assert np.abs(clip.waveform).max() < 1e-4


def test_wav_is_resampled_and_mixed_to_mono(tmp_path):
    t = np.arange(44_100) / 44_100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(tmp_path / "tone.wav", np.stack([tone, np.zeros_like(t)], axis=1), 44_100)  # left only
    clip = load_audio(tmp_path / "tone.wav")
    assert clip.sample_rate == SR and clip.duration_s == pytest.approx(1.0, abs=1e-3)
    # decord mixes to mono as FFmpeg does for float output, (L + R) / sqrt(2), not (L + R) / 2.
    peak = np.sqrt(2) * np.sqrt(np.mean(clip.waveform[SR // 10 : -SR // 10] ** 2))
    assert peak == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def _zero_bytes(path):
    path.touch()


def _text(path):
    path.write_text("this is not a video\n")


def _folder(path):
    path.mkdir()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (None, "no such file"),
        (_zero_bytes, "empty"),
        (_text, "cannot read audio"),  # right suffix, wrong content
        (_folder, "not a file"),
    ],
)
def test_bad_files_raise_media_error_naming_the_file(tmp_path, make, reason):
    path = tmp_path / "clip_under_test.mp4"
    if make is not None:
        make(path)
    with pytest.raises(MediaError, match=reason) as caught:
        load_audio(path)
    assert "clip_under_test.mp4" in str(caught.value)


def test_audio_clip_checks_its_waveform():
    with pytest.raises(ValueError, match=r"float32 \[N\]"):
        AudioClip(np.zeros((2, 10), np.float32), SR)
    with pytest.raises(ValueError, match="float32"):
        AudioClip(np.zeros(10), SR)
    assert AudioClip(np.zeros(8000, np.float32), SR, start_s=1.0).end_s == pytest.approx(1.5)
