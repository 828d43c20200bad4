"""Still images as one RGB frame: EXIF orientation applied, 16-bit and float images scaled (not clipped),
transparency flattened onto grey, very large images refused before they are decoded."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from emoreason.constants import IMAGE_MAX_PIXELS, IMAGE_MAX_SIDE
from emoreason.io.errors import MediaError, check_file

_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16/32-bit integer and float greyscale


def load_image(path: str | Path, max_side: int = IMAGE_MAX_SIDE):
    """Read a still image as one RGB :class:`~emoreason.io.video.Frame` at time 0, long side at most ``max_side``.

    Raises:
        MediaError: missing, empty, unreadable, or larger than ``IMAGE_MAX_PIXELS`` (the message gives its size).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from emoreason.io.video import Frame

    path = check_file(path)
    try:
        with warnings.catch_warnings():
            # our own size check below replaces PIL's decompression-bomb warning and error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > IMAGE_MAX_PIXELS:
                    raise MediaError(f"{path}: the image is {width}x{height} ({width * height / 1e6:.0f} MP); "
                                     f"emoreason reads images up to {IMAGE_MAX_PIXELS / 1e6:.0f} MP")  # fmt: skip
                if hasattr(img, "draft") and img.format == "JPEG":
                    img.draft("RGB", (max_side, max_side))  # decode a large JPEG at a reduced scale
                img = _to_rgb(ImageOps.exif_transpose(img))
                if max(img.size) > max_side:
                    img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # PIL refuses it at open, before our own check
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too large"
        raise MediaError(f"{path}: the image has {size}; emoreason reads images up to "
                         f"{IMAGE_MAX_PIXELS / 1e6:.0f} MP") from None  # fmt: skip
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{path}: cannot read as an image ({exc})") from exc
    return Frame(0, 0.0, array)


def _to_rgb(img):
    """8-bit RGB: wide greyscale scaled by its range, transparency composited onto mid-grey."""
    from PIL import Image

    if img.mode in _WIDE_MODES:
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(values.max()), 1.0)
        if img.mode == "F" and values.max() <= 1.0:
            top = 1.0
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
