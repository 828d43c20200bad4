"""FaceAnalyzer: a video or image in, one table of faces, landmarks and AU intensities out.

In the spirit of py-feat's ``Detector().detect_video()``: one row per analysed frame and face, with
the time, face box, head pose, 68 landmarks and AU intensities (0-5). A frame with no face gives one
row with an empty face so the table shows when the face was missing. AU intensities are measured per
track, each against its own neutral frames, so two people never share a baseline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emoreason.au import AU_CODES
from emoreason.constants import DEFAULT_ANALYSIS_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from emoreason.face.align import head_pose, normalize_landmarks
from emoreason.face.aus import intensities, neutral_baseline, reference_features
from emoreason.face.detect import FaceDetector
from emoreason.face.events import AUEvent, all_events, smooth
from emoreason.face.geometry import measure_all
from emoreason.face.track import FaceTracker, Track, iou
from emoreason.io.video import Frame

logger = logging.getLogger(__name__)

BOX_COLUMNS = ["face_x0", "face_y0", "face_x1", "face_y1"]
POSE_COLUMNS = ["yaw", "pitch", "roll"]
LANDMARK_COLUMNS = [f"{axis}_{i}" for i in range(68) for axis in ("x", "y")]
AU_COLUMNS = list(AU_CODES)
FRONTAL_YAW = 30.0  # degrees; more turned frames are not used as neutral references
FULL_SCAN_EVERY = 8  # sampled frames between whole-frame scans for new faces (1 s at 8 fps)


@dataclass
class FaceAnalysis:
    """Everything the analysis found; ``table`` is what ``detect_video`` returns."""

    source: str
    media_type: str  # "video" or "image"
    duration_s: float
    frames_analyzed: int
    frame_size: tuple[int, int]  # width, height of the analysed frames
    table: pd.DataFrame
    tracks: list[Track]
    main_track_id: int | None
    events: list[AUEvent]  # of the main face
    neutral_times: list[float]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def faces_found(self) -> int:
        return len(self.tracks)

    def main_face(self) -> pd.DataFrame:
        """Rows of the main face only."""
        return self.table[self.table["is_main"]].reset_index(drop=True)


class FaceAnalyzer:
    """Detect, track and measure faces in videos and images.

    Args:
        fps: frames analysed per second of video.
        max_frames: most frames analysed per video (longer videos are sampled more sparsely).
        max_side: frames are decoded with their long side at most this many pixels.
        detector: a :class:`FaceDetector` (dlib HOG + 68 landmarks by default).
        full_scan_every: sampled frames between whole-frame scans for new faces; in between, faces
            are searched for only around the tracked ones (1 scans every frame: slower, the baseline).

    >>> table = FaceAnalyzer().detect_video("clip.mp4")  # doctest: +SKIP
    >>> table[["time_s", "AU12"]].max()                   # doctest: +SKIP
    """

    def __init__(
        self,
        fps: float = DEFAULT_ANALYSIS_FPS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_side: int = DEFAULT_MAX_SIDE,
        detector: FaceDetector | None = None,
        full_scan_every: int = FULL_SCAN_EVERY,
    ):
        if not (math.isfinite(fps) and fps > 0) or max_frames <= 0 or max_side < 64 or full_scan_every < 1:
            raise ValueError(
                f"need fps > 0, max_frames > 0, max_side >= 64, full_scan_every >= 1; "
                f"got {fps}, {max_frames}, {max_side}, {full_scan_every}"
            )
        self.fps, self.max_frames, self.max_side = fps, max_frames, max_side
        self.full_scan_every = full_scan_every
        self.detector = detector or FaceDetector()

    def detect_video(self, path: str | Path) -> pd.DataFrame:
        """Per-frame table for a video: time, face box, pose, landmarks, AU intensities."""
        return self.analyze(path).table

    def detect_image(self, path: str | Path) -> pd.DataFrame:
        """Per-face table for a still image, AUs measured against the mean neutral shape."""
        return self.analyze(path).table

    def analyze(
        self,
        path: str | Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> FaceAnalysis:
        """Full analysis of a video or image file (see :func:`emoreason.face.evidence.collect` for a time span,
        crops for the model and key frames from the same decoding pass).

        Args:
            progress: called as ``progress(done, total)`` after each analysed frame.
        Raises:
            MediaError: the file is missing, empty, unreadable, or not an image/video.
        """
        from emoreason.face.evidence import Sampling, collect

        sampling = Sampling(fps=self.fps, max_frames=self.max_frames, max_side=self.max_side, audio=False)
        return collect(path, sampling=sampling, analyzer=self, progress=progress).analysis

    def analyze_frames(
        self,
        frames: Iterable[Frame],
        source: str,
        media_type: str,
        duration_s: float,
        total: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> FaceAnalysis:
        """Detect, track and measure faces in ``frames`` (decoded once by the caller, in time order).

        Args:
            source: the file the frames come from; media_type: "video" or "image".
            duration_s: the analysed duration (a video's span); total: frames expected, for ``progress``.
        """
        started = time.perf_counter()
        tracker = FaceTracker()
        rows: list[dict] = []
        decode_s = detect_s = 0.0
        frame_size = (0, 0)
        position = -1
        tick = time.perf_counter()
        for position, frame in enumerate(frames):
            decode_s += time.perf_counter() - tick
            tick = time.perf_counter()
            frame_size = (frame.image.shape[1], frame.image.shape[0])
            faces = self._detect(frame.image, position, tracker)
            ids = tracker.update(position, frame.time_s, faces)
            detect_s += time.perf_counter() - tick
            rows.extend(_rows(position, frame, faces, ids))
            if progress:
                progress(position + 1, total)
            tick = time.perf_counter()
        measure_start = time.perf_counter()
        table, events, neutral_times, main_id = _measure(rows, tracker, media_type)
        analysis = FaceAnalysis(
            source=str(source),
            media_type=media_type,
            duration_s=duration_s,
            frames_analyzed=position + 1,
            frame_size=frame_size,
            table=table,
            tracks=tracker.confirmed,
            main_track_id=main_id,
            events=events,
            neutral_times=neutral_times,
        )
        analysis.timings = {
            "decode_s": round(decode_s, 4),
            "detect_s": round(detect_s, 4),
            "measure_s": round(time.perf_counter() - measure_start, 4),
            "total_s": round(time.perf_counter() - started, 4),
        }
        if media_type == "video" and duration_s * self.fps > self.max_frames:
            analysis.warnings.append(
                f"long video: {self.max_frames} frames analysed over {duration_s:.1f} s "
                f"({self.max_frames / duration_s:.2f} per second instead of {self.fps:g})"
            )
        return analysis

    def _detect(self, image: np.ndarray, position: int, tracker: FaceTracker):
        """Search around the faces already tracked; scan the whole frame periodically, or when that fails."""
        live = tracker.live(position)
        if position % self.full_scan_every == 0 or not live:
            return self.detector.detect(image)
        faces: list = []
        for track in live:
            for face in self.detector.detect_near(image, track.last.box):
                if all(iou(face.box, other.box) < 0.3 for other in faces):
                    faces.append(face)
        return faces or self.detector.detect(image)


def _rows(position: int, frame: Frame, faces, ids) -> list[dict]:
    base = {"frame": position, "frame_index": frame.index, "time_s": round(frame.time_s, 4)}
    if not faces:
        return [{**base, "track_id": -1}]
    rows = []
    for face, track_id in zip(faces, ids):
        row = {**base, "track_id": track_id, "face_score": face.score}
        row.update(zip(BOX_COLUMNS, face.box))
        row.update(zip(POSE_COLUMNS, head_pose(face.landmarks)))
        row.update(zip(LANDMARK_COLUMNS, face.landmarks.ravel().tolist()))
        rows.append(row)
    return rows


def _measure(rows: list[dict], tracker: FaceTracker, media_type: str):
    columns = [
        "frame",
        "frame_index",
        "time_s",
        "track_id",
        "is_main",
        "face_score",
        *BOX_COLUMNS,
        *POSE_COLUMNS,
        *LANDMARK_COLUMNS,
        *AU_COLUMNS,
        "neutral_ref",
    ]
    confirmed = {t.track_id for t in tracker.confirmed}
    rows = _drop_unconfirmed(rows, confirmed)
    table = pd.DataFrame(rows).reindex(columns=columns)
    main = tracker.main_track
    main_id = main.track_id if main else None
    table["is_main"] = table["track_id"].eq(main_id) if main_id is not None else False
    table["neutral_ref"] = False
    events: list[AUEvent] = []
    neutral_times: list[float] = []
    for track in tracker.confirmed:
        mask = table["track_id"].eq(track.track_id).to_numpy()
        points = table.loc[mask, LANDMARK_COLUMNS].to_numpy(np.float64).reshape(-1, 68, 2)
        features = measure_all(np.stack([normalize_landmarks(p) for p in points]))  # [T, F]
        if media_type == "image":
            neutral, used = reference_features(), np.array([], dtype=int)
        else:
            frontal = table.loc[mask, "yaw"].abs().to_numpy() < FRONTAL_YAW
            neutral, used = neutral_baseline(features, frontal)
        values = smooth(intensities(features, neutral))  # [T, A]
        times = table.loc[mask, "time_s"].to_numpy(np.float64)
        track_events = all_events(times, values) if media_type == "video" else []
        values = _split_closure_columns(times, values, track_events)
        table.loc[mask, AU_COLUMNS] = np.round(values, 3)
        idx = np.flatnonzero(mask)
        table.loc[idx[used], "neutral_ref"] = True
        if track.track_id == main_id:
            events = track_events
            neutral_times = [float(times[i]) for i in used]
    table["is_main"] = table["is_main"].astype(bool)
    table["neutral_ref"] = table["neutral_ref"].astype(bool)
    table["track_id"] = table["track_id"].astype(int)
    return table, events, neutral_times, main_id


def _drop_unconfirmed(rows: list[dict], confirmed: set[int]) -> list[dict]:
    """Remove rows of false-positive tracks; a frame left with no face keeps one empty row."""
    kept, seen_frames = [], set()
    for row in rows:
        if row["track_id"] in confirmed:
            kept.append(row)
            seen_frames.add(row["frame"])
    for row in rows:
        if row["frame"] not in seen_frames:
            kept.append({k: row[k] for k in ("frame", "frame_index", "time_s")} | {"track_id": -1})
            seen_frames.add(row["frame"])
    return sorted(kept, key=lambda r: (r["frame"], r["track_id"]))


def _split_closure_columns(times: np.ndarray, values: np.ndarray, events: list[AUEvent]) -> np.ndarray:
    """AU43 and AU45 share one closure series: keep it in the column its events were assigned to."""
    a43, a45 = AU_CODES.index("AU43"), AU_CODES.index("AU45")
    closure = values[:, a43].copy()
    blink = np.zeros(len(times), bool)
    for event in events:
        if event.code == "AU45":
            blink |= (times >= event.onset_s) & (times < event.offset_s)
    values[:, a45] = np.where(blink, closure, 0.0)
    values[:, a43] = np.where(blink, 0.0, closure)
    return values
