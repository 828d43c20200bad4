"""Evaluation protocols: which rows of a corpus a result is computed on, and how the parts are combined.

Published numbers follow each corpus's own protocol: DFEW and MAFW score each of five folds' test lists on its
own and report the mean over the folds (see :mod:`emoreason.evaluation.published`); AffectNet reports its
validation set, since the test set was never released; BP4D and DISFA use a subject-exclusive 3-fold split;
CASME II leave-one-subject-out. The adapters (:mod:`emoreason.data.adapters`) write each corpus's partition into
``split``; :data:`PROTOCOLS` says how an evaluation uses it, so ``emoreason eval --benchmark dfew`` reproduces
the papers' protocol unless asked for one split. It is the one table of protocols: the runner, the suite and
the reports read it from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import fmean

import numpy as np

from emoreason.data import DataError
from emoreason.data.schema import Sample
from emoreason.evaluation.published import canonical_benchmark

KINDS = ("split", "folds", "all")  # one set of rows; each split scored on its own, then averaged; every row
ALL = "all"  # the `split` that takes every row of the file as one set


class EvaluationError(DataError):
    """Benchmark data that cannot be evaluated as asked; the message says what the file holds instead."""


@dataclass(frozen=True)
class Protocol:
    name: str  # as results.json records it: "5-fold", "test", "validation", "loso", "all"
    kind: str  # one of KINDS
    splits: tuple[str, ...] = ()  # the `split` values evaluated ("all": none, every row is)
    label_space: str | None = None  # only rows of this label space (None: every one, each scored on its own)
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if (self.kind == "all") != (not self.splits):
            raise ValueError(f"protocol {self.name!r}: kind 'all' takes no splits, the others at least one")

    def to_dict(self) -> dict:
        return asdict(self) | {"splits": list(self.splits)}


def _folds(k: int) -> tuple[str, ...]:
    return tuple(f"fold{i}" for i in range(1, k + 1))  # as the adapters name them


# corpus -> its published protocol; a corpus that is not here (FERV39k, your own files) gets TEST_SPLIT
PROTOCOLS: dict[str, Protocol] = {
    "dfew": Protocol("5-fold", "folds", _folds(5), description="DFEW 5-fold cross-validation: each fold's test list "
                     "scored on its own, metrics averaged over the folds (as the DFEW tables report UAR/WAR)"),
    "mafw": Protocol("5-fold", "folds", _folds(5), description="MAFW 5-fold cross-validation: each fold's test list "
                     "scored on its own, metrics averaged over the folds"),
    "ferv39k": Protocol("test", "split", ("test",), description="FERV39k official train/test split: the test list"),
    "rafdb": Protocol("test", "split", ("test",), "basic", description="RAF-DB basic expressions (7 classes), "
                      "official test set; compound rows need an explicit split"),
    "affectnet": Protocol("validation", "split", ("validation",), description="AffectNet's validation list: the "
                          "test set was never released, so papers report the validation set"),
    "bp4d": Protocol("3-fold", "folds", _folds(3), description="BP4D subject-exclusive 3-fold split of JAA-Net / "
                     "ME-GraphAU: each fold scored on its own, AU F1 averaged over the folds"),
    "disfa": Protocol("3-fold", "folds", _folds(3), description="DISFA subject-exclusive 3-fold split of ME-GraphAU: "
                      "each fold scored on its own, AU F1 averaged over the folds"),
    "casme2": Protocol("loso", "all", description="CASME II leave-one-subject-out: every sample, metrics pooled over "
                       "the subjects as MEGC reports them (per subject in by_subject); a backend not trained on "
                       "CASME II holds every subject out"),
    "emer": Protocol("all", "all", description="EMER / OV-MERD: every described clip (the corpus has no split)"),
}  # fmt: skip
TEST_SPLIT = Protocol("test", "split", ("test",), description="rows with split 'test'")


def choose_protocol(benchmark: str, split: str | None, samples: Sequence[Sample]) -> Protocol:
    """The protocol of a run: ``split`` when given (``"all"``: every row), else the corpus's published one.

    The corpus is the benchmark name when it names one, else the data's ``dataset`` field when every row has
    the same; :data:`TEST_SPLIT` for anything else.
    """
    if split == ALL:
        return Protocol(ALL, "all", description="every row of the file (requested)")
    if split is not None:
        return Protocol(split, "split", (split,), description=f"rows with split {split!r} (requested)")
    datasets = {canonical_benchmark(s.dataset) for s in samples}
    corpus = canonical_benchmark(benchmark)
    if corpus not in PROTOCOLS and len(datasets) == 1:
        corpus = datasets.pop()
    return PROTOCOLS.get(corpus, TEST_SPLIT)


def check_benchmark(benchmark: str, samples: Sequence[Sample], path: str) -> None:
    """A benchmark named after a corpus must be run on that corpus's samples: EvaluationError otherwise.

    The name chooses the protocol and the published numbers a report sets beside the run, so a DISFA name on
    DFEW samples would compare the wrong things without a word. A name that is no corpus is not checked.
    """
    corpus = canonical_benchmark(benchmark)
    if corpus not in PROTOCOLS:
        return
    found = Counter(s.dataset for s in samples)
    if set(map(canonical_benchmark, found)) != {corpus}:
        held = ", ".join(f"{name} ({n})" for name, n in found.most_common())
        raise EvaluationError(
            f"{path}: benchmark {benchmark!r} does not match the data, which holds samples of {held}; name the "
            f"benchmark after the data's corpus, or give it a name of your own (not a corpus name)"
        )


def select(samples: Sequence[Sample], protocol: Protocol, path: str) -> list[Sample]:
    """The rows ``protocol`` evaluates, in file order; EvaluationError naming the splits the file has if none."""
    rows = [s for s in samples if protocol.kind == "all" or s.split in protocol.splits]
    if protocol.label_space is not None:
        rows = [s for s in rows if s.label_space == protocol.label_space]
    if rows:
        return rows
    splits = ", ".join(f"{s or 'none'} ({n})" for s, n in Counter(s.split for s in samples).items())
    wanted = f"split {' / '.join(protocol.splits)}" if protocol.splits else "rows"
    if protocol.label_space is not None:
        spaces = ", ".join(sorted({s.label_space for s in samples}))
        wanted = f"{protocol.label_space} {wanted} (label spaces in the file: {spaces})"
    raise EvaluationError(
        f"{path}: no samples with {wanted} for protocol {protocol.name!r}; the file has splits {splits}; "
        f"pass one of them as the split (--split), or 'all' for every row"
    )


def coverage(protocol: Protocol, chosen: Sequence[Sample], limited: bool) -> dict:
    """The protocol as results.json records it, with the splits it wanted but the evaluated rows lack."""
    present = {s.split for s in chosen}
    missing = [s for s in protocol.splits if s not in present]
    return protocol.to_dict() | {"missing_splits": missing, "complete": not missing and not limited}


_SUMMED = {"n", "support", "matrix"}  # counts add up over folds; scores and rates are averaged


def mean_metrics(parts: Sequence[dict | None]) -> dict | None:
    """The mean over folds of metric dicts of the same shape, as the cross-validated papers report them.

    Scores and rates are averaged over the folds where they are defined (``None`` elsewhere); counts (``n``,
    per-class ``support``, the confusion ``matrix``) are summed, so the totals still describe every row. A
    per-class score of a class a fold lacks is 0 there (:func:`emoreason.metrics.emotion_metrics`), and is
    averaged as such; UAR itself averages each fold's present classes only.

    >>> mean_metrics([{"n": 2, "uar": 1.0}, {"n": 5, "uar": 0.0}])
    {'n': 7, 'uar': 0.5}
    """
    return _combine(list(parts), summed=False)


def _combine(values: list, summed: bool):
    values = [v for v in values if v is not None]
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):
        keys = dict.fromkeys(k for v in values for k in v)
        return {k: _combine([v.get(k) for v in values], summed or k in _SUMMED) for k in keys}
    if isinstance(first, list):
        return np.sum(np.array(values), axis=0).tolist() if summed else first  # a matrix, or labels
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    return sum(values) if summed else fmean(values)


__all__ = ["ALL", "PROTOCOLS", "EvaluationError", "Protocol", "check_benchmark", "choose_protocol", "mean_metrics"]
