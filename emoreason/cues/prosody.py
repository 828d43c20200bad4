"""Voice prosody of a clip: pitch, loudness, pauses and speech rate, as numbers and as short text cues.

Vocal arousal shows in higher, more variable pitch, louder speech with a wider dynamic range and a faster rate;
low arousal (sadness, boredom) in the opposite, with more pauses (Banse & Scherer 1996; Juslin & Laukka 2003). The
measures here are the standard ones those studies use, computed per 10 ms frame:

- f0 with YIN (`librosa.yin`: milliseconds, where `pyin` costs ~25 s of JIT on first use), kept only in voiced
  frames: loud enough and periodic (normalised autocorrelation at the YIN period).
- RMS level in dBFS over a 25 ms window; pauses are quiet stretches between sounds.
- Syllable nuclei as level peaks in voiced frames (de Jong & Wempe 2009), counted per second of speaking time.

No audio track and a silent track are cues ("no audio track", "audio is silent"), not errors. The word bands for
pitch, loudness and rate are heuristics that flag clear departures from typical adult speech; they are not
calibrated on a corpus, and loudness in dBFS also depends on the recording gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.signal import find_peaks

from emoreason.io.audio import AudioClip

# Analysis frames: 10 ms hop, the usual rate for f0 and energy tracks in speech analysis.
FRAME_HOP_S = 0.010
# RMS window: 25 ms, the standard short-time speech analysis window.
RMS_WINDOW_S = 0.025
# YIN search range: 65-600 Hz covers adult and child speaking and shouting f0.
FMIN_HZ, FMAX_HZ = 65.0, 600.0
# YIN window (rounded up to a power of two): must hold two periods of FMIN_HZ (2 / 65 Hz = 31 ms) with room to spare.
PITCH_WINDOW_S = 0.064
# A frame is voiced when its normalised autocorrelation at the YIN period reaches this (Praat's default voicing
# threshold is 0.45; periodic speech sits well above it, noise and fricatives below).
VOICING_THRESHOLD = 0.5
# Below this level a frame is silence whatever the recording (the noise floor of a quiet room in dBFS).
SILENCE_FLOOR_DBFS = -50.0
# Frames this far below the loud speech level (95th percentile of non-silent frames) also count as pause, so that
# background noise in a real recording does not hide pauses.
PAUSE_BELOW_SPEECH_DB = 25.0
# A pause is a quiet stretch of at least 250 ms between sounds, the conventional threshold that separates
# hesitation pauses from stop closures inside words (Goldman-Eisler 1968).
MIN_PAUSE_S = 0.25
# Less voiced audio than this gives no pitch statistics; less speaking time, no speech rate.
MIN_VOICED_S = 0.3
MIN_SPEECH_S = 0.5
# Syllable nuclei: level peaks at least 2 dB above the dips around them (de Jong & Wempe 2009) and 100 ms apart
# (no one speaks faster than 10 syllables/s).
SYLLABLE_PEAK_DB = 2.0
MIN_SYLLABLE_GAP_S = 0.1
# Pitch trend: the fitted f0 line must change by at least 2 semitones across the voiced span; smaller movements
# are hard for listeners to use ('t Hart 1981 puts the useful step at about 1.5-3 semitones).
PITCH_TREND_MIN_CHANGE_ST = 2.0
# Median speaking f0 is about 85-155 Hz for adult men and 165-255 Hz for adult women; without knowing the speaker,
# "low" and "high" mean the ends of that pooled range.
PITCH_LOW_HZ, PITCH_HIGH_HZ = 110.0, 220.0
# 5-95 percentile f0 range: a few semitones is monotone, 7 or more is lively, aroused speech.
PITCH_RANGE_NARROW_ST, PITCH_RANGE_WIDE_ST = 3.0, 7.0
# Mean level of speech frames: conversational speech recorded at a normal gain sits around -30 to -20 dBFS.
LOUD_DBFS, QUIET_DBFS = -20.0, -38.0
# 5-95 percentile level range of speech frames: syllables alone give ~10-20 dB; more means shouted or emphatic.
ENERGY_RANGE_NARROW_DB, ENERGY_RANGE_WIDE_DB = 10.0, 25.0
# Syllables per second of speaking time: conversational speech runs at about 3-5.
SLOW_SPEECH_PER_S, FAST_SPEECH_PER_S = 3.0, 5.0
# Frames analysed per block, so memory stays ~100 MB whatever the clip length.
_CHUNK_FRAMES = 2000


@dataclass
class Prosody:
    """Prosodic measurements of one clip. Measures that need voice are None when there is too little of it.

    Times (`pauses`, `frames["times"]`) are in the file's timeline, like the video frames'.
    """

    has_audio: bool
    duration_s: float
    silent: bool = True
    voiced_fraction: float | None = None
    pitch_median_hz: float | None = None
    pitch_range_semitones: float | None = None  # 5th to 95th percentile of voiced f0
    pitch_trend: str | None = None  # "rising", "falling" or "flat"
    pitch_slope_st_per_s: float | None = None
    energy_db_mean: float | None = None  # dBFS, over non-pause frames
    energy_db_range: float | None = None  # dB, 5th to 95th percentile of non-pause frames
    pause_count: int = 0
    pause_total_s: float = 0.0
    longest_pause_s: float = 0.0
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s)
    speech_rate_per_s: float | None = None  # syllable nuclei per second of speaking time (pauses excluded)
    frames: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # times, f0 (NaN unvoiced), rms_db

    def to_dict(self, include_frames: bool = False) -> dict:
        """JSON-safe dict: floats rounded, NaN as None; the frame series only when asked for."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "frames"}
        out["pauses"] = [[_json_float(a), _json_float(b)] for a, b in self.pauses]
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = _json_float(value)
        if include_frames:
            out["frames"] = {key: [_json_float(v) for v in series] for key, series in self.frames.items()}
        return out

    def cues(self) -> list[str]:
        """Short text cues, e.g. ``["voice pitch is high and variable (median 240 Hz, range 9.1 semitones)"]``."""
        if not self.has_audio:
            return ["no audio track"]
        if self.silent:
            return ["audio is silent"]
        cues = []
        if self.pitch_median_hz is None:
            cues.append("no clear voice (sound without a steady pitch)")
        else:
            cues.append(_pitch_cue(self))
        if self.energy_db_mean is not None:
            cues.append(_loudness_cue(self.energy_db_mean, self.energy_db_range))
        if self.pause_count:
            plural = "s" if self.pause_count > 1 else ""
            detail = f"{self.pause_total_s:.1f} s in total" if self.pause_count > 1 else f"{self.pause_total_s:.1f} s"
            cues.append(f"{self.pause_count} pause{plural} ({detail})")
        elif self.speech_rate_per_s is not None:
            cues.append("no pauses")
        if self.speech_rate_per_s is not None:
            rate = self.speech_rate_per_s
            pace = _band(
                rate, SLOW_SPEECH_PER_S, FAST_SPEECH_PER_S, ("slow speech", "moderate speech rate", "fast speech")
            )
            cues.append(f"{pace} (~{rate:.1f} syllables/s)")
        return cues


def analyze_prosody(clip: AudioClip) -> Prosody:
    """Measure pitch, loudness, pauses and speech rate of a clip.

    Args:
        clip: from `emoreason.io.audio.load_audio`; any sample rate, 16 kHz expected.

    Returns:
        A `Prosody`; for a clip without audio or with a silent track, one that says so (see `Prosody.cues`).

    >>> from emoreason.io.audio import load_audio  # doctest: +SKIP
    >>> analyze_prosody(load_audio("interview.mp4")).cues()  # doctest: +SKIP
    ['voice pitch is high and variable (median 240 Hz, range 9.1 semitones), rising toward the end', ...]
    """
    if not clip.has_audio:
        return Prosody(has_audio=False, duration_s=0.0)
    features = FrameFeatures(clip.sample_rate)
    features.feed(clip.waveform)
    return prosody_from_features(features, clip.start_s)


def prosody_from_features(features: FrameFeatures, start_s: float = 0.0) -> Prosody:
    """The :class:`Prosody` of a clip whose samples were all fed to ``features`` (it is finished here); ``start_s``:
    the time of its first sample on the file's timeline."""
    f0, periodicity, rms_db = features.finish()
    sample_rate = features.sample_rate
    hop_s = round(FRAME_HOP_S * sample_rate) / sample_rate
    times = start_s + hop_s * np.arange(rms_db.size)
    duration_s = features.samples / sample_rate
    result = Prosody(has_audio=True, duration_s=duration_s, silent=not bool(np.any(rms_db > SILENCE_FLOOR_DBFS)))
    if result.silent:
        return result

    above_floor = rms_db[rms_db > SILENCE_FLOOR_DBFS]
    sounding = rms_db > max(SILENCE_FLOOR_DBFS, np.percentile(above_floor, 95) - PAUSE_BELOW_SPEECH_DB)
    voiced = sounding & (periodicity >= VOICING_THRESHOLD)
    result.frames = {"times": times, "f0": np.where(voiced, f0, np.nan), "rms_db": rms_db}
    result.voiced_fraction = float(voiced.mean())
    result.energy_db_mean = float(rms_db[sounding].mean())
    result.energy_db_range = float(np.subtract(*np.percentile(rms_db[sounding], [95, 5])))

    if voiced.sum() * hop_s >= MIN_VOICED_S:
        f0_voiced, t_voiced = f0[voiced], times[voiced]
        median = float(np.median(f0_voiced))
        semitones = 12 * np.log2(f0_voiced / median)
        low, high = np.percentile(semitones, [5, 95])
        slope = float(np.polyfit(t_voiced, semitones, 1)[0]) if t_voiced[-1] > t_voiced[0] else 0.0
        change = slope * (t_voiced[-1] - t_voiced[0])
        result.pitch_median_hz, result.pitch_range_semitones = median, float(high - low)
        result.pitch_slope_st_per_s = slope
        trend = "flat" if abs(change) < PITCH_TREND_MIN_CHANGE_ST else "rising" if change > 0 else "falling"
        result.pitch_trend = trend

    # Pauses: quiet runs strictly between the first and the last sounding frame.
    first, last = np.flatnonzero(sounding)[[0, -1]]
    quiet = [(a, b) for a, b in _runs(~sounding[first : last + 1]) if (b - a) * hop_s >= MIN_PAUSE_S]
    result.pauses = [(float(times[first + a]), float(times[first + a] + (b - a) * hop_s)) for a, b in quiet]
    lengths = [end - start for start, end in result.pauses]
    result.pause_count, result.pause_total_s = len(lengths), float(sum(lengths))
    result.longest_pause_s = float(max(lengths, default=0.0))

    speaking_s = (last - first + 1) * hop_s - result.pause_total_s
    if speaking_s >= MIN_SPEECH_S and result.pitch_median_hz is not None:
        peaks, _ = find_peaks(rms_db, prominence=SYLLABLE_PEAK_DB, distance=max(1, round(MIN_SYLLABLE_GAP_S / hop_s)))
        result.speech_rate_per_s = float(voiced[peaks].sum() / speaking_s)
    return result


class FrameFeatures:
    """Per-frame f0 (Hz), periodicity (0-1) and RMS level (dBFS), frames centred every FRAME_HOP_S, computed as the
    samples arrive: :meth:`feed` them in any pieces, then :meth:`finish`. Memory is a few thousand frames of audio
    plus three floats per frame, however long the clip (an hour of audio is 360k frames, 9 MB)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.hop = max(1, round(FRAME_HOP_S * sample_rate))
        self.length = 2 ** math.ceil(math.log2(PITCH_WINDOW_S * sample_rate))
        self.rms_width = max(1, round(RMS_WINDOW_S * sample_rate))
        # frame i is centred on sample i * hop, as librosa's center=True does: the buffer starts with half a window
        self.buffer = np.zeros(self.length // 2, np.float32)
        self.samples = 0  # fed so far
        self.done = 0  # frames computed so far (the buffer starts at padded sample done * hop)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def feed(self, samples: np.ndarray) -> None:
        """Add the next samples [S] (float32 at ``sample_rate``)."""
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, np.float32)])
        self.samples += len(samples)
        need = (_CHUNK_FRAMES - 1) * self.hop + self.length
        while len(self.buffer) >= need:
            self._compute(_CHUNK_FRAMES)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(f0, periodicity, rms_db)``, each [F] with F = 1 + samples // hop."""
        self.buffer = np.concatenate([self.buffer, np.zeros(self.length // 2, np.float32)])
        total = 1 + self.samples // self.hop
        while self.done < total:
            self._compute(min(_CHUNK_FRAMES, total - self.done))
        if not self.parts:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        return tuple(np.concatenate([part[k] for part in self.parts]) for k in range(3))

    def _compute(self, count: int) -> None:
        import librosa

        hop, length = self.hop, self.length
        block = self.buffer[: (count - 1) * hop + length]
        if len(block) < length:  # the last frames of a clip shorter than one window: pad it
            block = np.pad(block, (0, length - len(block)))
        frames = librosa.util.frame(block, frame_length=length, hop_length=hop)[:, :count]  # [L, n]
        f0 = librosa.yin(block, fmin=FMIN_HZ, fmax=FMAX_HZ, sr=self.sample_rate, frame_length=length, hop_length=hop,
                         center=False)[:count]  # fmt: skip
        middle = frames[length // 2 - self.rms_width // 2 : length // 2 - self.rms_width // 2 + self.rms_width]
        rms = np.sqrt(np.mean(np.square(middle, dtype=np.float64), axis=0))
        self.parts.append((f0, _periodicity(frames, np.round(self.sample_rate / f0).astype(int)),
                           20 * np.log10(np.maximum(rms, 1e-5))))  # fmt: skip
        self.buffer = self.buffer[count * hop :]
        self.done += count


def _periodicity(frames: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation of each frame [L, n] at its lag [n] (1 = perfectly periodic), [n]."""
    length = frames.shape[0]
    spectrum = np.fft.rfft(frames, n=2 * length, axis=0)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=0)[:length]  # [L, n]
    lags = np.clip(lags, 1, length - 1)
    # Divide by the overlap so a periodic frame scores ~1 whatever its lag.
    at_lag = acf[lags, np.arange(frames.shape[1])] * length / (length - lags)
    return np.where(acf[0] > 1e-10, at_lag / np.maximum(acf[0], 1e-10), 0.0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs in a 1-D bool mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _band(value: float, low: float, high: float, words: tuple[str, str, str]) -> str:
    """words[0] at or below `low`, words[2] at or above `high`, words[1] between."""
    return words[0] if value <= low else words[2] if value >= high else words[1]


def _pitch_cue(p: Prosody) -> str:
    median, spread = p.pitch_median_hz, p.pitch_range_semitones
    level = _band(median, PITCH_LOW_HZ, PITCH_HIGH_HZ, ("low", "mid-range", "high"))
    variety = _band(spread, PITCH_RANGE_NARROW_ST, PITCH_RANGE_WIDE_ST, ("monotone", "moderately varied", "variable"))
    cue = f"voice pitch is {level} and {variety} (median {median:.0f} Hz, range {spread:.1f} semitones)"
    if p.pitch_trend in ("rising", "falling"):
        cue += f", {p.pitch_trend} toward the end"
    return cue


def _loudness_cue(mean_db: float, range_db: float) -> str:
    level = _band(mean_db, QUIET_DBFS, LOUD_DBFS, ("quiet", "moderately loud", "loud"))
    cue = f"{level} ({mean_db:.0f} dBFS)"
    if range_db >= ENERGY_RANGE_WIDE_DB:
        return f"{cue}, with a wide dynamic range ({range_db:.0f} dB)"
    if range_db <= ENERGY_RANGE_NARROW_DB:
        return f"{cue}, with a narrow dynamic range ({range_db:.0f} dB)"
    return cue


def _json_float(value: float) -> float | None:
    """Round a float for JSON; NaN and infinities become None."""
    value = float(value)
    return round(value, 3) if math.isfinite(value) else None
