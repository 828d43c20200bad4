"""Temporal AU events: when each AU starts (onset), peaks (apex) and ends (offset), in seconds.

An event is a run of frames at or above the FACS "A" level, grown outward while the intensity stays
above half of it, so onset and offset mark where the movement begins and fades rather than where it
crosses the threshold. Eye closures shorter than ``BLINK_MAX_S`` are blinks (AU45), longer ones are
closed eyes (AU43).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emoreason.au import AU_BY_CODE, AU_CODES
from emoreason.constants import AU_ACTIVE_THRESHOLD

BLINK_MAX_S = 0.5
MAX_GAP_FRAMES = 1  # a one-frame dip (landmark jitter) does not split an event


@dataclass(frozen=True)
class AUEvent:
    code: str
    onset_s: float
    apex_s: float
    offset_s: float
    intensity: float  # at the apex, 0..5
    mean_intensity: float

    @property
    def name(self) -> str:
        return AU_BY_CODE[self.code].name

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


def smooth(series: np.ndarray, width: int = 3) -> np.ndarray:
    """Running median over ``width`` frames along axis 0 (removes single-frame landmark glitches)."""
    if len(series) < width or width < 2:
        return series.copy()
    pad = width // 2
    padded = np.concatenate([series[:1].repeat(pad, 0), series, series[-1:].repeat(pad, 0)])
    windows = np.stack([padded[i : i + len(series)] for i in range(width)])
    return np.median(windows, axis=0)


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of True runs, bridging gaps of up to MAX_GAP_FRAMES."""
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(active):
        if runs and i - runs[-1][1] <= MAX_GAP_FRAMES + 1:
            runs[-1] = (runs[-1][0], int(i))
        else:
            runs.append((int(i), int(i)))
    return runs


def _frame_span(times: np.ndarray) -> float:
    return float(np.median(np.diff(times))) if len(times) > 1 else 0.0


def detect_events(times: np.ndarray, intensity: np.ndarray, code: str, end_s: float | None = None) -> list[AUEvent]:
    """Events of one AU from its ``[T]`` intensity series sampled at ``[T]`` times (seconds); every occurrence,
    in time order. ``end_s``: where the clip or span ends; no offset lies past it."""
    if times.shape != intensity.shape:
        raise ValueError(f"times and intensity must have the same shape, got {times.shape} vs {intensity.shape}")
    half = AU_ACTIVE_THRESHOLD / 2
    step = _frame_span(times)
    events = []
    for start, end in _runs(intensity >= AU_ACTIVE_THRESHOLD):
        while start > 0 and half <= intensity[start - 1] <= intensity[start]:
            start -= 1
        while end < len(intensity) - 1 and half <= intensity[end + 1] <= intensity[end]:
            end += 1
        segment = intensity[start : end + 1]
        apex = start + int(np.argmax(segment))
        offset = times[end + 1] if end + 1 < len(times) else times[end] + step  # the first frame it is gone
        if end_s is not None:
            offset = max(min(offset, end_s), times[end])
        events.append(
            AUEvent(
                code,
                float(times[start]),
                float(times[apex]),
                float(offset),
                float(intensity[apex]),
                float(segment.mean()),
            )
        )
    return events


def split_eye_closure(events: list[AUEvent]) -> list[AUEvent]:
    """Relabel eye-closure events: short ones are blinks (AU45), long ones closed eyes (AU43)."""
    out = []
    for event in events:
        if event.code in ("AU43", "AU45"):
            code = "AU45" if event.duration_s <= BLINK_MAX_S else "AU43"
            event = AUEvent(code, event.onset_s, event.apex_s, event.offset_s, event.intensity, event.mean_intensity)
        out.append(event)
    return out


def all_events(times: np.ndarray, intensities: np.ndarray, end_s: float | None = None) -> list[AUEvent]:
    """Events for every AU from ``[T, A]`` intensities (AU_CODES order), sorted by onset; ``end_s`` as
    :func:`detect_events`."""
    if intensities.ndim != 2 or intensities.shape != (len(times), len(AU_CODES)):
        raise ValueError(
            f"expected intensities of shape [{len(times)}, {len(AU_CODES)}], got {list(intensities.shape)}"
        )
    events = []
    for a, code in enumerate(AU_CODES):
        if code == "AU45":  # shares AU43's closure series; split below
            continue
        events.extend(detect_events(times, intensities[:, a], code, end_s))
    events = split_eye_closure(events)
    return sorted(events, key=lambda e: (e.onset_s, e.code))


def strongest_events(events: list[AUEvent]) -> dict[str, AUEvent]:
    """The strongest event of each AU."""
    best: dict[str, AUEvent] = {}
    for event in events:
        if event.code not in best or event.intensity > best[event.code].intensity:
            best[event.code] = event
    return best
