"""SFT through TRL's SFTTrainer on the tiny checkpoint and toy face clips; rollouts scored by the rewards."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from emoreason.data.jsonl import read_samples  # noqa: E402
from emoreason.model.tiny import make_tiny_checkpoint  # noqa: E402
from emoreason.toyfaces import make_toy_dataset  # noqa: E402
from emoreason.train.recipe import RecipeError  # noqa: E402
from emoreason.train.rollout import generate, score  # noqa: E402
from emoreason.train.sft import SFTRecipe, build_trainer, warm_up_face_tokens  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return make_toy_dataset(root / "data", 16, seed=0, size=64), make_tiny_checkpoint(root / "tiny"), root


def _trainer(toy, tmp_path, **recipe_kw):
    data, checkpoint, root = toy
    recipe = SFTRecipe(model_path=str(checkpoint), train_data=str(data), crops="frames", evidence=False,
                       use_audio=False, cache_dir=str(root / "cache"), **recipe_kw)  # fmt: skip
    args = trl.SFTConfig(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, use_cpu=True,
                         bf16=False, report_to=[], save_strategy="no", learning_rate=1e-2)  # fmt: skip
    return build_trainer(recipe, args)


def test_sft_steps_change_lora_compressor_connectors_not_towers(toy, tmp_path):
    trainer, _, skipped = _trainer(toy, tmp_path)
    assert skipped["split"] > 0  # test-split rows are not trained on
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_B" in k for k in changed)
    assert any(k.startswith("face_compressor.au_") for k in changed)  # the AU head's auxiliary loss trains it
    assert any(k.startswith("face_connector.") for k in changed)
    assert not any(k.startswith(("face_tower.", "audio_tower.")) or ".base_layer." in k for k in changed)
    assert trainer.state.log_history[-1]["train_loss"] > 0
    # the answer tags' embedding rows learn (LoRA alone cannot teach the model to write added tokens); no other row
    from emoreason.model.tokenizer import TAG_TOKENS

    tags = trainer.processing_class.convert_tokens_to_ids(list(TAG_TOKENS))
    embed = next(k for k in before if k.endswith("embed_tokens.weight"))
    moved = (before[embed] != after[embed]).any(1).nonzero()[:, 0].tolist()
    assert moved and set(moved) <= set(tags)


def test_face_warm_up_trains_only_the_compressor_and_lowers_its_au_loss(toy, tmp_path):
    trainer, _, _ = _trainer(toy, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss_before, loss_after = warm_up_face_tokens(trainer.model, trainer.data_collator, trainer.train_dataset["row"],
                                                  steps=40, lr=1e-2, batch_size=4)  # fmt: skip
    assert loss_after < 0.7 * loss_before
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("face_compressor.") for k in changed)
    with pytest.raises(RecipeError, match="face_warmup_steps"):
        _trainer(toy, tmp_path, face_warmup_steps=-1)


def test_intensity_targets_and_the_warm_up_of_the_intensity_head(toy, tmp_path):
    """The batch carries each present AU's intensity (NaN where absent); with ``face_au_levels`` the warm-up trains
    the intensity head on them beside the AU head."""
    from emoreason.au import AU_CODES

    data, _, root = toy
    checkpoint = make_tiny_checkpoint(tmp_path / "levels", face_au_tokens=True, face_au_levels=True)
    trainer, _, _ = _trainer((data, checkpoint, root), tmp_path)
    rows = trainer.train_dataset["row"]
    batch = trainer.data_collator([{"row": row} for row in rows[:4]])
    for row, levels, present in zip(rows[:4], batch["au_intensities"], batch["au_labels"]):
        gold = {a["code"]: a["intensity"] for a in json.loads(row)["aus"]}
        want = [gold[c] if gold.get(c, 0) >= 1 else float("nan") for c in AU_CODES]
        torch.testing.assert_close(levels, torch.tensor(want), equal_nan=True)
        assert torch.equal(~levels.isnan(), present == 1)  # every present toy AU has an intensity
    head = trainer.model.face_compressor.au_intensity_weight.clone()
    before, after = warm_up_face_tokens(trainer.model, trainer.data_collator, rows, steps=60, lr=1e-2, batch_size=4)
    assert after < 0.5 * before and not torch.equal(head, trainer.model.face_compressor.au_intensity_weight)


def test_the_trainer_loss_is_the_answer_tokens_cross_entropy_plus_the_au_loss_with_its_metrics(toy, tmp_path):
    """One forward per step: the loss is the answer tokens' cross-entropy (what the old full-logits loss gave) plus
    the weighted AU loss, and TRL's entropy and token-accuracy metrics come from the same answer logits."""
    trainer, _, _ = _trainer(toy, tmp_path, au_loss_weight=0.7)
    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))
    model.eval()  # no dropout either way; the loss is compared with a reference from full logits
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        full = model(**{k: v for k, v in batch.items() if k not in ("labels", "au_labels")}).logits
        au = model(**{k: v for k, v in batch.items() if k != "labels"}).au_loss
    labels = batch["labels"][:, 1:]
    lm = torch.nn.functional.cross_entropy(full[:, :-1].reshape(-1, full.shape[-1]), labels.reshape(-1))
    torch.testing.assert_close(loss, lm + 0.7 * au)
    metrics = trainer._metrics["eval"]
    assert 0 <= metrics["mean_token_accuracy"][-1] <= 1 and metrics["entropy"][-1] > 0 and metrics["au_loss"]


def test_bf16_without_native_support_is_a_warning_and_float32(toy, tmp_path, monkeypatch, caplog):
    """A recipe asking bf16 on hardware without it trains in float32 with a warning saying why, not a crash."""
    from emoreason.train import hardware
    from emoreason.train.sft import run_sft

    data, checkpoint, root = toy
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(hardware, "has_accelerator", lambda: False)
    argv = ["--model_path", str(checkpoint), "--train_data", str(data), "--crops", "frames", "--evidence", "false",
            "--use_audio", "false", "--cache_dir", str(root / "cache"), "--output_dir", str(tmp_path / "run"),
            "--max_steps", "1", "--per_device_train_batch_size", "2", "--bf16", "true", "--report_to", "none",
            "--save_strategy", "no", "--gradient_checkpointing", "false"]  # fmt: skip
    with caplog.at_level("WARNING", logger="emoreason.train.hardware"):
        final = run_sft(argv)
    assert (final / "model.safetensors").is_file()
    assert any("no native bf16; training in float32" in r.message for r in caplog.records)


def test_bf16_is_used_where_the_hardware_has_it(monkeypatch):
    from emoreason.train import hardware

    args = trl.SFTConfig(output_dir="unused", use_cpu=True, report_to=[])  # TRL's default: bf16 on
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    assert hardware.resolve_precision(args) == "bf16" and args.bf16
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    assert hardware.resolve_precision(args) == "fp32" and not args.bf16 and args.mixed_precision == "no"


def test_alignment_trains_the_compressor_and_connectors_with_the_lm_frozen(toy, tmp_path):
    data, _, root = toy
    checkpoint = make_tiny_checkpoint(tmp_path / "no-lora", lora=False)
    recipe = SFTRecipe(model_path=str(checkpoint), train_data=str(data), crops="frames", evidence=False,
                       use_audio=False, cache_dir=str(root / "cache"), lora=False, freeze_language_model=True)  # fmt: skip
    args = trl.SFTConfig(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, use_cpu=True,
                         bf16=False, report_to=[], save_strategy="no", learning_rate=1e-2)  # fmt: skip
    trainer, _, _ = build_trainer(recipe, args)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)}
    assert any(k.startswith("face_connector.") for k in changed) and any(k.startswith("face_compressor.") for k in changed)
    assert not any(k.startswith(("language_model.", "face_tower.", "audio_tower.")) for k in changed)
    with pytest.raises(RecipeError, match="freeze_language_model"):
        SFTRecipe(model_path=str(checkpoint), train_data=str(data), lora=True, freeze_language_model=True)


def test_rollouts_are_scored_by_the_rewards(toy, tmp_path):
    trainer, processor, _ = _trainer(toy, tmp_path)
    test = [s for s in read_samples(toy[0]) if s.split == "test"][:3]
    rollouts = generate(trainer.model, processor, trainer.data_collator.cache, test, max_new_tokens=16)
    assert len(rollouts) == 3
    scores = score(rollouts)
    assert set(scores) == {"format", "emotion", "au_f1"} and 0.0 <= scores["format"] <= 1.0


def test_held_out_scores_are_kept_per_clip_for_a_paired_comparison(toy):
    from emoreason.train.data import MediaConfig
    from emoreason.train.rollout import evaluate, paired_difference

    data, checkpoint, root = toy
    test = [s for s in read_samples(data) if s.split == "test"][:3]
    weights = {"format": 0.5, "emotion": 1.0, "au_f1": 1.0}
    scored = evaluate(str(checkpoint), test, str(root / "cache"), MediaConfig(crops="frames", evidence=False,
                      use_audio=False), weights, max_new_tokens=8, batch_size=2)  # fmt: skip
    assert [c["id"] for c in scored["clips"]] == [s.id for s in test]
    assert {"reward", "answer", *weights} <= set(scored["clips"][0])
    assert [c["answer"] for c in scored["clips"][:len(scored["examples"])]] == scored["examples"]
    assert abs(sum(c["reward"] for c in scored["clips"]) / 3 - scored["reward"]) < 1e-3
    same = paired_difference(scored["clips"], scored["clips"])
    assert same["mean"] == 0 and same["ci95"] == [0, 0] and same["n"] == 3
    better = [c | {"reward": c["reward"] + (0.3 if i == 0 else 0.0)} for i, c in enumerate(scored["clips"])]
    moved = paired_difference(scored["clips"], better)
    assert abs(moved["mean"] - 0.1) < 1e-9 and moved["better"] == 1 and moved["worse"] == 0
    assert 0 <= moved["ci95"][0] <= moved["ci95"][1] <= 0.3 + 1e-9
    assert paired_difference(scored["clips"], [{"id": "another clip", "reward": 1.0}]) is None


def test_recipe_errors_name_the_field(toy, tmp_path):
    with pytest.raises(RecipeError, match="train_data"):
        SFTRecipe(model_path=str(toy[1]), train_data=str(tmp_path / "missing.jsonl"))
    with pytest.raises(RecipeError, match="crops"):
        SFTRecipe(model_path=str(toy[1]), train_data=str(toy[0]), crops="whole")
    with pytest.raises(RecipeError, match="au_loss_weight"):
        SFTRecipe(model_path=str(toy[1]), train_data=str(toy[0]), au_loss_weight=-1)
    with pytest.raises(RecipeError, match="lora_dropout"):
        SFTRecipe(model_path=str(toy[1]), train_data=str(toy[0]), lora_dropout=1.5)


def test_cli_recipe_trains_resumes_and_saves(toy, tmp_path):
    import subprocess
    import sys

    data, checkpoint, root = toy
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        f"model_path: {checkpoint}\ntrain_data: {data}\ncrops: frames\nevidence: false\nuse_audio: false\n"
        f"cache_dir: {root / 'cache'}\noutput_dir: {tmp_path / 'run'}\nmax_steps: 2\nsave_steps: 2\n"
        "per_device_train_batch_size: 4\nuse_cpu: true\nbf16: false\nreport_to: none\n"
    )
    command = [sys.executable, "-m", "emoreason.cli", "train", "sft", "--config", str(recipe)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint-2").is_dir() and (tmp_path / "run" / "final" / "model.safetensors").is_file()
    again = subprocess.run(command + ["--max_steps", "3"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    state = json.loads((tmp_path / "run" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and "resuming" not in first.stderr  # the second run continued from step 2
    used = json.loads((tmp_path / "run" / "final" / "training_data.json").read_text())
    assert used["rows_used"] > 0 and used["recipe"]["crops"] == "frames"
    bad = subprocess.run([*command[:4], "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_compact_target_states_each_au_at_its_letters_level():
    """The JSON restates the observation line's letters (D = 4.0), not the label's decimals, and the intensity
    reward reads the two as one answer."""
    from emoreason.answer import parse_answer
    from emoreason.data.schema import AULabel, Sample
    from emoreason.train.data import target_text
    from emoreason.train.rewards import au_intensity_reward, observed_aus

    sample = Sample(dataset="toy", media="x.mp4", emotion="sadness",
                    aus=[AULabel("AU1", 4.4), AULabel("AU4", 2.6), AULabel("AU7", 0.4), AULabel("AU15", 1.2)])  # fmt: skip
    text = target_text(sample, "compact")
    pred = parse_answer(text)
    assert pred.reasoning.startswith("Observations: AU1 D, AU4 C, AU15 A. Conclusion: sadness.")
    assert {a.code: a.intensity for a in pred.aus} == {"AU1": 4.0, "AU4": 3.0, "AU15": 1.0} == observed_aus(pred.reasoning)
    gold = [{"code": "AU1", "intensity": 4.4}, {"code": "AU4", "intensity": 2.6}, {"code": "AU15", "intensity": 1.2}]
    # the JSON's errors 0.4, 0.4, 0.2 (mean 1/3 of a level), the letters' within their rounding
    assert au_intensity_reward([text], [gold]) == pytest.approx([1 - (1 / 3) / 5])
