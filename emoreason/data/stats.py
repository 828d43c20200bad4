"""Counts, label balance and AU histogram of a sample file (``emoreason data stats``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from emoreason.data.jsonl import read_jsonl


def dataset_stats(path: str | Path) -> dict:
    rows = 0
    counters = {name: Counter() for name in ("dataset", "split", "media_type", "label", "emotion", "generator")}
    au_present, au_absent, au_intensity = Counter(), Counter(), {}
    subjects, with_rationale, with_description = set(), 0, 0
    for row in read_jsonl(path):
        rows += 1
        for name, key in (("dataset", "dataset"), ("split", "split"), ("media_type", "media_type"),
                          ("emotion", "emotion")):  # fmt: skip
            counters[name][str(row.get(key))] += 1
        counters["label"].update(row.get("labels") or ["(none)"])
        counters["generator"][str((row.get("provenance") or {}).get("generator", "(labels only)"))] += 1
        for au in row.get("aus") or []:
            intensity = au.get("intensity")
            if intensity == 0:
                au_absent[au["code"]] += 1
                continue
            au_present[au["code"]] += 1
            if intensity is not None:
                au_intensity.setdefault(au["code"], []).append(float(intensity))
        if row.get("subject"):
            subjects.add(row["subject"])
        with_rationale += bool(row.get("rationale"))
        with_description += bool(row.get("description"))
    return {
        "rows": rows,
        "subjects": len(subjects),
        "with_rationale": with_rationale,
        "with_description": with_description,
        **{name: dict(counter.most_common()) for name, counter in counters.items()},
        "aus": {
            code: {
                "present": au_present[code],
                "absent": au_absent[code],
                "mean_intensity": round(sum(v) / len(v), 2) if (v := au_intensity.get(code)) else None,
            }
            for code in sorted(set(au_present) | set(au_absent), key=lambda c: int(c[2:]))
        },  # fmt: skip
    }


def format_stats(stats: dict) -> str:
    lines = [f"rows: {stats['rows']}   subjects: {stats['subjects']}   with rationale: {stats['with_rationale']}   "
             f"with description: {stats['with_description']}"]  # fmt: skip
    for name in ("dataset", "split", "media_type", "emotion", "label", "generator"):
        total = sum(stats[name].values()) or 1
        parts = ", ".join(f"{k} {v} ({v / total:.0%})" for k, v in list(stats[name].items())[:15])
        lines.append(f"{name}: {parts}")
    if stats["aus"]:
        lines.append("AU histogram (present / absent, mean intensity):")
        peak = max(v["present"] for v in stats["aus"].values()) or 1
        for code, v in stats["aus"].items():
            bar = "#" * max(1, round(30 * v["present"] / peak)) if v["present"] else ""
            mean = "" if v["mean_intensity"] is None else f", mean {v['mean_intensity']}"
            lines.append(f"  {code:>5} {bar:<30} {v['present']} / {v['absent']}{mean}")
    return "\n".join(lines)
