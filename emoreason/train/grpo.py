"""GRPO with TRL's GRPOTrainer: sample completions for each clip, score them with the rewards, push the policy
toward the better ones (Facial-R1 stage 2, on top of the SFT checkpoint).

The recipe names the rewards (:data:`emoreason.train.rewards.REWARDS`) and TRL's ``reward_weights`` weighs them,
so each is logged on its own. Generation runs through the model's own ``generate`` (on CPU, TRL's vLLM modes do not
work: see DESIGN.md) in :class:`~emoreason.train.grpo_trainer.EmoReasonGRPOTrainer`, which carries the media
tensors TRL would drop. Media are preprocessed once through the :class:`MediaCache`; rows with unusable media are
skipped and counted (:func:`emoreason.train.stage.load_rows`).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from emoreason.au import LABEL_SPACES
from emoreason.data.schema import Sample
from emoreason.train.recipe import RecipeError, TrainRecipe, check_reward_names
from emoreason.train.rewards import REWARDS
from emoreason.train.stage import last_checkpoint, load_parts, parse_recipe, run_stage

logger = logging.getLogger(__name__)

HARD_SCORES = ("label", "worst_token")


@dataclass
class GRPORecipe(TrainRecipe):
    """What a GRPO run trains on and how completions are scored (the trainer arguments are TRL's GRPOConfig,
    whose ``reward_weights`` weigh ``reward_funcs`` in order)."""

    lacks: ClassVar[str] = "no label"

    reward_funcs: list[str] = field(default_factory=lambda: ["format", "emotion", "au_f1"],
                                    metadata={"help": f"reward names, from {sorted(REWARDS)}"})  # fmt: skip
    label_space: str = field(default="basic", metadata={"help": "label space of every training row"})
    train_face: bool = field(default=True, metadata={"help": "let the policy gradient move the face path too "
                             "(compressor, AU head, connectors); false: the LM's LoRA and tag rows only, the face "
                             "path keeps its supervised weights (GRPO has no AU loss to hold the AU head)"})  # fmt: skip
    hard_clips: int = field(default=0, metadata={"help": "train on the N training clips whose target answer the "
                            "starting model finds least certain (teacher-forced, no sampling); 0: every clip. A clip "
                            "the model already answers surely gives all its completions one reward: no gradient. An "
                            "equal share of each label, so the RL set keeps the split's labels"})  # fmt: skip
    hard_score: str = field(default="label", metadata={"help": "how hard_clips ranks a clip: 'label', the "
                            "variance p(1-p) of a sampled label being right, p the teacher-forced probability of the "
                            "gold label where the target first writes it (the emotion reward's spread in a group); "
                            "'worst_token', the largest per-token loss of the target answer"})  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reward_names(self.reward_funcs)
        if self.hard_clips < 0:
            raise RecipeError(f"hard_clips must be >= 0 (0: every clip), got {self.hard_clips}")
        if self.hard_score not in HARD_SCORES:
            raise RecipeError(f"hard_score: unknown {self.hard_score!r}; use one of {list(HARD_SCORES)}")
        if self.label_space not in LABEL_SPACES:
            raise RecipeError(f"label_space: unknown {self.label_space!r}; use one of {sorted(LABEL_SPACES)}")

    def trainable(self, sample: Sample) -> bool:
        """A row is trained on when it is labelled; one in another label space than the recipe's fails at start
        (its labels would be scored in the wrong space)."""
        if sample.label_space != self.label_space:
            raise RecipeError(f"label_space: the recipe says {self.label_space!r} but row {sample.id} of "
                              f"{self.train_data} is in {sample.label_space!r}")  # fmt: skip
        return bool(sample.labels)


def check_args(recipe: GRPORecipe, args) -> None:
    """The GRPOConfig arguments this model can run with; RecipeError naming the argument otherwise."""
    weights = args.reward_weights
    if weights is not None:
        if len(weights) != len(recipe.reward_funcs):
            raise RecipeError(f"reward_weights: {len(weights)} weights for {len(recipe.reward_funcs)} reward_funcs "
                              f"{recipe.reward_funcs}; give one weight per reward, in the same order")  # fmt: skip
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise RecipeError(f"reward_weights must be finite and >= 0, got {weights}")
    if not (math.isfinite(args.beta) and args.beta >= 0):
        raise RecipeError(f"beta: the KL weight must be finite and >= 0 (0: no KL term), got {args.beta}")
    if args.sync_ref_model:
        raise RecipeError("sync_ref_model: the KL reference is a frozen copy of the starting model here; set it "
                          "false (or beta: 0.0 for no reference at all)")  # fmt: skip
    if args.use_vllm:
        raise RecipeError("use_vllm: TRL's vLLM rollouts do not carry face/audio tensors; set use_vllm: false")


def make_dataset(rows: list[dict], processor):
    """TRL's prompt column (the rendered prompt, for its logs) plus the columns the rewards read."""
    from datasets import Dataset

    prompt = processor.tokenizer.apply_chat_template(processor.build_messages(), tokenize=False,
                                                     add_generation_prompt=True)  # fmt: skip
    return Dataset.from_dict({
        "prompt": [prompt] * len(rows),
        "row": [json.dumps(r) for r in rows],  # the sample, as JSON text: Arrow would pad its nested fields
        "labels": [r["labels"] for r in rows],
        "label_space": [r["label_space"] for r in rows],
        "aus": [[{"code": a["code"], "intensity": a["intensity"]} for a in r["aus"]] for r in rows],
    })  # fmt: skip


def build_trainer(recipe: GRPORecipe, args):
    """(GRPOTrainer, processor, skipped counts) for ``recipe`` and a ``GRPOConfig`` ``args``."""
    from transformers import GenerationConfig

    from emoreason.model.tokenizer import IM_END
    from emoreason.train.grpo_trainer import EmoReasonGRPOTrainer
    from emoreason.train.rewards import get_rewards
    from emoreason.train.sft import Collator
    from emoreason.train.tower_cache import TowerCache

    check_args(recipe, args)
    parts = load_parts(recipe, args)
    model, processor, tokenizer = parts.model, parts.processor, parts.processor.tokenizer
    if not recipe.train_face:
        for module in (model.face_compressor, model.face_connector, model.audio_connector):
            module.requires_grad_(False)
    # TRL reads the stop tokens from the model's generation config (the composed model has none of its own)
    model.generation_config = GenerationConfig(eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(
        IM_END)], pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    args.remove_unused_columns = False
    # a sampled <face>/<audio> placeholder in a completion would not match the media tensors (as TRL does for images)
    suppress = {"suppress_tokens": [processor.face_token_id, processor.audio_token_id]}
    args.generation_kwargs = {**suppress, **(args.generation_kwargs or {})}
    if args.ddp_find_unused_parameters is None:
        args.ddp_find_unused_parameters = True  # the audio path has no gradient in a batch without audio
    towers = TowerCache(model, recipe.cache_dir) if TowerCache.is_frozen(model) else None
    rows = parts.rows
    if recipe.hard_clips and recipe.hard_clips < len(rows) and not last_checkpoint(args.output_dir):
        rows = hardest(model, Collator(processor, parts.cache, recipe.target, towers), rows, recipe.hard_clips,
                       args.per_device_train_batch_size, bf16=args.bf16, score=recipe.hard_score)  # fmt: skip
        (Path(args.output_dir) / "hard_clips.json").parent.mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "hard_clips.json").write_text(json.dumps([r["id"] for r in rows]))
    elif recipe.hard_clips and (chosen := Path(args.output_dir) / "hard_clips.json").is_file():  # resumed: same clips
        ids = set(json.loads(chosen.read_text()))
        rows = [r for r in rows if r["id"] in ids]
    trainer = EmoReasonGRPOTrainer(model=model, reward_funcs=get_rewards(recipe.reward_funcs), args=args,
                                   train_dataset=make_dataset(rows, processor), processing_class=tokenizer,
                                   processor=processor, cache=parts.cache, towers=towers)  # fmt: skip
    return trainer, processor, parts.skipped


@torch.no_grad()
def hardest(
    model, collator, rows: list[dict], n: int, batch_size: int = 8, bf16: bool = False, score: str = "label"
) -> list[dict]:
    """The ``n`` rows GRPO learns most from, an equal share of each label (:func:`balanced`), ranked teacher-forced
    on the SFT collator's target answer (one forward pass per row, no sampling: a fraction of one rollout per clip).

    ``score="label"``: p(1-p), p the probability of the gold label's first token where the answer first writes it
    (the compact target's "Conclusion: happiness"): the variance of a sampled completion's emotion reward, so a
    clip the model always gets right or always gets wrong (every completion in its group tied, no gradient) ranks
    last, one it is torn on first (Facial-R1 and DAPO drop the prompts every completion gets right; this ranks them
    before training instead of resampling). A row whose answer never writes its label falls back to
    ``"worst_token"``: its largest per-token cross-entropy, where a sampled completion most often leaves the answer.
    """
    if not rows or n <= 0:
        return []
    if score not in HARD_SCORES:
        raise ValueError(f"hardest: unknown score {score!r}; use one of {list(HARD_SCORES)}")
    tokenizer = collator.processor.tokenizer
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    scores, fallback = [], 0
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = collator([{"row": json.dumps(r)} for r in chunk])
            labels = batch.pop("labels")
            batch.pop("au_labels", None), batch.pop("au_intensities", None)
            out = model(**{k: v.to(device) for k, v in batch.items()}, labels=labels.to(device))
            targets = labels[:, 1:]
            if out.logits.shape[0] != int((targets != -100).sum()):  # a shared prefix trimmed: recount per row
                raise RuntimeError("hardest: logits do not align with the labelled positions")
            scored = targets != -100
            nll = torch.nn.functional.cross_entropy(out.logits.float(), targets[scored].to(device), reduction="none")
            for i, (row, row_nll) in enumerate(zip(chunk, nll.split(scored.sum(1).tolist()))):
                if not len(row_nll):  # nothing labelled (an answer cut off entirely): ranks last
                    scores.append(float("-inf"))
                    continue
                at = _label_position(tokenizer, row, targets[i][scored[i]].tolist()) if score == "label" else None
                if at is None:
                    fallback += score == "label"
                    scores.append(row_nll.max().item())
                else:
                    p = math.exp(-row_nll[at].item())
                    scores.append(p * (1 - p))
    model.train(was_training)
    order = balanced(scores, [tuple(r.get("labels") or ()) for r in rows], n)
    logger.info("hard_clips by %s: %d of %d rows, score %.3f..%.3f (median of all %.3f)%s, per label %s", score, n,
                len(rows), min(scores[i] for i in order), max(scores[i] for i in order),
                sorted(scores)[len(scores) // 2], f", {fallback} by worst token (label not written)" if fallback else "",
                dict(Counter("/".join(rows[i].get("labels") or ()) for i in order)))  # fmt: skip
    return [rows[i] for i in sorted(order)]


def _label_position(tokenizer, row: dict, answer: list[int]) -> int | None:
    """Index in ``answer`` (a row's labelled token ids) of the first token of its first label where the answer
    first writes it (with or without a leading space); None where it never does."""
    label = (row.get("labels") or [None])[0]
    if not label:
        return None
    firsts = {
        ids[0] for text in (f" {label}", label) if (ids := tokenizer(text, add_special_tokens=False)["input_ids"])
    }
    return next((j for j, token in enumerate(answer) if token in firsts), None)


def balanced(scores: list[float], groups: list, n: int) -> list[int]:
    """The indices of ``n`` top-scoring items, an equal share (within one) from each group: round by round, the
    next-best item of every group that has one, best first. The hardest clips of a whole training split are not a
    sample of its labels: by the worst token, the smol SFT model's 48 held no neutral clip (its answer has no
    intensity digits to be unsure of), and GRPO on them learned to call every held-out neutral face contempt."""
    ranked: dict = {}
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        ranked.setdefault(groups[i], []).append(i)
    order: list[int] = []
    for depth in range(max(map(len, ranked.values()), default=0)):
        order += sorted((g[depth] for g in ranked.values() if depth < len(g)), key=lambda i: -scores[i])
    return order[:n]


def run_grpo(argv: list[str]) -> Path:
    """``emoreason train grpo --config recipe.yaml [--field value ...]``: train, resume if interrupted, save.

    The YAML holds the :class:`GRPORecipe` fields and TRL's ``GRPOConfig`` arguments side by side (TrlParser:
    file first, then command-line overrides). A run killed mid-way resumes from its last ``checkpoint-*``.
    Returns the final emoreason checkpoint directory (``<output_dir>/final``).
    """
    from trl import GRPOConfig

    recipe, args = parse_recipe(GRPORecipe, GRPOConfig, argv)
    rewards = dict(zip(recipe.reward_funcs, args.reward_weights or [1.0] * len(recipe.reward_funcs)))
    return run_stage(recipe, args, "grpo", build_trainer, rewards=rewards)
