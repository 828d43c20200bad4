"""Generate answers for sample rows with the in-process model, and score them with the training rewards.

Used to measure a checkpoint on held-out rows during training experiments (the benchmark runner in
``emoreason.evaluation`` goes through ``explain``, which needs a detectable face) and to sample
completions for the self-improvement loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emoreason.constants import ANSWER_CLOSE
from emoreason.data.schema import Sample
from emoreason.metrics import rate
from emoreason.model.tokenizer import IM_END
from emoreason.train.data import MediaCache, MediaConfig
from emoreason.train.rewards import REWARDS, total_reward


@dataclass
class Rollout:
    sample: Sample
    completion: str


@torch.no_grad()
def generate(model, processor, cache: MediaCache, samples: list[Sample], num_samples: int = 1,
             batch_size: int = 8, max_new_tokens: int = 256, temperature: float = 0.0,
             **generate_kwargs) -> list[Rollout]:  # fmt: skip
    """``num_samples`` completions per sample (greedy when ``temperature`` is 0); unusable media are skipped.
    ``generate_kwargs`` go to ``generate`` (e.g. ``min_new_tokens`` for a benchmark of fixed length)."""
    model.eval()
    tokenizer = processor.tokenizer
    stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    jobs = [(s, p) for s in samples if (p := cache.get(s)) is not None for _ in range(num_samples)]
    rollouts = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        features = [processor(processor.build_messages(p.evidence, has_audio=p.waveform is not None), faces=p.crops,
                              audio=p.waveform) for _, p in chunk]  # fmt: skip
        batch = processor.collate(features, padding_side="left")
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "frame_mask",
                                        "input_features", "audio_mask")}  # fmt: skip
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, eos_token_id=stop,
                             pad_token_id=tokenizer.pad_token_id, **sampling,
                             suppress_tokens=[processor.face_token_id, processor.audio_token_id],
                             **generate_kwargs)  # fmt: skip
        texts = processor.decode(ids)
        rollouts += [Rollout(sample, text) for (sample, _), text in zip(chunk, texts)]
    return rollouts


def score(
    rollouts: list[Rollout], rewards: tuple[str, ...] = ("format", "emotion", "au_f1")
) -> dict[str, float | None]:
    """Mean of each reward over the rollouts (``None`` values skipped), as the GRPO logs report them."""
    completions = [r.completion for r in rollouts]
    columns = {
        "labels": [r.sample.labels for r in rollouts],
        "label_space": [r.sample.label_space for r in rollouts],
        "aus": [[a.__dict__ for a in r.sample.aus] for r in rollouts],
    }
    return {name: rate(REWARDS[name](completions, **columns)) for name in rewards}


def evaluate(model_path: str, samples: list[Sample], cache_dir: str, media: MediaConfig,
             weights: dict[str, float], max_new_tokens: int = 256, batch_size: int = 32,
             examples: int = 2) -> dict:  # fmt: skip
    """Greedy answers of a checkpoint on ``samples`` (in bf16 where the hardware has it, with the KV cache): each
    reward's mean, the mean weighted total reward (:func:`~emoreason.train.rewards.total_reward`), the share of
    answers cut at ``max_new_tokens``, the time, the first ``examples`` answers verbatim, and ``clips``: each
    clip's id, total reward, every reward and its answer, so that two checkpoints scored on the same clips can be
    compared clip by clip (:func:`paired_difference`) and an answer audited or scored again without generating."""
    import time

    from emoreason.model.checkpoint import load_checkpoint
    from emoreason.model.processor import EmoReasonProcessor
    from emoreason.train.hardware import for_inference

    model, processor = for_inference(load_checkpoint(model_path)), EmoReasonProcessor.from_pretrained(model_path)
    start = time.perf_counter()
    rollouts = generate(model, processor, MediaCache(cache_dir, processor, media), samples, batch_size=batch_size,
                        max_new_tokens=max_new_tokens)  # fmt: skip
    columns = [{"labels": r.sample.labels, "label_space": r.sample.label_space,
                "aus": [a.__dict__ for a in r.sample.aus]} for r in rollouts]  # fmt: skip
    totals = [total_reward(r.completion, row, weights) for r, row in zip(rollouts, columns)]
    unfinished = [ANSWER_CLOSE not in r.completion for r in rollouts]
    per_reward = {name: REWARDS[name]([r.completion for r in rollouts], **{key: [row[key] for row in columns]
                                                                           for key in columns[0]})
                  for name in weights} if rollouts else {}  # fmt: skip
    clips = [{"id": r.sample.id, "reward": round(total, 4)} | {name: values[i] for name, values in per_reward.items()}
             | {"answer": r.completion} for i, (r, total) in enumerate(zip(rollouts, totals))]  # fmt: skip
    return score(rollouts, tuple(weights)) | {
        "reward": rate(totals), "unfinished": rate(unfinished), "n": len(rollouts),
        "seconds": time.perf_counter() - start, "examples": [r.completion for r in rollouts[:examples]],
        "clips": clips,
    }  # fmt: skip


def paired_difference(before: list[dict], after: list[dict], key: str = "reward", resamples: int = 2000,
                      seed: int = 0) -> dict | None:  # fmt: skip
    """``after`` minus ``before`` on the clips both scored (``clips`` rows of :func:`evaluate`): the mean
    difference of ``key`` and its 95% paired bootstrap interval (clips resampled with replacement, the same
    clips on both sides, so the spread of the clips' difficulty cancels). ``None`` when no clip is shared."""
    import random

    was = {c["id"]: c[key] for c in before if c.get(key) is not None}
    pairs = [(was[c["id"]], c[key]) for c in after if c["id"] in was and c.get(key) is not None]
    if not pairs:
        return None
    diffs = [b - a for a, b in pairs]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(resamples))
    return {"mean": sum(diffs) / len(diffs), "ci95": [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]],
            "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs), "n": len(diffs)}  # fmt: skip
