"""Link per-frame face detections into tracks and choose the main face.

Greedy association by box overlap (IoU) and centre distance relative to face size, frame to frame,
in the spirit of SORT without the Kalman filter: sampled frames are 1/8 s apart and faces move
little in that time. Two people side by side never overlap, so their detections never share a track;
a detection that matches no live track starts a new one, and a track that is unseen for more than
``max_gap`` sampled frames ends. A track whose detections are all doubtful (margin under
``min_track_score``) is dropped as a false positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emoreason.face.detect import FaceDetection


@dataclass
class Track:
    track_id: int
    frames: list[int] = field(default_factory=list)  # positions in the sampled-frame sequence
    times: list[float] = field(default_factory=list)
    faces: list[FaceDetection] = field(default_factory=list)

    @property
    def last(self) -> FaceDetection:
        return self.faces[-1]

    @property
    def median_size(self) -> float:
        return float(np.median([face.size for face in self.faces]))

    @property
    def best_score(self) -> float:
        return max(face.score for face in self.faces)

    @property
    def salience(self) -> float:
        """Presence x size (x detector confidence, so a doubtful detection never wins on size alone)."""
        confidence = float(np.clip(np.mean([face.score for face in self.faces]), 0.05, 1.0))
        return len(self.faces) * self.median_size * confidence


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _affinity(track: Track, face: FaceDetection) -> float:
    """0 when the detection cannot be the same face, else higher for a closer match."""
    prev = track.last
    overlap = iou(prev.box, face.box)
    dx, dy = np.subtract(face.center, prev.center)
    shift = float(np.hypot(dx, dy)) / max(prev.size, 1.0)
    size_ratio = max(face.size, prev.size) / max(min(face.size, prev.size), 1.0)
    if size_ratio > 1.6 or (overlap < 0.2 and shift > 0.6):
        return 0.0
    return overlap + max(0.0, 1.0 - shift)


class FaceTracker:
    """Feed detections frame by frame; read ``tracks`` and ``main_track`` at the end."""

    def __init__(self, max_gap: int = 4, min_track_score: float = 0.25):
        self.max_gap = max_gap
        self.min_track_score = min_track_score
        self.tracks: list[Track] = []
        self._next_id = 0

    def live(self, position: int) -> list[Track]:
        """Tracks that a detection at sampled frame ``position`` may still continue."""
        return [t for t in self.tracks if position - t.frames[-1] <= self.max_gap + 1]

    def update(self, position: int, time_s: float, faces: list[FaceDetection]) -> list[int]:
        """Assign this frame's detections to tracks; returns the track id of each detection."""
        live = self.live(position)
        pairs = sorted(
            ((_affinity(track, face), ti, fi) for ti, track in enumerate(live) for fi, face in enumerate(faces)),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used_tracks: set[int] = set()
        for score, ti, fi in pairs:
            if score <= 0 or ti in used_tracks or fi in assigned:
                continue
            assigned[fi] = live[ti]
            used_tracks.add(ti)
        ids = []
        for fi, face in enumerate(faces):
            track = assigned.get(fi)
            if track is None:
                track = Track(self._next_id)
                self._next_id += 1
                self.tracks.append(track)
            track.frames.append(position)
            track.times.append(time_s)
            track.faces.append(face)
            ids.append(track.track_id)
        return ids

    @property
    def confirmed(self) -> list[Track]:
        """Tracks with at least one confident detection; the rest are treated as false positives."""
        return [t for t in self.tracks if t.best_score >= self.min_track_score]

    @property
    def main_track(self) -> Track | None:
        return max(self.confirmed, key=lambda t: t.salience, default=None)
