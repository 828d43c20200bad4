"""The AU intensity timeline: as inline SVG for the HTML report, and as a static PNG figure.

One line per AU that was found (its per-frame intensity, 0-5), with the AU's onset, apex and offset
marked; the strongest TOP_AUS are shown, the rest are drawn hidden (class ``minor``) for the page's toggle. Under
it, the emotion segments as a coloured band and, when the table has them, the appearance model's per-frame
expression probabilities as a stacked band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from emoreason.constants import AU_INTENSITY_MAX
from emoreason.report import EmotionReport

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22")  # fmt: skip
EMOTION_COLOURS = {
    "happiness": "#f4c542", "sadness": "#5b8def", "anger": "#e0513a", "fear": "#9b6ad6", "disgust": "#6aa84f",
    "surprise": "#f39c34", "contempt": "#a67c52", "neutral": "#c9cdd2",
}  # fmt: skip


TOP_AUS = 4  # AU lines shown at first; the others sit behind a toggle
APPEARANCE_LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


@dataclass(frozen=True)
class Series:
    code: str
    colour: str
    times: np.ndarray  # [T] seconds
    values: np.ndarray  # [T] intensity 0..5


def au_series(report: EmotionReport) -> list[Series]:
    """Per-frame intensity of each AU the report lists, for the main face."""
    table = report.frames
    if table is None or report.faces_found == 0:
        return []
    main = table[table["is_main"]].sort_values("time_s")
    return [
        Series(au.code, PALETTE[i % len(PALETTE)], main["time_s"].to_numpy(float), main[au.code].to_numpy(float))
        for i, au in enumerate(report.aus)
    ]


def strongest_codes(report: EmotionReport, count: int | None = None) -> set[str]:
    """The ``count`` (default TOP_AUS) AUs with the highest apex intensity: the ones the timeline shows first."""
    count = TOP_AUS if count is None else count
    return {au.code for au in sorted(report.aus, key=lambda a: -a.intensity)[:count]}


def appearance_band(report: EmotionReport) -> tuple[np.ndarray, np.ndarray] | None:
    """``([T] times, [T, 7] probabilities)`` of the appearance model for the main face, or None without them."""
    table = report.frames
    if table is None or report.faces_found == 0 or not all(c in table.columns for c in APPEARANCE_LABELS):
        return None
    main = table[table["is_main"]].sort_values("time_s")
    probs = main[list(APPEARANCE_LABELS)].to_numpy(float)
    ok = ~np.isnan(probs).any(1)
    if not ok.any():
        return None
    return main["time_s"].to_numpy(float)[ok], probs[ok]


def timeline_svg(report: EmotionReport, width: int = 920, height: int = 300) -> str:
    """Inline SVG: AU lines (the strongest shown, the rest class ``minor``), onset/apex/offset markers, the emotion
    band and the appearance band; elements carry ``data-au``."""
    series = au_series(report)
    shown = strongest_codes(report)
    appearance = appearance_band(report) if report.media_type == "video" else None
    prob_h = 44 if appearance is not None else 0
    height += prob_h
    left, right, top, band = 44, 16, 12, 34
    plot_h = height - top - band - 36 - prob_h
    t0, t1 = time_range(report, series)
    duration = t1 - t0

    def x(t: float) -> float:
        return left + (width - left - right) * (t - t0) / duration

    def y(v: float) -> float:
        return top + plot_h * (1 - v / AU_INTENSITY_MAX)

    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="AU intensity timeline">']  # fmt: skip
    for level in range(6):  # grid with FACS letters
        label = "ABCDE"[level - 1] if level else "0"
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(level):.1f}" y2="{y(level):.1f}"/>'
                     f'<text class="axis" x="{left - 8}" y="{y(level) + 4:.1f}" text-anchor="end">{label}</text>')  # fmt: skip
    step = _tick_step(duration)
    for t in np.arange(math.ceil(t0 / step) * step, t1 + 1e-9, step):
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{height - 4}" text-anchor="middle">{t:g} s</text>')
    events = {au.code: au for au in report.aus}
    for s in series:
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(s.times, s.values))
        minor = "" if s.code in shown else " minor"
        parts.append(f'<g class="au-series{minor}" data-au="{s.code}" id="series-{s.code}">'
                     f'<polyline points="{points}" stroke="{s.colour}"/>')  # fmt: skip
        au = events[s.code]
        occurrences = au.events or ([] if au.onset_s is None else [
            {"onset_s": au.onset_s, "apex_s": au.apex_s, "offset_s": au.offset_s, "intensity": au.intensity}])  # fmt: skip
        for event in occurrences:  # every occurrence: dashed onset and offset, a dot at the apex
            for name in ("onset", "offset"):
                t = event[f"{name}_s"]
                parts.append(f'<line class="marker {name}" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{y(0):.1f}" '
                             f'y2="{y(event["intensity"]):.1f}" stroke="{s.colour}"><title>{s.code} {name} {t:.2f} s'
                             f"</title></line>")  # fmt: skip
            parts.append(f'<circle class="apex" cx="{x(event["apex_s"]):.1f}" cy="{y(event["intensity"]):.1f}" r="4" '
                         f'fill="{s.colour}"><title>{s.code} apex {event["apex_s"]:.2f} s, intensity '
                         f'{event["intensity"]:.1f}</title></circle>')  # fmt: skip
        parts.append("</g>")
    for i, m in enumerate(report.micro_expressions or []):  # a shaded span over the AU lines, labelled at the top
        x0, x1 = x(m["onset_s"]), max(x(m["offset_s"]), x(m["onset_s"]) + 3)
        label = escape(" ".join(m["aus"]) or "movement")
        parts.append(f'<g class="micro" id="micro-{i}"><rect x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" '
                     f'height="{plot_h:.1f}" fill="#e0513a" fill-opacity="0.18"/><line x1="{x(m["apex_s"]):.1f}" '
                     f'x2="{x(m["apex_s"]):.1f}" y1="{top}" y2="{top + plot_h:.1f}" stroke="#e0513a"/>'
                     f'<text class="axis" x="{x(m["apex_s"]) + 3:.1f}" y="{top + 10}">micro {label}</text>'
                     f'<title>micro-expression {m["onset_s"]:.3f}-{m["offset_s"]:.3f} s, apex {m["apex_s"]:.3f} s: '
                     f"{label}{' (' + escape(m['emotion']) + ')' if m.get('emotion') else ''}</title></g>")  # fmt: skip
    band_y = top + plot_h + 8
    for seg in report.segments:
        colour = EMOTION_COLOURS.get(seg.emotion.label, "#999999")
        x0, x1 = x(seg.start_s), max(x(seg.end_s), x(seg.start_s) + 2)
        parts.append(f'<rect class="segment" x="{x0:.1f}" y="{band_y}" width="{x1 - x0:.1f}" height="{band - 10}" '
                     f'fill="{colour}"><title>{escape(seg.emotion.label)} {seg.start_s:.2f}-{seg.end_s:.2f} s'
                     f"</title></rect>")  # fmt: skip
        if x1 - x0 > 50:
            parts.append(f'<text class="segment-label" x="{(x0 + x1) / 2:.1f}" y="{band_y + 17}" '
                         f'text-anchor="middle">{escape(seg.emotion.label)}</text>')  # fmt: skip
    if appearance is not None:
        parts.append(_appearance_svg(*appearance, x, band_y + band + 2, prob_h - 8, width - right))
    parts.append("</svg>")
    return "".join(parts)


def _appearance_svg(times: np.ndarray, probs: np.ndarray, x, y0: float, height: float, x_max: float) -> str:
    """Stacked per-frame probabilities (one column per analysed frame), labelled on the left."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.1
    parts = [f'<g id="appearance-band"><text class="axis" x="{x(times[0]) - 6:.1f}" y="{y0 + height / 2 + 4:.1f}" '
             f'text-anchor="end">face</text>']  # fmt: skip
    for t, row in zip(times, probs):
        x0, x1 = x(t), min(x(t + step), x_max)
        if x1 <= x0:
            continue
        y = y0
        for label, p in zip(APPEARANCE_LABELS, row):
            h = height * float(p)
            if h >= 0.3:
                parts.append(f'<rect class="prob" x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                             f'height="{h:.1f}" fill="{EMOTION_COLOURS[label]}"><title>{t:.2f} s: {label} {p:.2f}'
                             f"</title></rect>")  # fmt: skip
            y += h
    parts.append("</g>")
    return "".join(parts)


def time_range(report: EmotionReport, series: list[Series]) -> tuple[float, float]:
    """The stretch of the source's timeline a figure shows: the report's span, else the whole clip."""
    if report.span is not None:
        return float(report.span[0]), max(float(report.span[1]), float(report.span[0]) + 1e-3)
    end = max(report.duration_s, max((s.times[-1] for s in series if len(s.times)), default=0.0), 1e-3)
    return 0.0, end


def _tick_step(duration: float) -> float:
    for step in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if duration / step <= 10:
            return step
    return 1200.0


def save_timeline_png(report: EmotionReport, path: str | Path, dpi: int = 120) -> Path:
    """A static timeline figure (matplotlib, no display needed): AU lines above, emotion band below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, band) = plt.subplots(2, 1, figsize=(10, 4.2), sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    shown = strongest_codes(report)
    series = [s for s in au_series(report) if s.code in shown]
    for s in series:
        ax.plot(s.times, s.values, color=s.colour, label=s.code, linewidth=1.8)
    for au in report.aus:
        if au.apex_s is not None and au.code in shown:
            colour = next(s.colour for s in series if s.code == au.code)
            for event in au.events or [{"onset_s": au.onset_s, "apex_s": au.apex_s, "offset_s": au.offset_s,
                                        "intensity": au.intensity}]:  # fmt: skip
                ax.plot([event["apex_s"]], [event["intensity"]], "o", color=colour)
                ax.axvspan(event["onset_s"], event["offset_s"], color=colour, alpha=0.06)
    for m in report.micro_expressions or []:
        ax.axvspan(m["onset_s"], m["offset_s"], color="#e0513a", alpha=0.25)
        ax.text(m["apex_s"], AU_INTENSITY_MAX, "micro " + " ".join(m["aus"]), fontsize=7, color="#e0513a")
    ax.set_ylim(0, AU_INTENSITY_MAX + 0.2)
    ax.set_yticks(range(6), ["0", "A", "B", "C", "D", "E"])
    ax.set_ylabel("AU intensity")
    title = "no face found" if report.faces_found == 0 else (report.emotion.label if report.emotion else "")
    ax.set_title(f"{Path(report.source).name}: {title}")
    if series:
        ax.legend(loc="upper right", ncol=min(len(series), 6), fontsize=8)
    else:
        ax.text(0.5, 0.5, "no face found" if report.faces_found == 0 else "no AU above trace level",
                transform=ax.transAxes, ha="center", va="center", fontsize=14, color="#666666")  # fmt: skip
    for seg in report.segments:
        band.axvspan(seg.start_s, seg.end_s, color=EMOTION_COLOURS.get(seg.emotion.label, "#999999"))
        band.text((seg.start_s + seg.end_s) / 2, 0.5, seg.emotion.label, ha="center", va="center", fontsize=8)
    band.set_yticks([])
    band.set_xlabel("time (s)")
    band.set_xlim(*time_range(report, series))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def frame_table(report: EmotionReport) -> pd.DataFrame:
    """The main face's rows of the per-frame table (empty when there is none)."""
    if report.frames is None:
        return pd.DataFrame()
    return report.frames[report.frames["is_main"]].sort_values("time_s").reset_index(drop=True)
