"""FaceAnalyzer: a video or image in, one table of faces, landmarks, AU intensities and expressions out.

In the spirit of py-feat's ``Detector().detect_video()``: one row per analysed frame and face, with
the time, face box, head pose, 68 landmarks, AU intensities (0-5), the expression CNN's probabilities
(EXPRESSION_COLUMNS, like py-feat's emotion columns) and a visibility score (``face_quality``). A frame
with no face gives one row with an empty face so the table shows when the face was missing. AU
intensities are measured per track, each against its own neutral frames, so two people never share a
baseline.

Default perception, chosen by measurement (``scripts/bench_detection.py``: recall on real photos and
the failure classes built from them, landmark jitter; ``scripts/bench_perception.py``: speed, memory):
BlazeFace finds the faces (24 of 24 faces against dlib HOG's 12: small, grey, half-hidden, a hand over
the mouth, a row of people), the 468-point mesh gives the landmarks of video frames in dlib's 68-point
layout (on a still face 0.05 px of frame-to-frame motion against dlib's 0.48), and between whole-frame
scans a face is followed by its mesh alone, as MediaPipe does. Still images keep dlib's 68 points (fitted
in BlazeFace's box): a still is measured against dlib's mean shape, which the mesh's points are offset from.
``FaceAnalyzer(detector="dlib")`` is the previous pipeline (HOG + dlib's 68 points).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emoreason.au import AU_CODES
from emoreason.constants import DEFAULT_ANALYSIS_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from emoreason.face.align import head_pose, normalize_landmarks
from emoreason.face.aus import intensities, neutral_baseline, reference_features
from emoreason.face.detect import BlazeFaceDetector, FaceDetection, FaceDetector, landmarks_in_box
from emoreason.face.events import AUEvent, all_events, smooth
from emoreason.face.expression import EXPRESSION_LABELS, ExpressionModel, expression_crop
from emoreason.face.geometry import measure_all
from emoreason.face.track import FaceTracker, Track, iou
from emoreason.io.video import Frame

logger = logging.getLogger(__name__)

BOX_COLUMNS = ["face_x0", "face_y0", "face_x1", "face_y1"]
POSE_COLUMNS = ["yaw", "pitch", "roll"]
LANDMARK_COLUMNS = [f"{axis}_{i}" for i in range(68) for axis in ("x", "y")]
AU_COLUMNS = list(AU_CODES)
# the expression CNN's per-frame probabilities, named as the emotions (py-feat's emotion columns)
EXPRESSION_COLUMNS = list(EXPRESSION_LABELS)
QUALITY_COLUMN = "face_quality"  # 0..1: how well the face is seen (see face_quality)
DETECTORS = ("blazeface", "dlib")
QUALITY_YAW = (20.0, 50.0)  # |yaw| degrees: full quality up to the first, none from the second
# BlazeFace probability (the best of its two models): none at the first, full from the second. Measured on the
# photos of scripts/bench_detection.py: astronaut 0.94, with a hand over the mouth 0.86 (quality 0.88); Grace
# Hopper 0.95, with the hand 0.66 (0.40); the cameraman half behind his camera 0.78 (and yaw 38: 0.27);
# greyscale astronaut 0.90. The mesh's presence score stays at 1.0 with a hand over the mouth: it flags a lost
# face, not a covered one.
QUALITY_SCORE = (0.5, 0.9)
FRONTAL_YAW = 30.0  # degrees; more turned frames are not used as neutral references
FULL_SCAN_EVERY = 8  # sampled frames between whole-frame scans for new faces (1 s at 8 fps)
PREFETCH_FRAMES = 4  # frames decoded ahead of the analysis (640 px frames: ~3.5 MB)


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
    track_events: dict[int, list[AUEvent]] = field(default_factory=dict)  # every confirmed track's, by track id

    @property
    def faces_found(self) -> int:
        return len(self.tracks)

    def main_face(self) -> pd.DataFrame:
        """Rows of the main face only."""
        return self.table[self.table["is_main"]].reset_index(drop=True)

    def face(self, track_id: int) -> pd.DataFrame:
        """Rows of one tracked face."""
        return self.table[self.table["track_id"] == track_id].reset_index(drop=True)

    def track_ids(self) -> list[int]:
        """The confirmed tracks, the main face first, then by how many frames they are in."""
        counts = self.table.loc[self.table["track_id"] >= 0, "track_id"].value_counts()
        return sorted((int(t) for t in counts.index), key=lambda t: (t != self.main_track_id, -counts[t], t))


class FaceAnalyzer:
    """Detect, track and measure faces in videos and images.

    Args:
        fps: frames analysed per second of video.
        max_frames: most frames analysed per video (longer videos are sampled more sparsely).
        max_side: frames are decoded with their long side at most this many pixels.
        detector: ``"blazeface"`` (default: BlazeFace + the 468-point mesh as 68 points), ``"dlib"`` (HOG + dlib's
            68 points), or a detector object with ``detect(image)`` / ``detect_near(image, box)``.
        full_scan_every: sampled frames between whole-frame scans for new faces; in between, faces
            are followed by their mesh, else searched for only around the tracked ones (1 scans every
            frame: slower, the baseline).
        expressions: run the expression CNN on every face (the EXPRESSION_COLUMNS; NaN when off).
        prefetch: decode the next frames in a thread while this one is analysed (PREFETCH_FRAMES ahead).

    >>> table = FaceAnalyzer().detect_video("clip.mp4")  # doctest: +SKIP
    >>> table[["time_s", "AU12"]].max()                   # doctest: +SKIP
    """

    def __init__(
        self,
        fps: float = DEFAULT_ANALYSIS_FPS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_side: int = DEFAULT_MAX_SIDE,
        detector: str | object = "blazeface",
        full_scan_every: int = FULL_SCAN_EVERY,
        expressions: bool = True,
        prefetch: bool = True,
    ):
        if not (math.isfinite(fps) and fps > 0) or max_frames <= 0 or max_side < 64 or full_scan_every < 1:
            raise ValueError(
                f"need fps > 0, max_frames > 0, max_side >= 64, full_scan_every >= 1; "
                f"got {fps}, {max_frames}, {max_side}, {full_scan_every}"
            )
        self.fps, self.max_frames, self.max_side = fps, max_frames, max_side
        self.full_scan_every = full_scan_every
        self.detector = make_detector(detector)
        self.expression_model = ExpressionModel() if expressions else None
        self.prefetch = prefetch

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
        end_s: float | None = None,
    ) -> FaceAnalysis:
        """Detect, track and measure faces in ``frames`` (decoded once by the caller, in time order).

        Args:
            source: the file the frames come from; media_type: "video" or "image".
            duration_s: the analysed duration (a video's span); total: frames expected, for ``progress``.
            end_s: the time (in the frames' clock) where the video or span ends: no AU event ends after it.
        """
        started = time.perf_counter()
        tracker = FaceTracker()
        rows: list[dict] = []
        decode_s = detect_s = expression_s = 0.0
        frame_size = (0, 0)
        position = -1
        tick = time.perf_counter()
        for position, frame in enumerate(prefetch(frames) if self.prefetch else frames):
            decode_s += time.perf_counter() - tick
            tick = time.perf_counter()
            frame_size = (frame.image.shape[1], frame.image.shape[0])
            faces = self._detect(frame.image, position, tracker)
            ids = tracker.update(position, frame.time_s, faces)
            tock = time.perf_counter()
            detect_s += tock - tick
            still = _still_landmarks(frame.image, faces) if media_type == "image" else None
            expressions = self._expressions(frame.image, faces, still)
            expression_s += time.perf_counter() - tock
            rows.extend(_rows(position, frame, faces, ids, expressions, still))
            if progress:
                progress(position + 1, total)
            tick = time.perf_counter()
        measure_start = time.perf_counter()
        table, track_events, neutral_times, main_id = _measure(rows, tracker, media_type, end_s)
        analysis = FaceAnalysis(
            source=str(source),
            media_type=media_type,
            duration_s=duration_s,
            frames_analyzed=position + 1,
            frame_size=frame_size,
            table=table,
            tracks=tracker.confirmed,
            main_track_id=main_id,
            events=track_events.get(main_id, []),
            neutral_times=neutral_times,
            track_events=track_events,
        )
        analysis.timings = {
            "decode_s": round(decode_s, 4),
            "detect_s": round(detect_s, 4),
            "expression_s": round(expression_s, 4),
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
        """Follow the faces already tracked (by their mesh, else a search around them); scan the whole frame
        periodically, or when that fails."""
        live = tracker.live(position)
        if position % self.full_scan_every == 0 or not live:
            return self.detector.detect(image)
        follow = getattr(self.detector, "follow", None)
        faces: list = []
        for track in live:
            followed = follow(image, track.last) if follow is not None else None
            for face in [followed] if followed is not None else self.detector.detect_near(image, track.last.box):
                if all(iou(face.box, other.box) < 0.3 for other in faces):
                    faces.append(face)
        return faces or self.detector.detect(image)

    def _expressions(self, image: np.ndarray, faces: list[FaceDetection], still) -> np.ndarray | None:
        """``[N, 7]`` expression probabilities of this frame's faces, in one batch (None when off or no face)."""
        if self.expression_model is None or not faces:
            return None
        points = still or [face.landmarks for face in faces]
        crops = np.stack([expression_crop(image, face.box, p) for face, p in zip(faces, points)])  # [N, 64, 64]
        return self.expression_model.predict(crops)


def prefetch(frames: Iterable[Frame], ahead: int = PREFETCH_FRAMES) -> Iterator[Frame]:
    """``frames`` in order, decoded by a thread that keeps at most ``ahead`` frames ready.

    The decoders (decord through ctypes, PyAV) and the .tflite models release the GIL, so on two cores
    decoding overlaps the analysis instead of adding to it; the bounded queue keeps memory flat. An error
    in decoding is raised here, in the caller's thread.
    """
    ready: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        ready.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item = done
        except BaseException as exc:  # handed to the consumer, which raises it
            item = exc
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="emoreason-decode", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def make_detector(detector: str | object):
    """A detector from its name (DETECTORS), or the detector object itself."""
    if detector == "blazeface":
        return BlazeFaceDetector(landmarks="mesh")
    if detector == "dlib":
        return FaceDetector()
    if isinstance(detector, str) or not hasattr(detector, "detect"):
        raise ValueError(f"detector must be one of {DETECTORS} or a detector object, got {detector!r}")
    return detector


def _still_landmarks(image: np.ndarray, faces: list[FaceDetection]) -> list[np.ndarray]:
    """dlib's 68 points for the faces of a still image: stills are measured against dlib's mean shape, from
    which the mesh's points are offset (the smiling astronaut: AU12 5.0 through dlib, 2.4 through the mesh)."""
    return [face.landmarks if face.mesh is None else landmarks_in_box(image, face.box) for face in faces]


def face_quality(face: FaceDetection, yaw: float) -> float:
    """0..1, how well the face is seen: the product of the mesh's face-presence probability (1 without a mesh),
    a frontal-ness ramp over |yaw| (QUALITY_YAW) and, for BlazeFace detections, a ramp over the detector's
    probability (QUALITY_SCORE), which falls when a hand covers part of the face. Between whole-frame scans a
    followed face keeps the probability of its last detection (updated once a second at 8 fps)."""
    presence = 1.0 if face.mesh_score is None else float(face.mesh_score)
    low, high = QUALITY_YAW
    frontal = float(np.clip((high - abs(yaw)) / (high - low), 0.0, 1.0))
    confidence = 1.0
    if face.keypoints is not None:  # a BlazeFace probability (dlib's score is an SVM margin, not comparable)
        low, high = QUALITY_SCORE
        confidence = float(np.clip((face.score - low) / (high - low), 0.0, 1.0))
    return round(presence * frontal * confidence, 3)


def _rows(position: int, frame: Frame, faces, ids, expressions, still) -> list[dict]:
    base = {"frame": position, "frame_index": frame.index, "time_s": round(frame.time_s, 4)}
    if not faces:
        return [{**base, "track_id": -1}]
    rows = []
    for i, (face, track_id) in enumerate(zip(faces, ids)):
        landmarks = face.landmarks if still is None else still[i]
        pose = head_pose(landmarks)
        row = {**base, "track_id": track_id, "face_score": face.score, QUALITY_COLUMN: face_quality(face, pose[0])}
        row.update(zip(BOX_COLUMNS, face.box))
        row.update(zip(POSE_COLUMNS, pose))
        row.update(zip(LANDMARK_COLUMNS, landmarks.ravel().tolist()))
        if expressions is not None:
            row.update(zip(EXPRESSION_COLUMNS, np.round(expressions[i].astype(float), 4).tolist()))
        rows.append(row)
    return rows


def _measure(rows: list[dict], tracker: FaceTracker, media_type: str, end_s: float | None = None):
    columns = [
        "frame",
        "frame_index",
        "time_s",
        "track_id",
        "is_main",
        "face_score",
        QUALITY_COLUMN,
        *BOX_COLUMNS,
        *POSE_COLUMNS,
        *LANDMARK_COLUMNS,
        *AU_COLUMNS,
        *EXPRESSION_COLUMNS,
        "neutral_ref",
    ]
    confirmed = {t.track_id for t in tracker.confirmed}
    rows = _drop_unconfirmed(rows, confirmed)
    table = pd.DataFrame(rows).reindex(columns=columns)
    main = tracker.main_track
    main_id = main.track_id if main else None
    table["is_main"] = table["track_id"].eq(main_id) if main_id is not None else False
    table["neutral_ref"] = False
    events: dict[int, list[AUEvent]] = {}
    neutral_times: list[float] = []
    for track in tracker.confirmed:
        mask = table["track_id"].eq(track.track_id).to_numpy()
        points = table.loc[mask, LANDMARK_COLUMNS].to_numpy(np.float64).reshape(-1, 68, 2)
        features = measure_all(np.stack([normalize_landmarks(p) for p in points]))  # [T, F]
        appearance = table.loc[mask, EXPRESSION_COLUMNS].to_numpy(np.float64)  # [T, 7], NaN without the net
        if media_type == "image":
            neutral, used = reference_features(), np.array([], dtype=int)
        else:
            frontal = table.loc[mask, "yaw"].abs().to_numpy() < FRONTAL_YAW
            neutral, used = neutral_baseline(features, frontal, appearance)
        values = smooth(intensities(features, neutral, appearance))  # [T, A]
        times = table.loc[mask, "time_s"].to_numpy(np.float64)
        track_events = all_events(times, values, end_s) if media_type == "video" else []
        values = _split_closure_columns(times, values, track_events)
        table.loc[mask, AU_COLUMNS] = np.round(values, 3)
        idx = np.flatnonzero(mask)
        table.loc[idx[used], "neutral_ref"] = True
        events[track.track_id] = track_events
        if track.track_id == main_id:
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
