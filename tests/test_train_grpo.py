"""GRPO through TRL's GRPOTrainer on the tiny checkpoint and toy face clips: media reach generation and the
log-prob forward, recipes fail early with the field named, and a killed run resumes."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from emoreason.cli import main  # noqa: E402
from emoreason.train import rewards  # noqa: E402
from emoreason.train.grpo import GRPORecipe, balanced, build_trainer, hardest  # noqa: E402
from emoreason.train.recipe import RecipeError  # noqa: E402
from emoreason.train.stage import load_processor_and_cache, load_rows  # noqa: E402


def _recipe(toy, **kw) -> GRPORecipe:
    data, checkpoint, root = toy
    values = dict(model_path=str(checkpoint), train_data=str(data), crops="frames", evidence=False, use_audio=False,
                  cache_dir=str(root / "cache"))  # fmt: skip
    return GRPORecipe(**(values | kw))


def _args(tmp_path, **kw):
    values = dict(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=4, num_generations=4,
                  max_completion_length=12, use_cpu=True, bf16=False, report_to=[], save_strategy="no",
                  learning_rate=1e-2, gradient_checkpointing=False, logging_steps=1)  # fmt: skip
    return trl.GRPOConfig(**(values | kw))


def test_grpo_step_changes_lora_and_face_path_not_towers(toy, tmp_path, monkeypatch):
    # a random model's answers all score 0 on the real rewards (zero advantage, no update): a reward that varies
    # across completions makes the step move the weights, through the face tokens the subclass feeds the forward
    monkeypatch.setitem(rewards.REWARDS, "chars", lambda completions, **kw: [len(c) / 100 for c in completions])
    trainer, _, skipped = build_trainer(_recipe(toy, reward_funcs=["format", "chars"]), _args(tmp_path))
    assert skipped["split"] > 0  # test-split rows are not trained on
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)}
    assert any("lora_B" in k for k in changed)
    assert any(k.startswith("face_connector.") for k in changed) and any(
        k.startswith("face_compressor.") for k in changed
    )
    assert not any(k.startswith(("face_tower.", "audio_tower.")) or ".base_layer." in k for k in changed)
    logged = trainer.state.log_history[0]
    assert logged["rewards/format_reward/mean"] == 0.0 and logged["reward_std"] > 0
    # train_face: false: the policy gradient moves the LM's LoRA only; the face path keeps its supervised weights
    trainer, _, _ = build_trainer(_recipe(toy, reward_funcs=["format", "chars"], train_face=False),
                                  _args(tmp_path / "frozen"))  # fmt: skip
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)}
    assert any("lora_B" in k for k in changed)
    assert not any(k.startswith(("face_", "audio_")) for k in changed)


def test_kl_term_against_a_frozen_copy_of_the_starting_model(toy, tmp_path, monkeypatch):
    monkeypatch.setitem(rewards.REWARDS, "chars", lambda completions, **kw: [len(c) / 100 for c in completions])
    trainer, _, _ = build_trainer(_recipe(toy, reward_funcs=["format", "chars"]), _args(tmp_path, beta=0.5,
                                                                                        max_steps=2, learning_rate=0.3))  # fmt: skip
    assert trainer.beta == 0.5 and trainer.args.beta == 0.5 and trainer.ref_model is not trainer.model
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in trainer.ref_model.state_dict().items())  # LoRA included
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())
    trainer.train()
    first, second = (log["kl"] for log in trainer.state.log_history[:2])
    assert first == pytest.approx(0, abs=1e-6) and second > 1e-6  # the policy starts at the reference, then moves
    assert any(not torch.equal(start[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(start[k], v) for k, v in trainer.ref_model.state_dict().items())


def test_balanced_takes_the_hardest_of_every_label_in_turn():
    # label "a" holds the four hardest rows: a global top 4 would be all "a"; the RL set keeps every label
    scores, labels = [9, 8, 7, 6, 5, 4, 3, 0.5], [("a",)] * 4 + [("b",)] * 2 + [("c",)] + [()]
    assert balanced(scores, labels, 4) == [0, 4, 6, 7]
    assert balanced(scores, labels, 6) == [0, 4, 6, 7, 1, 5]
    assert sorted(balanced(scores, labels, 100)) == list(range(8))
    assert balanced(scores, labels, 0) == [] and balanced([], [], 3) == []
    assert hardest(None, None, [], 3) == []  # no usable clip: an empty set, not a traceback


@pytest.mark.parametrize("score", ["label", "worst_token"])
def test_hard_clips_keeps_the_rows_grpo_learns_most_from(toy, tmp_path, score):
    from emoreason.train.sft import Collator

    trainer, processor, _ = build_trainer(_recipe(toy, hard_clips=2, hard_score=score), _args(tmp_path))
    chosen = json.loads((tmp_path / "run" / "hard_clips.json").read_text())
    assert len(chosen) == 2 and len(trainer.train_dataset) == 2
    assert sorted(json.loads(r)["id"] for r in trainer.train_dataset["row"]) == sorted(chosen)
    # the same ranking, one row at a time: "worst_token", each row's largest token cross-entropy on its target
    # answer; "label", p(1-p) of the gold label's first token where the answer first writes it
    recipe = _recipe(toy)
    cache = load_processor_and_cache(recipe)[1]
    rows, _ = load_rows(recipe, cache)
    collator, model, tok = Collator(processor, cache, recipe.target), trainer.model.eval(), processor.tokenizer
    expected, written = {}, 0
    with torch.no_grad():
        for row in rows:
            batch = collator([{"row": json.dumps(row)}])
            labels, _ = batch.pop("labels"), batch.pop("au_labels")
            logits = model(**batch).logits[0, :-1]
            targets = labels[0, 1:]
            answer = targets[targets != -100]
            nll = torch.nn.functional.cross_entropy(logits[targets != -100], answer, reduction="none")
            firsts = [tok(text, add_special_tokens=False)["input_ids"][0] for text in (" " + row["labels"][0],
                                                                                      row["labels"][0])]  # fmt: skip
            at = torch.isin(answer, torch.tensor(firsts)).nonzero()
            if score == "label" and len(at):
                written += 1
                p = math.exp(-float(nll[at[0, 0]]))
                expected[row["id"]] = p * (1 - p)
            else:
                expected[row["id"]] = float(nll.max())
    assert score == "worst_token" or written == len(rows)  # every answer names its label: scored by it
    order = balanced([expected[r["id"]] for r in rows], [tuple(r["labels"]) for r in rows], 2)
    assert sorted(chosen) == sorted(rows[i]["id"] for i in order)
    assert len({tuple(r["labels"]) for r in rows if r["id"] in chosen}) == 2  # two labels, not the two hardest rows
    # a resumed run trains on the same clips (the ranking is not redone on the moved weights)
    (tmp_path / "run" / "checkpoint-1").mkdir()
    trainer, _, _ = build_trainer(_recipe(toy, hard_clips=2, hard_score=score), _args(tmp_path))
    assert sorted(json.loads(r)["id"] for r in trainer.train_dataset["row"]) == sorted(chosen)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reward_funcs": ["format", "kindness"]}, "reward_funcs"),
        ({"hard_clips": -1}, "hard_clips"),
        ({"train_data": "missing.jsonl"}, "train_data"),
        ({"label_space": "colours"}, "label_space"),
        ({"crops": "whole"}, "crops"),
        ({"target": "essay"}, "target"),
        ({"hard_score": "loss"}, "hard_score"),
    ],
)
def test_recipe_errors_name_the_field(toy, change, field):
    with pytest.raises(RecipeError, match=field):
        _recipe(toy, **change)


@pytest.mark.parametrize(
    ("args", "field"),
    [({"reward_weights": [1.0]}, "reward_weights"), ({"beta": -0.04}, "beta"), ({"beta": float("nan")}, "beta"),
     ({"beta": 0.04, "sync_ref_model": True}, "sync_ref_model"), ({"reward_weights": [1.0, -1.0]}, "reward_weights")],
)  # fmt: skip
def test_trainer_arguments_are_checked_at_start(toy, tmp_path, args, field):
    with pytest.raises(RecipeError, match=field):
        build_trainer(_recipe(toy, reward_funcs=["format", "emotion"]), _args(tmp_path, **args))


def test_rows_in_another_label_space_or_with_unreadable_media(toy, tmp_path):
    data, _, _ = toy
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows = [dict(r, media=str(data.parent / r["media"])) for r in rows]  # the copy lives elsewhere
    broken = tmp_path / "toy.jsonl"
    train = next(r for r in rows if r["split"] == "train")
    extra = [dict(train, id="unreadable", media=str(tmp_path / "missing.mp4"))]
    broken.write_text("".join(json.dumps(r) + "\n" for r in rows + extra))
    recipe = _recipe(toy, train_data=str(broken))
    kept, skipped = load_rows(recipe, load_processor_and_cache(recipe)[1])
    assert skipped["unusable media"] == 1 and len(kept) == sum(r["split"] == "train" for r in rows)
    broken.write_text("".join(json.dumps(r) + "\n" for r in [dict(train, label_space="mafw", labels=["anxiety"])]))
    with pytest.raises(RecipeError, match="label_space"):
        load_rows(recipe, load_processor_and_cache(recipe)[1])


def test_cli_grpo_resumes_after_an_interrupted_run(toy, tmp_path, caplog, capsys):
    data, checkpoint, root = toy
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(
        f"model_path: {checkpoint}\ntrain_data: {data}\ncrops: frames\nevidence: false\nuse_audio: false\n"
        f"cache_dir: {root / 'cache'}\nreward_funcs: [format, emotion, au_f1]\nreward_weights: [1.0, 1.0, 0.5]\n"
        f"output_dir: {tmp_path / 'run'}\nmax_steps: 2\nsave_steps: 1\nlogging_steps: 1\n"
        "per_device_train_batch_size: 4\nnum_generations: 4\nmax_completion_length: 8\ngradient_checkpointing: false\n"
        "use_cpu: true\nbf16: false\nreport_to: none\n"
    )
    command = ["train", "grpo", "--config", str(recipe)]
    assert main(command) == 0
    run = tmp_path / "run"
    step1 = json.loads((run / "checkpoint-1" / "trainer_state.json").read_text())["log_history"]
    shutil.rmtree(run / "checkpoint-2")  # as if killed after the first checkpoint
    shutil.rmtree(run / "final")
    caplog.set_level(logging.INFO, logger="emoreason")
    assert main(command) == 0
    assert f"resuming from {run / 'checkpoint-1'}" in caplog.text
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["log_history"][0] == step1[0]  # step 1 was not trained again
    used = json.loads((run / "final" / "training_data.json").read_text())
    assert used["stage"] == "grpo" and used["rewards"] == {"format": 1.0, "emotion": 1.0, "au_f1": 0.5}
    capsys.readouterr()
    assert main(command + ["--reward_funcs", "format", "kindness"]) == 2
    assert "reward_funcs" in capsys.readouterr().err


def test_cli_train_needs_a_config():
    process = subprocess.run([sys.executable, "-m", "emoreason.cli", "train", "grpo"], capture_output=True, text=True)
    assert process.returncode == 2 and "--config" in process.stderr and "Traceback" not in process.stderr
