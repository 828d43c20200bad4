"""The smol preset end to end (``real_weights``): one SFT step and one GRPO step with LoRA on the pretrained parts,
the trained checkpoint explained in-process, and served by vLLM with the same answer as transformers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

import emoreason  # noqa: E402
from emoreason.train import rewards  # noqa: E402

pytestmark = pytest.mark.real_weights


def _changed(before: dict, model) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}


@pytest.fixture(scope="module")
def sft_smol(smol, toy, tmp_path_factory):
    """The smol checkpoint after one SFT step with LoRA on toy faces: (checkpoint dir, changed weight names)."""
    from emoreason.train.sft import SFTRecipe, build_trainer
    from emoreason.train.stage import save_final

    data, _, root = toy
    out = tmp_path_factory.mktemp("smol-sft")
    recipe = SFTRecipe(model_path=str(smol), train_data=str(data), crops="frames", evidence=False, use_audio=False,
                       cache_dir=str(root / "smol-cache"), target="compact", face_warmup_steps=5)  # fmt: skip
    # the recipes' settings: bf16 where the CPU has it (TRL's default, checked against the hardware), no checkpointing
    args = trl.SFTConfig(output_dir=str(out / "run"), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
                         gradient_checkpointing=False, report_to=[], save_strategy="no", learning_rate=1e-3)  # fmt: skip
    trainer, processor, _ = build_trainer(recipe, args)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    return save_final(trainer, processor, out / "final"), _changed(before, trainer.model)


def test_one_sft_step_trains_lora_compressor_and_connectors_not_the_pretrained_towers(sft_smol):
    final, changed = sft_smol
    assert any("lora_B" in k for k in changed)
    assert any(k.startswith("face_compressor.") for k in changed) and any(k.startswith("face_connector.") for k in changed)
    assert not any(k.startswith(("face_tower.", "audio_tower.")) or ".base_layer." in k for k in changed)
    assert (final / "lora" / "adapter_config.json").is_file()


def test_one_grpo_step_on_the_trained_smol(sft_smol, toy, tmp_path, monkeypatch):
    from emoreason.train.grpo import GRPORecipe, build_trainer

    data, _, root = toy
    # a reward that differs between completions, so the step has a non-zero advantage to follow
    monkeypatch.setitem(rewards.REWARDS, "chars", lambda completions, **kw: [len(c) / 100 for c in completions])
    recipe = GRPORecipe(model_path=str(sft_smol[0]), train_data=str(data), crops="frames", evidence=False,
                        use_audio=False, cache_dir=str(root / "smol-cache"), reward_funcs=["format", "chars"])  # fmt: skip
    args = trl.GRPOConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                          num_generations=2, max_completion_length=16, use_cpu=True, report_to=[],
                          save_strategy="no", learning_rate=1e-3, gradient_checkpointing=False, logging_steps=1)  # fmt: skip
    trainer, _, _ = build_trainer(recipe, args)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert any("lora_B" in k or "lora_A" in k for k in _changed(before, trainer.model))
    assert "rewards/format_reward/mean" in trainer.state.log_history[0]


def test_explain_with_the_trained_smol(sft_smol, smile_video):
    report = emoreason.explain(smile_video, model=sft_smol[0])
    assert report.backend == "hf" and report.answer  # a real LM writes text (after one step, not yet a good answer)


@pytest.mark.vllm
def test_vllm_serves_the_trained_smol_with_the_transformers_answer(sft_smol, smile_video, tmp_path):
    """`emoreason serve` on the trained checkpoint: the LoRA adapter's greedy answer to the smile clip (face crops,
    audio, measured evidence) equals transformers + peft's, token for token."""
    pytest.importorskip("openai")
    pytest.importorskip("vllm")
    from tests.servers import running_server

    final = sft_smol[0]
    options = ["--dtype", "float32", "--served-model-name", "smol"]
    with running_server(final, tmp_path / "server.log", options, start_s=420) as server:
        assert {m.id for m in server["client"].models.list().data} == {"smol", "smol-lora"}
        served = emoreason.explain(smile_video, server=server["url"], model="smol-lora")
        local = emoreason.explain(smile_video, model=final)
        assert served.answer == local.answer and served.answer
