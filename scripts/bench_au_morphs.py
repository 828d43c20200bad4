"""How the default path reads AU-controlled morphs of the real photos we may use (issue 21's failure classes).

    .venv/bin/python scripts/bench_au_morphs.py [--json OUT]

Each bundled photo (the astronaut, Grace Hopper: `emoreason.synthetic.face_photos`) is moved by
:class:`~emoreason.synthetic.FaceMorpher` into a laugh (AU6 3, AU12 4, AU25 3, AU26 4 of 5) and a sadness (AU1 3,
AU4 3, AU15 3.5), 6 s at 25 fps: from rest, throughout (no resting stretch), and sadness turning into the laugh
with no neutral between; and the laugh as a still photo. Prints, per case, the emotion `emoreason.explain` concludes,
its segments, and the AUs it reports next to the AUs applied; the last line counts the cases read right (the
applied emotion concluded, and AU12 reported for every laugh). A measurement to improve against, not a fit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

LAUGH = {"AU6": 3.0, "AU12": 4.0, "AU25": 3.0, "AU26": 4.0}
SADNESS = {"AU1": 3.0, "AU4": 3.0, "AU15": 3.5}
# case -> ([(aus, (onset, apex, release, offset) s)], the emotion at the end of the clip)
CASES = {
    "laugh from rest": ([(LAUGH, (1.0, 1.6, 5.5, 5.9))], "happiness"),
    "laugh throughout": ([(LAUGH, (-1.0, -0.5, 10.0, 11.0))], "happiness"),
    "sadness into a laugh": ([(SADNESS, (-1.0, -0.5, 2.5, 3.2)), (LAUGH, (2.6, 3.3, 10.0, 11.0))], "happiness"),
    "sadness throughout": ([(SADNESS, (-1.0, -0.5, 10.0, 11.0))], "sadness"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from PIL import Image

    import emoreason
    from emoreason.face.detect import BlazeFaceDetector
    from emoreason.synthetic import FaceMorpher, face_photos, scripted_frames, write_video

    detector, rows = BlazeFaceDetector(landmarks="mesh"), []
    with tempfile.TemporaryDirectory() as tmp:
        for person, image in sorted(face_photos().items()):
            morpher = FaceMorpher(image, detector.detect(image)[0].landmarks)
            media = {}
            for i, (case, (script, gold)) in enumerate(CASES.items()):
                clip = write_video(Path(tmp) / f"{person}-{i}.mp4", scripted_frames(morpher, script), 25.0)
                media[case] = (clip, gold, set().union(*(s[0] for s in script)))
            still = Path(tmp) / f"{person}-laugh.png"
            Image.fromarray(morpher(LAUGH)).save(still)
            media["laugh, still photo"] = (still, "happiness", set(LAUGH))
            for case, (path, gold, applied) in media.items():
                report = emoreason.explain(path, use_audio=False, key_frames=False)
                aus = {a.code: a.level for a in report.aus}
                label = report.emotion.label if report.emotion else None
                right = label == gold and ("AU12" in aus or "AU12" not in applied)
                rows.append({"person": person, "case": case, "gold": gold, "applied": sorted(applied),
                             "emotion": label, "confidence": report.emotion.confidence if report.emotion else None,
                             "aus": aus, "right": right,
                             "segments": [(s["start_s"], s["end_s"], (s.get("emotion") or {}).get("label"))
                                          for s in report.to_dict()["segments"]]})  # fmt: skip
                print(f"{person:9} {case:22} gold {gold:9} -> {label} | AUs {aus} | applied {sorted(applied)}")
    print(f"{sum(r['right'] for r in rows)} of {len(rows)} cases read right")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
