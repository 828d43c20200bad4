"""What every backend is: ``Evidence -> EmotionReport``; and what the two model backends share (no torch here).

A backend says what it needs collected (:meth:`Backend.sampling`: the model backends want the main face's crops)
and turns :class:`~emoreason.face.evidence.Evidence` into an :class:`~emoreason.report.EmotionReport`. The model
backends start from the FACS reasoner's report of the same evidence (its measured AUs and prosody cues go into the
prompt) and replace its conclusion with the model's parsed answer.
"""

from __future__ import annotations

import time
from dataclasses import replace

from emoreason.answer import parse_answer
from emoreason.face.evidence import Evidence, Sampling
from emoreason.prompt import textualize
from emoreason.report import AUReport, EmotionReport, EmotionScore


class ServerError(RuntimeError):
    """The emoreason server could not be reached or refused a request; the message says which and why.

    ``status`` is the HTTP status of a refused request (400 for a bad video), ``None`` when unreachable."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Backend:
    """Turns evidence into a report. Subclasses set ``name`` and implement :meth:`explain`."""

    name = ""
    model: str | None = None  # what the report names as its model (a checkpoint path, a served model)

    def sampling(self, base: Sampling) -> Sampling:
        """What :func:`~emoreason.face.evidence.collect` must keep for this backend, from the user's ``base``."""
        return base

    def explain(self, evidence: Evidence) -> EmotionReport:
        raise NotImplementedError


class ModelBackend(Backend):
    """A checkpoint behind some runtime; subclasses say how to get its completion (:meth:`complete`)."""

    def complete(self, evidence: Evidence, prompt_evidence: str | None) -> str:
        """The model's completion for the main face of ``evidence`` (which has one)."""
        raise NotImplementedError

    def explain(self, evidence: Evidence) -> EmotionReport:
        from emoreason.backends.rules import RulesBackend

        base = RulesBackend().explain(evidence)
        started = time.perf_counter()
        if base.faces_found == 0 or evidence.crops is None:  # nothing for the model to look at: claim nothing
            return replace(base, backend=self.name, model=self.model, answer=None)
        text = textualize(aus=base.aus, prosody_cues=(base.audio or {}).get("cues"))
        completion = self.complete(evidence, text or None)
        return model_report(base, completion, self.name, self.model, time.perf_counter() - started)


def model_report(base: EmotionReport, completion: str, backend: str, model: str | None,
                 seconds: float) -> EmotionReport:  # fmt: skip
    """``base`` (the rules report of the same evidence) with the model's parsed answer in place of its own."""
    warnings = list(base.warnings)
    pred = parse_answer(completion)
    emotion = None
    if pred.valid:
        alternatives = [{"label": label, "confidence": conf} for label, conf in pred.alternatives]
        emotion = EmotionScore(pred.emotion, round(pred.confidence or 0.0, 3), alternatives)
    else:
        warnings.append(f"the model's answer could not be parsed ({pred.error}); no emotion claimed")
    aus = [AUReport(a.code, round(a.intensity, 2), a.onset_s, a.apex_s, a.offset_s) for a in pred.aus]
    timings = dict(base.timings, generate_s=round(seconds, 4))
    return replace(base, backend=backend, model=model, aus=aus, emotion=emotion, segments=[],
                   reasoning=pred.reasoning or completion, answer=completion, warnings=warnings,
                   timings=timings)  # fmt: skip


__all__ = ["Backend", "ModelBackend", "ServerError", "model_report"]
