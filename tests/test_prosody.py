"""Prosody cues (`emoreason.cues.prosody`) on synthetic voice-like audio with known pitch, pauses and rate."""

import json

import numpy as np
import pytest

from emoreason.constants import AUDIO_SAMPLE_RATE
from emoreason.cues.prosody import analyze_prosody
from emoreason.io.audio import AudioClip, load_audio
from emoreason.synthetic import gray_frames, voice_like, write_video

SR = AUDIO_SAMPLE_RATE
PAUSE = (1.8, 2.4)


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    """Prosody of a 4 s video whose audio glides 150 -> 250 Hz at 4 syllables/s, silent at 1.8-2.4 s."""
    audio = voice_like(4.0, SR, f0_start=150.0, f0_end=250.0, syllables_per_s=4.0, pause=PAUSE)
    path = write_video(tmp_path_factory.mktemp("prosody") / "voice.mp4", gray_frames(40), 10, audio)
    return analyze_prosody(load_audio(path))


def test_rising_pitch_is_measured(voice):
    assert voice.has_audio and not voice.silent
    # The glide's voiced frames centre on ~200 Hz (the pause removes 195-210 Hz symmetrically around it).
    assert voice.pitch_median_hz == pytest.approx(200.0, rel=0.15)
    assert voice.pitch_trend == "rising" and voice.pitch_slope_st_per_s > 1.0
    # 150 -> 250 Hz is 8.8 semitones; the 5-95 percentile range is a bit less.
    assert 6.0 < voice.pitch_range_semitones < 9.0
    assert 0.3 < voice.voiced_fraction < 0.8


def test_pause_is_found_with_its_length(voice):
    assert voice.pause_count == 1
    assert voice.longest_pause_s == pytest.approx(PAUSE[1] - PAUSE[0], abs=0.2)
    assert voice.pauses[0][0] == pytest.approx(PAUSE[0], abs=0.1)


def test_speech_rate_is_near_the_syllable_rate(voice):
    assert 3.0 <= voice.speech_rate_per_s <= 5.5


def test_cues_describe_the_voice(voice):
    cues = voice.cues()
    assert cues[0].startswith("voice pitch is mid-range and variable (median ")
    assert cues[0].endswith("rising toward the end")
    assert "1 pause (0.6 s)" in cues
    assert any(cue.startswith("moderate speech rate (~4.") for cue in cues)


def test_to_dict_is_json_safe(voice):
    plain = json.loads(json.dumps(voice.to_dict(), allow_nan=False))
    assert plain["pitch_trend"] == "rising" and plain["pause_count"] == 1 and "frames" not in plain
    with_frames = json.loads(json.dumps(voice.to_dict(include_frames=True), allow_nan=False))
    assert None in with_frames["frames"]["f0"]  # unvoiced frames: NaN in the arrays, None in JSON
    assert len(with_frames["frames"]["times"]) == len(with_frames["frames"]["rms_db"])


def test_no_audio_track_is_a_cue_not_an_error():
    prosody = analyze_prosody(AudioClip(np.zeros(0, np.float32), SR, has_audio=False))
    assert prosody.cues() == ["no audio track"]
    assert json.loads(json.dumps(prosody.to_dict(), allow_nan=False))["pitch_median_hz"] is None


@pytest.mark.parametrize("samples", [0, 100, 2 * SR])  # empty, shorter than one analysis window, 2 s
def test_silence_is_a_cue(samples):
    prosody = analyze_prosody(AudioClip(np.zeros(samples, np.float32), SR))
    assert prosody.silent and prosody.cues() == ["audio is silent"]
    json.dumps(prosody.to_dict(include_frames=True), allow_nan=False)


@pytest.mark.parametrize(
    ("f0_start", "f0_end", "trend"),
    [
        (260.0, 160.0, "falling"),
        (180.0, 180.0, "flat"),
        (180.0, 190.0, "flat"),  # 1 semitone over 3 s: below the 2-semitone trend threshold
        (120.0, 150.0, "rising"),  # 3.9 semitones
    ],
)
def test_pitch_trend(f0_start, f0_end, trend):
    prosody = analyze_prosody(AudioClip(voice_like(3.0, SR, f0_start, f0_end), SR))
    assert prosody.pitch_trend == trend


@pytest.mark.parametrize(("rate", "word"), [(2.5, "slow speech"), (4.0, "moderate speech rate"), (6.0, "fast speech")])
def test_speech_rate_words(rate, word):
    prosody = analyze_prosody(AudioClip(voice_like(4.0, SR, 200.0, 200.0, syllables_per_s=rate), SR))
    assert prosody.speech_rate_per_s == pytest.approx(rate, rel=0.25)
    assert any(cue.startswith(word) for cue in prosody.cues())


def test_noise_has_no_voice():
    noise = 0.1 * np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32)
    prosody = analyze_prosody(AudioClip(noise, SR))
    assert prosody.voiced_fraction < 0.05 and prosody.pitch_median_hz is None
    assert prosody.cues()[0] == "no clear voice (sound without a steady pitch)"


def test_times_are_in_the_file_timeline():
    clip = AudioClip(voice_like(3.0, SR, pause=(1.2, 1.8)), SR, start_s=5.0)
    prosody = analyze_prosody(clip)
    assert prosody.frames["times"][0] == pytest.approx(5.0)
    assert prosody.pauses[0][0] == pytest.approx(6.2, abs=0.1)


@pytest.mark.parametrize("sample_rate", [8_000, 44_100])
def test_other_sample_rates(sample_rate):
    prosody = analyze_prosody(AudioClip(voice_like(3.0, sample_rate, 200.0, 200.0), sample_rate))
    assert prosody.pitch_median_hz == pytest.approx(200.0, rel=0.02)
