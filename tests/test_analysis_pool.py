"""The server's analysis pool: real worker processes running the real face analysis on real videos."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emoreason.face.evidence import Sampling, collect
from emoreason.serving.analysis import AnalysisError, AnalysisPool, analyse_file
from emoreason.synthetic import write_video
from tests.pool_work import POISON, crash_on_poison, hang_on_poison


@pytest.fixture(scope="module")
def pool():
    pool = AnalysisPool(workers=2, cache_size=8, work=crash_on_poison)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def videos(media_dir, smile_frames):
    """Four different videos of the same face (one pixel differs): four different content hashes."""
    frames, _ = smile_frames
    paths = []
    for i in range(4):
        changed = frames.copy()
        changed[:, 0, 0] = 40 * i
        paths.append(write_video(media_dir / f"variant{i}.mp4", changed, 12.0))
    return paths


def test_the_crops_are_the_ones_collect_cuts_for_training_and_the_hf_backend(smile_video, tmp_path):
    served = analyse_file(smile_video, "crops", 16, 60.0)
    expected = collect(smile_video, sampling=Sampling(model_crops=16, audio=False)).crops
    assert served.crops.shape == (16, 224, 224, 3)
    np.testing.assert_array_equal(served.crops, expected)  # no expression CNN, same frames and landmarks


def test_evidence_is_what_the_client_measures(smile_video):
    import emoreason
    from emoreason.prompt import textualize

    result = analyse_file(smile_video, "evidence", 16, 60.0)
    report = emoreason.explain(smile_video)
    assert result.evidence == textualize(aus=report.aus, prosody_cues=report.audio["cues"])
    assert "AU12" in result.evidence and "Voice:" in result.evidence
    assert result.waveform is not None and result.waveform.dtype == np.float32 and len(result.waveform) > 16000
    np.testing.assert_array_equal(result.crops, analyse_file(smile_video, "crops", 16, 60.0).crops)


def test_concurrent_requests_with_different_videos_are_all_answered(pool, videos):
    with ThreadPoolExecutor(8) as threads:
        results = list(threads.map(lambda p: pool.run("crops", p.read_bytes(), 8), videos * 2))
    assert len(results) == 8 and all(r.crops.shape == (8, 224, 224, 3) for r in results)
    # each video analysed once: the second request for it waited for the first, or found it in the cache
    for first, again in zip(results[:4], results[4:]):
        assert again is first


def test_a_cache_hit_skips_the_analysis(pool, smile_video):
    data = smile_video.read_bytes()
    before = dict(pool.stats)
    started = time.perf_counter()
    first = pool.run("evidence", data, 16)
    analysed_s = time.perf_counter() - started
    started = time.perf_counter()
    again = pool.run("evidence", data, 16)
    crops = pool.run("crops", data, 16)  # the loader's question after the middleware's: the same analysis
    hit_s = time.perf_counter() - started
    assert pool.stats["analyses"] == before["analyses"] + 1 and pool.stats["hits"] == before["hits"] + 2
    assert again is first and crops.crops is first.crops
    assert hit_s < analysed_s / 20


def test_an_evidence_request_never_gets_a_concurrent_crops_result(pool, videos):
    data = videos[2].read_bytes()
    with ThreadPoolExecutor(2) as threads:
        crops = threads.submit(pool.run, "crops", data, 5)
        time.sleep(0.05)  # the crops analysis is under way
        evidence = threads.submit(pool.run, "evidence", data, 5)
        assert evidence.result().evidence and evidence.result().waveform is None  # the variants have no audio
        assert crops.result().evidence is None and crops.result().crops.shape[0] == 5


def test_the_cache_is_bounded(videos):
    small = AnalysisPool(workers=1, cache_size=2)
    try:
        for path in videos[:3]:
            small.run("crops", path.read_bytes(), 4)
        assert len(small._cache) == 2
        small.run("crops", videos[0].read_bytes(), 4)  # evicted: analysed again
        assert small.stats["analyses"] == 4
        off = AnalysisPool(workers=1, cache_size=0)
        try:
            off.run("crops", videos[1].read_bytes(), 4)
            off.run("crops", videos[1].read_bytes(), 4)
            assert off.stats["analyses"] == 2
        finally:
            off.close()
    finally:
        small.close()


def test_a_worker_that_crashes_on_a_poisoned_video_is_replaced(pool, smile_video, videos):
    good = videos[3].read_bytes()
    with ThreadPoolExecutor(4) as threads:
        poisoned = threads.submit(pool.run, "crops", POISON + b"\x00" * 100, 16)
        fine = [threads.submit(pool.run, "crops", v.read_bytes(), 16) for v in videos[:3]]
        with pytest.raises(AnalysisError, match="worker stopped .*exit code -6"):
            poisoned.result()
        assert all(f.result().crops.shape == (16, 224, 224, 3) for f in fine)  # the others are not lost
    assert pool.stats["replaced"] >= 1
    assert pool.run("crops", good, 16).crops.shape == (16, 224, 224, 3)  # served by a new worker
    assert isinstance(AnalysisError("x"), ValueError)  # vLLM answers a ValueError with 400


def test_an_analysis_past_the_timeout_is_stopped(smile_video):
    slow = AnalysisPool(workers=1, timeout_s=3.0, work=hang_on_poison)
    try:
        started = time.perf_counter()
        with pytest.raises(AnalysisError, match="longer than 3 s"):
            slow.run("crops", POISON, 4)
        assert time.perf_counter() - started < 30
        assert slow.run("crops", smile_video.read_bytes(), 4).crops.shape[0] == 4
    finally:
        slow.close()


@pytest.mark.parametrize(
    "data, message",
    [(b"", "empty"), (b"this is not a video", "cannot be read"), (None, "no face")],
)
def test_bad_videos_are_clear_errors(pool, no_face_video, data, message):
    with pytest.raises(AnalysisError, match=message):
        pool.run("crops", no_face_video.read_bytes() if data is None else data, 16)


def test_a_too_long_video_is_refused(pool, smile_video):
    with pytest.raises(AnalysisError, match="lasts 3.0 s; this server accepts at most 1 s"):
        pool.run("crops", smile_video.read_bytes(), 16, max_video_s=1.0)


def test_bad_pool_settings_are_refused():
    with pytest.raises(ValueError, match="workers >= 1"):
        AnalysisPool(workers=0)
