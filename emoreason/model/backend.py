"""The ``hf`` backend: an emoreason checkpoint run in-process with transformers.

The face pipeline's analysis gives the main face's frames and landmarks: the processor turns them
into aligned face crops, the audio track into log-mel features, and the measured AU and prosody
evidence into text in the prompt. The model writes ``<think>...</think><answer>{json}</answer>``;
the shared answer parser turns that into the same :class:`EmotionReport` as the rules backend.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np
import torch

from emoreason.answer import parse_answer
from emoreason.face.align import align_crop
from emoreason.face.analyzer import LANDMARK_COLUMNS, FaceAnalysis
from emoreason.io.audio import load_audio
from emoreason.io.errors import MediaError
from emoreason.io.video import is_image, iter_video_frames, load_image
from emoreason.model.tokenizer import IM_END
from emoreason.prompt import textualize
from emoreason.report import AUReport, EmotionReport, EmotionScore

logger = logging.getLogger(__name__)

CROP_SIZE = 224  # aligned crops are cut at this size; the processor resizes them to the tower's input


@functools.lru_cache(maxsize=2)
def load_explainer(path: str, device: str = "cpu") -> HFExplainer:
    return HFExplainer(path, device=device)


class ModelExplainer:
    """A checkpoint behind some runtime: explain analyses with it (subclasses say how to run the model)."""

    backend = ""
    path = ""

    def complete(self, analysis: FaceAnalysis, waveform: np.ndarray | None, evidence: str | None) -> str:
        """The model's completion for the main face of ``analysis`` (which has one)."""
        raise NotImplementedError

    def explain(self, analysis: FaceAnalysis, evidence: EmotionReport) -> EmotionReport:
        """The model's report for an analysis; ``evidence`` is the rules backend's report of the same."""
        started = time.perf_counter()
        warnings = list(evidence.warnings)
        if analysis.main_face().empty:  # no face: nothing for the model to look at, claim nothing
            return _with(evidence, backend=self.backend, model=self.path, answer=None, timings=evidence.timings)
        waveform = None
        if analysis.media_type == "video" and evidence.audio and evidence.audio.get("has_audio"):
            try:
                waveform = load_audio(analysis.source).waveform
            except MediaError as exc:
                warnings.append(f"audio could not be read for the model ({exc})")
        cues = (evidence.audio or {}).get("cues")
        text = textualize(aus=evidence.aus, prosody_cues=cues)
        completion = self.complete(analysis, waveform, text or None)
        pred = parse_answer(completion)
        emotion = None
        if pred.valid:
            alternatives = [{"label": label, "confidence": conf} for label, conf in pred.alternatives]
            emotion = EmotionScore(pred.emotion, round(pred.confidence or 0.0, 3), alternatives)
        else:
            warnings.append(f"the model's answer could not be parsed ({pred.error}); no emotion claimed")
        aus = [AUReport(a.code, round(a.intensity, 2), a.onset_s, a.apex_s, a.offset_s) for a in pred.aus]
        timings = dict(evidence.timings, generate_s=round(time.perf_counter() - started, 4))
        return _with(evidence, backend=self.backend, model=self.path, aus=aus, emotion=emotion, segments=[],
                     reasoning=pred.reasoning or completion, answer=completion, warnings=warnings,
                     timings=timings)  # fmt: skip


class HFExplainer(ModelExplainer):
    """Load a checkpoint once; explain many analyses with it in-process (transformers)."""

    backend = "hf"

    def __init__(self, path: str | Path, device: str = "cpu", max_new_tokens: int = 384):
        from emoreason.model.checkpoint import load_checkpoint
        from emoreason.model.processor import EmoReasonProcessor

        self.path = str(path)
        self.model = load_checkpoint(path).to(device)
        self.processor = EmoReasonProcessor.from_pretrained(path)
        self.device = device
        self.max_new_tokens = max_new_tokens

    def face_crops(self, analysis: FaceAnalysis) -> np.ndarray | None:
        return main_face_crops(analysis, self.processor.max_frames)

    def generate(self, crops, waveform, evidence: str | None) -> str:
        messages = self.processor.build_messages(evidence=evidence, has_audio=waveform is not None)
        batch = self.processor(messages, faces=crops, audio=waveform)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        tokenizer = self.processor.tokenizer
        stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]  # a turn ends with <|im_end|>
        ids = self.model.generate(
            **batch, max_new_tokens=self.max_new_tokens, do_sample=False,
            eos_token_id=stop, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        return self.processor.decode(ids[0])

    def complete(self, analysis: FaceAnalysis, waveform: np.ndarray | None, evidence: str | None) -> str:
        with torch.inference_mode():
            return self.generate(self.face_crops(analysis), waveform, evidence)


def main_face_crops(analysis: FaceAnalysis, max_frames: int) -> np.ndarray | None:
    """Aligned crops ``[T, 224, 224, 3]`` of the main face at up to max_frames evenly spaced frames."""
    main = analysis.main_face()
    if main.empty:
        return None
    rows = main.iloc[np.unique(np.linspace(0, len(main) - 1, max_frames).round().astype(int))]
    side = max(analysis.frame_size)
    if is_image(analysis.source):
        frames = [load_image(analysis.source, max_side=side)]
    else:
        times = rows["time_s"].to_numpy(float) + 1e-3  # the table's times are rounded to 0.1 ms
        frames = list(iter_video_frames(analysis.source, max_side=side, times=times))
    crops = []
    for (_, row), frame in zip(rows.iterrows(), frames):
        points = row[LANDMARK_COLUMNS].to_numpy(float).reshape(68, 2)
        crops.append(align_crop(frame.image, points, size=CROP_SIZE))
    return np.stack(crops)


def _with(report: EmotionReport, **changes) -> EmotionReport:
    from dataclasses import replace

    return replace(report, **changes)
