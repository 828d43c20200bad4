"""A self-contained HTML report of an EmotionReport: one file, no network needed to open it.

It shows the AU timeline (inline SVG: the strongest AUs, the rest behind a toggle, and the appearance model's
expression probabilities as a band under it), key frames (each AU's apex, JPEG inlined as base64, face box and
landmarks drawn), the chain of thought with every AU it cites linked to that AU's line on the timeline,
audio cues, the backend and warnings. The page template is ``templates/report.html.jinja``.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
from markupsafe import Markup

from emoreason import __version__
from emoreason.au import AU_BY_CODE, AU_CODES
from emoreason.constants import AU_ACTIVE_THRESHOLD, MAX_KEY_FRAMES
from emoreason.face.analyzer import BOX_COLUMNS, LANDMARK_COLUMNS
from emoreason.report import EmotionReport
from emoreason.viz.timeline import (
    EMOTION_COLOURS,
    appearance_band,
    au_series,
    frame_table,
    strongest_codes,
    timeline_svg,
)

_AU_MENTION = re.compile(r"\bAU(\d{1,2})\b")


@dataclass
class KeyFrame:
    time_s: float
    title: str
    aus: list[str]  # "AU12 C" for each AU active in this frame
    image_b64: str  # JPEG


def _draw(jpeg: bytes, row, scale: float) -> str:
    """The key frame with the face box and landmarks drawn; ``scale``: key-frame pixels per table pixel."""
    from PIL import Image, ImageDraw

    picture = Image.open(io.BytesIO(jpeg)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    box = [float(row[c]) * scale for c in BOX_COLUMNS]
    draw.rectangle(box, outline=(46, 204, 113), width=max(2, picture.width // 200))
    points = np.asarray([row[c] for c in LANDMARK_COLUMNS], float).reshape(-1, 2) * scale
    radius = max(1.5, picture.width / 300)
    for px, py in points:
        draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=(255, 214, 10))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def key_frames(report: EmotionReport) -> list[KeyFrame]:
    """The frame at each AU's apex (strongest first, at most MAX_KEY_FRAMES), drawn, for the main face.

    The frames come from the report's evidence (``explain(..., key_frames=True)``): nothing is decoded again.
    A report made without them has no key frames."""
    table = frame_table(report)
    evidence = report.evidence
    if table.empty or report.main_face is None or evidence is None or not evidence.key_frames:
        return []
    wanted: dict[float, list[str]] = {}
    for au in sorted(report.aus, key=lambda a: -a.intensity):
        wanted.setdefault(au.apex_s if au.apex_s is not None else 0.0, []).append(au.code)
    times = sorted(list(wanted)[:MAX_KEY_FRAMES])  # `wanted` is ordered strongest AU first
    result = []
    for t in times:
        row = table.iloc[int(np.argmin(np.abs(table["time_s"].to_numpy(float) - t)))]
        jpeg = evidence.key_frames.get(int(row["frame"]))
        if jpeg is None:
            continue
        active = [f"{c} {_letter(row[c])}" for c in AU_CODES if row[c] >= AU_ACTIVE_THRESHOLD]
        title = f"{t:.2f} s: apex of {', '.join(wanted[t])}" if report.media_type == "video" else "the photograph"
        result.append(KeyFrame(t, title, active, _draw(jpeg, row, evidence.key_frame_scale)))
    return result


def _letter(value: float) -> str:
    return "ABCDE"[min(int(round(value)), 5) - 1] if round(value) >= 1 else "-"


def link_aus(text: str, present: set[str]) -> Markup:
    """Escape ``text`` and link each AU it cites that is on the timeline to its line there."""

    def link(match: re.Match) -> str:
        code = f"AU{int(match.group(1))}"
        if code not in present:
            return match.group(0)
        return f'<a class="au-link" href="#series-{code}" data-au="{code}">{match.group(0)}</a>'

    return Markup(_AU_MENTION.sub(link, escape(text)))


def render_html(report: EmotionReport) -> str:
    """The report as one HTML document."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("emoreason", "templates"), autoescape=select_autoescape(["jinja"]))
    present = {s.code for s in au_series(report)}
    reasoning = [link_aus(line, present) for line in report.reasoning.splitlines() if line.strip()]
    return env.get_template("report.html.jinja").render(
        report=report,
        name=Path(report.source).name,
        timeline=Markup(timeline_svg(report)) if present or report.segments else None,
        key_frames=key_frames(report),
        reasoning=reasoning,
        au_names={code: AU_BY_CODE[code].name for code in AU_CODES},
        emotion_colours=EMOTION_COLOURS,
        shown_aus=strongest_codes(report),
        has_appearance=report.media_type == "video" and appearance_band(report) is not None,
        version=__version__,
    )


def save_html(report: EmotionReport, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_html(report), encoding="utf-8")
    return path
