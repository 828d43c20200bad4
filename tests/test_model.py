"""The multimodal model on a tiny random-weight checkpoint: training step, save/load, generate, explain."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import emoreason  # noqa: E402
from emoreason.answer import parse_answer  # noqa: E402
from emoreason.model.checkpoint import (  # noqa: E402
    CheckpointError,
    base_state_dict,
    load_checkpoint,
    merge_lora,
    save_checkpoint,
)
from emoreason.model.configuration import EmoReasonConfig  # noqa: E402
from emoreason.model.tiny import build_tiny, make_tiny_checkpoint  # noqa: E402
from emoreason.synthetic import astronaut_face  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0)


def _batch(processor, answer: str | None = None, audio: bool = True):
    import numpy as np

    crops = np.stack([astronaut_face(128)] * 3)
    wave = np.sin(np.linspace(0, 600, 16000)).astype("float32") * 0.1 if audio else None
    messages = processor.build_messages(evidence="AU12 C", has_audio=audio, answer=answer)
    return processor(messages, faces=crops, audio=wave, add_generation_prompt=answer is None)


def _inputs(batch):
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "frame_mask", "input_features",
                                  "audio_mask")}  # fmt: skip


def test_forward_backward_and_losses(tiny):
    model, processor = tiny
    batch = _batch(processor, answer='<think>AU12 up</think><answer>{"emotion": "happiness"}</answer>')
    labels = batch["input_ids"].clone()
    au_labels = torch.full((1, len(model.config.au_codes)), float("nan"))
    au_labels[0, model.config.au_codes.index("AU12")] = 1.0
    out = model(**_inputs(batch), labels=labels, au_labels=au_labels)
    assert torch.isfinite(out.loss) and out.au_loss is not None
    assert out.au_logits.shape == (1, len(model.config.au_codes))
    out.loss.backward()
    assert model.face_compressor.region_queries.grad is not None


def test_the_loss_is_computed_at_the_answer_positions_only_and_equals_the_full_logits_loss(tiny):
    """With labels the LM head runs only where a next token is labelled: the logits are those positions' [N, V]
    and the loss is the same cross-entropy the full [B, L, V] logits give (the prompt was never scored)."""
    model, processor = tiny
    batch = _batch(processor, answer='<think>AU6 B, AU12 C</think><answer>{"emotion": "happiness"}</answer>')
    labels = batch["labels"]
    with torch.no_grad():
        full = model(**_inputs(batch)).logits  # [1, L, V]
        out = model(**_inputs(batch), labels=labels)
    targets = labels[:, 1:]
    scored = targets != -100
    assert 0 < int(scored.sum()) < targets.numel()  # the prompt is masked, the answer is not
    assert out.logits.shape == (int(scored.sum()), full.shape[-1])
    torch.testing.assert_close(out.logits, full[:, :-1][scored])
    reference = torch.nn.functional.cross_entropy(full[:, :-1].reshape(-1, full.shape[-1]), targets.reshape(-1),
                                                  ignore_index=-100)  # fmt: skip
    torch.testing.assert_close(out.lm_loss, reference)
    # the Trainer's num_items_in_batch (the labelled tokens of the accumulated batch) divides the sum instead
    with torch.no_grad():
        halved = model(**_inputs(batch), labels=labels, num_items_in_batch=2 * int(scored.sum())).lm_loss
    torch.testing.assert_close(halved, reference / 2)


def test_rows_that_share_their_prompt_prefix_give_the_same_loss_and_gradients_with_it_computed_once():
    """The shared system prompt and instructions run through the LM once for the batch: the loss and every
    gradient equal those of each row run in full."""
    from emoreason.model.modeling import shared_prefix_length

    model, processor = build_tiny(seed=2)
    model.eval()  # no dropout: the two runs must see the same network
    answers = ['<think>AU12 C</think><answer>{"emotion": "happiness"}</answer>',
               '<think>AU4 B, AU7 C, AU23 B</think><answer>{"emotion": "anger"}</answer>']  # fmt: skip
    batch = processor.collate([_batch(processor, answer=a) for a in answers], padding_side="right")
    inputs, labels = _inputs(batch), batch["labels"]
    shared = shared_prefix_length(inputs["input_ids"], inputs["attention_mask"], labels,
                                  (processor.face_token_id, processor.audio_token_id))  # fmt: skip
    assert 16 <= shared < inputs["input_ids"].shape[1]
    runs = []
    for rows in (None, [0, 1]):  # the batch together (prefix shared), then each row alone (no sharing)
        model.zero_grad()
        if rows is None:
            loss = model(**inputs, labels=labels).lm_loss
        else:
            count = int((labels[:, 1:] != -100).sum())
            loss = sum(model(**{k: v[[r]] for k, v in inputs.items()}, labels=labels[[r]], num_items_in_batch=count)
                       .lm_loss for r in rows)  # fmt: skip
        loss.backward()
        runs.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (shared_loss, shared_grads), (alone_loss, alone_grads) = runs
    torch.testing.assert_close(shared_loss, alone_loss)
    assert shared_grads.keys() == alone_grads.keys() and any("lora_B" in n for n in shared_grads)
    for name in shared_grads:
        torch.testing.assert_close(shared_grads[name], alone_grads[name], rtol=1e-4, atol=1e-5)


def test_one_step_trains_lora_compressor_connectors_not_towers(tmp_path):
    model, processor = build_tiny(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    batch = _batch(processor, answer='<think>x</think><answer>{"emotion": "anger"}</answer>')
    model(**_inputs(batch), labels=batch["input_ids"]).loss.backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_B" in k for k in changed)
    assert any(k.startswith("face_compressor.") for k in changed)
    assert any(k.startswith("face_connector.") for k in changed)
    assert any(k.startswith("audio_connector.") for k in changed)
    frozen = [k for k in before if k.startswith(("face_tower.", "audio_tower.")) or ".base_layer." in k]
    assert frozen and not changed.intersection(frozen)
    # save -> load gives identical logits, and merging the adapter changes nothing either
    path = save_checkpoint(model, tmp_path / "ckpt", processor=processor)
    loaded = load_checkpoint(path)
    model.eval()
    inputs = _inputs(_batch(processor))
    with torch.no_grad():
        reference = model(**inputs).logits
        assert torch.equal(reference, loaded(**inputs).logits)
        merged = merge_lora(loaded)
        assert torch.allclose(reference, merged(**inputs).logits, atol=1e-5)
    assert not any("lora_" in k for k in base_state_dict(merged))


def test_generate_output_is_parseable(tiny):
    model, processor = tiny
    model.eval()
    ids = model.generate(**_inputs(_batch(processor)), max_new_tokens=24, do_sample=False,
                         pad_token_id=processor.tokenizer.pad_token_id)  # fmt: skip
    prediction = parse_answer(processor.decode(ids[0]))  # random weights: invalid, but never an exception
    assert prediction.valid in (True, False)


def test_shape_errors_say_expected_and_actual(tiny):
    model, processor = tiny
    inputs = _inputs(_batch(processor))
    with pytest.raises(ValueError, match=r"expected \[B, T, 3, 64, 64\], got \[1, 8, 3, 32, 32\]"):
        model(**{**inputs, "pixel_values": torch.zeros(1, 8, 3, 32, 32)})
    with pytest.raises(ValueError, match="at most 8 frames, got 9"):
        model(**{**inputs, "pixel_values": torch.zeros(1, 9, 3, 64, 64), "frame_mask": torch.ones(1, 9, dtype=bool)})
    doubled = torch.cat([inputs["input_ids"], inputs["input_ids"]], dim=1)  # two <face> clips, one given
    with pytest.raises(ValueError, match="<face> placeholders per sample"):
        model(**{**inputs, "input_ids": doubled, "attention_mask": torch.ones_like(doubled)})


def test_au_tokens_say_what_the_au_head_read_in_the_lm_embedding_of_the_au_names():
    """face_au_tokens: one token per AU after the compressed ones, p * code + (1 - p) * off, p the AU head's."""
    model, processor = build_tiny(seed=0, face_au_tokens=True)
    config, connector = model.config, model.face_connector
    assert config.num_face_tokens == config.num_compressed_face_tokens + len(config.au_codes)
    assert processor.num_face_tokens == config.num_face_tokens
    connector.init_au_embeddings(model.get_input_embeddings(), processor.tokenizer, config.au_codes)
    embed = model.get_input_embeddings().weight
    ids = processor.tokenizer(" AU12", add_special_tokens=False)["input_ids"]
    assert torch.allclose(connector.au_code_embedding[config.au_codes.index("AU12")],
                          (embed[ids] * torch.arange(1.0, len(ids) + 1)[:, None]).sum(0) / sum(range(1, len(ids) + 1)))
    tokens = torch.randn(2, config.num_compressed_face_tokens, config.face_config.hidden_size)
    logits = torch.full((2, len(config.au_codes)), -30.0)
    logits[0, 3] = 30.0
    out = connector(tokens, logits)
    assert out.shape == (2, config.num_face_tokens, config.text_config.hidden_size)
    au_tokens = out[:, config.num_compressed_face_tokens :]
    assert torch.allclose(au_tokens[0, 3], connector.au_code_embedding[3])  # present: the AU's name
    assert torch.allclose(au_tokens[1, 3], connector.au_off_embedding)  # absent: " no"
    with pytest.raises(ValueError, match="au_logits"):
        connector(tokens)
    batch = _batch(processor, answer="<think>AU12</think>")  # the whole model: placeholders match, loss trains it
    out = model(**_inputs(batch), labels=batch["input_ids"].clone())
    out.loss.backward()
    assert connector.au_code_embedding.grad.abs().sum() > 0


def test_the_none_token_says_whether_any_au_moved():
    """face_au_none_token: one more token after the AU tokens, q * none + (1 - q) * any, q = prod(1 - p)."""
    model, processor = build_tiny(seed=0, face_au_tokens=True, face_au_none_token=True)
    config, connector = model.config, model.face_connector
    assert config.num_face_tokens == config.num_compressed_face_tokens + len(config.au_codes) + 1
    assert processor.num_face_tokens == config.num_face_tokens
    connector.init_au_embeddings(model.get_input_embeddings(), processor.tokenizer, config.au_codes)
    embed = model.get_input_embeddings().weight
    assert torch.allclose(connector.au_any_embedding, embed[processor.tokenizer(" AU", add_special_tokens=False)["input_ids"]].mean(0))
    assert torch.allclose(connector.au_none_embedding, connector.au_off_embedding)  # " no"
    tokens = torch.randn(3, config.num_compressed_face_tokens, config.face_config.hidden_size)
    logits = torch.full((3, len(config.au_codes)), -30.0)
    logits[1, 3] = 30.0  # one AU moved
    logits[2] = 0.0  # every AU at p 0.5: q = 0.5 ** A
    none = connector(tokens, logits)[:, -1]
    assert torch.allclose(none[0], connector.au_none_embedding, atol=1e-5)
    assert torch.allclose(none[1], connector.au_any_embedding, atol=1e-5)
    q = 0.5 ** len(config.au_codes)
    assert torch.allclose(none[2], q * connector.au_none_embedding + (1 - q) * connector.au_any_embedding, atol=1e-5)
    batch = _batch(processor, answer="<think>no</think>")  # the whole model: placeholders match, loss trains it
    model(**_inputs(batch), labels=batch["input_ids"].clone()).loss.backward()
    assert connector.au_none_embedding.grad.abs().sum() > 0
    assert EmoReasonConfig(face_au_none_token=True).num_face_tokens == EmoReasonConfig().num_face_tokens  # needs AU tokens


def test_au_levels_say_how_strongly_in_the_lm_embedding_of_the_facs_letters():
    """face_au_levels: an intensity head beside the AU head, and after each AU token a level token, the letter its
    intensity falls on (interpolated between the two nearest of " A" ... " E"); its loss is the squared error on the
    present AUs' intensities (0-1 scale), added to the AU loss."""
    from emoreason.model.modeling import au_head_loss, au_intensity_loss

    model, processor = build_tiny(seed=0, face_au_tokens=True, face_au_levels=True)
    config, connector, compressor = model.config, model.face_connector, model.face_compressor
    k, n = config.num_compressed_face_tokens, len(config.au_codes)
    assert config.num_face_tokens == k + 2 * n  # each AU token and its level token
    connector.init_au_embeddings(model.get_input_embeddings(), processor.tokenizer, config.au_codes)
    embed = model.get_input_embeddings().weight
    letter = [embed[processor.tokenizer(f" {c}", add_special_tokens=False)["input_ids"]].mean(0) for c in "ABCDE"]
    assert all(torch.allclose(connector.au_level_embedding[i], letter[i]) for i in range(5))
    tokens = torch.randn(2, k, config.face_config.hidden_size)
    logits = torch.full((2, n), -30.0)
    logits[:, 3] = 30.0
    intensity = torch.full((2, n), 3.0)
    intensity[0, 3], intensity[1, 3] = 4.0, 3.6
    au_tokens = connector(tokens, logits, intensity)[:, k:]
    assert au_tokens.shape[1] == 2 * n
    code, level, off = connector.au_code_embedding[3], connector.au_level_embedding, connector.au_off_embedding
    assert torch.allclose(au_tokens[0, 6], code, atol=1e-5)  # the AU token is the code alone, as without levels
    assert torch.allclose(au_tokens[0, 7], level[3], atol=1e-5)  # 4.0: all " D"
    assert torch.allclose(au_tokens[1, 7], 0.6 * level[3] + 0.4 * level[2], atol=1e-5)  # 3.6
    assert torch.allclose(au_tokens[0, 8], off) and torch.allclose(au_tokens[0, 9], off)  # absent: " no", " no"
    intensity[0, 3] = -2.0  # out of range: the nearest letter
    assert torch.allclose(connector(tokens, logits, intensity)[0, k + 7], level[0])
    with pytest.raises(ValueError, match="au_intensity"):
        connector(tokens, logits)
    batch = _batch(processor, answer="<think>AU12 D</think>")
    au_labels = torch.full((1, len(config.au_codes)), float("nan"))
    levels = torch.full((1, len(config.au_codes)), float("nan"))
    au_labels[0, :2], levels[0, 0] = torch.tensor([1.0, 0.0]), 4.5
    out = model(**_inputs(batch), labels=batch["input_ids"].clone(), au_labels=au_labels, au_intensities=levels)
    assert out.au_intensity.shape == (1, len(config.au_codes))
    expected = au_head_loss(out.au_logits, au_labels) + ((out.au_intensity[0, 0] - 4.5) / 5) ** 2
    torch.testing.assert_close(out.au_loss, expected)
    assert au_intensity_loss(out.au_intensity, torch.full_like(levels, float("nan"))) == 0  # none known
    with pytest.raises(ValueError, match="au_intensities"):
        au_intensity_loss(out.au_intensity, levels[:, :3])
    out.loss.backward()
    assert compressor.au_intensity_weight.grad.abs().sum() > 0 and connector.au_level_embedding.grad.abs().sum() > 0
    plain, _ = build_tiny(seed=0, face_au_tokens=True)  # off by default: a checkpoint without it loads as before
    assert not any("level" in k or "au_intensity" in k for k in plain.state_dict())


def test_config_limits():
    with pytest.raises(ValueError, match="face tokens"):
        EmoReasonConfig(face_temporal_slots=6)  # 6 regions x 6 slots = 36 > 32
    with pytest.raises(ValueError, match="num_audio_tokens"):
        EmoReasonConfig(num_audio_tokens=17)


def test_incomplete_checkpoints_name_the_missing_file(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "tiny")
    (path / "lora" / "adapter_config.json").unlink()
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        load_checkpoint(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(path)


def test_explain_with_tiny_checkpoint(smile_video, tmp_path):
    path = make_tiny_checkpoint(tmp_path / "tiny")
    report = emoreason.explain(smile_video, model=path)
    assert report.backend == "hf" and report.model == str(path)
    assert report.answer  # the model's own text
    if report.emotion is None:  # random weights rarely write a valid answer; the report says so
        assert any("could not be parsed" in w for w in report.warnings)
    assert report.to_json()


def _save_parts(tmp_path, tokenizer):
    from transformers import (
        AutoModelForCausalLM,
        Qwen2Config,
        SiglipVisionConfig,
        SiglipVisionModel,
        WhisperConfig,
        WhisperModel,
    )

    from emoreason.model.tiny import TINY_AUDIO, TINY_FACE, TINY_TEXT

    face = SiglipVisionModel(SiglipVisionConfig(**{k: v for k, v in TINY_FACE.items() if k != "model_type"}))
    audio = WhisperModel(WhisperConfig(**{k: v for k, v in TINY_AUDIO.items() if k != "model_type"}))
    text = {k: v for k, v in TINY_TEXT.items() if k != "model_type"}
    lm = AutoModelForCausalLM.from_config(Qwen2Config(**text, vocab_size=len(tokenizer)))
    for name, part in (("face", face), ("audio", audio), ("lm", lm)):
        part.save_pretrained(tmp_path / name)
    return face, audio, lm


def test_build_from_local_pretrained_parts(tmp_path):
    from emoreason.model.parts import build_from_parts

    _, processor = build_tiny(lora=False)
    face, audio, lm = _save_parts(tmp_path, processor.tokenizer)
    model = build_from_parts(tmp_path / "face", tmp_path / "audio", tmp_path / "lm", processor.tokenizer,
                             face_temporal_slots=2, num_audio_tokens=4, max_frames=8)  # fmt: skip
    # the pretrained weights arrived, and the towers are frozen
    assert torch.equal(model.face_tower.encoder.state_dict()["embeddings.patch_embedding.weight"],
                       face.state_dict()["embeddings.patch_embedding.weight"])  # fmt: skip
    assert torch.equal(model.audio_tower.encoder.conv1.weight, audio.get_encoder().conv1.weight)
    assert torch.equal(model.language_model.lm_head.weight, lm.lm_head.weight)
    assert not any(p.requires_grad for p in model.face_tower.parameters())
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_from_parts(tmp_path / "nowhere", tmp_path / "audio", tmp_path / "lm", processor.tokenizer)


def test_qlora_4bit_step_on_cpu(tmp_path):
    pytest.importorskip("bitsandbytes")
    from emoreason.model.checkpoint import apply_lora
    from emoreason.model.parts import build_from_parts

    _, processor = build_tiny(lora=False)
    _save_parts(tmp_path, processor.tokenizer)
    model = build_from_parts(tmp_path / "face", tmp_path / "audio", tmp_path / "lm", processor.tokenizer,
                             quantize_4bit=True, face_temporal_slots=2, num_audio_tokens=4, max_frames=8)  # fmt: skip
    assert "4bit" in type(model.language_model.model.layers[0].self_attn.q_proj).__name__
    apply_lora(model, r=4, alpha=8, dropout=0.0)
    lora_before = {k: v.clone() for k, v in model.named_parameters() if "lora_B" in k}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = _batch(processor, answer='<think>x</think><answer>{"emotion": "fear"}</answer>')
    model(**_inputs(batch), labels=batch["input_ids"]).loss.backward()
    optimizer.step()
    assert any(not torch.equal(v, dict(model.named_parameters())[k]) for k, v in lora_before.items())
