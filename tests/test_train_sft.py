"""SFT through TRL's SFTTrainer on the tiny checkpoint and toy face clips; rollouts scored by the rewards."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from emoreason.data.jsonl import read_samples  # noqa: E402
from emoreason.model.tiny import make_tiny_checkpoint  # noqa: E402
from emoreason.toyfaces import make_toy_dataset  # noqa: E402
from emoreason.train.recipe import RecipeError  # noqa: E402
from emoreason.train.rollout import generate, score  # noqa: E402
from emoreason.train.sft import SFTRecipe, build_trainer  # noqa: E402


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


def test_recipe_errors_name_the_field(toy, tmp_path):
    with pytest.raises(RecipeError, match="train_data"):
        SFTRecipe(model_path=str(toy[1]), train_data=str(tmp_path / "missing.jsonl"))
    with pytest.raises(RecipeError, match="crops"):
        SFTRecipe(model_path=str(toy[1]), train_data=str(toy[0]), crops="whole")
    with pytest.raises(RecipeError, match="au_loss_weight"):
        SFTRecipe(model_path=str(toy[1]), train_data=str(toy[0]), au_loss_weight=-1)


def test_cli_recipe_trains_resumes_and_saves(toy, tmp_path):
    import json
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
