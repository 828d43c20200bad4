"""Self-improvement (Facial-R1 stage 3): sample from the current model, keep what the rewards verify, retrain.

One round: (1) sample ``num_samples`` completions for each training clip from the current checkpoint and score
each with :func:`~emoreason.train.rewards.total_reward` (``candidates.jsonl``, resumable: a killed run continues
without sampling a clip twice); (2) :func:`~emoreason.data.rounds.merge_round` keeps the candidates that reach
``threshold`` and pass the synthesis checks, and writes them after the training rows with their provenance
(source sample, model, round, reward) plus a manifest; (3) SFT from the current checkpoint on the merged data.

With ``hard_clips: N`` the round samples only the N training clips whose target answer the current model finds
least likely (:func:`emoreason.train.grpo.hardest`, one teacher-forced pass), and retrains on those clips' rows
and their kept candidates: where the model already answers every clip right, sampling it again adds copies of what
it knows, and retraining on them mostly moves it back towards the supervised stage it came from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from emoreason.data.jsonl import ResumableWriter, read_jsonl, read_samples
from emoreason.data.schema import Sample
from emoreason.train.recipe import RecipeError, check_reward_names
from emoreason.train.rewards import total_reward
from emoreason.train.sft import SFTRecipe, run_sft_with
from emoreason.train.stage import load_processor_and_cache, parse_recipe

logger = logging.getLogger(__name__)


@dataclass
class SelfImproveRecipe(SFTRecipe):
    """An SFT recipe (the retraining) plus how candidates are sampled and filtered; ``model_path`` is the
    current model, which both samples and is retrained."""

    round_index: int = field(default=1, metadata={"help": "round number, recorded in each kept row's provenance"})
    num_samples: int = field(default=4, metadata={"help": "completions sampled per training clip"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    max_new_tokens: int = field(default=256, metadata={"help": "longest completion sampled"})
    sample_batch_size: int = 16
    threshold: float = field(default=0.9, metadata={"help": "keep candidates whose total reward reaches this"})
    reward_funcs: list[str] = field(default_factory=lambda: ["format", "emotion", "au_f1", "facs_consistency"])
    reward_weights: list[float] | None = field(default=None, metadata={"help": "one per reward (default: all 1)"})
    round_dir: str | None = field(default=None, metadata={"help": "candidates and merged data (default: "
                                                                  "<output_dir>/data)"})  # fmt: skip
    hard_clips: int = field(default=0, metadata={"help": "sample only the N training clips the model is least "
                                                         "sure of and retrain on them (0: every clip)"})  # fmt: skip
    hard_score: str = field(default="label", metadata={"help": "how hard_clips ranks a clip (as GRPO's: 'label' "
                                                               "or 'worst_token')"})  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reward_names(self.reward_funcs)
        weights = self.reward_weights or [1.0] * len(self.reward_funcs)
        if len(weights) != len(self.reward_funcs) or not all(0 <= w < float("inf") for w in weights):
            raise RecipeError(f"reward_weights: need {len(self.reward_funcs)} finite weights >= 0 (one per "
                              f"reward_funcs entry), got {self.reward_weights}")  # fmt: skip
        if self.num_samples < 1 or self.max_new_tokens < 1 or self.temperature <= 0:
            raise RecipeError(f"num_samples and max_new_tokens must be >= 1 and temperature > 0, got "
                              f"{self.num_samples}, {self.max_new_tokens}, {self.temperature}")  # fmt: skip
        if not 0 <= self.threshold <= 1:
            raise RecipeError(f"threshold: the total reward is a weighted mean in [0, 1], got {self.threshold}")
        if self.hard_clips < 0:
            raise RecipeError(f"hard_clips must be >= 0 (0: every clip), got {self.hard_clips}")
        from emoreason.train.grpo import HARD_SCORES

        if self.hard_score not in HARD_SCORES:
            raise RecipeError(f"hard_score: unknown {self.hard_score!r}; use one of {list(HARD_SCORES)}")

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self.reward_funcs, self.reward_weights or [1.0] * len(self.reward_funcs)))


def reward_columns(sample: Sample) -> dict:
    """The dataset columns the rewards read, for one sample (as the GRPO dataset has them)."""
    aus = [{"code": a.code, "intensity": a.intensity} for a in sample.aus]
    return {"labels": sample.labels, "label_space": sample.label_space, "aus": aus}


def sample_candidates(recipe: SelfImproveRecipe, out: str | Path, seed: int = 0, chosen: Path | None = None) -> dict:
    """Write ``num_samples`` scored completions per training clip of ``recipe`` to ``out``; returns counts.

    Rows are the sample (media as an absolute path) plus ``completion``, ``reward`` and ``model``, with id
    ``<sample id>#s<k>``. A killed run resumes: clips whose candidates are all written are not sampled again.
    With ``recipe.hard_clips``, only the hardest clips are sampled; their rows are written to ``chosen`` (a rerun
    reads them back, so it samples the same clips).
    """
    from emoreason.model.checkpoint import load_checkpoint
    from emoreason.train.hardware import for_inference
    from emoreason.train.rollout import generate

    model = for_inference(load_checkpoint(recipe.model_path))
    processor, cache = load_processor_and_cache(recipe)
    samples = [s for s in read_samples(recipe.train_data) if recipe.split is None or s.split == recipe.split]
    samples = [s for s in samples if s.labels][: recipe.max_samples]
    if recipe.hard_clips and recipe.hard_clips < len(samples):
        samples = _hardest_samples(recipe, model, processor, cache, samples, chosen)
    counts = {"clips": len(samples), "sampled": 0, "already_done": 0, "unusable media": 0}
    with ResumableWriter(out) as writer:
        todo = [s for s in samples if not all(f"{s.id}#s{k}" in writer.done for k in range(recipe.num_samples))]
        counts["already_done"] = len(samples) - len(todo)
        for start in range(0, len(todo), recipe.sample_batch_size):
            chunk = todo[start : start + recipe.sample_batch_size]
            torch.manual_seed(seed + recipe.round_index * 1_000_003 + start)
            rollouts = generate(model, processor, cache, chunk, num_samples=recipe.num_samples,
                                batch_size=recipe.sample_batch_size * recipe.num_samples,
                                max_new_tokens=recipe.max_new_tokens, temperature=recipe.temperature)  # fmt: skip
            counts["unusable media"] += len(chunk) - len(rollouts) // recipe.num_samples
            for k, rollout in enumerate(rollouts):
                sample = rollout.sample
                reward = total_reward(rollout.completion, reward_columns(sample), recipe.weights)
                row = sample.to_dict() | {"id": f"{sample.id}#s{k % recipe.num_samples}",
                                          "completion": rollout.completion, "reward": round(reward, 4),
                                          "model": str(recipe.model_path)}  # fmt: skip
                counts["sampled"] += writer.write(row)
    return counts


def _hardest_samples(recipe: SelfImproveRecipe, model, processor, cache, samples: list[Sample],
                     chosen: Path | None) -> list[Sample]:  # fmt: skip
    """The ``recipe.hard_clips`` samples whose target answer ``model`` finds least likely, written to ``chosen``
    (media paths absolute) or read back from it when a killed round reruns."""
    from emoreason.train.grpo import hardest
    from emoreason.train.sft import Collator
    from emoreason.train.tower_cache import TowerCache

    if chosen is not None and chosen.is_file():
        return list(read_samples(chosen))
    usable = [s for s in samples if cache.get(s) is not None]
    towers = TowerCache(model, recipe.cache_dir) if TowerCache.is_frozen(model) else None
    rows = hardest(model, Collator(processor, cache, recipe.target, towers), [s.to_dict() for s in usable],
                   recipe.hard_clips, batch_size=recipe.sample_batch_size, score=recipe.hard_score)  # fmt: skip
    picked = [Sample.from_dict(row) for row in rows]
    if chosen is not None:
        with ResumableWriter(chosen, overwrite=True) as writer:
            for sample in picked:
                writer.write(sample.to_dict())
    return picked


def _absolute_rows(train_data: str | Path, out: Path) -> Path:
    """The training rows with absolute media paths, so the merged file may live in another folder."""
    with ResumableWriter(out, overwrite=True) as writer:
        for sample in read_samples(train_data):
            writer.write(sample.to_dict())
    return out


def _merge_input(candidates: Path, out: Path) -> Path:
    """The candidates as :func:`merge_round` reads them: each row under its source sample's id (the ``#s<k>``
    suffix only keeps the draws apart in the resumable file; merge_round tells them apart by completion)."""
    import os
    import re

    rows = [row | {"id": re.sub(r"#s\d+$", "", row["id"])} for row in read_jsonl(candidates)]
    partial = out.with_name(out.name + ".partial")
    partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    os.replace(partial, out)
    return out


def merge_candidates(train_data: str | Path, candidates: str | Path, merged: str | Path, round_index: int,
                     threshold: float) -> dict:  # fmt: skip
    """:func:`merge_round` of candidates written by :func:`sample_candidates`; the merged file may live in another
    folder than ``train_data`` (media paths are made absolute). Returns the manifest."""
    from emoreason.data.rounds import merge_round

    merged = Path(merged)
    train = _absolute_rows(train_data, merged.with_name(merged.stem + "_base_rows.jsonl"))
    by_source = _merge_input(Path(candidates), merged.with_name(merged.stem + "_candidates_by_source.jsonl"))
    return merge_round(train, by_source, merged, round_index, threshold)


def run_round(recipe: SelfImproveRecipe, args) -> dict:
    """Sample, filter and merge (steps 1-2); returns the merge manifest with the sampling counts."""
    round_dir = Path(recipe.round_dir or Path(args.output_dir) / "data")
    round_dir.mkdir(parents=True, exist_ok=True)
    candidates = round_dir / f"round{recipe.round_index}_candidates.jsonl"
    chosen = round_dir / f"round{recipe.round_index}_hard_clips.jsonl" if recipe.hard_clips else None
    counts = sample_candidates(recipe, candidates, seed=args.seed, chosen=chosen)
    merged = round_dir / f"round{recipe.round_index}_train.jsonl"
    # with hard clips the retraining takes those clips' rows (and their kept answers), not the whole training set
    rows = chosen if chosen is not None and chosen.is_file() else recipe.train_data
    manifest = merge_candidates(rows, candidates, merged, recipe.round_index, recipe.threshold)
    manifest["sampling"] = counts
    Path(str(merged) + ".manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info("round %d: %d candidates kept of %s", recipe.round_index, manifest["added"], counts)
    return manifest


def run_self_improve(argv: list[str]) -> Path:
    """``emoreason train self-improve --config recipe.yaml [--field value ...]``: one round, then SFT.

    The YAML holds the :class:`SelfImproveRecipe` fields and TRL's ``SFTConfig`` arguments for the retraining.
    Every step resumes after a kill: sampling (by candidate id), merging (rewritten whole), SFT (checkpoints).
    Returns the retrained checkpoint directory (``<output_dir>/final``).
    """
    from dataclasses import replace

    from trl import SFTConfig

    recipe, args = parse_recipe(SelfImproveRecipe, SFTConfig, argv)
    manifest = run_round(recipe, args)
    if manifest["added"] == 0:
        raise RecipeError(f"threshold: no candidate reached {recipe.threshold} (dropped: {manifest['dropped']}); "
                          "lower it, sample more (num_samples) or train the model further first")  # fmt: skip
    sft = SFTRecipe(**{k: v for k, v in recipe.__dict__.items() if k in SFTRecipe.__dataclass_fields__})
    # max_samples bounds the clips sampled above; the retraining takes every row of the merged file (the kept
    # answers come after the original rows, so a cap there would drop them)
    final = run_sft_with(replace(sft, train_data=manifest["out"]["path"], max_samples=None), args)
    (final / "self_improve.json").write_text(json.dumps(manifest, indent=2))
    return final
