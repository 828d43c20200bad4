"""End-to-end: emoreason.explain on real-face media, and the report schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

import emoreason
from emoreason.answer import parse_answer
from tests.conftest import SMILE


@pytest.fixture(scope="module")
def smile_report(smile_video):
    return emoreason.explain(smile_video)


def test_smile_video_yields_au12_with_timing_and_happiness(smile_report):
    au12 = next(a for a in smile_report.aus if a.code == "AU12")
    onset, apex, release, offset = SMILE
    assert au12.intensity >= 2.0  # at least FACS B at the apex
    assert onset - 0.2 <= au12.onset_s <= apex + 0.1
    assert apex - 0.2 <= au12.apex_s <= release + 0.2
    assert release <= au12.offset_s <= offset + 0.4
    assert smile_report.emotion.label == "happiness"
    assert smile_report.faces_found == 1


def test_smile_video_segments_hold_the_smile(smile_report):
    """The morph's resting frames keep the photo's smiling eyes, which the expression net reads as happiness (p=1),
    so the segments may start happy; the smile's apex lies in a happiness segment that cites AU12. (A real clip
    from neutral to a smile: tests/test_real_media.py.)"""
    _, apex, release, _ = SMILE
    happy = [s for s in smile_report.segments if s.emotion.label == "happiness"]
    assert any(s.start_s <= apex and release <= s.end_s and any(a["code"] == "AU12" for a in s.aus) for s in happy)
    for before, after in zip(smile_report.segments, smile_report.segments[1:]):
        assert before.end_s <= after.start_s + 1e-6  # segments do not overlap


def test_reasoning_has_observations_interpretation_conclusion(smile_report):
    text = smile_report.reasoning
    assert text.index("Observations:") < text.index("Interpretation:") < text.index("Conclusion:")
    assert "AU12" in text and "happiness" in text.split("Conclusion:")[1]
    assert "Voice:" in text  # the audio track is read


def test_reasoning_cites_the_faces_appearance_beside_the_aus(smile_report):
    table = smile_report.frames
    assert {"happiness", "neutral", "face_quality"} <= set(table.columns)  # the analysis' appearance columns
    interpretation = smile_report.reasoning.split("Interpretation:")[1]
    assert "appearance reads happiness" in interpretation and "AU12" in interpretation


def test_answer_round_trips_through_the_parser(smile_report):
    parsed = parse_answer(smile_report.answer)
    assert parsed.valid and parsed.format_ok
    assert parsed.emotion == smile_report.emotion.label
    assert {a.code for a in parsed.aus} == {a.code for a in smile_report.aus}


def test_report_is_json_serialisable(smile_report):
    data = json.loads(smile_report.to_json())
    for key in (
        "source",
        "duration_s",
        "faces_found",
        "aus",
        "emotion",
        "segments",
        "reasoning",
        "backend",
        "warnings",
        "timings",
    ):
        assert key in data
    assert data["backend"] == "rules"
    assert set(data["aus"][0]) >= {"code", "name", "intensity", "onset_s", "apex_s", "offset_s"}
    assert set(data["emotion"]) == {"label", "confidence", "alternatives"}
    assert abs(data["duration_s"] - 3.0) < 0.2
    assert list(smile_report.to_frame().columns)[:2] == ["code", "name"]


def test_prosody_cues_in_report(smile_report):
    assert smile_report.audio["has_audio"] and not smile_report.audio["silent"]
    assert any("pause" in cue for cue in smile_report.audio["cues"])


def test_smiling_photograph_yields_au12_and_happiness(smiling_photo):
    report = emoreason.explain(smiling_photo)
    assert report.media_type == "image" and report.faces_found == 1
    au12 = next(a for a in report.aus if a.code == "AU12")
    assert au12.intensity >= 3.0 and au12.onset_s is None  # a still has no timing
    assert report.emotion.label == "happiness" and report.emotion.confidence > 0.5
    assert report.audio is None


def test_video_without_audio_track(silent_video):
    report = emoreason.explain(silent_video)
    assert report.audio["has_audio"] is False
    assert "no audio track" in report.audio["cues"]
    assert report.emotion.label == "happiness"


def test_no_face_video_claims_no_emotion(no_face_video):
    report = emoreason.explain(no_face_video)
    assert report.faces_found == 0
    assert report.emotion is None and report.aus == [] and report.answer is None
    assert "no face" in report.reasoning.lower()
    json.loads(report.to_json())


def test_two_people_do_not_mix_and_the_larger_is_main(two_face_video):
    analysis = emoreason.FaceAnalyzer().analyze(two_face_video)
    assert analysis.faces_found == 2
    table = analysis.table[analysis.table["track_id"] >= 0]
    centres = (table["face_x0"] + table["face_x1"]) / 2
    for track_id, xs in centres.groupby(table["track_id"]):
        assert (xs < 320).all() or (xs >= 320).all(), f"track {track_id} crosses between the two people"
    main = analysis.main_face()
    assert ((main["face_x0"] + main["face_x1"]) / 2 < 320).all()  # the larger, left face
    assert main["AU12"].max() >= 2.0


def test_every_person_gets_a_report_the_main_face_first(two_face_video, media_dir, tmp_path, capsys):
    """py-feat reports every face; so do we: report.faces, one entry per tracked person, in the JSON, the text
    output (--all-faces) and the HTML report. The smiling, larger face is the main one; the still face is not."""
    from PIL import Image

    from emoreason.cli import main
    from emoreason.synthetic import astronaut_face

    report = emoreason.explain(two_face_video)
    assert [f["is_main"] for f in report.faces] == [True, False]
    main_face, other = report.faces
    assert main_face["emotion"]["label"] == report.emotion.label == "happiness"
    assert [a["code"] for a in main_face["aus"]] == [a.code for a in report.aus]
    assert main_face["median_box"][0] < 320 <= other["median_box"][0]  # left (main) and right people
    # the still face does not borrow the smile: her photo smiles, so AU12 may be read, but held from the start,
    # not rising and falling with the left face's smile (0.8-2.5 s)
    still = {a["code"]: a for a in other["aus"]}
    assert all(e["onset_s"] < 0.5 and e["offset_s"] > 2.5 for e in (still["AU12"]["events"] if "AU12" in still else []))
    assert json.loads(report.to_json())["faces"][1]["track_id"] == other["track_id"]
    html = tmp_path / "two.html"
    assert main(["explain", str(two_face_video), "--all-faces", "--html", str(html)]) == 0
    assert f"person {other['track_id']} (box" in capsys.readouterr().out
    assert 'id="people"' in html.read_text() and f'id="person-{other["track_id"]}"' in html.read_text()
    # a group photo: five people, five entries
    canvas = np.full((600, 1400, 3), 90, np.uint8)
    face = np.asarray(Image.fromarray(astronaut_face(320)).resize((160, 160)))
    for i in range(5):
        canvas[100 + 60 * (i % 2) : 260 + 60 * (i % 2), 40 + 270 * i : 200 + 270 * i] = face
    Image.fromarray(canvas).save(media_dir / "group.png")
    group = emoreason.explain(media_dir / "group.png")
    assert group.faces_found == 5 and len(group.faces) == 5 and all(f["emotion"] for f in group.faces)


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "truncated_faststart"])
def test_bad_inputs_raise_media_error(bad_files, kind):
    with pytest.raises(emoreason.MediaError, match=str(bad_files[kind].name)):
        emoreason.explain(bad_files[kind])


def test_incomplete_checkpoint_is_named(smiling_photo, tmp_path):
    from emoreason.model.checkpoint import CheckpointError

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        emoreason.explain(smiling_photo, model=tmp_path)


def test_a_looped_clip_lists_every_occurrence_of_its_aus_and_no_time_past_its_end(media_dir, smile_frames):
    """The smile clip three times over (as `ffmpeg -stream_loop 2`): AU12 three times, in order, the strongest in
    the AU's own fields; no onset, apex or offset past the end; alternatives weaker than the conclusion, none 0."""
    from emoreason.synthetic import write_video

    frames, _ = smile_frames
    looped = write_video(media_dir / "smile_x3.mp4", np.concatenate([frames] * 3), 12.0)
    report = emoreason.explain(looped)
    au12 = next(a for a in report.aus if a.code == "AU12")
    assert len(au12.events) == 3, au12.events
    for i, event in enumerate(au12.events):  # each smile: onset 0.8 s, offset 2.5 s into its 3 s loop
        assert 3 * i + SMILE[0] - 0.5 <= event["onset_s"] <= event["apex_s"] <= event["offset_s"] <= 3 * i + 3.0
    assert max(e["intensity"] for e in au12.events) == au12.intensity
    assert any(e["onset_s"] == au12.onset_s and e["offset_s"] == au12.offset_s for e in au12.events)
    for au in report.aus:
        times = [au.offset_s] + [t for e in au.events for t in (e["onset_s"], e["apex_s"], e["offset_s"])]
        assert max(times) <= report.duration_s, (au.code, times, report.duration_s)
    assert any(
        line.lstrip("- ").startswith("AU12") and ", 3 times (" in line for line in report.reasoning.split("\n")
    ), report.reasoning
    assert all(0 < a["confidence"] < report.emotion.confidence for a in report.emotion.alternatives)
    assert json.loads(report.to_json())["aus"][0]["events"]  # the events travel in the JSON


LAUGH = {"AU6": 3.0, "AU12": 4.0, "AU25": 3.0, "AU26": 4.0}  # an open-mouthed laugh, the jaw dropped
SADNESS = {"AU1": 3.0, "AU4": 3.0, "AU15": 3.5}


@pytest.fixture(scope="module")
def astronaut_morpher():
    from emoreason.face.detect import BlazeFaceDetector
    from emoreason.synthetic import FaceMorpher, face_photos

    photo = face_photos()["astronaut"]
    return FaceMorpher(photo, BlazeFaceDetector(landmarks="mesh").detect(photo)[0].landmarks)


@pytest.mark.parametrize(
    "case, script",
    [
        ("laugh from rest", [(LAUGH, (1.0, 1.6, 5.5, 5.9))]),
        ("laugh throughout: no resting stretch", [(LAUGH, (-1.0, -0.5, 10.0, 11.0))]),
        ("sadness into a laugh: no neutral between", [(SADNESS, (-1.0, -0.5, 2.5, 3.2)), (LAUGH, (2.6, 3.3, 10, 11))]),
    ],
)
def test_an_open_mouthed_laugh_reads_as_happiness_with_au12(astronaut_morpher, media_dir, case, script):
    """A morph of a real photo (AU-controlled, jaw dropped): happiness with AU12, also when the clip never rests
    (the expression net reads the held laugh, so calibration keeps it) and when sadness turns into the laugh."""
    from emoreason.synthetic import scripted_frames, write_video

    clip = write_video(media_dir / f"laugh-{case[:5]}.mp4", scripted_frames(astronaut_morpher, script), 25.0)
    report = emoreason.explain(clip, use_audio=False, key_frames=False)
    aus = {a.code: a for a in report.aus}
    assert report.emotion.label == "happiness" and "AU12" in aus, (case, report.emotion, sorted(aus))
    assert all(e["offset_s"] <= report.duration_s for a in report.aus for e in a.events)
    assert any(e["onset_s"] <= 4.0 and e["offset_s"] >= 5.0 for e in aus["AU12"].events)  # the laugh's hold
