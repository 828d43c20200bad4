"""Instruction-data synthesis: labelled samples -> verified chain-of-thought targets.

Two generators write ``<think>...</think><answer>{json}</answer>`` targets:

- ``rules``: the FACS reasoner reasons from the sample's AU labels (or, for emotion-only corpora, from
  the AUs measured on its media), with varied phrasing so a model does not learn one template;
- a teacher LLM behind any OpenAI-compatible endpoint, prompted with the labels and the evidence
  (``templates/teacher_rationale.jinja``).

Every target passes the checks training uses (the answer parser's format check, agreement with the
gold label, FACS consistency of the cited AUs) or is dropped and counted. Rows from evaluation splits
are never written. Output is resumable (:class:`ResumableWriter`): a killed run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from emoreason.answer import parse_answer, render_answer
from emoreason.data.jsonl import ResumableWriter
from emoreason.data.schema import Sample
from emoreason.metrics import emotion_correct, facs_consistent
from emoreason.reasoning.facs import reason
from emoreason.reasoning.scoring import best_emotion
from emoreason.report import AUReport, EmotionScore, Segment

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("test", "validation")
UNANNOTATED_INTENSITY = 2.0  # occurrence-only AU labels are written as intensity B

# Equivalent phrasings of the reasoner's fixed wording; one is drawn per occurrence.
PHRASES: dict[str, tuple[str, ...]] = {
    "Observations:": ("Observations:", "Key observations:", "What the face does:"),
    "Interpretation:": ("Interpretation:", "Reading the evidence:", "What it means:"),
    "Conclusion: the evidence supports": (
        "Conclusion: the evidence supports",
        "Conclusion: this points to",
        "Conclusion: the face indicates",
    ),  # fmt: skip
    " at intensity ": (" at intensity ", " with intensity ", " at level "),
    ", peaking at ": (", peaking at ", ", strongest at ", ", reaching its apex at "),
    ", fading by ": (", fading by ", ", released by ", ", gone by "),
    " matches the ": (" matches the ", " fits the ", " is consistent with the "),
    "; seen in ": ("; seen in ", "; typical of ", "; it occurs in "),
}


@dataclass
class SynthStats:
    read: int = 0
    written: int = 0
    already_done: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count

    def to_dict(self) -> dict:
        return {"read": self.read, "written": self.written, "already_done": self.already_done,
                "dropped": dict(self.dropped)}  # fmt: skip


def paraphrase(text: str, rng: random.Random) -> str:
    for phrase, options in PHRASES.items():
        parts = text.split(phrase)
        text = parts[0] + "".join(rng.choice(options) + part for part in parts[1:])
    return text


def label_aus(sample: Sample) -> list[AUReport]:
    """The sample's annotated present AUs as evidence (times from its onset/apex/offset)."""
    return [
        AUReport(
            a.code,
            UNANNOTATED_INTENSITY if a.intensity is None else float(a.intensity),
            sample.onset_s,
            sample.apex_s,
            sample.offset_s,
        )  # fmt: skip
        for a in sample.aus
        if a.intensity is None or a.intensity >= 1
    ]


def measured_aus(sample: Sample, analyzer=None) -> list[AUReport] | None:
    """AUs measured on the sample's media by the face pipeline (``analyzer``: a FaceAnalyzer to reuse), or None
    when the media is unusable."""
    from emoreason.backends.rules import RulesBackend
    from emoreason.face.evidence import Sampling, collect
    from emoreason.io.errors import MediaError

    if sample.media_type == "frames" or not Path(sample.media).is_file():
        return None
    try:  # the sample's span only (a CASME II onset-offset clip, a BP4D segment), not the whole file
        report = RulesBackend().explain(collect(sample.media, span=sample.span, sampling=Sampling(audio=False),
                                                analyzer=analyzer))  # fmt: skip
    except MediaError:
        return None
    return report.aus if report.faces_found else None


def rules_target(sample: Sample, rng: random.Random, evidence: list[AUReport]) -> str | None:
    """A FACS-reasoner target, or None when its conclusion does not match the gold emotion."""
    if not evidence or sample.emotion is None:
        return None
    label, confidence, _ = best_emotion({a.code: a.intensity for a in evidence})
    if label != sample.emotion:  # the FACS prototypes read these AUs as another emotion
        return None
    aus = [{"code": a.code, "intensity": a.intensity} for a in evidence]
    segment = Segment(sample.start_s or 0.0, sample.end_s or 0.0, EmotionScore(label, round(confidence, 3)), aus)
    result = reason(evidence, [segment], faces_found=1)
    reasoning = paraphrase(result.reasoning, rng)
    alternatives = [(a["label"], a["confidence"]) for a in result.emotion.alternatives]
    return render_answer(reasoning, result.emotion.label, result.emotion.confidence, evidence, alternatives)


def verify(completion: str, sample: Sample) -> str | None:
    """None if the target passes the training checks, else the reason it fails."""
    pred = parse_answer(completion)
    if not pred.format_ok:
        return f"format: {pred.error}"
    if emotion_correct(pred, sample.labels, sample.label_space) != 1.0:
        return "label disagreement"
    if facs_consistent(pred) == 0.0:
        return "FACS inconsistent"
    return None


class MeasureTask:
    """The engine's task of ``measure_media`` (:mod:`emoreason.scale`): a sample -> its measured AUs (or None);
    the face models load once per worker."""

    def setup(self, index: int = 0) -> None:
        from emoreason.face.analyzer import FaceAnalyzer

        self._analyzer = FaceAnalyzer()

    def __call__(self, sample: Sample) -> list[AUReport] | None:
        if not hasattr(self, "_analyzer"):
            self.setup()
        return measured_aus(sample, self._analyzer)

    def __getstate__(self) -> dict:
        return {}


def synthesize(
    samples: Iterable[Sample],
    out: str | Path,
    generator=None,
    seed: int = 0,
    variants: int = 1,
    measure_media: bool = False,
    exclude_ids: set[str] | None = None,
    engine_for=None,
) -> SynthStats:
    """Write verified targets for ``samples`` to ``out`` (JSON lines, resumable).

    Args:
        generator: ``None`` for the FACS reasoner, or a :class:`~emoreason.data.teacher.Teacher`.
        variants: targets per sample (different phrasings or teacher samples); duplicates are dropped.
        measure_media: for samples without AU labels, measure AUs on the media (slow: runs the face pipeline;
            ``engine_for(n)`` gives the engine for the ``n`` samples to measure, :mod:`emoreason.scale`; default:
            one after another in this process).
        exclude_ids: ids of evaluation samples that must never appear in the output.
    """
    stats = SynthStats()
    exclude_ids = exclude_ids or set()
    samples = list(samples)
    with ResumableWriter(out) as writer:
        measured = _measure(samples, writer.done, variants, exclude_ids, engine_for) if measure_media else {}
        for sample in samples:
            stats.read += 1
            if sample.split in EVAL_SPLITS or sample.id in exclude_ids:
                stats.dropped["evaluation sample"] += 1
                continue
            ids = [f"{sample.id}-v{k}" for k in range(variants)]
            if all(i in writer.done for i in ids):
                stats.already_done += len(ids)
                continue
            evidence = label_aus(sample) or measured.get(sample.id) or []
            seen: set[str] = set()
            for k, row_id in enumerate(ids):
                if row_id in writer.done:
                    stats.already_done += 1
                    continue
                rng = random.Random(f"{seed}:{sample.id}:{k}")
                target = _generate(generator, sample, rng, evidence, stats)
                if target is None:
                    continue
                digest = hashlib.sha1(target.encode()).hexdigest()
                problem = "duplicate" if digest in seen else verify(target, sample)
                if problem:
                    stats.dropped[problem.split(":")[0]] += 1
                    continue
                seen.add(digest)
                name = "rules" if generator is None else f"teacher:{generator.model}"
                row = sample.to_dict() | {"id": row_id, "rationale": target, "provenance": {
                    "source_id": sample.id, "generator": name, "seed": seed, "variant": k,
                    "source": sample.provenance}}  # fmt: skip
                writer.write(row)
                stats.written += 1
    return stats


def _measure(samples: list[Sample], done: set[str], variants: int, exclude_ids: set[str], engine_for) -> dict:
    """Measured AUs of the samples that need them (not done, not held out, no AU labels), by sample id."""
    from emoreason.scale import Failure, SequentialEngine

    todo = [s for s in samples if s.split not in EVAL_SPLITS and s.id not in exclude_ids and not label_aus(s)
            and not all(f"{s.id}-v{k}" in done for k in range(variants))]  # fmt: skip
    engine = engine_for(len(todo)) if engine_for is not None and todo else SequentialEngine()
    try:
        found = {todo[i].id: aus for i, aus in engine.map(MeasureTask(), todo) if not isinstance(aus, Failure)}
    finally:
        engine.close()
    return {k: v for k, v in found.items() if v}


def _generate(generator, sample: Sample, rng: random.Random, evidence, stats: SynthStats) -> str | None:
    if sample.emotion is None:
        stats.dropped["no canonical emotion"] += 1
        return None
    if generator is None:
        if not evidence:
            stats.dropped["no AU evidence"] += 1
            return None
        target = rules_target(sample, rng, evidence)
        if target is None:
            stats.dropped["evidence does not support the label"] += 1
        return target
    return generator.rationale(sample, evidence, rng)
