"""The evaluation runner: a benchmark file through a backend, scored by the metrics training also uses.

A run writes ``<out>/<benchmark>-<backend>-<key>/`` with ``predictions.jsonl`` (one row per sample,
appended as it goes: a killed run resumes and skips what it already scored) and ``results.json`` (the
exact configuration, model and data hashes, the protocol, metrics, timings). An unusable medium or an
unparseable answer is an invalid prediction that counts as wrong; it never stops the run.

Which rows are scored, and how, is the corpus's published protocol (:mod:`emoreason.evaluation.protocols`)
unless ``split`` asks for one: DFEW's five folds are scored one by one and averaged, as its papers report.
Rows of several label spaces (RAF-DB's basic and compound subsets) are each scored in their own space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from emoreason import __version__
from emoreason.answer import parse_answer
from emoreason.au import BASIC, LABEL_SPACES
from emoreason.backends.base import ServerError
from emoreason.constants import BACKENDS, DEFAULT_ANALYSIS_FPS
from emoreason.data.jsonl import ResumableWriter, read_jsonl, read_samples
from emoreason.data.rounds import file_sha256
from emoreason.data.schema import Sample
from emoreason.evaluation.protocols import Protocol, check_benchmark, choose_protocol, coverage, mean_metrics, select
from emoreason.io.errors import MediaError
from emoreason.metrics import (
    au_metrics,
    emotion_correct,
    emotion_metrics,
    facs_consistent,
    faithfulness,
    hallucinated_aus,
    rate,
)
from emoreason.scale import Failure, SequentialEngine

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    benchmark: str
    data: str
    backend: str = "rules"
    model: str | None = None
    split: str | None = None  # None: the corpus's published protocol; "all": every row; else rows of this split
    limit: int | None = None
    fps: float = DEFAULT_ANALYSIS_FPS
    out: str = "results"
    train_data: str | None = None  # for the subject-independence check
    # vllm backend: URL of an `emoreason serve` server (model = served name, optional), or a list of them: the
    # samples are spread over them
    server: str | list[str] | None = None
    # micro-expression corpora (CASME II: a frame folder a sample): the event's onset-apex flow, read by the FACS
    # prototypes, or by this head of `emoreason train micro` (micro_head.json)
    micro_head: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "hf" and not self.model:
            raise ValueError("backend 'hf' needs model= (a checkpoint directory)")
        if (self.backend == "vllm") != (self.server is not None):
            raise ValueError("backend 'vllm' needs server= (an `emoreason serve` URL), and only it takes one")
        if not Path(self.data).is_file():
            raise FileNotFoundError(f"data: {self.data} does not exist")
        if self.micro_head is not None and not Path(self.micro_head).is_file():
            raise FileNotFoundError(f"micro_head: {self.micro_head} does not exist")
        if self.split is not None and (not isinstance(self.split, str) or not self.split.strip()):
            raise ValueError(f"split must be a split name, 'all' or None (the published protocol), got {self.split!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be positive, got {self.limit}")


def model_fingerprint(path: str | None) -> dict | None:
    if path is None:
        return None
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "lora/adapter_model.safetensors"):
        if (Path(path) / name).is_file():
            digest.update(file_sha256(Path(path) / name).encode())
    return {"path": str(path), "sha256": digest.hexdigest()}


def served_model(config: EvalConfig) -> dict:
    """The served model of a vllm run, with the checkpoint's fingerprint when its path is readable here."""
    from emoreason.backends.vllm import connect

    server = config.server[0] if isinstance(config.server, list) else config.server
    info = connect(server, config.model).served_model()
    checkpoint = info["root"] if info["parent"] is None else str(Path(info["root"] or "").parent)
    if checkpoint and (Path(checkpoint) / "config.json").is_file():
        info["checkpoint"] = model_fingerprint(checkpoint)
    return info


def run_dir(config: EvalConfig) -> Path:
    key = hashlib.sha1(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
    return Path(config.out) / f"{config.benchmark}-{config.backend}-{key}"


def _predict_event(sample: Sample, config: EvalConfig, row: dict) -> dict:
    """A micro-expression event (onset and apex frames) read by its flow: the head's class, or the FACS
    prototypes' reading of its AUs mapped into the sample's label space."""
    from emoreason.face.micro import MicroHead, event_frames, event_points, prototype_label, read_onset_apex

    started = time.perf_counter()
    empty = {"pred_emotion": None, "confidence": None, "pred_aus": {}, "evidence_aus": {}, "valid": False,
             "format_ok": False, "completion": None, "seconds": 0.0}  # fmt: skip
    try:
        reading = read_onset_apex(*event_frames(sample.media, *event_points(sample), sample.media_type))
    except (MediaError, KeyError, TypeError) as exc:
        return row | empty | {"error": f"{sample.id}: {exc}"}
    if reading is None:
        return row | empty | {"error": "no face found"}
    space = LABEL_SPACES.get(sample.label_space, BASIC)
    if config.micro_head:
        label, confidence = MicroHead(config.micro_head)(reading.features)
    else:
        label, confidence = prototype_label(reading.emotion, space), None
    aus = {code: 3.0 for code in reading.aus}
    return row | empty | {"pred_emotion": label, "confidence": confidence, "pred_aus": aus, "evidence_aus": aus,
                          "valid": label is not None, "format_ok": True,
                          "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip


def _predict(sample: Sample, config: EvalConfig, analyzer=None, server: str | None = None) -> dict:
    """One sample through the backend -> a prediction row (never raises on bad media or answers; raises
    ServerError when the server is gone)."""
    from emoreason.explain import explain

    if server is None:
        server = config.server[0] if isinstance(config.server, list) else config.server
    row = {"id": sample.id, "subject": sample.subject, "label_space": sample.label_space, "gold_labels": sample.labels,
           "gold_emotion": sample.emotion, "gold_aus": sample.au_dict(), "error": None}  # fmt: skip
    if sample.media_type == "frames":
        return _predict_event(sample, config, row)
    started = time.perf_counter()
    try:
        report = explain(sample.media, model=config.model, span=sample.span, fps=config.fps,
                         use_audio=sample.media_type == "video", key_frames=False, analyzer=analyzer,
                         server=server)  # fmt: skip
    except (MediaError, ServerError) as exc:
        if isinstance(exc, ServerError) and exc.status is None:
            raise  # the server is gone: stop here; finished samples are cached and a rerun resumes

        return row | {"pred_emotion": None, "confidence": None, "pred_aus": {}, "evidence_aus": {}, "valid": False,
                      "format_ok": False, "completion": None, "error": str(exc), "seconds": 0.0}  # fmt: skip
    completion = report.answer
    pred = parse_answer(completion, LABEL_SPACES.get(sample.label_space, BASIC)) if completion else None
    evidence = {a.code: a.intensity for a in report.aus} if report.backend == "rules" else {}
    return row | {
        "pred_emotion": pred.emotion if pred and pred.valid else None,
        "confidence": pred.confidence if pred and pred.valid else None,
        "pred_aus": {a.code: a.intensity for a in pred.aus} if pred else {},
        "evidence_aus": evidence, "valid": bool(pred and pred.valid), "format_ok": bool(pred and pred.format_ok),
        "completion": completion, "seconds": round(time.perf_counter() - started, 3),
        "error": None if report.faces_found else "no face found",
    }  # fmt: skip


@dataclass
class PredictTask:
    """The engine's task of an evaluation (:mod:`emoreason.scale`): a sample -> its prediction row. Each worker
    builds the face models once and, with several servers, starts at another one and turns through them."""

    config: EvalConfig
    fatal = (ServerError,)  # the server is gone: the run stops (what is done stays; a rerun resumes)

    def setup(self, index: int = 0) -> None:
        from emoreason.face.analyzer import FaceAnalyzer

        self._analyzer = FaceAnalyzer(fps=self.config.fps)
        servers = self.config.server if isinstance(self.config.server, list) else [self.config.server]
        self._servers = servers[index % len(servers) :] + servers[: index % len(servers)]
        self._calls = 0

    def __call__(self, sample: Sample) -> dict:
        if not hasattr(self, "_analyzer"):
            self.setup()
        server = self._servers[self._calls % len(self._servers)]
        self._calls += 1
        return _predict(sample, self.config, self._analyzer, server)

    def __getstate__(self) -> dict:
        return {"config": self.config}


def _failed(sample: Sample, error: str) -> dict:
    return {"id": sample.id, "subject": sample.subject, "label_space": sample.label_space,
            "gold_labels": sample.labels, "gold_emotion": sample.emotion, "gold_aus": sample.au_dict(),
            "pred_emotion": None, "confidence": None, "pred_aus": {}, "evidence_aus": {}, "valid": False,
            "format_ok": False, "completion": None, "error": error, "seconds": 0.0}  # fmt: skip


def evaluate(config: EvalConfig, progress: Callable[[int, int], None] | None = None,
             engine_for: Callable[[int], object] | None = None) -> dict:  # fmt: skip
    """Run (or resume) an evaluation; returns the results dict also written to ``results.json``.

    ``engine_for(n)`` gives the engine (:mod:`emoreason.scale`) for the ``n`` samples left to score (default: one
    after another in this process); the predictions, and so the scores, do not depend on it.

    Raises:
        EvaluationError: the benchmark names another corpus than the data's, or the file has no rows for the
            protocol (the message lists the splits it has).
    """
    samples = list(read_samples(config.data))
    check_benchmark(config.benchmark, samples, config.data)
    protocol = choose_protocol(config.benchmark, config.split, samples)
    selected = select(samples, protocol, config.data)
    chosen = selected[: config.limit]
    folder = run_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ResumableWriter(folder / "predictions.jsonl") as writer:
        todo = list({s.id: s for s in chosen if s.id not in writer.done}.values())
        if progress:
            progress(len(chosen) - len(todo), len(chosen))
        engine = engine_for(len(todo)) if engine_for is not None else SequentialEngine()
        try:
            for done, (index, row) in enumerate(engine.map(PredictTask(config), todo), len(chosen) - len(todo) + 1):
                if isinstance(row, Failure):  # the worker crashed or hung on this sample
                    row = _failed(todo[index], row.error)
                writer.write(row)
                if progress:
                    progress(done, len(chosen))
        finally:
            engine.close()
    order = {s.id: i for i, s in enumerate(chosen)}
    predictions = sorted((p for p in read_jsonl(folder / "predictions.jsonl") if p["id"] in order),
                         key=lambda p: order[p["id"]])  # fmt: skip
    scores = score_run(predictions, chosen, protocol)
    results = {
        "emoreason_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "benchmark": config.benchmark, "backend": config.backend, "model": served_model(config) if config.server else model_fingerprint(config.model),
        "protocol": coverage(protocol, chosen, limited=len(chosen) < len(selected)),
        "label_space": scores.pop("label_space"), "labels": scores.pop("labels"),
        "data": {"path": config.data, "sha256": file_sha256(config.data), "rows": len(samples),
                 "evaluated": len(predictions), "split": protocol.name},
        "config": asdict(config),
        "timings": {"total_s": round(time.perf_counter() - started, 3),
                    "per_sample_s": round(sum(p.get("seconds") or 0 for p in predictions) / len(predictions), 3)},
        **scores,
        "subject_independent": subject_check(config.train_data, chosen),
    }  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False))
    return results


def score_run(predictions: list[dict], samples: list[Sample], protocol: Protocol) -> dict:
    """Metrics of a run under ``protocol``: ``metrics`` (for folds, their mean), ``folds`` (each fold's own),
    ``by_label_space`` (each label space in its own space, when the rows have several), ``by_subject``, and
    ``warnings`` for what makes the result differ from the protocol's."""
    space_of = {s.id: s.label_space for s in samples}
    spaces = Counter(space_of[p["id"]] for p in predictions)
    primary = protocol.label_space or spaces.most_common(1)[0][0]
    rows = [p for p in predictions if space_of[p["id"]] == primary]
    out: dict = {"label_space": primary, "labels": list(LABEL_SPACES[primary].labels) if primary in LABEL_SPACES else [],
                 "metrics": score(rows, primary), "warnings": []}  # fmt: skip
    if protocol.kind == "folds":
        split_of = {s.id: s.split for s in samples}
        folds = {f: [p for p in rows if split_of[p["id"]] == f] for f in protocol.splits}
        out["folds"] = {f: {"n": len(r), "metrics": score(r, primary)} for f, r in folds.items() if r}
        out["metrics"] = mean_metrics([fold["metrics"] for fold in out["folds"].values()])
        missing = [f for f, r in folds.items() if not r]
        if missing:
            out["warnings"].append(f"no rows for {', '.join(missing)}: the mean is over {len(out['folds'])} of "
                                   f"{len(folds)} folds, not comparable to published results")  # fmt: skip
    if len(spaces) > 1:
        out["by_label_space"] = {
            space: {"n": n, "labels": list(LABEL_SPACES[space].labels) if space in LABEL_SPACES else [],
                    "metrics": score([p for p in predictions if space_of[p["id"]] == space], space)}
            for space, n in spaces.items()
        }  # fmt: skip
        counts = ", ".join(f"{space} {n}" for space, n in spaces.items())
        out["warnings"].append(f"rows of several label spaces ({counts}), each scored in its own space under "
                               f"by_label_space; metrics are those of {primary}")  # fmt: skip
    for warning in out["warnings"]:
        logger.warning("%s", warning)
    out["by_subject"] = by_subject(predictions, space_of)
    return out


def score(predictions: list[dict], label_space: str) -> dict:
    """Metrics over prediction rows; the same per-sample scorers serve the training rewards."""
    space = LABEL_SPACES.get(label_space)
    single = [p for p in predictions if len(p["gold_labels"]) == 1 and space is not None]
    emotion = None
    if single:
        raw = emotion_metrics([space.normalize(p["gold_labels"][0]) for p in single],
                              [p["pred_emotion"] for p in single], space.labels)  # fmt: skip
        emotion = {k: v for k, v in raw.items() if k not in ("confusion", "confusion_columns")} | {
            "war": raw["accuracy"],
            "confusion": {"labels": list(space.labels), "columns": raw["confusion_columns"], "matrix": raw["confusion"]},
        }  # fmt: skip
    annotated = [p for p in predictions if p["gold_aus"]]
    au = None
    if annotated:
        raw = au_metrics([p["gold_aus"] for p in annotated], [p["pred_aus"] for p in annotated])
        au = {"per_au_f1": {c: m["f1"] for c, m in raw["per_au"].items()}, "macro_au_f1": raw["macro_f1"],
              "icc": {c: m["icc"] for c, m in raw["per_au"].items()}, "mean_icc": raw["mean_icc"],
              "mae": {c: m["mae"] for c, m in raw["per_au"].items()}, "mean_mae": raw["mean_mae"]}  # fmt: skip
    parse_space = space or BASIC
    parsed = [parse_answer(p["completion"], parse_space) if p["completion"] else None for p in predictions]
    with_evidence = [(p, q) for p, q in zip(predictions, parsed) if q is not None and p["evidence_aus"]]
    rates = {
        "format_validity": rate(float(p["format_ok"]) for p in predictions),
        "facs_consistency": rate(facs_consistent(q, parse_space) for q in parsed if q is not None),
        "hallucinated_au_rate": rate(
            float(bool(hallucinated_aus(p["pred_aus"], p["evidence_aus"]))) for p, _ in with_evidence
        ),  # fmt: skip
        "faithfulness": rate(faithfulness(p["pred_aus"], p["evidence_aus"]) for p, _ in with_evidence),
        "invalid_rate": rate(float(not p["valid"]) for p in predictions),
    }
    return {"emotion": emotion, "au": au, "rates": rates}


def by_subject(predictions: list[dict], label_space: str | dict[str, str]) -> dict:
    """Accuracy per subject; ``label_space`` is one space or each prediction id's own."""
    groups: dict[str, list[float | None]] = {}
    for p in predictions:
        if p.get("subject"):
            space = label_space if isinstance(label_space, str) else label_space[p["id"]]
            scorable = p["gold_labels"] and space in LABEL_SPACES
            groups.setdefault(p["subject"], []).append(
                emotion_correct(p["pred_emotion"], p["gold_labels"], space) if scorable else None
            )
    return {s: {"n": len(v), "accuracy": rate(v)} for s, v in sorted(groups.items())}


def subject_check(train_data: str | None, test: list[Sample]) -> dict:
    """Subject-independent protocol: no test subject may appear in the training data."""
    if train_data is None:
        return {"checked": False, "train_subjects_in_test": []}
    train_subjects = {r.get("subject") for r in read_jsonl(train_data)} - {None}
    overlap = sorted(train_subjects & {s.subject for s in test if s.subject})
    if overlap:
        logger.warning("subjects in both training and test data: %s", overlap)
    return {"checked": True, "train_subjects_in_test": overlap}


__all__ = ["EvalConfig", "evaluate", "run_dir", "score", "score_run"]
