"""A markdown report over evaluation runs: summary, published baselines, per-class and per-AU detail, plots.

Reads every ``results.json`` (and its ``predictions.jsonl``) below a results folder, as written by
:mod:`emoreason.evaluation.runner`. Plots are PNGs drawn with matplotlib's Agg canvas (no display,
no global pyplot state) into ``<report stem>_files/`` next to the report. A metric that is ``None``
(not applicable, or not measured) shows as "–"; it never stops the report.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from emoreason.au import LABEL_SPACES
from emoreason.data.jsonl import read_jsonl
from emoreason.evaluation.published import published_for
from emoreason.metrics import emotion_correct

NA = "–"
RELIABILITY_BINS = 10
SUMMARY_HEADER = ["Run", "Benchmark", "Backend", "Model", "n", "Accuracy (WAR)", "UAR", "Macro F1", "Macro AU F1",
                  "Format validity", "FACS consistency", "Hallucinated-AU rate"]  # fmt: skip


def fmt(value: float | None, percent: bool = True) -> str:
    """A fraction as a percentage with two decimals (``0.5 -> "50.00"``), ``None`` as "–"."""
    if value is None or isinstance(value, bool):
        return NA
    return f"{100 * value:.2f}" if percent else f"{value:.3f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def load_runs(results_dir: str | Path) -> list[dict]:
    """Every ``results.json`` below ``results_dir``, sorted by path.

    Each dict is the file's content plus ``"run"`` (its folder relative to ``results_dir``) and
    ``"folder"`` (that folder's path). Raises ``FileNotFoundError`` if ``results_dir`` is not a folder
    and ``ValueError`` naming the file if a ``results.json`` is not a valid run record.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such results folder")
    runs = []
    for path in sorted(root.rglob("results.json")):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: malformed results.json, not JSON ({exc})") from exc
        if not isinstance(run, dict):
            raise ValueError(f"{path}: malformed results.json, expected a JSON object")
        missing = [key for key in ("benchmark", "backend", "metrics") if key not in run]
        if missing or not isinstance(run["metrics"], dict):
            raise ValueError(f"{path}: malformed results.json, missing or invalid {missing or ['metrics']}")
        rel = path.parent.relative_to(root).as_posix()
        runs.append(run | {"run": rel if rel != "." else root.name, "folder": str(path.parent)})
    return runs


def read_predictions(run: dict) -> list[dict]:
    """The rows of the run's ``predictions.jsonl`` (``[]`` if it has none)."""
    path = Path(run["folder"]) / "predictions.jsonl"
    return list(read_jsonl(path)) if path.is_file() else []


def _correct(row: dict, label_space: str | None) -> float | None:
    if label_space in LABEL_SPACES and row.get("gold_labels"):
        return emotion_correct(row.get("pred_emotion"), row["gold_labels"], label_space)
    if row.get("gold_emotion") is None:
        return None
    return float(row.get("pred_emotion") == row["gold_emotion"])


def reliability(rows: list[dict], label_space: str | None = None, bins: int = RELIABILITY_BINS) -> dict:
    """Confidence against accuracy in ``bins`` equal-width bins, and the expected calibration error.

    ECE (Guo et al., 2017) = sum over bins of (n_b / N) * |accuracy_b - mean confidence_b|, over the rows
    that carry a confidence and a gold emotion. ``ece`` is ``None`` when no row does.
    """
    stats = [[0, 0.0, 0.0] for _ in range(bins)]  # per bin: n, sum of confidence, sum of correctness
    for row in rows:
        confidence, correct = row.get("confidence"), _correct(row, row.get("label_space") or label_space)
        if confidence is None or correct is None:
            continue
        if not 0.0 <= float(confidence) <= 1.0:
            raise ValueError(f"prediction {row.get('id')!r}: confidence {confidence} is outside 0..1")
        b = min(int(float(confidence) * bins), bins - 1)
        stats[b] = [stats[b][0] + 1, stats[b][1] + float(confidence), stats[b][2] + correct]
    n = sum(s[0] for s in stats)
    table_ = [{"lo": i / bins, "hi": (i + 1) / bins, "n": s[0], "confidence": s[1] / s[0] if s[0] else None,
               "accuracy": s[2] / s[0] if s[0] else None} for i, s in enumerate(stats)]  # fmt: skip
    ece = sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in table_ if b["n"]) if n else None
    return {"ece": ece, "n": n, "bins": table_}


def _part(run: dict, key: str) -> dict:
    """``run["metrics"][key]`` (``"emotion"``, ``"au"``, ``"rates"``), ``{}`` when it is ``None`` or absent."""
    return run["metrics"].get(key) or {}


def summary_row(run: dict) -> list[str]:
    """One row under :data:`SUMMARY_HEADER`."""
    emotion, au, rates = _part(run, "emotion"), _part(run, "au"), _part(run, "rates")
    n, model = emotion.get("n", (run.get("data") or {}).get("evaluated")), (run.get("model") or {}).get("path")
    return [f"`{run['run']}`", str(run["benchmark"]), str(run["backend"]), Path(model).name if model else NA,
            NA if n is None else str(n), fmt(emotion.get("war", emotion.get("accuracy"))), fmt(emotion.get("uar")),
            fmt(emotion.get("macro_f1")), fmt(au.get("macro_au_f1")), fmt(rates.get("format_validity")),
            fmt(rates.get("facs_consistency")), fmt(rates.get("hallucinated_au_rate"))]  # fmt: skip


def per_class_rows(run: dict) -> list[list[str]]:
    """``[class, recall, F1, support]`` per class (``[]`` without emotion metrics).

    Recall of a class absent from the gold labels, and F1 of a class neither present nor predicted, are
    undefined: the metrics store 0 for them (sklearn's ``zero_division=0``), the table shows "–".
    """
    emotion = _part(run, "emotion")
    f1, support = emotion.get("per_class_f1") or {}, emotion.get("support") or {}
    confusion = emotion.get("confusion") or {}
    predicted = dict(zip(confusion.get("columns") or [], map(sum, zip(*confusion.get("matrix") or [[]]))))
    rows = []
    for label, recall in (emotion.get("per_class_recall") or {}).items():
        absent = support.get(label) == 0
        unused = absent and predicted.get(label) == 0
        rows.append([label, NA if absent else fmt(recall), NA if unused else fmt(f1.get(label)),
                     str(support.get(label, NA))])  # fmt: skip
    return rows


def _au_code_key(code: str) -> tuple[int, str]:
    return (int(re.sub(r"\D", "", code) or 0), code)


# --- plots ---


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, empty: str | None = None) -> None:
    if empty is not None:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, empty, ha="center", va="center", fontsize=13, color="#666666")
    fig.savefig(path)


def plot_confusion(run: dict, path: Path) -> None:
    """Heatmap of the confusion matrix (rows true, columns predicted plus "invalid"), coloured by row share."""
    import numpy as np

    confusion = _part(run, "emotion").get("confusion") or {}
    matrix = np.asarray(confusion.get("matrix") or [], dtype=float)
    if matrix.size == 0:
        return _save(_figure(5, 3), path, "no emotion metrics")
    rows, cols = confusion.get("labels") or run.get("labels") or [], confusion.get("columns") or []
    side = max(5.0, 0.55 * matrix.shape[1] + 2.5)
    fig = _figure(side, side * 0.85)
    ax = fig.add_subplot()
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j, i, f"{int(count)}", ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.5 else "black"
        )
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="predicted", ylabel="true", title=f"{run['run']}: confusion (counts)")
    _save(fig, path)


def plot_au_f1(run: dict, path: Path) -> None:
    """Per-AU F1 bars; an AU with F1 ``None`` gets no bar and a "–" label."""
    per_au = _part(run, "au").get("per_au_f1") or {}
    if not per_au:
        return _save(_figure(5, 3), path, "no AU annotations")
    codes = sorted(per_au, key=_au_code_key)
    fig = _figure(max(5.0, 0.45 * len(codes) + 1.5), 3.2)
    ax = fig.add_subplot()
    heights = [per_au[c] or 0.0 for c in codes]
    ax.bar(codes, heights, color="#2e86de")
    for x, code in enumerate(codes):
        label = NA if per_au[code] is None else f"{per_au[code]:.2f}"
        ax.text(x, heights[x] + 0.02, label, ha="center", va="bottom", fontsize=7)
    ax.tick_params(axis="x", labelrotation=45)
    ax.set(ylim=(0, 1.1), ylabel="F1", title=f"{run['run']}: per-AU F1")
    _save(fig, path)


def plot_reliability(rel: dict, title: str, path: Path) -> None:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration."""
    if not rel["n"]:
        return _save(_figure(4.5, 3), path, "no predictions with a confidence")
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot()
    used = [b for b in rel["bins"] if b["n"]]
    width = 1 / len(rel["bins"])
    ax.bar([b["lo"] for b in used], [b["accuracy"] for b in used], width=width, align="edge", color="#2e86de",
           edgecolor="black", label="accuracy")  # fmt: skip
    ax.bar([b["lo"] for b in used], [b["confidence"] - b["accuracy"] for b in used], bottom=[b["accuracy"] for b in used],
           width=width, align="edge", color="#ee5253", alpha=0.35, label="gap")  # fmt: skip
    ax.plot([0, 1], [0, 1], "--", color="gray")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence",
        ylabel="accuracy",
        title=f"{title}: ECE {rel['ece']:.3f} (n={rel['n']})",
    )
    ax.legend(loc="upper left")
    _save(fig, path)


# --- markdown ---


def _comparison(benchmark: str, runs: list[dict]) -> list[str]:
    published = published_for(benchmark)
    if not published:
        return [f"### {benchmark}", "", f"No published results recorded for `{benchmark}`.", ""]
    keys = [k for k in ("uar", "war", "accuracy") if any(k in p.metric_values for p in published)]
    header = ["System", *(k.upper() if k != "accuracy" else "Accuracy" for k in keys), "Protocol", "Source"]
    rows = []
    for run in runs:
        emotion = _part(run, "emotion")
        ours = {"uar": emotion.get("uar"), "war": emotion.get("war", emotion.get("accuracy")),
                "accuracy": emotion.get("accuracy")}  # fmt: skip
        split, n = (run.get("data") or {}).get("split"), emotion.get("n")
        rows.append([f"**emoreason {run['backend']}** (`{run['run']}`)", *(fmt(ours[k]) for k in keys),
                     f"this run: split {split or NA}, n={n if n is not None else NA}", "this report"])  # fmt: skip
    for p in published:
        values = [NA if p.metric_values.get(k) is None else f"{p.metric_values[k]:.2f}" for k in keys]
        rows.append([p.system, *values, p.protocol, p.source])
    note = ("Published numbers follow their own protocol (all folds, full test sets); a run on another split "
            "or a subset is not directly comparable.")  # fmt: skip
    return [f"### {benchmark}", "", table(header, rows), "", note, ""]


def _run_section(run: dict, files: Path) -> list[str]:
    link = files.name  # the plots folder, relative to the report
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", run["run"])
    emotion, au, rates = _part(run, "emotion"), _part(run, "au"), _part(run, "rates")
    model, data = run.get("model") or {}, run.get("data") or {}
    predictions = read_predictions(run)
    try:
        rel = reliability(predictions, run.get("label_space"))
    except ValueError as exc:  # name the file the bad row came from
        raise ValueError(f"{Path(run['folder']) / 'predictions.jsonl'}: {exc}") from exc
    plot_confusion(run, files / f"{name}_confusion.png")
    plot_au_f1(run, files / f"{name}_au_f1.png")
    plot_reliability(rel, run["run"], files / f"{name}_reliability.png")
    lines = [f"### `{run['run']}`", "",
             f"- Benchmark `{run['benchmark']}`, backend `{run['backend']}`, label space `{run.get('label_space', NA)}`",
             f"- Model: {model['path']} (sha256 {str(model.get('sha256'))[:12]})" if model.get("path") else f"- Model: {NA}",
             f"- Data: {data.get('path', NA)}, split {data.get('split', NA)}, {data.get('evaluated', NA)} of "
             f"{data.get('rows', NA)} rows evaluated",
             f"- emoreason {run.get('emoreason_version', NA)}, created {run.get('created', NA)}, "
             f"{(run.get('timings') or {}).get('per_sample_s', NA)} s per sample", ""]  # fmt: skip
    extra = [("Weighted F1", emotion.get("weighted_f1")), ("Mean AU ICC", au.get("mean_icc")),
             ("Faithfulness", rates.get("faithfulness")), ("Cue-overlap F1", rates.get("cue_overlap_f1"))]  # fmt: skip
    rows = [[k, fmt(v, percent=k != "Mean AU ICC")] for k, v in extra]
    rows += [["Mean AU MAE", fmt(au.get("mean_mae"), percent=False)], ["ECE", fmt(rel["ece"], percent=False)]]
    lines += [table(["Metric", "Value"], rows), "", "#### Per-class recall", ""]
    classes = per_class_rows(run)
    lines += [table(["Class", "Recall", "F1", "Support"], classes) if classes else NA, "",
              f"![Confusion matrix of {run['run']}]({link}/{name}_confusion.png)", "", "#### Action units", ""]  # fmt: skip
    if au.get("per_au_f1"):
        icc, mae = au.get("icc") or {}, au.get("mae") or {}
        au_rows = [[code, fmt(f1), fmt(icc.get(code), percent=False), fmt(mae.get(code), percent=False)]
                   for code, f1 in sorted(au["per_au_f1"].items(), key=lambda kv: _au_code_key(kv[0]))]  # fmt: skip
        lines.append(table(["AU", "F1", "ICC", "MAE"], au_rows))
    else:
        lines.append(f"Macro AU F1: {NA} (no AU annotations in the evaluated data).")
    lines += ["", f"![Per-AU F1 of {run['run']}]({link}/{name}_au_f1.png)", "", "#### Calibration", "",
              f"ECE {fmt(rel['ece'], percent=False)} over {rel['n']} predictions with a confidence "
              f"({RELIABILITY_BINS} equal-width bins).", "",
              f"![Reliability diagram of {run['run']}]({link}/{name}_reliability.png)", ""]  # fmt: skip
    if run.get("by_subject"):
        subjects = [[f"`{s}`", str(v.get("n", NA)), fmt(v.get("accuracy"))] for s, v in run["by_subject"].items()]
        lines += ["#### By subject", "", table(["Subject", "n", "Accuracy"], subjects), ""]
    check = run.get("subject_independent") or {}
    if check.get("checked"):
        overlap = check.get("train_subjects_in_test") or []
        lines += [f"Subject-independent: {'no' if overlap else 'yes'}"
                  + (f" ({len(overlap)} training subjects in test: {', '.join(map(str, overlap))})" if overlap else ""), ""]  # fmt: skip
    return lines


def write_report(results_dir: str | Path, out: str | Path) -> Path:
    """Write a markdown report of every run below ``results_dir`` to ``out``, plots in ``<out stem>_files/``.

    Raises:
        FileNotFoundError: ``results_dir`` is not a folder.
        ValueError: no ``results.json`` below it, or one is malformed (the file is named).

    >>> write_report("results", Path("results/report.md"))  # doctest: +SKIP
    PosixPath('results/report.md')
    """
    runs = load_runs(results_dir)
    if not runs:
        raise ValueError(f"{results_dir}: no results.json below this folder; run `emoreason eval` first")
    out = Path(out)
    files = out.parent / f"{out.stem}_files"
    files.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = ["# emoreason evaluation report", "",
             f"{len(runs)} run(s) from `{results_dir}`, written {stamp}. Accuracies and rates are percentages; "
             f"{NA} marks a metric that does not apply or was not measured.", "",
             "## Summary", "", table(SUMMARY_HEADER, [summary_row(r) for r in runs]), "",
             "## Comparison with published results", ""]  # fmt: skip
    for benchmark in sorted({r["benchmark"] for r in runs}):
        lines += _comparison(benchmark, [r for r in runs if r["benchmark"] == benchmark])
    lines += ["## Runs", ""]
    for run in runs:
        lines += _run_section(run, files)
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


__all__ = ["load_runs", "write_report", "read_predictions", "reliability", "summary_row", "per_class_rows",
           "SUMMARY_HEADER", "fmt", "table"]  # fmt: skip
