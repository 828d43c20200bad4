"""A model of time for the per-frame readings: an HMM over the emotions, decoded with Viterbi.

Each frame's fused distribution (:mod:`emoreason.reasoning.fusion`) is the emission, tempered by the frame's face
quality (``log f ** q``: a covered or turned-away face, q near 0, says almost nothing and the neighbours decide).
Staying costs nothing; a switch to or from neutral costs ``SWITCH_COST`` nats; a direct switch between two
expressions costs ``DIRECT_COST`` (more than two switches through neutral, so a neutral stretch between two
expressions is kept when the frames show one, and a direct change, sad -> happy, needs clear evidence). Runs
shorter than ``MIN_SEGMENT_S`` are then given to the neighbour whose label the run's frames support more.
"""

from __future__ import annotations

import numpy as np

from emoreason.au import EMOTIONS

SWITCH_COST = 3.0  # nats to enter or leave neutral
DIRECT_COST = 7.0  # nats to change from one expression straight to another
MIN_SEGMENT_S = 0.5  # shorter runs join a neighbour
LOG_FLOOR = 1e-4
_NEUTRAL = EMOTIONS.index("neutral")


def transition_costs(states: int = len(EMOTIONS), neutral: int = _NEUTRAL) -> np.ndarray:
    """``[S, S]`` cost (nats) of moving from state i to state j between two frames."""
    costs = np.full((states, states), DIRECT_COST)
    costs[neutral, :] = costs[:, neutral] = SWITCH_COST
    np.fill_diagonal(costs, 0.0)
    return costs


def viterbi(log_emission: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Most likely ``[T]`` state path for ``[T, S]`` log emissions and ``[S, S]`` transition costs."""
    frames, states = log_emission.shape
    if frames == 0:
        return np.zeros(0, int)
    score = log_emission[0].copy()
    back = np.zeros((frames, states), int)
    for t in range(1, frames):
        candidates = score[:, None] - costs  # [from, to]
        back[t] = np.argmax(candidates, axis=0)
        score = candidates[back[t], np.arange(states)] + log_emission[t]
    path = np.zeros(frames, int)
    path[-1] = int(np.argmax(score))
    for t in range(frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def runs(path: np.ndarray) -> list[list[int]]:
    """``[start, end, state]`` (inclusive rows) of constant state."""
    out: list[list[int]] = []
    for i, state in enumerate(path.tolist()):
        if out and out[-1][2] == state:
            out[-1][1] = i
        else:
            out.append([i, i, state])
    return out


def decode(fused: np.ndarray, quality: np.ndarray, times: np.ndarray) -> list[list[int]]:
    """Segments ``[start_row, end_row, state]`` of ``[T, S]`` fused readings at ``[T]`` times, weighted by quality."""
    if len(fused) == 0:
        return []
    log_emission = np.log(np.maximum(fused, LOG_FLOOR)) * quality[:, None]
    segments = runs(viterbi(log_emission, transition_costs(fused.shape[1])))
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    return _enforce_min_duration(segments, log_emission, times, step)


def _enforce_min_duration(segments: list[list[int]], log_emission, times, step: float) -> list[list[int]]:
    def length(seg) -> float:
        return float(times[seg[1]] + step - times[seg[0]])

    while len(segments) > 1:
        short = [i for i, s in enumerate(segments) if length(s) < MIN_SEGMENT_S]
        if not short:
            break
        i = min(short, key=lambda k: length(segments[k]))
        seg = segments[i]
        neighbours = [k for k in (i - 1, i + 1) if 0 <= k < len(segments)]
        support = {k: log_emission[seg[0] : seg[1] + 1, segments[k][2]].sum() for k in neighbours}
        k = max(neighbours, key=support.get)
        if k < i:
            segments[k][1] = seg[1]
        else:
            segments[k][0] = seg[0]
        del segments[i]
        segments = _merge_equal(segments)
    return segments


def _merge_equal(segments: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for seg in segments:
        if out and out[-1][2] == seg[2]:
            out[-1][1] = seg[1]
        else:
            out.append(list(seg))
    return out


def low_quality_spans(quality: np.ndarray, times: np.ndarray, threshold: float, min_frames: int = 2) -> list[tuple]:
    """``(start_s, end_s)`` of runs of at least ``min_frames`` frames with quality below ``threshold``."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    spans = []
    for start, end, low in runs((quality < threshold).astype(int)):
        if low and end - start + 1 >= min_frames:
            spans.append((float(times[start]), float(times[end] + step)))
    return spans
